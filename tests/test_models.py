import pytest
import timm
import torch

from src import models
from src.config import load_config
from src.models import WeightsError, build_model, load_in_order


def test_head_has_18_classes():
    model, mean, std = build_model(load_config("seed", ["model=test_efficientnet"]))
    assert model.eval()(torch.zeros(1, 3, 32, 24)).shape == (1, 18)
    assert len(mean) == 3 and len(std) == 3


def test_local_weights_file_loads(tmp_path):
    cfg = load_config("seed", ["model=test_efficientnet"])
    torch.manual_seed(0)
    src, _, _ = build_model(cfg)
    torch.save({"model": src.state_dict()}, tmp_path / "w.pt")
    torch.manual_seed(1)
    dst, _, _ = build_model(load_config("seed", ["model=test_efficientnet", f"pretrained={tmp_path / 'w.pt'}"]))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_missing_weights_file_is_clear(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        build_model(load_config("seed", ["model=test_efficientnet", f"pretrained={tmp_path / 'none.pt'}"]))


def test_load_in_order_maps_other_names_and_keeps_head():
    a = timm.create_model("test_efficientnet", num_classes=1000)
    renamed = {f"_t{i}": v.clone() + 1 for i, v in enumerate(a.state_dict().values())}
    b = timm.create_model("test_efficientnet", num_classes=18)
    head_before = b.classifier.weight.clone()
    n = load_in_order(b, renamed)
    assert n == len(b.state_dict()) - 2
    assert torch.equal(b.conv_stem.weight, a.conv_stem.weight + 1)
    assert torch.equal(b.classifier.weight, head_before)


def test_load_in_order_rejects_wrong_architecture():
    other = timm.create_model("test_resnet", num_classes=18).state_dict()
    with pytest.raises(WeightsError):
        load_in_order(timm.create_model("test_efficientnet", num_classes=18), other)


def test_offline_lite0_weights_load():
    cfg = load_config("seed", ["model=tf_efficientnet_lite0", "pretrained=true"])
    model, mean, std = build_model(cfg)
    packaged = torch.load(models.offline_weights_file("tf_efficientnet_lite0"), weights_only=True)
    assert torch.equal(model.conv_stem.weight, next(iter(packaged.values())))
    assert mean == std == (0.5, 0.5, 0.5)


def test_hub_failure_names_offline_options(monkeypatch):
    real = timm.create_model

    def no_network(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("network unreachable")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(models.timm, "create_model", no_network)
    with pytest.raises(WeightsError) as ei:
        build_model(load_config("seed", ["model=test_resnet", "pretrained=true"]))
    msg = str(ei.value)
    assert "could not download" in msg and "tf_efficientnet_lite0" in msg and "pretrained=<path" in msg
