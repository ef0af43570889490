"""timm backbones with an 18-way head, and pretrained weights that work offline."""
from __future__ import annotations

import math
from pathlib import Path

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from .labels import AGE_THRESHOLDS, N_CLASSES, YOUNG_EDGE
from .weights import Weights, WeightsError, resolve

class ProductOfHeads(nn.Module):
    """Three heads (mask 3, gender 2, age 3) on one backbone, returned as 18 class log-probabilities.

    log p(class) = log p(mask) + log p(gender) + log p(age), laid out as class = mask*6 + gender*3 + age.
    The output is already normalised, so the rest of the pipeline (softmax, argmax, TTA averaging)
    treats it like any 18-way logits and gets the product of the heads' probabilities.
    """

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone  # its classifier has 8 outputs: 3 mask + 2 gender + 3 age

    def forward(self, x):
        z = self.backbone(x).float()
        lm = F.log_softmax(z[:, :3], dim=1)
        lg = F.log_softmax(z[:, 3:5], dim=1)
        la = F.log_softmax(z[:, 5:8], dim=1)
        return (lm[:, :, None, None] + lg[:, None, :, None] + la[:, None, None, :]).reshape(-1, N_CLASSES)


def mask_gender_log_probs(z: torch.Tensor, multi: bool) -> torch.Tensor:
    """(N, 6) log p(mask, gender), laid out as mask*2 + gender: one 6-way softmax, or (multi) 3 + 2 heads."""
    if not multi:
        return F.log_softmax(z[:, :6], dim=1)
    lm, lg = F.log_softmax(z[:, :3], dim=1), F.log_softmax(z[:, 3:5], dim=1)
    return (lm[:, :, None] + lg[:, None, :]).reshape(-1, 6)


def band_log_probs(ordinal: torch.Tensor, edge: int) -> torch.Tensor:
    """(N, 3) log p(<30, 30..edge-1, >=edge) from the logits of P(age >= t), t in AGE_THRESHOLDS.

    p(middle) = sigmoid(a) - sigmoid(b) with a >= b (the cutpoints fall with t) is computed as
    sigmoid(a) sigmoid(-b) (1 - exp(b - a)), exact and stable in log space."""
    a = ordinal[:, AGE_THRESHOLDS.index(YOUNG_EDGE)]
    b = ordinal[:, AGE_THRESHOLDS.index(edge)]
    middle = F.logsigmoid(a) + F.logsigmoid(-b) + torch.log(-torch.expm1((b - a).clamp(max=-1e-6)))
    return torch.stack([F.logsigmoid(-a), middle, F.logsigmoid(b)], dim=1)


