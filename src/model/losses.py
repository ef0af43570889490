"""Training losses. All take (N, C) logits or log-probabilities and (N,) class targets."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import classes
from ..core.classes import AGE_THRESHOLDS
from ..core.errors import ConfigError, closest_names


class FocalLoss(nn.Module):
    """mean over the batch of -(1 - p_t)^gamma * log p_t (Lin et al. 2017), optional class weights."""

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        log_pt = log_p.gather(1, target[:, None]).squeeze(1)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            loss = loss * self.weight[target]
        return loss.mean()


class SoftF1Loss(nn.Module):
    """1 - macro-F1 computed with probabilities instead of hard counts (differentiable).

    Classes absent from the batch in both truth and prediction mass contribute little, as with
    sklearn's macro-F1 over present classes.
    """

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = F.softmax(logits.float(), dim=1)
        t = F.one_hot(target, p.shape[1]).float()
        tp = (p * t).sum(0)
        fp = (p * (1 - t)).sum(0)
        fn = ((1 - p) * t).sum(0)
        f1 = 2 * tp / (2 * tp + fp + fn + self.eps)
        present = (t.sum(0) > 0) | (p.sum(0) > 0.5)
        return 1 - f1[present].mean()


class SumOfLosses(nn.Module):
    def __init__(self, *losses):
        super().__init__()
        self.losses = nn.ModuleList(losses)

    def forward(self, logits, target):
        return sum(loss(logits, target) for loss in self.losses)


class MultiTaskLoss(nn.Module):
    """Weighted sum of one loss per head, for the product-of-heads model.

    The model returns 18 joint log-probabilities; each head's log-probabilities are recovered
    exactly by marginalising (logsumexp over the other two sub-tasks).
    """

    def __init__(self, mask_loss, gender_loss, age_loss, weights):
        super().__init__()
        self.heads = nn.ModuleList([mask_loss, gender_loss, age_loss])
        self.weights = weights

    def forward(self, joint: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        lp = joint.float().view(-1, 3, 2, 3)
        marginals = (lp.logsumexp(dim=(2, 3)), lp.logsumexp(dim=(1, 3)), lp.logsumexp(dim=(1, 2)))
        targets = (target // 6, (target // 3) % 2, target % 3)  # classes.decode, kept on the device
        return sum(w * loss(m, t) for w, loss, m, t in zip(self.weights, self.heads, marginals, targets) if w)


AGE_CAP = max(AGE_THRESHOLDS)  # ages above count as this: "60 or over" is the last threshold


def pack_targets(labels: np.ndarray, ages: np.ndarray, ages_hi: np.ndarray | None = None) -> np.ndarray:
    """age_head=ordinal: one integer per photo carries its class and the range its age is known to lie in
    (`ages` to `ages_hi`, both capped at 60; exact ages when `ages_hi` is None), so batches, samplers and
    CutMix move it like a class; `unpack` gives all three back."""
    lo = np.minimum(np.asarray(ages), AGE_CAP)
    hi = lo if ages_hi is None else np.minimum(np.asarray(ages_hi), AGE_CAP)
    return np.asarray(labels) + classes.N_CLASSES * (lo + (AGE_CAP + 1) * hi)


def unpack(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(class, the lowest age, the highest age) of packed targets."""
    ages = target // classes.N_CLASSES
    return target % classes.N_CLASSES, ages % (AGE_CAP + 1), ages // (AGE_CAP + 1)


