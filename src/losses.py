"""Training losses for the 18-way head."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .labels import N_CLASSES


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


def inverse_frequency_weights(labels: np.ndarray) -> torch.Tensor:
    """Class weights ~ 1/count, normalised to mean 1 over present classes (absent classes get 0)."""
    counts = np.bincount(labels, minlength=N_CLASSES).astype(float)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    w = w / w[counts > 0].mean()
    return torch.tensor(w, dtype=torch.float32)


def build_loss(cfg, train_labels: np.ndarray) -> nn.Module:
    if cfg.loss == "focal":
        return FocalLoss(cfg.focal_gamma)
    if cfg.loss == "ce":
        return nn.CrossEntropyLoss()
    if cfg.loss == "weighted_ce":
        return nn.CrossEntropyLoss(weight=inverse_frequency_weights(train_labels))
    if cfg.loss == "smooth":
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    raise ValueError(f"unknown loss {cfg.loss}")
