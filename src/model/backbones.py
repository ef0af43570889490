"""The networks: a timm backbone with an 18-way head, the multi-task head, the ordinal-age head.
Where their initial weights come from and how they are loaded: src/model/weights.py."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.classes import AGE_THRESHOLDS, N_CLASSES, YOUNG_EDGE
from .weights import load_resolved, resolve


class OnBackbone(nn.Module):
    """A head around a timm model (`self.backbone`): timm's layer-wise learning-rate decay (layer_decay) groups
    the parameters by the backbone's own blocks, the head's own parameters with its classifier (the last group)."""

    backbone: nn.Module

    def group_matcher(self, coarse: bool = False) -> dict:
        def under(pattern: str) -> str:  # timm matches from the start: each alternative under backbone.
            return r"^backbone\.(?:" + pattern.lstrip("^").replace("|^", "|") + ")"
        return {k: under(v) if isinstance(v, str) else [(under(r), rest) for r, rest in v]
                for k, v in self.backbone.group_matcher(coarse).items()}


class ProductOfHeads(OnBackbone):
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


class OrdinalAge(OnBackbone):
    """age_head=ordinal: mask x gender from a softmax (or mask and gender heads), the age as P(age >= t) for
    every t in AGE_THRESHOLDS (CORAL: one age score plus a cutpoint per t), returned as 18 class
    log-probabilities with the >=60 band starting at `edge`.

    Cutpoints are a first value minus a running sum of positive steps, so P(age >= t) falls with t for
    every photo: the three band probabilities are never negative and sum to 1. `edge` is a plain
    attribute, not a weight: training uses the run's age_boundary, the eval the edge fitted on the OOF
    (src/infer/age_edge.py). In training mode the ordinal logits follow the 18 columns, for the loss.
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

    def probabilities_and_curves(self, x) -> torch.Tensor:
        """What inference keeps of a view: the 18 class probabilities, then P(age >= t) for every t (the
        OOF's curves, which the >=60 edge is fitted on)."""
        mask_gender, ordinal = self.parts(x)
        return torch.cat([torch.softmax(self.joint(mask_gender, ordinal), dim=1), torch.sigmoid(ordinal)], 1)


def build_model(cfg) -> tuple[torch.nn.Module, tuple, tuple]:
    """(model, mean, std): mean/std are what the chosen weights expect."""
    multi = cfg.head == "multi"
    if cfg.age_head == "ordinal":  # mask x gender (6, or 3 + 2) and one age score
        outputs = 6 if multi else 7
    else:
        outputs = 8 if multi else N_CLASSES
    kwargs = dict(num_classes=outputs, drop_rate=cfg.drop_rate, **({"drop_path_rate": cfg.drop_path} if cfg.drop_path
                                                                   else {}))
    model, mean, std = load_resolved(cfg.model, resolve(cfg.model, cfg.pretrained), kwargs, cfg.head_init)
    if cfg.age_head == "ordinal":
        model = OrdinalAge(model, multi, cfg.age_boundary)
    elif multi:
        model = ProductOfHeads(model)
    return model, mean, std


def check_input_size(model: nn.Module, name: str, size: tuple[int, int]) -> None:
    """The model takes a photo of img_size: one forward pass of a blank photo on the CPU, before any work (a
    model of a fixed input size, or one whose pooling runs out of pixels, is refused naming the size it takes)."""
    from ..core.errors import ConfigError

    h, w = size
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, h, w))
    except (RuntimeError, AssertionError, ValueError) as e:
        info = getattr(model, "pretrained_cfg", None) or getattr(getattr(model, "backbone", None), "pretrained_cfg", {})
        _, th, tw = info.get("input_size", (3, 0, 0))
        takes = (f"it takes {th}x{tw} photos only (img_size={th},{tw})" if info.get("fixed_input_size")
                 else f"it was made for {th}x{tw}; give a larger img_size" if th else "give another img_size")
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"model={name} cannot take img_size={h},{w}: {why}; {takes}") from None
