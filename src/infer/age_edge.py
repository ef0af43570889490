"""age_head=ordinal: where the >=60 band starts, fitted on the out-of-fold predictions for macro-F1.

The ordinal head gives P(age >= t) for every t in labels.AGE_THRESHOLDS, so the bands <30 / 30..e-1 /
>=e follow for any edge e. Training and validation use the run's `age_boundary`; the eval, `predict`
and the ONNX export use the edge fitted here (RUN/age_edge.json). The fit starts from the training
edge and moves to another edge in EDGES only for a strictly higher OOF macro-F1 (ties: the edge
nearest 60), so it never lowers the F1 it is fitted on. That in-sample number is optimistic; the
nested estimate fits the edge without each part in turn and scores that part: parts are the folds,
or with one trained fold five groups of its persons (a person's 7 shots stay together).

The OOF's 18 probabilities are rebuilt for an edge from their mask x gender marginal and the
TTA-averaged P(age >= t): the same product the model forms per view, taken after averaging.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..core import classes
from ..core.metrics import fast_macro_f1
from ..core.run_dir import RunDir
from .decision import held_out, nested_parts

EDGES = tuple(range(50, 61))  # the edges tried: the published teams trained boundaries 55-59


def probs_at_edge(probs: np.ndarray, curves: np.ndarray, edge: int) -> np.ndarray:
    """18 class probabilities with the >=60 band starting at `edge`."""
    mask_gender = probs.reshape(-1, 6, 3).sum(2)
    older = curves[:, classes.AGE_THRESHOLDS.index(classes.YOUNG_EDGE)]
    old = curves[:, classes.AGE_THRESHOLDS.index(edge)]
    band = np.stack([1 - older, np.clip(older - old, 0, None), old], 1)
    return (mask_gender[:, :, None] * band[:, None, :]).reshape(-1, classes.N_CLASSES)


def edge_f1(probs: np.ndarray, curves: np.ndarray, y: np.ndarray, edge: int) -> float:
    return fast_macro_f1(y, probs_at_edge(probs, curves, edge).argmax(1))


def fit_edge(probs: np.ndarray, curves: np.ndarray, y: np.ndarray, start: int) -> tuple[int, float]:
    """(the edge with the highest macro-F1, that F1), starting from `start` (kept unless beaten)."""
    best_edge, best = start, edge_f1(probs, curves, y, start)
    for edge in sorted(EDGES, key=lambda e: (abs(e - classes.TRUE_AGE_BOUNDARY), -e)):
        f1 = edge_f1(probs, curves, y, edge)
        if f1 > best + 1e-12:
            best_edge, best = edge, f1
    return best_edge, best


def decide_edge(oof: pd.DataFrame, start: int) -> tuple[int, dict]:
    """The edge for a run's eval, fitted on its OOF, and what the report says about it."""
    probs, curves, y = oof[classes.PROB_COLS].to_numpy(), oof[classes.CURVE_COLS].to_numpy(), oof["label"].to_numpy()
    edge, fitted = fit_edge(probs, curves, y, start)
    parts, by = nested_parts(oof["fold"].to_numpy(), oof["person"].to_numpy())
    nested = held_out(parts, lambda fit, held: probs_at_edge(
        probs[held], curves[held], fit_edge(probs[fit], curves[fit], y[fit], start)[0]).argmax(1))
    return edge, {"edge": edge, "training_edge": start, "oof_f1_training_edge": edge_f1(probs, curves, y, start),
                  "oof_f1_fitted": fitted, "oof_f1_nested": None if nested is None else fast_macro_f1(y, nested),
                  "nested_by": by, "per_edge": {e: edge_f1(probs, curves, y, e) for e in EDGES}}


def oof_probs_as_eval(run: RunDir, oof: pd.DataFrame) -> np.ndarray:
    """The OOF's 18 probabilities at the age edge the run's eval used: what a step fitted on the OOF and
    applied to the eval (decision, grouping, a blend) must see. Runs without a fitted edge: as saved."""
    edge = run.fitted_age_edge()
    probs = oof[classes.PROB_COLS].to_numpy()
    if edge is None or not set(classes.CURVE_COLS) <= set(oof.columns):
        return probs
    return probs_at_edge(probs, oof[classes.CURVE_COLS].to_numpy(), edge)


def fit_for_run(run: RunDir, folds: list[int], start: int) -> tuple[int, dict]:
    """decide_edge on the run's OOF, saved as RUN/age_edge.json (what predict and export read)."""
    edge, report = decide_edge(run.load_oof(folds), start)
    run.age_edge.write_text(json.dumps(report, indent=1))
    return edge, report
