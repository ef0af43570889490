import math

import numpy as np
import torch

from src.core.config import load_config
from src.model.losses import FocalLoss, build_loss, inverse_frequency_weights


def test_focal_loss_equals_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    target = torch.tensor([0, 2])
    hand = []
    for row, t in zip(logits.tolist(), target.tolist()):
        z = sum(math.exp(v) for v in row)
        p = math.exp(row[t]) / z
        hand.append(-((1 - p) ** 2) * math.log(p))
    got = FocalLoss(gamma=2.0)(logits, target).item()
    assert abs(got - sum(hand) / 2) < 1e-6


def test_focal_with_gamma_zero_is_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(8, 18), torch.randint(0, 18, (8,))
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert torch.allclose(FocalLoss(gamma=0.0)(logits, target), ce)


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[5.0, 0.0]])
    hard = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([0])
    ratio_focal = FocalLoss(2.0)(easy, t) / FocalLoss(2.0)(hard, t)
    ratio_ce = FocalLoss(0.0)(easy, t) / FocalLoss(0.0)(hard, t)
    assert ratio_focal < ratio_ce / 10


def test_inverse_frequency_weights():
    w = inverse_frequency_weights(np.array([0, 0, 0, 1]))
    assert w[0] * 3 == w[1] and w[2:].sum() == 0
    assert abs(w[:2].mean() - 1) < 1e-6


def test_loss_choices_build():
    y = np.arange(18).repeat(2)
    for name in ("focal", "ce", "weighted_ce", "smooth"):
        loss = build_loss(load_config("seed", [f"loss={name}"]), y)
        assert loss(torch.randn(4, 18), torch.tensor([0, 1, 2, 3])).item() > 0


def test_soft_f1_loss_matches_hard_f1_on_confident_predictions():
    from sklearn.metrics import f1_score

    from src.model.losses import SoftF1Loss
    target = torch.tensor([0, 0, 1, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 2, 2, 0])
    logits = torch.nn.functional.one_hot(pred, 3).float() * 50  # probabilities ~ one-hot
    hard = f1_score(target, pred, average="macro")
    assert abs(SoftF1Loss()(logits, target).item() - (1 - hard)) < 1e-4


def test_soft_f1_loss_has_useful_gradients():
    from src.model.losses import SoftF1Loss
    logits = torch.zeros(4, 3, requires_grad=True)
    SoftF1Loss()(logits, torch.tensor([0, 1, 2, 0])).backward()
    assert logits.grad[0, 0] < 0 and logits.grad[0, 1] > 0  # raise the true class, lower the others
