import re
from pathlib import Path

import pytest
import yaml

from src.core.config import load_config, load_saved, save_config, saved_config, settle_outside
from src.core.errors import ConfigError, closest_names
from src.core.keys import KEYS
from src.core.paths import CONFIG_DIR
from src.core.values import Pretrained


def test_seed_recipe_is_the_default():
    cfg = load_config()
    assert cfg.recipe == "seed"
    assert (cfg.model, cfg.loss, cfg.lr, cfg.epochs, cfg.age_boundary) == ("resnet18.tv_in1k", "focal", 8e-5, 10, 55)
    assert cfg.pretrained == Pretrained("imagenet")  # ImageNet weights, as the seed team trained


def test_overrides_are_typed():
    cfg = load_config("seed", ["epochs=3", "lr=0.01", "amp=false", "model=tf_efficientnet_lite0", "folds=0"])
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.lr == 0.01 and cfg.amp is False
    assert cfg.model == "tf_efficientnet_lite0"
    assert cfg.folds == (0,)


@pytest.mark.parametrize("bad, words", [
    (["epoch=3"], "unknown config key"),
    (["epochs=three"], "expected an integer"),
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


def test_values_are_parsed_once_into_their_types():
    assert load_config("seed", ["img_size=64,48"]).img_size == (64, 48)
    assert load_config("seed", ["img_size=128"]).img_size == (128, 96)
    assert load_config("seed", ["n_folds=3"]).folds == (0, 1, 2)
    assert load_config("seed", ["n_folds=3", "folds=2,0"]).folds == (0, 2)
    cfg = load_config("seed", ["task_weights=1,0.5,2", "drop_ages=57-59", "pretrained=no_such.pth"])
    assert cfg.task_weights == (1.0, 0.5, 2.0) and cfg.drop_ages == (57, 59)
    assert load_config("seed").drop_ages is None
    assert cfg.pretrained == Pretrained("file", str(Path.cwd() / "no_such.pth"))  # a path: from where the user stands
    assert [load_config("seed", [f"pretrained={v}"]).pretrained.source for v in ("yes", "1", "No", "", "hub", "Package")] \
        == ["imagenet", "imagenet", "none", "none", "hub", "package"]
    # config.yaml holds what the user would type, as runs saved before the type did (they still resume)
    assert [cfg.replace(pretrained=v).saved()["pretrained"] for v in ("yes", "0", "hub", "w/x.pth")] == \
        ["true", "false", "hub", str(Path.cwd() / "w/x.pth")]  # a file: resolved from where the user stands


def test_config_is_frozen_and_replace_checks_again():
    cfg = load_config("seed")
    with pytest.raises(AttributeError, match="frozen"):
        cfg.lr = 1.0
    with pytest.raises(TypeError):
        cfg["lr"] = 1.0
    other = cfg.replace(epochs=3, img_size="64,48")
    assert (other.epochs, other.img_size, cfg.epochs) == (3, (64, 48), 10)
    with pytest.raises(ConfigError, match="epochs"):
        cfg.replace(epochs=0)


def test_saved_config_is_readable_text_and_loads_back_equal(tmp_path):
    cfg = load_config("seed", ["img_size=64,48", "folds=1,3", "drop_ages=57-59", "task_weights=1,0.5,2"])
    cfg = cfg.replace(weights="resnet18.tv_in1k abc123 (hub-cache)", data="/data/x")
    save_config(cfg, tmp_path / "config.yaml")
    text = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert (text["img_size"], text["folds"], text["drop_ages"], text["task_weights"]) == ("64,48", "1,3", "57-59",
                                                                                           "1,0.5,2")
    assert load_saved(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("bad, words", [
    (["epochs=0"], "epochs=0: must be in 1"), (["lr=0"], "lr=0: must be > 0"), (["batch_size=-1"], "batch_size"),
    (["cutmix=2"], "cutmix"), (["n_folds=3", "folds=3"], "0..2"), (["drop_ages=60-50"], "empty"),
])
def test_ranges_are_checked(bad, words):
    with pytest.raises(ConfigError, match=words):
        load_config("seed", bad)


def test_a_bad_value_in_a_recipe_file_names_the_file(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("epochs: many\n")
    with pytest.raises(ConfigError, match=f"{f}: epochs=many"):
        load_config(str(f))


def test_runs_saved_before_a_key_existed_count_as_what_the_code_then_did(tmp_path):
    from src.core.config import matches_saved, saved_config
    cfg = load_config("seed")
    assert (cfg.head_init, cfg.resize) == ("torch", "antialias")  # today's defaults
    old = {k: v for k, v in cfg.saved().items() if k not in ("head_init", "resize")}
    assert (saved_config(old).head_init, saved_config(old).resize) == ("timm", "plain")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert not matches_saved(tmp_path / "config.yaml", cfg, set())  # trained otherwise: not the same run
    as_then = load_config("seed", ["head_init=timm", "resize=plain"]).replace(data="input/data")
    assert matches_saved(tmp_path / "config.yaml", as_then, set())  # older runs wrote their data folder to data_dir


def test_a_run_saved_before_ema_warmup_had_no_ramp_and_one_without_an_average_is_todays(tmp_path):
    from src.core.config import matches_saved
    averaged = {k: v for k, v in load_config("seed", ["ema=0.99"]).saved().items() if k != "ema_warmup"}
    assert saved_config(averaged).ema_warmup is False  # what the code then did
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(averaged))
    assert not matches_saved(tmp_path / "config.yaml", load_config("seed", ["ema=0.99"]), {"data"})
    assert matches_saved(tmp_path / "config.yaml", load_config("seed", ["ema=0.99", "ema_warmup=false"]), {"data"})
    plain = {k: v for k, v in load_config("seed").saved().items() if k != "ema_warmup"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(plain))
    assert matches_saved(tmp_path / "config.yaml", load_config("seed"), {"data"})  # a bench reuses it


@pytest.mark.parametrize("bad", ["head_init=goog", "resize=nearest"])
def test_head_init_and_resize_are_checked(bad):
    with pytest.raises(ConfigError, match=bad.split("=")[0]):
        load_config("seed", [bad])


def test_decision_auto_stays_auto_with_outside_photos_and_is_none_without():
    """auto with outside photos is decided after training (biases where they beat argmax nested)."""
    assert load_config("seed").decision == "none"
    assert load_config("seed", ["extra=/photos"]).decision == "auto"
    assert load_config("seed", ["extra=/photos", "decision=none"]).decision == "none"  # said: kept
    assert load_config("seed", ["decision=bias"]).decision == "bias"
    assert load_config("seed", ["extra=/photos"]).saved()["decision"] == "auto"


def test_extra_auto_is_the_data_folders_extra_and_none_turns_it_off(tmp_path):
    """extra=auto waits for the data folder: its extra/ when it is a folder (decision=auto stays), else no
    outside faces (decision none); extra=none is off, even over a recipe that says auto."""
    data = tmp_path / "data"
    data.mkdir()
    auto = load_config("seed", ["extra=auto"])
    assert (auto.extra, auto.decision) == ("auto", "auto")  # not settled without the data folder
    assert (settle_outside(auto, data).extra, settle_outside(auto, data).decision) == ((), "none")
    (data / "extra").mkdir()
    found = settle_outside(auto, data)
    assert (found.extra, found.decision) == (((data / "extra").resolve(),), "auto")  # held as its folders
    assert found.saved()["extra"] == str((data / "extra").resolve())  # config.yaml holds the folder it used
    assert settle_outside(load_config("seed", ["extra=AUTO", "decision=prior"]), data).decision == "prior"
    off = load_config("seed", ["extra=auto", "extra=none"])
    assert (off.extra, off.decision, settle_outside(off, data).extra) == ((), "none", ())
    assert load_config("seed", ["extra=auto", "extra_conflicts=drop"]).extra_conflicts == "drop"
    (tmp_path / "listed.yaml").write_text("base: seed\nextra: [a, b/../c]\n")  # a recipe's YAML list of folders
    assert load_config(str(tmp_path / "listed.yaml")).saved()["extra"] == f"{Path.cwd() / 'a'},{Path.cwd() / 'c'}"


def test_an_optimiser_is_any_of_timms_by_name_and_a_misspelt_one_is_refused_with_the_close_ones():
    assert load_config("seed").optimizer == "adam"  # what every run before the key trained with
    assert load_config("seed", ["optimizer=AdamW"]).optimizer == "adamw"
    assert load_config("seed", ["optimizer=lamb"]).optimizer == "lamb"
    with pytest.raises(ConfigError, match=r"optimizer=adamx: .*did you mean .*adamw") as e:
        load_config("seed", ["optimizer=adamx"])
    assert "adabelief" in str(e.value)  # timm's own list
    assert closest_names("HorizontalFlp", ["HorizontalFlip", "VerticalFlip", "Affine"]) == ["HorizontalFlip"]
    assert closest_names("zzz", ["adam", "sgd"]) == []


AUGMENT_RECIPE = """\
model: resnet18
augment:
  - HorizontalFlip: {p: 0.5}
  - Affine: {translate_percent: 0.03, rotate: [-10, 10], p: 0.5}
  - %s
"""


@pytest.mark.parametrize("third, words", [
    ("HorizontalFlp: {p: 0.5}", r"line 5: augment: HorizontalFlp is not an albumentations transform \(did you mean "
                                r"HorizontalFlip\?\)"),
    ("CoarseDropout: {num_holes: 3}", r"line 5: augment: CoarseDropout has no parameter 'num_holes' \(did you mean "
                                      r"num_holes_range\?\)"),
    ("RandomBrightnessContrast: {p: 1.5}", r"line 5: augment: RandomBrightnessContrast: p=1.5: a probability"),
    ("RandomCrop: {height: 20, width: 20}", r"line 5: augment: RandomCrop turns the 320x240 uint8 photo into uint8 "
                                            r"20x20"),
    ("Normalize: {}", r"line 5: augment: Normalize turns the 320x240 uint8 photo into float32"),
    ("OneOf: {transforms: [CLAHE, RandomGama]}", r"line 5: augment: OneOf, its transform 2: RandomGama is not .*"
                                                 r"RandomGamma"),
    # issue 33: a random output size refused every time (it was 5 in 6), containers' p, SomeOf's n, Lambda, channels
    ("RandomScale: {scale_limit: 0.1}", r"line 5: augment: RandomScale turns the 320x240 uint8 photo into uint8 .* "
                                        r"\(its size drawn at random\)"),
    ("OneOf: {transforms: [CLAHE, RandomGamma], p: 2}", r"line 5: augment: OneOf: p=2: a probability, from 0 to 1"),
    ("SomeOf: {transforms: [CLAHE, RandomGamma], n: 3, p: -1}", r"line 5: augment: SomeOf: p=-1: a probability"),
    ("SomeOf: {transforms: [CLAHE, RandomGamma], n: 3}", r"line 5: augment: SomeOf: n=3 but it has 2 transforms"),
    ("RandomOrder: {transforms: [CLAHE, RandomGamma], n: 3}", r"line 5: augment: RandomOrder: n=3 but it has 2"),
    ("Lambda: {}", r"line 5: augment: Lambda acts through Python functions .*which a recipe cannot give"),
    ("OneOf: {transforms: [CLAHE, Lambda]}", r"line 5: augment: OneOf, its transform 2: Lambda acts through Python"),
    ("ToGray: {num_output_channels: 1}", r"line 5: augment: ToGray turns the photo's 3 channels into 1: the model "
                                         r"takes 3-channel"),
    ("Affine: {}", r"line 5: augment: Affine leaves the photo unchanged even made to act"),
])
def test_a_recipes_augment_list_is_checked_by_albumentations_naming_the_file_the_line_and_the_close_name(
        tmp_path, third, words):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(AUGMENT_RECIPE % third)
    with pytest.raises(ConfigError, match=f"{recipe}, " + words):
        load_config(str(recipe))


def test_an_augment_list_reads_from_a_recipe_or_the_command_line_and_is_saved_as_written(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text(AUGMENT_RECIPE % "OneOf: {transforms: [CLAHE, RandomGamma: {}], p: 0.3}")
    cfg = load_config(str(recipe))
    assert [s.name for s in cfg.augment] == ["HorizontalFlip", "Affine", "OneOf"]
    assert cfg.augment[1].params == {"translate_percent": 0.03, "rotate": [-10, 10], "p": 0.5}
    save_config(cfg, tmp_path / "config.yaml")
    assert load_saved(tmp_path / "config.yaml").augment == cfg.augment
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["augment"][2] == {
        "OneOf": {"p": 0.3, "transforms": [{"CLAHE": {}}, {"RandomGamma": {}}]}}
    assert load_config("seed", ["augment=none"]).augment == ()
    assert load_config("seed", ["augment=[CLAHE, HorizontalFlip: {p: 0.2}]"]).augment[1].params == {"p": 0.2}
    with pytest.raises(ConfigError, match=r"command line, augment entry 2: augment: HorizontalFlp is not .* "
                                          r"HorizontalFlip"):
        load_config("seed", ["augment=[CLAHE, HorizontalFlp]"])
    with pytest.raises(ConfigError, match=r"hflip is an entry of augment now: augment: none does what hflip did"):
        load_config("seed", ["hflip=0"])
    with pytest.raises(ConfigError, match=r"augment: \[\{HorizontalFlip: \{p: 0.3\}\}\] does what hflip did"):
        load_config("seed", ["hflip=0.3"])
    recipe.write_text("shift_px: 6\ncolor_jitter: 0.2\nepoch: 3\n")  # the words of an old recipe, and a typo
    with pytest.raises(ConfigError, match=r"shift_px, color_jitter are entries of augment now: augment: \[\{Affine: "
                                          r"\{.*translate_px: \[-6, 6\].*ColorJitter: \{brightness: 0.2.* Did you "
                                          r"mean epochs \(for epoch\)\?"):
        load_config(str(recipe))


def test_a_run_saved_before_augment_keeps_its_flip_shift_and_colour():
    old = saved_config({"hflip": 0.25, "shift_px": 2, "color_jitter": 0.2})
    assert [(s.name, s.params.get("p")) for s in old.augment] == [("HorizontalFlip", 0.25), ("Affine", 1.0),
                                                                 ("ColorJitter", 1.0)]
    assert old.augment[1].params["translate_px"] == [-2, 2]
    assert saved_config({"hflip": 0.0}).augment == () and saved_config({}).augment == load_config("seed").augment


def test_a_warm_up_of_part_of_an_epoch_needs_the_schedule_stepped_per_update():
    assert load_config("seed", ["warmup_epochs=0.5"]).warmup_epochs == 0.5  # sched_step=update, the default
    assert load_config("seed", ["warmup_epochs=1", "sched_step=epoch"]).warmup_epochs == 1
    with pytest.raises(ConfigError, match="warmup_epochs=0.5 with sched_step=epoch: .*use sched_step=update"):
        load_config("recommended", ["warmup_epochs=0.5"])


def test_an_augment_list_can_be_a_file_of_its_own_named_or_by_path(tmp_path):
    kaggle = load_config("recommended", ["augment=kaggle"])  # configs/augment/kaggle.yaml
    assert [s.name for s in kaggle.augment] == ["HorizontalFlip", "Affine", "RandomBrightnessContrast", "CoarseDropout"]
    assert load_config(str(_saved(kaggle, tmp_path))).augment == kaggle.augment  # config.yaml holds the list itself
    mine = tmp_path / "list.yaml"
    mine.write_text("- HorizontalFlip: {p: 0.5}\n# a comment\n- HorizontalFlp: {p: 0.5}\n")
    with pytest.raises(ConfigError, match=f"{mine}, line 3: augment: HorizontalFlp .*HorizontalFlip"):
        load_config("seed", [f"augment={mine}"])
    mine.write_text("- HorizontalFlip: {p: 0.5}\n- RandomCrop: {height: 20, width: 20}\n")  # refused by its output
    with pytest.raises(ConfigError, match=f"{mine}, line 2: augment: RandomCrop turns the 320x240"):
        load_config("seed", [f"augment={mine}"])
    with pytest.raises(ConfigError, match=r"kagle is not an albumentations transform, nor a list of configs/augment/ "
                                          r"\(kaggle"):
        load_config("seed", ["augment=kagle"])
    with pytest.raises(ConfigError, match="no augment list file .*missing.yaml"):
        load_config("seed", [f"augment={tmp_path / 'missing.yaml'}"])


def _saved(cfg, folder: Path) -> Path:
    save_config(cfg, folder / "config.yaml")
    return folder / "config.yaml"


def test_extra_ages_is_auto_all_or_a_range_and_old_runs_without_extra_still_load(tmp_path):
    parse = KEYS["extra_ages"].parse
    assert (parse("auto"), parse("all"), parse(""), parse("55-120")) == ("auto", None, None, (55, 120))
    with pytest.raises(ValueError, match="one age: 55-55; from 55 up: 55-120"):
        parse("55")
    cfg = load_config("seed", ["extra=auto"])
    assert (cfg.extra_ages, cfg.extra_conflicts) == ("auto", "drop")  # the defaults: a download trains as it comes
    assert load_config("seed", ["extra=auto", "extra_ages=all"]).saved()["extra_ages"] == "all"
    old = {**load_config("seed").saved(), "extra_ages": "", "extra_conflicts": "error"}  # a run saved before
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert load_saved(tmp_path / "config.yaml").extra_conflicts == "drop"  # no extra=: they did nothing
    with_extra = {**old, "extra": str(tmp_path)}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(with_extra))
    saved = load_saved(tmp_path / "config.yaml")
    assert (saved.extra_ages, saved.extra_conflicts) == (None, "error")  # what that run did: all ages, strict


def test_a_random_output_size_is_judged_the_same_every_time():
    """RandomScale was refused 5 times in 6 (one unseeded draw) and crashed a batch the 6th: now every time."""
    from src.core import augment_list

    augment_list.check_acting.cache_clear()
    for _ in range(6):
        with pytest.raises(ConfigError, match="its size drawn at random"):
            load_config("seed", ["augment=[RandomScale: {scale_limit: 0.02}]"])
        augment_list.check_acting.cache_clear()
    assert load_config("seed", ["augment=[SomeOf: {transforms: [CLAHE], n: 2, replace: true}]"]).augment


@pytest.mark.parametrize("overrides, words", [
    (["scheduler=cosine", "lr=1e-4", "min_lr=1e-3"], "min_lr=0.001 is above lr=0.0001: the cosine schedule would "
                                                     "climb"),
    (["warmup_epochs=1", "epochs=3", "lr=1e-4", "warmup_lr=1e-3"], "warmup_lr=0.001 is above lr=0.0001"),
    (["warmup_epochs=3", "epochs=3"], "warmup_epochs=3 with epochs=3: the warm-up would last the whole run"),
    (["scheduler=step", "decay_rate=10"], "decay_rate=10 with scheduler=step: the rate would grow x10 every 3 epochs"),
    (["drop_rate=1"], "drop_rate=1: must be < 1"),
    # the second pass: the same families
    (["drop_path=1"], "drop_path=1: must be < 1"),
    (["scheduler=step", "epochs=3", "decay_epochs=3"], "decay_epochs=3 with scheduler=step and epochs=3: the rate "
                                                       "would never decay"),
])
def test_a_schedule_that_trains_at_another_rate_is_refused_saying_why(overrides, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        load_config("seed", overrides)


def test_the_same_keys_where_they_do_not_act_are_accepted():
    assert load_config("seed", ["min_lr=1e-3"]).min_lr == 1e-3  # scheduler=none: no floor to decay to
    assert load_config("seed", ["scheduler=poly", "decay_rate=2"]).decay_rate == 2  # poly: its power
    assert load_config("seed", ["warmup_lr=1e-3"]).warmup_lr == 1e-3  # no warm-up
    assert load_config("seed", ["epochs=3", "warmup_epochs=2.5"]).warmup_epochs == 2.5


def test_a_recipe_builds_on_another_and_holds_only_its_changes(tmp_path):
    """recommended = seed + its changes (none of seed's keys repeated); a recipe's own key wins over its base's;
    its errors name the file that holds the key; a base beside the recipe is found there; a circle is refused."""
    seed_text = yaml.safe_load((CONFIG_DIR / "seed.yaml").read_text())
    own = yaml.safe_load((CONFIG_DIR / "recommended.yaml").read_text())
    assert own.pop("base") == "seed" and all(own[k] != seed_text[k] for k in set(own) & set(seed_text))
    rec, seed = load_config("recommended"), load_config("seed")
    assert rec.recipe == "recommended" and (rec.model, rec.age_boundary, rec.lr) == (seed.model, 55, 5e-4)
    (tmp_path / "mine.yaml").write_text("base: recommended\nepochs: 3\n")
    (tmp_path / "top.yaml").write_text("base: mine.yaml\nlr: 1.0e-3\nepochs: zwei\n")
    mine = load_config(str(tmp_path / "mine.yaml"))
    assert (mine.recipe, mine.epochs, mine.scheduler, mine.model) == ("mine", 3, "cosine", seed.model)
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'top.yaml'}: epochs=zwei"):
        load_config(str(tmp_path / "top.yaml"))
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="builds on itself"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "d.yaml").write_text("base: sub/../d.yaml\n")  # itself, spelt otherwise
    with pytest.raises(ConfigError, match="builds on itself"):
        load_config(str(tmp_path / "d.yaml"))
    (tmp_path / "c.yaml").write_text("base: nothere\n")
    with pytest.raises(ConfigError, match="config 'nothere' not found"):
        load_config(str(tmp_path / "c.yaml"))
    assert "base" not in rec.saved()  # config.yaml holds every key resolved, not the recipe's chain


def test_an_optimisers_and_a_schedules_own_arguments_pass_through_checked_by_name():
    cfg = load_config("seed", ["optimizer=sgd", "optimizer_args={momentum: 0.8, nesterov: false}",
                               "scheduler=cosine", "scheduler_args={cycle_limit: 2, cycle_decay: 0.5}"])
    assert dict(cfg.optimizer_args) == {"momentum": 0.8, "nesterov": False}
    assert cfg.saved()["scheduler_args"] == {"cycle_decay": 0.5, "cycle_limit": 2}
    assert load_config("seed", ["optimizer=adamw", "optimizer_args={betas: [0.9, 0.99]}"]).saved()[
        "optimizer_args"] == {"betas": [0.9, 0.99]}  # a list stays a list in config.yaml
    with pytest.raises(ConfigError, match=r"optimizer=sgd takes no argument momentun \(did you mean momentum\?\)"):
        load_config("seed", ["optimizer=sgd", "optimizer_args={momentun: 0.8}"])
    with pytest.raises(ConfigError, match=r"optimizer_args: lr is set by the pipeline; set lr= instead"):
        load_config("seed", ["optimizer_args={lr: 0.1}"])
    with pytest.raises(ConfigError, match=r"scheduler_args: num_epochs is set by the pipeline; set epochs= instead"):
        load_config("seed", ["scheduler_args={num_epochs: 3}"])
    with pytest.raises(ConfigError, match=r"create_scheduler_v2 takes no argument cycle_lmit"):
        load_config("seed", ["scheduler_args={cycle_lmit: 3}"])
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config("seed", ["optimizer_args=[1, 2]"])


def test_an_augment_step_is_built_once_however_often_the_config_is_read_or_replaced(monkeypatch):
    """albumentations builds a step to check it (and 8 seeded draws to see it act); a config read again, replaced
    or saved and read back builds nothing again."""
    from src.core import augment_list
    built, real = [], augment_list.build
    monkeypatch.setattr(augment_list, "build", lambda *a, **k: built.append(a[0].name) or real(*a, **k))
    augment_list.checked_step.cache_clear()
    augment_list.check_acting.cache_clear()
    cfg = load_config("seed", ["augment=[{Affine: {rotate: [-7, 7], p: 0.5}}]"])
    assert built.count("Affine") == 1 + augment_list.DRAWS
    built.clear()
    load_config("seed", ["augment=[{Affine: {rotate: [-7, 7], p: 0.5}}]"]).replace(lr=1e-3)
    assert saved_config(cfg.stamped()).augment == cfg.augment and built == []
