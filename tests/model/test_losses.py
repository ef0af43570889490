import math

import numpy as np
import pytest
import torch

from src.core.classes import AGE_THRESHOLDS
from src.core.config import load_config
from src.core.errors import ConfigError
from src.model.losses import LOSS_MAKERS, FocalLoss, build_loss, inverse_frequency_weights, pack_targets, unpack


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


def _hand_loss(name: str, logits: list[list[float]], target: list[int], train: list[int], gamma: float,
               eps: float) -> float:
    """Each loss of the loss table (losses.LOSS_MAKERS) written out in plain Python, from its definition."""
    probs = [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in logits]
    n, c = len(target), len(logits[0])
    nll = [-math.log(p[t]) for p, t in zip(probs, target)]
    focal = sum((1 - p[t]) ** gamma * l for p, t, l in zip(probs, target, nll)) / n
    counts = [train.count(k) for k in range(c)]
    inv = [1 / k if k else 0.0 for k in counts]
    w = [x / (sum(inv) / sum(1 for k in counts if k)) for x in inv]  # mean 1 over the classes present
    f1s = []
    for k in range(c):
        tp = sum(p[k] for p, t in zip(probs, target) if t == k)
        fp = sum(p[k] for p, t in zip(probs, target) if t != k)
        fn = sum(1 - p[k] for p, t in zip(probs, target) if t == k)
        if k in target or sum(p[k] for p in probs) > 0.5:
            f1s.append(2 * tp / (2 * tp + fp + fn + 1e-7))
    soft_f1 = 1 - sum(f1s) / len(f1s)
    return {"focal": focal,
            "ce": sum(nll) / n,
            "weighted_ce": sum(w[t] * l for t, l in zip(target, nll)) / sum(w[t] for t in target),
            "smooth": sum((1 - eps) * l + eps / c * sum(-math.log(q) for q in p) for p, l in zip(probs, nll)) / n,
            "f1": soft_f1,
            "focal_f1": focal + soft_f1}[name]


@pytest.mark.parametrize("name", list(LOSS_MAKERS))
def test_every_loss_equals_its_hand_value(name):
    torch.manual_seed(1)
    logits = (torch.randn(5, 18) * 2).double()
    target = [0, 1, 1, 5, 17]
    train = [0] * 6 + [1] * 3 + [5] * 2 + [17] + list(range(18))  # unequal counts: weights that matter
    cfg = load_config("seed", [f"loss={name}", "focal_gamma=1.5", "label_smoothing=0.2"])
    got = build_loss(cfg, np.array(train))(logits.float(), torch.tensor(target)).item()
    hand = _hand_loss(name, logits.tolist(), target, train, gamma=1.5, eps=0.2)
    assert got == pytest.approx(hand, rel=1e-4, abs=1e-5)


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


def test_packed_targets_carry_the_class_and_the_age_range():
    labels, lo, hi = np.array([3, 10, 17]), np.array([30, 41, 73]), np.array([39, 41, 120])
    got = unpack(torch.tensor(pack_targets(labels, lo, hi)))
    assert [t.tolist() for t in got] == [[3, 10, 17], [30, 41, 60], [39, 41, 60]]  # ages over 60 count as 60
    exact = unpack(torch.tensor(pack_targets(labels, lo)))
    assert exact[1].tolist() == exact[2].tolist() == [30, 41, 60]


def test_an_age_range_decides_only_the_thresholds_outside_it():
    """The ordinal loss's age part, written out by hand in plain Python: a 30-39 face counts t <= 30 as
    older, t >= 40 as younger, and leaves 31..39 out; a 60-69 face counts every t (all older); an exact 45
    every t."""
    loss = build_loss(load_config("seed", ["age_head=ordinal", "loss=ce"]), np.array([0, 1, 2]))
    torch.manual_seed(3)
    joint = torch.log_softmax(torch.randn(3, 18), 1)
    ordinal = torch.randn(3, len(AGE_THRESHOLDS))
    labels = np.array([0, 6, 13])
    target = torch.tensor(pack_targets(labels, np.array([30, 60, 45]), np.array([39, 69, 45])))
    got = loss(torch.cat([joint, ordinal], 1), target).item()
    lp = joint.view(3, 3, 2, 3).logsumexp(3).reshape(3, 6)
    mg = -sum(lp[i, labels[i] // 3].item() for i in range(3)) / 3
    by_hand = 0.0
    for i, (lo, hi) in enumerate([(30, 39), (60, 60), (45, 45)]):
        for j, t in enumerate(AGE_THRESHOLDS):
            if lo >= t or hi < t:  # decided: older when the whole range is at or above t
                p = 1 / (1 + math.exp(-ordinal[i, j].item()))
                by_hand += -math.log(p) if lo >= t else -math.log(1 - p)
    assert abs(got - (mg + by_hand / 3 / 10)) < 1e-4


def test_a_band_head_learns_only_mask_and_gender_of_a_range_across_a_band_edge():
    """A band head's loss with packed ranges, by hand: a 60-69 face and an exact 40 take the 18-way
    cross-entropy of their class; a 50-59 face at age_boundary=55 (the edge inside its range) only the
    6-way cross-entropy of its mask x gender; each row weighs 1/3. With every range inside one band the
    loss is the plain one."""
    cfg = load_config("seed", ["loss=ce", "age_boundary=55"])
    loss = build_loss(cfg, np.array([0, 1, 2]), ranged=True)
    torch.manual_seed(4)
    logits = torch.randn(3, 18) * 2
    labels = np.array([2, 7, 16])  # classes as trained at the edge 55 (the third: its range starts in band 1)
    target = torch.tensor(pack_targets(labels, np.array([60, 40, 50]), np.array([69, 40, 59])))
    got = loss(logits, target).item()
    rows = logits.tolist()

    def nll(row, k):
        return -(row[k] - math.log(sum(math.exp(v) for v in row)))
    six = [[math.log(sum(math.exp(v) for v in row[3 * j:3 * j + 3])) for j in range(6)] for row in rows]
    by_hand = (nll(rows[0], 2) + nll(rows[1], 7) + nll(six[2], 16 // 3)) / 3
    assert got == pytest.approx(by_hand, rel=1e-5)
    inside = torch.tensor(pack_targets(labels, np.array([60, 40, 30]), np.array([69, 40, 39])))
    assert loss(logits, inside).item() == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor(
        labels)).item(), rel=1e-6)
    at_60 = build_loss(load_config("seed", ["loss=ce", "age_boundary=60"]), np.array([0, 1, 2]), ranged=True)
    assert at_60(logits, target).item() == pytest.approx(torch.nn.functional.cross_entropy(
        logits, torch.tensor(labels)).item(), rel=1e-6)


def test_an_unknown_loss_is_refused_naming_the_tables_losses_and_the_closest(tiny_data, tmp_path):
    """The loss choices are the table's own names: a misspelt one is refused with them, before any run folder."""
    with pytest.raises(ConfigError, match=r"loss=focl: .*did you mean focal\?; choose one of focal, ce, "):
        build_loss(load_config("seed", ["loss=focl"]), np.array([0, 1, 2]))
    from tests.helpers import FAST, stage
    out = tmp_path / "out"
    assert stage("train", ["--data", str(tiny_data), "--output", str(out), *FAST, "loss=hinge"]) == 2
    assert not out.exists() or not any(out.iterdir())
