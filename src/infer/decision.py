"""The decision for macro-F1: per-class biases on the log-probabilities, fitted on out-of-fold
predictions.

Argmax of the averaged softmax maximises accuracy, not macro-F1: with 18 classes of very
different sizes (>=60 with an incorrect mask is rare, and weighs as much as the largest class),
moving a little probability towards the rare classes pays. `fit_biases` finds an additive bias per
class by coordinate search (one class at a time over a grid, a few passes), keeping a change only
when it raises the macro-F1 it is fitted on, so it never lowers it. `nested_estimate` is the
honest number: biases fitted on the other folds' OOF, applied to each fold in turn (folds hold
whole persons, so no person is in both).
"""
from __future__ import annotations

import hashlib

import numpy as np

from ..core.metrics import fast_macro_f1

# bias steps tried per class, and passes over the classes: the mild setting. A wider search gained
# more in-sample and lost more out of sample (docs/results.md, "After training")
GRID = np.round(np.arange(-0.5, 0.51, 0.1), 2)
PASSES = 1
EPS = 1e-7


def decide(probs: np.ndarray, biases: np.ndarray | None) -> np.ndarray:
    """The predicted class of each row: argmax of log-probability + bias."""
    if biases is None:
        return probs.argmax(1)
    return (np.log(np.clip(probs, EPS, 1)) + biases).argmax(1)


def adjusted_probs(probs: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """softmax(log p + b): probabilities whose argmax is the decision (what eval_probs.csv holds)."""
    z = np.log(np.clip(probs, EPS, 1)) + biases
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def prior_biases(competition, trained) -> np.ndarray:
    """decision=prior: log(competition prior / trained prior) per class, the logit adjustment that puts the
    competition's class frequencies back where extra training rows shifted them (0 where a class is missing
    from either, and 0 everywhere when nothing was added)."""
    c, t = np.asarray(competition, float), np.asarray(trained, float)
    ok = (c > 0) & (t > 0)
    b = np.zeros(len(c))
    b[ok] = np.log(c[ok] / c.sum()) - np.log(t[ok] / t.sum())
    return b


def prior_shares(prior: dict) -> dict:
    """Both priors of a run (prior.json) as class shares: the competition's training rows, every row trained on."""
    share = lambda counts: [round(float(x) / max(sum(counts), 1), 4) for x in counts]  # noqa: E731
    return {"competition_prior": share(prior["competition"]), "trained_prior": share(prior["trained"])}


def prior_report(prior: dict) -> dict:
    """What the report says of decision=prior: both priors (class shares) and the biases."""
    return {"prior": True, **prior_shares(prior),
            "biases": [float(x) for x in prior_biases(prior["competition"], prior["trained"])]}


def fit_biases(probs: np.ndarray, y: np.ndarray, grid: np.ndarray = GRID, passes: int = PASSES) -> np.ndarray:
    """Per-class biases maximising macro-F1 of argmax(log p + b) on (probs, y).

    Each step changes one class's bias: a row's prediction then moves only between that class and
    the best of the others, so every candidate costs one comparison and one bincount."""
    s = np.log(np.clip(probs, EPS, 1))
    n = s.shape[1]
    b = np.zeros(n)
    best = fast_macro_f1(y, decide(probs, b))
    for _ in range(passes):
        changed = False
        for c in range(n):
            z = s + b
            others = z.copy()
            others[:, c] = -np.inf
            other_idx, other_best = others.argmax(1), others.max(1)
            base_c = s[:, c]
            for value in b[c] + grid:
                pred = np.where(base_c + value > other_best, c, other_idx)
                f1 = fast_macro_f1(y, pred, n)
                if f1 > best + 1e-12:  # strictly better only: no drift on ties
                    best, b[c], changed = f1, value, True
        if not changed:
            break
    return b


def held_out(folds: np.ndarray, predict_fold) -> np.ndarray | None:
    """Each fold's predictions from `predict_fold(fit_rows, held_rows)`, fitted without that fold
    (folds hold whole persons); None with fewer than two folds (nothing to hold out)."""
    keys = np.unique(folds)
    if len(keys) < 2:
        return None
    pred = np.empty(len(folds), dtype=int)
    for k in keys:
        held = folds == k
        pred[held] = predict_fold(~held, held)
    return pred


PARTS = 5  # one trained fold: its persons in this many groups for a nested estimate


def nested_parts(folds: np.ndarray, persons: np.ndarray) -> tuple[np.ndarray, str]:
    """The parts a nested estimate holds out: the folds, or with one fold groups of whole persons (a person's
    photos stay together)."""
    if len(np.unique(folds)) > 1:
        return folds, "folds"
    group = np.array([int(hashlib.sha1(str(p).encode()).hexdigest(), 16) % PARTS for p in persons])
    return group, f"{PARTS} groups of persons"


def nested_estimate(probs: np.ndarray, y: np.ndarray, parts: np.ndarray) -> tuple[float, np.ndarray] | None:
    """(macro-F1 of out-of-fold decisions, those decisions): biases fitted on the other parts for
    each part in turn. None with fewer than two parts."""
    pred = held_out(parts, lambda fit, held: decide(probs[held], fit_biases(probs[fit], y[fit])))
    return None if pred is None else (fast_macro_f1(y, pred), pred)


def decide_for_run(oof_probs: np.ndarray, y: np.ndarray, folds: np.ndarray, persons: np.ndarray,
                   auto: bool = False) -> tuple[np.ndarray | None, dict]:
    """`decision=bias` (or auto) for one run: (the biases to apply, None: none; what to report about them).
    Fitted on all its OOF; checked nested, over its folds or five groups of its persons. `auto` applies them
    only where the nested score beats plain argmax (18 biases fitted on a few hundred persons can overfit)."""
    b = fit_biases(oof_probs, y)
    parts, by = nested_parts(folds, persons)
    nested = nested_estimate(oof_probs, y, parts)
    argmax_f1 = fast_macro_f1(y, oof_probs.argmax(1))
    nested_f1 = None if nested is None else nested[0]
    applied = not auto or (nested_f1 is not None and nested_f1 > argmax_f1)
    why = ("decision=bias" if not auto else
           f"decision=auto: nested {nested_f1:.4f} {'beats' if applied else 'does not beat'} argmax {argmax_f1:.4f}"
           if nested_f1 is not None else "decision=auto: no nested estimate, so no biases")
    return (b if applied else None), {
        "biases": [float(x) for x in b], "oof_f1_argmax": argmax_f1,
        "oof_f1_in_sample": fast_macro_f1(y, decide(oof_probs, b)), "oof_f1_nested": nested_f1, "nested_by": by,
        "applied": applied, "why": why}
