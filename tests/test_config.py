import pytest

from src.config import ConfigError, image_size, load_config, selected_folds


def test_seed_recipe_is_the_default():
    cfg = load_config()
    assert cfg.recipe == "seed"
    assert (cfg.model, cfg.loss, cfg.lr, cfg.epochs, cfg.age_boundary) == ("resnet18.tv_in1k", "focal", 8e-5, 10, 55)
    assert cfg.pretrained == "true"  # ImageNet weights, as the seed team trained


def test_overrides_are_typed():
    cfg = load_config("seed", ["epochs=3", "lr=0.01", "amp=false", "model=tf_efficientnet_lite0", "folds=0"])
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.lr == 0.01 and cfg.amp is False
    assert cfg.model == "tf_efficientnet_lite0"
    assert selected_folds(cfg) == [0]


@pytest.mark.parametrize("bad, words", [
    (["epoch=3"], "unknown config key"),
    (["epochs=three"], "expected an integer"),
    (["loss=hinge"], "choose one of focal"),
    (["folds=7"], "0..4"),
    (["img_size=a,b"], "expected H or H,W"),
    (["epochs"], "key=value"),
])
def test_bad_overrides_fail_clearly(bad, words):
    with pytest.raises(ConfigError, match=words):
        load_config("seed", bad)


def test_unknown_recipe_lists_known():
    with pytest.raises(ConfigError, match="seed"):
        load_config("no_such_recipe")


def test_recipe_file_keys_checked(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("epochs: 2\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(str(f))
    f.write_text("epochs: 2\nlr: 0.5\n")
    cfg = load_config(str(f), ["epochs=4"])
    assert (cfg.epochs, cfg.lr) == (4, 0.5)  # command line wins over the file


def test_image_size_forms():
    assert image_size({"img_size": "64,48"}) == (64, 48)
    assert image_size({"img_size": 128}) == (128, 96)
    assert selected_folds({"folds": "all", "n_folds": 3}) == [0, 1, 2]
    assert selected_folds({"folds": "2,0", "n_folds": 3}) == [0, 2]


def test_runs_saved_before_a_key_existed_count_as_what_the_code_then_did(tmp_path):
    from src.config import completed, matches_saved, save_config
    cfg = load_config("seed")
    assert (cfg.head_init, cfg.resize) == ("torch", "antialias")  # today's defaults
    old = {k: v for k, v in cfg.items() if k not in ("head_init", "resize")}
    assert (completed(old).head_init, completed(old).resize) == ("timm", "plain")
    save_config(old, tmp_path / "config.yaml")
    assert not matches_saved(tmp_path / "config.yaml", cfg, set())  # trained otherwise: not the same run
    assert matches_saved(tmp_path / "config.yaml", load_config("seed", ["head_init=timm", "resize=plain"]), set())


@pytest.mark.parametrize("bad", ["head_init=goog", "resize=nearest"])
def test_head_init_and_resize_are_checked(bad):
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        load_config("seed", [bad])