class OrdinalAge(nn.Module):
    """age_head=ordinal: mask x gender from a softmax (or mask and gender heads), the age as P(age >= t) for
    every t in AGE_THRESHOLDS (CORAL: one age score plus a cutpoint per t), returned as 18 class
    log-probabilities with the >=60 band starting at `edge`.

    Cutpoints are a first value minus a running sum of positive steps, so P(age >= t) falls with t for
    every photo: the three band probabilities are never negative and sum to 1. `edge` is a plain
    attribute, not a weight: training uses the run's age_boundary, the eval the edge fitted on the OOF
    (src/age_edge.py). In training mode the ordinal logits follow the 18 columns, for the loss.
    """

    def __init__(self, backbone: nn.Module, multi: bool, edge: int):
        super().__init__()
        self.backbone, self.multi, self.edge = backbone, multi, edge
        self.first = nn.Parameter(torch.tensor(2.0))
        step = math.log(math.expm1(0.12))  # softplus(step) = 0.12: a gentle slope to start from
        self.steps = nn.Parameter(torch.full((len(AGE_THRESHOLDS) - 1,), step))

    def cutpoints(self) -> torch.Tensor:
        falls = torch.cumsum(F.softplus(self.steps), 0)
        return self.first - torch.cat([falls.new_zeros(1), falls])

    def parts(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 6) log p(mask, gender) and (N, len(AGE_THRESHOLDS)) logits of P(age >= t)."""
        z = self.backbone(x).float()
        return mask_gender_log_probs(z, self.multi), z[:, -1:] + self.cutpoints()

    def joint(self, mask_gender: torch.Tensor, ordinal: torch.Tensor) -> torch.Tensor:
        la = band_log_probs(ordinal, self.edge)
        return (mask_gender[:, :, None] + la[:, None, :]).reshape(-1, N_CLASSES)

    def forward(self, x):
        mask_gender, ordinal = self.parts(x)
        joint = self.joint(mask_gender, ordinal)
        return torch.cat([joint, ordinal], 1) if self.training else joint


def load_in_order(model: torch.nn.Module, state: dict, skip_head: bool = True) -> int:
    """Copy tensors by position: the packaged lite weights use other names but the same order.

    The classifier (last weight+bias) is left untouched when the source has another class count.
    Returns the number of tensors copied; raises when shapes disagree (wrong architecture).
    """
    target = model.state_dict()
    classifier = model.default_cfg.get("classifier", "classifier")
    tgt_keys = [k for k in target if not (skip_head and k.startswith(classifier + "."))]
    src_items = list(state.items())
    if skip_head:
        src_items = src_items[: len(tgt_keys)]
    if len(src_items) != len(tgt_keys):
        raise WeightsError(f"weights have {len(src_items)} tensors, model expects {len(tgt_keys)}")
    new = {}
    for k, (sk, sv) in zip(tgt_keys, src_items):
        if tuple(sv.shape) != tuple(target[k].shape):
            raise WeightsError(f"tensor {sk} {tuple(sv.shape)} does not fit {k} {tuple(target[k].shape)}")
        new[k] = sv
    model.load_state_dict(new, strict=False)
    return len(new)


def load_file(model: torch.nn.Module, path: Path) -> None:
    """A local state_dict (or a checkpoint holding one under 'model'/'state_dict')."""
    if not path.is_file():
        raise WeightsError(f"pretrained={path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # text, a pickle of something else, a truncated file: the unpickler's many errors
        raise WeightsError(f"pretrained={path}: not a PyTorch state_dict file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"pretrained={path}: holds a {type(state).__name__}, not a state_dict of tensors")
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(fitting) < 0.5 * len(own):
        # names differ (another implementation of the same net): fall back to order
        try:
            load_in_order(model, state)
        except WeightsError as e:
            raise WeightsError(f"pretrained={path}: {e}; weights of another model?") from None
        return
    classifier = model.default_cfg.get("classifier", "classifier") + "."
    missing = sorted(k for k in set(own) - set(fitting) if not k.startswith(classifier))
    unused = sorted(k for k in set(state) - set(fitting) if not k.startswith(classifier))
    if missing or unused:  # part of a network, or a bigger one: not this model's weights; refuse, don't mix
        wrong = [k for k in missing if k in state]
        raise WeightsError(
            f"pretrained={path}: not weights of {type(model).__name__} as built here: " +
            (f"{len(missing)} of its {len(own)} tensors (the classifier aside) are not in the file"
             f"{f' or have another shape ({len(wrong)})' if wrong else ''}, e.g. {missing[:3]}" if missing else
             f"the file holds {len(unused)} tensors it has no place for, e.g. {unused[:3]}") +
            "; weights of another model?")
    model.load_state_dict(fitting, strict=False)


def classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The layers with weights in a timm model's classifier (a Linear for most families)."""
    heads = model.get_classifier()
    heads = heads if isinstance(heads, (tuple, list)) else (heads,)  # e.g. distilled ViTs have two
    return [m for h in heads for m in h.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def init_head(model: nn.Module) -> None:
    """Give the classifier PyTorch's default Linear init, U(+-1/sqrt(in_features)), for every family.

    timm initialises some heads far larger: EfficientNet's "goog" init is U(+-1/sqrt(classes)),
    8.4x the default for 1280 features and 18 classes, which makes the initial logits ~8x too
    large; with Adam at the seed's 8e-5 the head takes epochs to undo that (what it cost:
    docs/results.md, "Parity").
    """
    for layer in classifier_layers(model):
        layer.reset_parameters()


def load_resolved(name: str, w: Weights, kwargs: dict, head_init: str = "torch") -> tuple[nn.Module, tuple, tuple]:
    """(model, mean, std): timm's `name` built with `kwargs`, carrying the resolved weights `w`.

    A classifier the weights do not provide (another class count) starts from `init_head`."""
    try:
        if w.source in ("hub-cache", "download"):  # timm's own loader: its key filters, head dropped if it differs
            model = timm.create_model(w.tag, pretrained=True, pretrained_cfg_overlay=dict(file=w.path), **kwargs)
        else:
            model = timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as e:
        raise WeightsError(f"model={name}: {e}") from None
    head_loaded = w.source in ("hub-cache", "download") and \
        model.pretrained_cfg.get("num_classes") == model.num_classes
    if head_init == "torch" and not head_loaded:  # before a file, which may carry a trained head of its own
        init_head(model)
    mean, std = model.pretrained_cfg.get("mean"), model.pretrained_cfg.get("std")
    if w.source == "package":
        load_in_order(model, torch.load(w.path, map_location="cpu", weights_only=True))
        mean = std = (0.5, 0.5, 0.5)  # how these weights were trained
    elif w.source == "file":
        load_file(model, Path(w.path))
    return model, tuple(mean), tuple(std)


def build_model(cfg) -> tuple[torch.nn.Module, tuple, tuple]:
    """(model, mean, std): mean/std are what the chosen weights expect."""
    multi = cfg.head == "multi"
    if cfg.age_head == "ordinal":  # mask x gender (6, or 3 + 2) and one age score
        outputs = 6 if multi else 7
    else:
        outputs = 8 if multi else N_CLASSES
    kwargs = dict(num_classes=outputs, drop_rate=cfg.drop_rate)
    model, mean, std = load_resolved(cfg.model, resolve(cfg.model, cfg.pretrained), kwargs, cfg.head_init)
    if cfg.age_head == "ordinal":
        model = OrdinalAge(model, multi, cfg.age_boundary)
    elif multi:
        model = ProductOfHeads(model)
    return model, mean, std
