"""Scores: 18-class macro-F1 / accuracy, per-sub-task macro-F1, per-class F1 and support."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, confusion_matrix

from . import labels as L


def macro_f1(y_true, y_pred) -> float:
    """Macro-F1 over the classes present in truth or prediction (the competition's sklearn call)."""
    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def summarize(y_true, probs: np.ndarray) -> dict:
    y_true = np.asarray(y_true)
    y_pred = probs.argmax(1)
    tm, tg, ta = L.decode(y_true)
    pm, pg, pa = L.decode(y_pred)
    per_class = f1_score(y_true, y_pred, labels=range(L.N_CLASSES), average=None, zero_division=0)
    support = np.bincount(y_true, minlength=L.N_CLASSES)
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
    return confusion_matrix(y_true, y_pred, labels=range(L.N_CLASSES))
