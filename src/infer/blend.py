"""Blend finished runs, and decide for macro-F1: post-hoc, from what the runs saved (seconds).

The command and its manual: src/stages/blend.py (`bash run.sh blend --help`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.classes import PROB_COLS
from ..core.config import load_config
from ..core.machine import pick_device
from ..core.metrics import fast_macro_f1, paired_bootstrap, summarize
from ..core.run_dir import OUTPUT, RunDir, check_run_name, find_run, open_run, read_eval_probs
from ..data.cache import cache_root
from ..data.tables import DataError, load_eval
from .age_edge import oof_probs_as_eval
from .decision import adjusted_probs, decide, fit_biases, held_out, nested_parts, prior_biases
from .ensemble import PhotoReading, run_features
from .grouping import TOP, apply_grouping
from .submission import write_submission

EPS = 1e-7


@dataclass
class Inputs:
    """The runs' OOF and eval probabilities, aligned row by row."""
    runs: list[RunDir]
    oof: pd.DataFrame          # fold, person, shot, label of each OOF photo
    oof_probs: list[np.ndarray]
    eval_ids: np.ndarray
    eval_probs: list[np.ndarray]   # as the runs' models gave them: each run's own decision taken off
    eval_as_made: list[np.ndarray]  # each run's eval as it was made (its decision on): what the blend is compared with


def decided_biases(run: RunDir) -> tuple[np.ndarray | None, str | None]:
    """(the biases a run's eval_probs.csv carries: its decision's, or a blend's; why its eval cannot be blended)."""
    metrics = run.read_metrics() if run.metrics.exists() else {}
    if metrics.get("grouping"):
        return None, (f"{run}: its eval probabilities are grouped into persons (group_eval), which cannot be taken "
                      f"off again; blend the run made without group_eval, and give blend --group-eval")
    biases = json.loads(run.blend_record.read_text()).get("biases") if run.blend_record.exists() \
        else run.decision_biases()
    return (None if biases is None else np.array(biases)), None


def load_inputs(runs: list[RunDir]) -> Inputs:
    """Every run's OOF and eval probabilities; DataError naming the difference when they don't match."""
    first = runs[0]
    folds = first.load_folds()[["person", "fold"]]
    base = first.load_oof().sort_values(["person", "shot"], kind="stable").reset_index(drop=True)
    probs, evals, made, problems = [], [], [], []
    eval_ids = None
    for run in runs:
        if not run.folds.exists() or not run.load_folds()[["person", "fold"]].equals(folds):
            problems.append(f"{run.folds}: not the folds of {first.folds} (blend runs made on the same data and folds)")
            continue
        oof = run.load_oof().sort_values(["person", "shot"], kind="stable").reset_index(drop=True)
        if not oof[["fold", "person", "shot", "label"]].equals(base[["fold", "person", "shot", "label"]]):
            problems.append(f"{run}: its out-of-fold photos (folds {sorted(oof['fold'].unique())}) differ from "
                            f"{first}'s (folds {sorted(base['fold'].unique())}): train the same folds")
            continue
        probs.append(oof_probs_as_eval(run, oof))  # age_head=ordinal: at the edge its eval used
        ev = read_eval_probs(run)
        if ev is None:
            problems.append(f"{run}: no eval probabilities (eval_probs.csv); is the run finished?")
            continue
        if eval_ids is None:
            eval_ids = ev["ImageID"].to_numpy()
        elif not np.array_equal(ev["ImageID"].to_numpy(), eval_ids):
            problems.append(f"{run.eval_probs}: other eval photos than {first.eval_probs}")
            continue
        biases, refusal = decided_biases(run)
        if refusal:
            problems.append(refusal)
            continue
        made.append(ev[PROB_COLS].to_numpy())  # the blend decides on the models' probabilities: a run's biases off
        evals.append(made[-1] if biases is None else adjusted_probs(made[-1], -biases))
    if problems:
        raise DataError("the runs to blend", problems)
    return Inputs(runs, base[["fold", "person", "shot", "label", "path"]], probs, eval_ids, evals, made)


def mix(probs: list[np.ndarray], w: np.ndarray) -> np.ndarray:
    return sum(wi * p for wi, p in zip(w, probs))


