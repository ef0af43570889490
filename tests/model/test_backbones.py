import pytest
import timm
import torch

from src.core.config import load_config
from src.model import weights
from src.model.backbones import build_model
from src.model.weights import WeightsError, load_in_order


def test_head_has_18_classes():
    model, mean, std = build_model(load_config("seed", ["pretrained=false", "model=test_efficientnet"]))
    assert model.eval()(torch.zeros(1, 3, 32, 24)).shape == (1, 18)
    assert len(mean) == 3 and len(std) == 3


def test_local_weights_file_loads(tmp_path):
    cfg = load_config("seed", ["pretrained=false", "model=test_efficientnet"])
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
    packaged = torch.load(weights.package_file("tf_efficientnet_lite0"), weights_only=True)
    assert torch.equal(model.conv_stem.weight, next(iter(packaged.values())))
    assert mean == std == (0.5, 0.5, 0.5)


def test_multi_head_probabilities_are_the_product_of_the_heads():
    torch.manual_seed(0)
    model, _, _ = build_model(load_config("seed", ["pretrained=false", "model=test_efficientnet", "head=multi"]))
    model.eval()
    x = torch.randn(3, 3, 32, 24)
    with torch.no_grad():
        joint = torch.softmax(model(x), dim=1)
        z = model.backbone(x)
    pm, pg, pa = torch.softmax(z[:, :3], 1), torch.softmax(z[:, 3:5], 1), torch.softmax(z[:, 5:], 1)
    from src.core import classes
    for m in range(3):
        for g in range(2):
            for a in range(3):
                torch.testing.assert_close(joint[:, int(classes.encode(m, g, a))], pm[:, m] * pg[:, g] * pa[:, a])
    torch.testing.assert_close(joint.sum(1), torch.ones(3))


def test_multi_task_loss_is_the_weighted_sum_of_head_losses():
    from src.core import classes
    from src.model.losses import FocalLoss, MultiTaskLoss
    torch.manual_seed(1)
    z = torch.randn(4, 8)
    lm, lg, la = (torch.log_softmax(z[:, s], 1) for s in (slice(0, 3), slice(3, 5), slice(5, 8)))
    joint = (lm[:, :, None, None] + lg[:, None, :, None] + la[:, None, None, :]).reshape(-1, 18)
    target = torch.tensor([0, 7, 13, 17])
    m, g, a = (torch.as_tensor(t) for t in classes.decode(target.numpy()))
    f = FocalLoss(2.0)
    hand = 1.0 * f(lm, m) + 0.5 * f(lg, g) + 2.0 * f(la, a)
    got = MultiTaskLoss(FocalLoss(2.0), FocalLoss(2.0), FocalLoss(2.0), (1.0, 0.5, 2.0))(joint, target)
    torch.testing.assert_close(got, hand)


# one tiny model of each family the pipeline offers (all have a Linear classifier in timm)
FAMILIES = ["test_efficientnet", "test_resnet", "test_convnext", "test_vit", "mobilenetv3_small_050"]


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("head", ["single", "multi"])
def test_fresh_head_has_pytorchs_default_linear_init(name, head):
    torch.manual_seed(0)
    model, _, _ = build_model(load_config("seed", ["pretrained=false", f"model={name}", f"head={head}"]))
    backbone = model.backbone if head == "multi" else model
    (fc,) = weights.classifier_layers(backbone)
    bound = fc.in_features ** -0.5  # nn.Linear's default: U(-1/sqrt(fan_in), +1/sqrt(fan_in))
    assert fc.weight.abs().max() <= bound and fc.bias.abs().max() <= bound
    assert abs(fc.weight.std().item() - bound / 3 ** 0.5) < 0.1 * bound / 3 ** 0.5  # uniform over the range


def test_timm_head_init_stays_available_and_is_larger_for_efficientnet():
    torch.manual_seed(0)
    model, _, _ = build_model(load_config("seed", ["pretrained=false", "model=test_efficientnet", "head_init=timm"]))
    (fc,) = weights.classifier_layers(model)
    assert fc.weight.abs().max() > 2 * fc.in_features ** -0.5  # "goog": U(+-1/sqrt(classes))


def test_pretrained_lite0_starts_with_small_logits():
    """The reason for the default init: ImageNet features into a goog-initialised head give logits
    ~7x larger (std ~2), which Adam at 8e-5 takes epochs to undo."""
    torch.manual_seed(0)
    x = (torch.rand(8, 3, 149, 112) - 0.5) / 0.5
    stds = {}
    for init in ("torch", "timm"):
        model, _, _ = build_model(load_config("seed", ["model=tf_efficientnet_lite0", "pretrained=true",
                                                        f"head_init={init}"]))
        with torch.no_grad():
            stds[init] = model.eval()(x).std().item()
    assert stds["torch"] < 0.6 and stds["timm"] > 3 * stds["torch"]


def test_a_weights_file_with_a_trained_head_keeps_it(tmp_path):
    torch.manual_seed(0)
    src, _, _ = build_model(load_config("seed", ["pretrained=false", "model=test_resnet"]))
    with torch.no_grad():
        src.fc.weight.fill_(0.5)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst, _, _ = build_model(load_config("seed", ["model=test_resnet", f"pretrained={tmp_path / 'w.pt'}"]))
    assert torch.equal(dst.fc.weight, src.fc.weight)


def test_drop_path_reaches_the_model_and_a_model_without_it_is_refused():
    cfg = load_config("seed", ["model=test_efficientnet", "pretrained=false", "drop_path=0.1"])
    rates = [m.drop_prob for m in build_model(cfg)[0].modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) > 0  # timm scales the rate up to 0.1 over the blocks
    plain = build_model(cfg.replace(drop_path=0.0))[0]
    assert not any(type(m).__name__ == "DropPath" for m in plain.modules())
    with pytest.raises(WeightsError, match="does not take"):
        build_model(load_config("seed", ["model=vgg11", "pretrained=false", "drop_path=0.1"]))


@pytest.mark.parametrize("head", [["age_head=ordinal"], ["head=multi"]])
def test_layer_decay_groups_a_wrapped_backbone_by_its_own_blocks(head):
    """timm's layer-wise decay on our heads around a backbone: the stem gets the smallest share of the rate,
    the classifier and the head's own parameters (the ordinal cutpoints) the whole rate."""
    from src.train.optimisation import optimiser
    cfg = load_config("seed", ["model=test_efficientnet", "pretrained=false", "layer_decay=0.7", *head])
    model = build_model(cfg)[0]
    names = {id(p): n for n, p in model.named_parameters()}
    groups = optimiser(cfg, model, None)[0].param_groups
    scale = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    assert len(set(scale.values())) > 5
    assert scale["backbone.conv_stem.weight"] == min(scale.values())
    assert scale["backbone.classifier.weight"] == max(scale.values()) == 1.0
    if "age_head=ordinal" in head:
        assert scale["first"] == scale["steps"] == 1.0
