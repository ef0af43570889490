"""Where ImageNet weights come from: the resolution order, the early failure, the file round trip."""
import json
import time

import huggingface_hub
import pytest
import timm
import torch
import yaml

from src.core.config import load_config
from src.model import weights
from src.model.backbones import build_model
from src.model.weights import WeightsError, classifier_layers, resolve
from tests.helpers import FAST, stage


@pytest.fixture
def offline(monkeypatch):
    """No hub cache and no network, whatever machine the tests run on."""
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=5.0: False)

    def no_download(*a, **k):
        raise AssertionError("no download may be tried")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_download)


def same_backbone(model, source) -> bool:
    mine = model.state_dict()
    return all(torch.equal(mine[k], v) for k, v in source.state_dict().items() if not k.startswith("fc."))


@pytest.fixture
def hub_file(tmp_path):
    """A stand-in for the hub's test_resnet weights: the model's own 1000-class state_dict."""
    torch.manual_seed(3)
    model = timm.create_model("test_resnet")
    path = tmp_path / "hub" / "pytorch_model.bin"
    path.parent.mkdir()
    torch.save(model.state_dict(), path)
    return model, path


def test_order_file_then_package_then_cache_then_download(tmp_path, monkeypatch, offline, hub_file):
    _, path = hub_file
    assert resolve("tf_efficientnet_lite0", str(path)).source == "file"  # a file wins over the package
    assert resolve("tf_efficientnet_lite0", "true").source == "package"
    assert resolve("test_resnet", "false").source == "none"
    asked = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache",
                        lambda repo, name: asked.append((repo, name)) or (str(path) if name == "pytorch_model.bin"
                                                                           else None))
    w = resolve("test_resnet", "true")
    assert (w.source, w.path, w.tag) == ("hub-cache", str(path), "test_resnet.r160_in1k")
    assert w.sha256 == weights.file_sha256(path) and asked[0][0] == "timm/test_resnet.r160_in1k"
    # not in the cache, and the hub answers: downloaded (the hub client caches it itself)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=5.0: True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: str(path))
    assert resolve("test_resnet", "true").source == "download"


def test_missing_package_falls_through_to_the_hub(monkeypatch, offline):
    monkeypatch.setitem(weights.OFFLINE_WEIGHTS, "tf_efficientnet_lite0", ("no-such-pkg", "no_such_pkg", "X"))
    with pytest.raises(WeightsError) as ei:
        resolve("tf_efficientnet_lite0", "true")
    msg = str(ei.value)
    assert "no-such-pkg is not installed" in msg and "hub cache" in msg and "no connection" in msg


def test_package_and_hub_each_look_only_there(monkeypatch, offline, hub_file):
    _, path = hub_file
    assert resolve("tf_efficientnet_lite0", "package").source == "package"
    with pytest.raises(WeightsError) as ei:  # the package would have them: hub= does not look there
        resolve("tf_efficientnet_lite0", "hub")
    assert "pretrained=hub" in str(ei.value) and "hub cache" in str(ei.value) and "offline package:" not in str(ei.value)
    with pytest.raises(WeightsError) as ei:
        resolve("test_resnet", "package")
    assert "none ships test_resnet" in str(ei.value) and "hub cache" not in str(ei.value)
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(path))
    assert resolve("test_resnet", "hub").source == "hub-cache"


def test_nothing_found_says_what_was_tried_and_the_two_ways_out(offline):
    with pytest.raises(WeightsError) as ei:
        resolve("test_resnet", "true")
    msg = str(ei.value)
    assert "timm/test_resnet.r160_in1k" in msg and "no connection" in msg
    assert "pretrained=false" in msg and "bash run.sh weights test_resnet" in msg


@pytest.mark.parametrize("model", ["no_such_net", "resnet18.no_such_tag"])
def test_unknown_model_or_tag_is_named(model):
    with pytest.raises(WeightsError, match="model="):
        resolve(model, "true")


def test_run_stops_before_reading_the_data_when_weights_are_missing(tiny_data, tmp_path, offline, capsys):
    t0 = time.perf_counter()
    code = stage("train", ["--data", str(tiny_data), "--output", str(tmp_path / "out"), "--name", "w",
                          *FAST, "model=test_resnet", "pretrained=true"])
    assert code == 2 and time.perf_counter() - t0 < 30
    out = capsys.readouterr()
    assert "no ImageNet weights for test_resnet" in out.err and "Traceback" not in out.err
    assert "checking" not in out.out and not (tmp_path / "out" / "w").exists()  # nothing read, nothing made


def test_weights_command_saves_a_file_that_pretrained_accepts(tmp_path, monkeypatch, offline, hub_file):
    source, path = hub_file
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(path))
    assert stage("weights", ["test_resnet", "--out", str(tmp_path / "w")]) == 0
    saved = tmp_path / "w" / "test_resnet.r160_in1k.pth"
    state = torch.load(saved, weights_only=True)
    assert state.keys() == source.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in source.state_dict().items())  # the head included
    assert stage("weights", ["test_resnet", "--out", str(tmp_path / "w")]) == 0  # again: the file is kept
    assert saved.stat().st_size > 0
    model, _, _ = build_model(load_config("seed", ["model=test_resnet", f"pretrained={saved}"]))
    assert same_backbone(model, source)
    (fc,) = classifier_layers(model)
    assert fc.out_features == 18 and fc.weight.abs().max() <= fc.in_features ** -0.5  # a fresh 18-way head


def test_weights_command_fails_cleanly_offline(tmp_path, offline, capsys):
    assert stage("weights", ["test_resnet", "--out", str(tmp_path / "w")]) == 2
    assert "no ImageNet weights" in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_hub_weights_load_through_timm_with_a_new_head(monkeypatch, offline, hub_file):
    source, path = hub_file
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(path))
    model, mean, std = build_model(load_config("seed", ["model=test_resnet", "pretrained=true"]))
    assert same_backbone(model, source)
    assert model.fc.out_features == 18 and model.fc.weight.abs().max() <= model.fc.in_features ** -0.5


def test_a_run_records_its_weights(tiny_data, tmp_path, monkeypatch, offline, hub_file):
    _, path = hub_file
    code = stage("train", ["--data", str(tiny_data), "--output", str(tmp_path / "out"), "--name", "r",
                          *FAST, "model=test_resnet", f"pretrained={path}", "folds=0"])
    assert code == 0
    run = tmp_path / "out" / "r"
    record = f"test_resnet sha256:{weights.file_sha256(path)} (file)"
    assert yaml.safe_load((run / "config.yaml").read_text())["weights"] == record
    assert torch.load(run / "fold0_best.pt", weights_only=False)["config"]["weights"] == record
    assert record in (run / "report.md").read_text()
    assert json.loads((run / "metrics.json").read_text())["oof"]["f1"] >= 0