def fit_weights(probs: list[np.ndarray], y: np.ndarray, steps: int = 500, rate: float = 0.5) -> np.ndarray:
    """Non-negative weights summing to 1 that minimise the blend's log-loss.

    The log-loss is convex in the weights, so exponentiated gradient descent (multiplicative
    updates, which stay on the simplex) finds its minimum; no optimiser package needed."""
    if len(probs) == 1:
        return np.ones(1)
    picked = np.stack([p[np.arange(len(y)), y] for p in probs], 1)  # each model's p(true class)
    w = np.full(len(probs), 1 / len(probs))
    for _ in range(steps):
        grad = -(picked / np.clip(picked @ w, EPS, None)[:, None]).mean(0)
        w = w * np.exp(-rate * (grad - grad.min()))
        w /= w.sum()
    return w


def fit(probs: list[np.ndarray], y: np.ndarray, decision: str, prior: np.ndarray | None = None
        ) -> tuple[np.ndarray, np.ndarray | None]:
    """(weights, biases or None) fitted on these rows; decision=prior: the runs' prior biases, not fitted."""
    w = fit_weights(probs, y)
    b = fit_biases(mix(probs, w), y) if decision in ("bias", "auto") else prior
    return w, b


def runs_prior(runs: list[RunDir]) -> np.ndarray:
    """decision=prior over blended runs: the mean of each run's log(competition / trained prior)."""
    priors = {r.prior: r.read_prior() for r in runs}
    missing = [str(path) for path, prior in priors.items() if prior is None]
    if missing:
        raise DataError("decision=prior", [f"{m}: missing (the run was made before runs recorded their class "
                                           f"prior)" for m in missing])
    return np.mean([prior_biases(**prior) for prior in priors.values()], axis=0)


def nested(probs: list[np.ndarray], y: np.ndarray, parts: np.ndarray, decision: str,
           prior: np.ndarray | None = None) -> np.ndarray | None:
    """Out-of-fold decisions: weights and biases fitted on the other parts (folds, or groups of persons), for
    each part in turn."""
    def predict_fold(fit_rows, held):
        w, b = fit([p[fit_rows] for p in probs], y[fit_rows], decision, prior)
        return decide(mix([p[held] for p in probs], w), b)

    return held_out(parts, predict_fold)


def settled_blend_decision(probs: list[np.ndarray], y: np.ndarray, parts: np.ndarray, decision: str,
                           prior: np.ndarray | None) -> tuple[str, np.ndarray | None, str]:
    """(the decision made, the nested predictions, why): auto fits the biases and keeps them only where the
    nested blend with them beats the nested blend without (as a run's decision=auto)."""
    nested_pred = nested(probs, y, parts, decision, prior)
    if decision != "auto":
        return decision, nested_pred, f"--decision {decision}"
    plain = nested(probs, y, parts, "none")
    if nested_pred is None:
        return "none", plain, "--decision auto: no nested estimate, so no biases"
    with_b, without = fast_macro_f1(y, nested_pred), fast_macro_f1(y, plain)
    keep = with_b > without
    return ("bias" if keep else "none"), (nested_pred if keep else plain), (
        f"--decision auto: nested {with_b:.4f} with the biases {'beats' if keep else 'does not beat'} "
        f"{without:.4f} without")


