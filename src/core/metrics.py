"""Scores: 18-class macro-F1 / accuracy, per-sub-task macro-F1, per-class F1 and support,
and a paired bootstrap for the difference between two predictors on the same photos (or persons)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score

from . import classes


def macro_f1(y_true, y_pred) -> float:
    """Macro-F1 over the classes present in truth or prediction (the competition's sklearn call)."""
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def fast_macro_f1(y: np.ndarray, pred: np.ndarray, n: int = classes.N_CLASSES) -> float:
    """macro_f1 (classes absent from truth and prediction left out) from one bincount: fast enough to
    score thousands of candidate decisions."""
    cm = np.bincount(y * n + pred, minlength=n * n).reshape(n, n)
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    present = denom > 0
    return float((2 * tp[present] / denom[present]).mean()) if present.any() else 0.0


def summarize(y_true, probs: np.ndarray) -> dict:
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(1)
    tm, tg, ta = classes.decode(y_true)
    pm, pg, pa = classes.decode(y_pred)
    per_class = f1_score(y_true, y_pred, labels=range(classes.N_CLASSES), average=None, zero_division=0)
    support = np.bincount(y_true, minlength=classes.N_CLASSES)
    return {
        "n": int(len(y_true)),
        "f1": macro_f1(y_true, y_pred),
        "acc": float((y_true == y_pred).mean()),
        "mask_f1": macro_f1(tm, pm),
        "gender_f1": macro_f1(tg, pg),
        "age_f1": macro_f1(ta, pa),
        "mask_acc": float((tm == pm).mean()),
        "gender_acc": float((tg == pg).mean()),
        "age_acc": float((ta == pa).mean()),
        "per_class_f1": [float(x) for x in per_class],
        "support": [int(x) for x in support],
    }


def confusion(y_true, y_pred) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=range(classes.N_CLASSES))


def weighted_macro_f1(y_true, y_pred, weights: np.ndarray, n_classes: int = classes.N_CLASSES) -> np.ndarray:
    """Macro-F1 of each row of `weights` (how often each photo is counted: a bootstrap resample).

    Same convention as `macro_f1`: classes absent from both truth and prediction are left out.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    eye = np.eye(n_classes)
    hit = (y_true == y_pred)[:, None] * eye[y_true]          # photo -> its class, when right
    tp = weights @ hit
    fp = weights @ eye[y_pred] - tp
    fn = weights @ eye[y_true] - tp
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)
    return f1.sum(1) / np.maximum((denom > 0).sum(1), 1)


def resample_weights(n: int, n_boot: int, seed: int, groups=None) -> np.ndarray:
    """(n_boot, n) bootstrap counts per photo: photos drawn with replacement, or with `groups` (a
    person per photo) whole persons drawn with replacement, each bringing all of their photos."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    _, which = np.unique(np.asarray(groups), return_inverse=True)
    k = which.max() + 1
    return rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot).astype(float)[:, which]


def paired_bootstrap(y_true, pred_a, pred_b, n_boot: int = 1000, seed: int = 0,
                     groups=None) -> tuple[float, float, float]:
    """(macro-F1 of b minus a, and its 2.5 / 97.5 % bootstrap quantiles), resampling photos, or whole
    persons when `groups` names each photo's person (a person's 7 photos are not independent: resampling
    them one by one understates the uncertainty)."""
    weights = resample_weights(len(y_true), n_boot, seed, groups)
    diff = weighted_macro_f1(y_true, pred_b, weights) - weighted_macro_f1(y_true, pred_a, weights)
    point = macro_f1(y_true, pred_b) - macro_f1(y_true, pred_a)
    return float(point), float(np.quantile(diff, 0.025)), float(np.quantile(diff, 0.975))