class MaskGenderLoss(nn.Module):
    """The run's loss on the mask x gender marginals of 18 joint log-probabilities (or logits): one 6-way
    part, or a mask and a gender part weighted by task_weights; the age is not looked at."""

    def __init__(self, parts: list[tuple[nn.Module, float]]):
        super().__init__()
        self.parts = nn.ModuleList(loss for loss, _ in parts)
        self.part_weights = [w for _, w in parts]

    def forward(self, out: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        lp = out[:, :classes.N_CLASSES].float().view(-1, 3, 2, 3)
        if len(self.parts) == 1:  # one 6-way mask x gender softmax
            marginals, targets = [lp.logsumexp(dim=3).reshape(-1, 6)], [label // 3]
        else:
            marginals, targets = [lp.logsumexp(dim=(2, 3)), lp.logsumexp(dim=(1, 3))], [label // 6, (label // 3) % 2]
        return sum(w * f(m, t) for f, w, m, t in zip(self.parts, self.part_weights, marginals, targets) if w)


class OrdinalAgeLoss(nn.Module):
    """age_head=ordinal (backbones.OrdinalAge in training mode: 18 joint log-probabilities, then the logits
    of P(age >= t)). Mask x gender: `MaskGenderLoss`. Age: binary cross-entropy of every P(age >= t) against
    the exact age, summed over t (that sum grows with the error in years, CORAL's loss), divided by AGE_SCALE
    so a decade's error weighs about as much as one class's cross-entropy. An age known only as a range
    (FairFace's `30-39`, a pseudo-label's band) decides only some thresholds: age >= t where the range
    starts at t or above, age < t where it ends below t; the thresholds inside it are left out."""

    AGE_SCALE = 10.0

    def __init__(self, parts: list[tuple[nn.Module, float]], age_weight: float):
        super().__init__()
        self.mask_gender = MaskGenderLoss(parts)
        self.age_weight = age_weight
        self.register_buffer("thresholds", torch.tensor(AGE_THRESHOLDS))

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        label, lo, hi = unpack(target)
        older = lo[:, None] >= self.thresholds[None, :]
        decided = older | (hi[:, None] < self.thresholds[None, :])
        bce = F.binary_cross_entropy_with_logits(out[:, classes.N_CLASSES:].float(), older.float(), reduction="none")
        return self.mask_gender(out, label) + self.age_weight * (bce * decided).sum(1).mean() / self.AGE_SCALE


class BandRangeLoss(nn.Module):
    """A band head (age_head=band) trained on packed targets (`pack_targets`: outside photos whose age is
    known only as a range): a row whose range lies inside one band (at 30 and the training-time boundary)
    takes the run's loss on its class; a row whose range spans two bands takes `MaskGenderLoss` alone, its
    age band unknown. Each row weighs the same either way: the two means are weighted by their rows."""

    def __init__(self, band_loss: nn.Module, mask_gender: MaskGenderLoss, boundary: int):
        super().__init__()
        self.band_loss, self.mask_gender, self.boundary = band_loss, mask_gender, boundary

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        label, lo, hi = unpack(target)
        across = classes.across_bands(lo, hi, self.boundary)
        n_across = int(across.sum())  # one sync a step, only in runs with such rows
        if n_across == 0:
            return self.band_loss(out, label)
        inside = ~across
        loss = self.mask_gender(out[across], label[across]) * (n_across / len(label))
        if n_across < len(label):
            loss = loss + self.band_loss(out[inside], label[inside]) * (1 - n_across / len(label))
        return loss


def inverse_frequency_weights(labels: np.ndarray, n_classes: int = classes.N_CLASSES) -> torch.Tensor:
    """Class weights ~ 1/count, normalised to mean 1 over present classes (absent classes get 0)."""
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(float)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    w = w / w[counts > 0].mean()
    return torch.tensor(w, dtype=torch.float32)


# Every loss by its config name (loss=; the names a run may choose are these): how it is made from the config and
# the labels it trains on (class weights are counted on them). A new loss is one line.
LOSS_MAKERS: dict[str, Callable[..., nn.Module]] = {
    "focal": lambda cfg, labels, n: FocalLoss(cfg.focal_gamma),
    "ce": lambda cfg, labels, n: nn.CrossEntropyLoss(),
    "weighted_ce": lambda cfg, labels, n: nn.CrossEntropyLoss(weight=inverse_frequency_weights(labels, n)),
    "smooth": lambda cfg, labels, n: nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
    "f1": lambda cfg, labels, n: SoftF1Loss(),
    "focal_f1": lambda cfg, labels, n: SumOfLosses(FocalLoss(cfg.focal_gamma), SoftF1Loss()),
}


def check_loss(name: str) -> None:
    """loss= names a loss of LOSS_MAKERS (checked before any work: pipeline/job.run_settings)."""
    if name not in LOSS_MAKERS:
        close = " or ".join(closest_names(name, LOSS_MAKERS))
        raise ConfigError(f"loss={name}: not a loss of the table (model/losses.LOSS_MAKERS)"
                          f"{f'; did you mean {close}?' if close else ''}; choose one of {', '.join(LOSS_MAKERS)}")


def single_loss(cfg, labels: np.ndarray, n_classes: int) -> nn.Module:
    """The config's loss over `n_classes` (18, or a head's 6, 3 or 2)."""
    check_loss(cfg.loss)
    return LOSS_MAKERS[cfg.loss](cfg, labels, n_classes)


def mask_gender_parts(cfg, train_labels: np.ndarray) -> list[tuple[nn.Module, float]]:
    """The run's loss on mask x gender: one 6-way part, or (head=multi) mask and gender by task_weights."""
    m, g, _ = classes.decode(np.asarray(train_labels))
    if cfg.head == "multi":
        return [(single_loss(cfg, m, 3), cfg.task_weights[0]), (single_loss(cfg, g, 2), cfg.task_weights[1])]
    return [(single_loss(cfg, m * 2 + g, 6), 1.0)]


def build_loss(cfg, train_labels: np.ndarray, ranged: bool = False) -> nn.Module:
    """The training loss; `train_labels` are the 18 classes (class weights are counted on them); `ranged`:
    a band head's targets are packed with age ranges (trainer.training_targets), some across a band edge."""
    if cfg.age_head == "ordinal":
        return OrdinalAgeLoss(mask_gender_parts(cfg, train_labels), cfg.task_weights[2] if cfg.head == "multi" else 1.0)
    if cfg.head == "multi":
        m, g, a = classes.decode(np.asarray(train_labels))
        band_loss = MultiTaskLoss(single_loss(cfg, m, 3), single_loss(cfg, g, 2), single_loss(cfg, a, 3),
                                  cfg.task_weights)
    else:
        band_loss = single_loss(cfg, train_labels, classes.N_CLASSES)
    if not ranged:
        return band_loss
    return BandRangeLoss(band_loss, MaskGenderLoss(mask_gender_parts(cfg, train_labels)), cfg.age_boundary)