def blend(run_names: list[str], decision: str = "none", name: str | None = None, output: Path = OUTPUT,
          group_eval: int = 0) -> dict:
    runs = [find_run(r, "--runs") for r in run_names]
    name = check_run_name(name or "blend-" + "+".join(r.name for r in runs))  # before any work
    inputs = load_inputs(runs)
    y, folds = inputs.oof["label"].to_numpy(), inputs.oof["fold"].to_numpy()
    first_cfg = runs[0].load_config()
    data_dir = first_cfg.data
    eval_table = load_eval(data_dir, check_pixels=False).set_index("ImageID").loc[inputs.eval_ids].reset_index()
    singles = {r.name: fast_macro_f1(y, p.argmax(1)) for r, p in zip(runs, inputs.oof_probs)}
    single_evals = inputs.eval_as_made  # each run alone, as it was made: what the blend is compared with
    grouping = None
    if group_eval:  # persons grouped by the first run's fold models' features (src/infer/grouping.py)
        reading = PhotoReading(first_cfg, pick_device("auto"), cache_root(first_cfg.cache_dir, output))
        oof_f, eval_f = run_features(runs[0], inputs.oof["path"].tolist(), folds, eval_table["path"].tolist(),
                                     reading, TOP)
        inputs.oof_probs, inputs.eval_probs, grouping = apply_grouping(inputs.oof, inputs.oof_probs, oof_f,
                                                                       inputs.eval_probs, eval_f, group_eval)
    prior = runs_prior(runs) if decision == "prior" else None
    parts, nested_by = nested_parts(folds, inputs.oof["person"].to_numpy())
    decision, nested_pred, why = settled_blend_decision(inputs.oof_probs, y, parts, decision, prior)
    w, b = fit(inputs.oof_probs, y, decision, prior)

    def final(probs: list[np.ndarray]) -> np.ndarray:  # blended, then decided: the argmax is the class
        blended = mix(probs, w)
        return adjusted_probs(blended, b) if b is not None else blended

    oof_final, eval_final = final(inputs.oof_probs), final(inputs.eval_probs)

    cfg = load_config("seed").replace(data=data_dir)  # a blend's folder holds a record, not a training config
    out = open_run(name, cfg, output)
    try:
        eval_metrics = write_submission(out, eval_table, eval_final)
        result = {
            "run": out.name, "runs": [str(r.path) for r in runs], "weights": [float(x) for x in w],
            "decision": decision, "decision_why": why, "nested_by": nested_by,
            "biases": None if b is None else [float(x) for x in b],
            "oof": {**summarize(y, oof_final), "in_sample": True},
            "oof_single_runs": singles,
            "oof_nested_f1": None if nested_pred is None else fast_macro_f1(y, nested_pred),
            "eval": eval_metrics, "folds": [], "grouping": grouping,
        }
        if eval_metrics is not None:  # the blend against each of its runs, on the same eval photos
            truth = eval_table["true"].to_numpy()
            persons = eval_table["person"].to_numpy() if "person" in eval_table else None
            result["eval_vs_runs"] = {r.name: list(paired_bootstrap(truth, p.argmax(1), eval_final.argmax(1),
                                                                    groups=persons))
                                      for r, p in zip(runs, single_evals)}
            result["eval_resampled"] = "persons" if persons is not None else "photos"
        out.report.write_text(report(result))
        record = {k: result[k] for k in ("runs", "weights", "decision", "biases")}
        out.blend_record.write_text(json.dumps(record, indent=1))
        out.finish_run(result)
    finally:
        out.unlock()
    print(report(result))
    return result


def report(r: dict) -> str:
    lines = [f"# Blend `{r['run']}`", "", "| run | weight | OOF macro-F1 (alone) |", "|---|---|---|"]
    for path, w in zip(r["runs"], r["weights"]):
        name = Path(path).name
        lines.append(f"| {name} | {w:.3f} | {r['oof_single_runs'][name]:.4f} |")
    nested_f1 = r["oof_nested_f1"]
    biases = f", biases {np.round(r['biases'], 2).tolist()}" if r["biases"] else ""
    lines += ["", f"Decision: `{r['decision']}`{biases}" + (f" ({r['decision_why']})" if r.get("decision_why") else ""),
              "", f"- OOF macro-F1, fitted and scored on the same OOF (optimistic): {r['oof']['f1']:.4f}",
              f"- OOF macro-F1, nested (fitted without each of the {r.get('nested_by', 'folds')}, scored on it): " +
              (f"{nested_f1:.4f}" if nested_f1 is not None else "not possible")]
    if r.get("grouping"):
        g = r["grouping"]
        q = g["oof"]
        lines.append(f"- persons grouped ({g['size']} photos each; blind on OOF persons): coverage {q['coverage']:.3f}, "
                     f"purity {q['purity']:.3f}, pair precision {q['pair_precision']:.3f}, pair recall "
                     f"{q['pair_recall']:.3f}; eval coverage {g['eval_coverage']:.3f}; OOF macro-F1 per run "
                     f"{[round(v, 4) for v in g['oof_f1_before']]} -> {[round(v, 4) for v in g['oof_f1_after']]}")
    if r["eval"]:
        lines.append(f"- eval macro-F1: {r['eval']['f1']:.4f}")
        for name, (d, lo, hi) in r.get("eval_vs_runs", {}).items():
            lines.append(f"- eval Δ vs `{name}` alone: {d:+.4f} [{lo:+.3f}, {hi:+.3f}] (95 % paired bootstrap "
                         f"over eval {r.get('eval_resampled', 'photos')})")
    return "\n".join(lines) + "\n"
