"""What a finished study says: its trials as a table, Optuna's plots, the best recipe as a YAML `bash run.sh
--config` runs as is, and the honest check of it — the best recipe and the base recipe retrained on folds the
search never saw, their difference with a paired interval over whole persons.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..core.classes import PROB_COLS
from ..core.config import load_config
from ..core.metrics import paired_bootstrap
from ..core.run_dir import RunDir
from ..pipeline.job import run_job
from .tune import StudySettings, trial_name


def trials_table(study) -> pd.DataFrame:
    """One row a trial: its number, state, OOF macro-F1, last epoch reported, seconds, changes and run folder."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if "surplus" in t.user_attrs:  # drawn after the last trial was taken by another worker: never ran
            continue
        seconds = round((t.datetime_complete - t.datetime_start).total_seconds()) if t.datetime_complete else None
        steps = sorted(t.intermediate_values)
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     "oof_f1": t.value if t.state.name == "COMPLETE" else None,  # a pruned one's: its last epoch
                     "epochs_reported": len(steps), "last_val_f1": t.intermediate_values[steps[-1]] if steps else None,
                     "seconds": seconds, "changes": " ".join(t.user_attrs.get("changes", [])),
                     "run": t.user_attrs.get("run", ""), "note": note(t)})
    return pd.DataFrame(rows)


def note(trial) -> str:
    if "duplicate_of" in trial.user_attrs:
        return f"the same changes as trial {trial.user_attrs['duplicate_of']}: not trained again"
    return trial.user_attrs.get("refused", "")


def markdown(table: pd.DataFrame) -> str:
    def fmt(v):
        return "–" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}" if isinstance(v, float) \
            else str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def plots(study, folder: Path) -> list[str]:
    """Optuna's own plots (history, parameter importances, the trials' learning curves) as PNGs; those a study
    cannot draw yet (one finished trial: no importances) are left out. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    warnings.filterwarnings("ignore", module="optuna")  # few trials: its importances warn of it; the plot says it
    written = []
    for name, draw in (("history", ov.plot_optimization_history), ("importances", ov.plot_param_importances),
                       ("learning_curves", ov.plot_intermediate_values)):
        try:
            ax = draw(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # too few finished trials for this plot
            continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(8, 4.5)
        fig.tight_layout()
        fig.savefig(folder / f"{name}.png", dpi=100)
        plt.close(fig)
        written.append(f"{name}.png")
    return written


def best_recipe(settings: StudySettings, best, path: Path) -> list[str]:
    """best.yaml: the base recipe (a name of configs/, or a file's full path), the user's overrides (not the folds
    searched) and the best trial's changes; returns those key=value changes."""
    changes = [o for o in settings.overrides if not o.startswith("folds=")] + list(best.user_attrs["changes"])
    values = {k: yaml.safe_load(v) if v.strip() else "" for k, v in (c.split("=", 1) for c in changes)}
    header = (f"# The best trial of study {settings.name} (trial {best.number}: OOF macro-F1 {best.value:.4f} on the "
              f"folds it searched,\n# optimistic: chosen among its trials). On folds the search never saw: "
              f"report.md. Run it: bash run.sh --config {path}\n")
    path.write_text(header + yaml.safe_dump({"base": settings.recipe, **values}, sort_keys=False))
    return changes


def unseen_scores(run: RunDir, folds: list[int]) -> pd.DataFrame:
    """A run's OOF predictions of `folds` as its report scores them, one row a photo in a fixed order."""
    oof = run.load_oof(folds).sort_values("path").reset_index(drop=True)
    oof["pred"] = oof[PROB_COLS].to_numpy().argmax(1)
    return oof


def confirm(settings: StudySettings, changes: list[str], folds: list[int]) -> dict:
    """The base recipe and the best recipe trained on `folds` (never validated during the search), their OOF
    macro-F1 there and the difference with a paired interval over whole persons."""
    out = settings.folder / "confirm"
    base_overrides = [o for o in settings.overrides if not o.startswith("folds=")] + [
        f"folds={','.join(map(str, folds))}"]
    runs = {}
    for name, extra in (("base", []), (trial_name(changes), changes)):
        run = RunDir(out / name)
        if not run.finished():
            print(f"\n=== tune {settings.name}: {'the base recipe' if name == 'base' else 'the best recipe'} on "
                  f"fold(s) {folds}, which the search never validated on ===", flush=True)
            run_job(settings.data, settings.recipe, [*base_overrides, *extra], name, out)
        runs[name] = run
    base, best = (unseen_scores(r, folds) for r in runs.values())
    point, lo, hi = paired_bootstrap(base["label"].to_numpy(), base["pred"].to_numpy(), best["pred"].to_numpy(),
                                     groups=base["person"].to_numpy())
    return {"folds": folds, "base_f1": float(runs["base"].read_metrics()["oof"]["f1"]),
            "best_f1": float(runs[trial_name(changes)].read_metrics()["oof"]["f1"]), "gain": point,
            "ci": [lo, hi], "persons": int(base["person"].nunique()),
            "runs": [str(r.path) for r in runs.values()]}


def unseen_folds(settings: StudySettings, asked: list[int] | None) -> list[int]:
    """The folds the confirmation trains: asked, else the first fold the search did not validate on; none when
    the search used them all."""
    cfg = load_config(settings.recipe, list(settings.overrides))
    searched = set(cfg.folds)
    if asked is not None:
        return asked
    rest = [f for f in range(cfg.n_folds) if f not in searched]
    return rest[:1]


def verdict(result: dict) -> str:
    lo, hi = result["ci"]
    if lo > 0:
        return "the best recipe beats the base recipe beyond its interval on persons the search never saw"
    if hi < 0:
        return ("the best recipe loses to the base recipe beyond its interval on persons the search never saw: its "
                "search score was selection noise")
    return ("the gain is inside its interval: on persons the search never saw the best recipe is not shown to beat "
            "the base recipe (its search score is partly selection noise)")


def write_report(settings: StudySettings, study, trials: int, confirm_folds: list[int] | None) -> dict:
    """report.md (+ trials.csv, trials.md, the plots, best.yaml) of a study that holds its trials; the best recipe
    checked on unseen folds. Returns what report.md says, as numbers (also in summary.json)."""
    import json

    folder = settings.folder
    table = trials_table(study)
    table.to_csv(folder / "trials.csv", index=False)
    (folder / "trials.md").write_text(markdown(table) + "\n")
    figures = plots(study, folder)
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    summary = {"study": settings.name, "trials": int(table["state"].isin(["complete", "pruned"]).sum()),
               "complete": len(done), "pruned": int((table["state"] == "pruned").sum()),
               "failed": int((table["state"] == "fail").sum())}
    lines = [f"# tune {settings.name}", "", f"`--config {settings.recipe}` on `{settings.data}`, space "
             f"`{settings.space}`, overrides `{' '.join(settings.overrides)}`, pruner {settings.pruner}.", "",
             f"{summary['trials']} trials of {trials}: {summary['complete']} complete, {summary['pruned']} pruned "
             f"({summary['failed']} failed or refused, not counted).", ""]
    if done:
        best = study.best_trial
        changes = best_recipe(settings, best, folder / "best.yaml")
        summary.update(best_trial=best.number, best_f1=best.value, best_changes=changes)
        lines += [f"Best: trial {best.number}, OOF macro-F1 **{best.value:.4f}** on the searched folds — optimistic, "
                  f"as the best of {len(done)}: `{' '.join(best.user_attrs['changes'])}` → `best.yaml` "
                  f"(`bash run.sh --config {folder / 'best.yaml'}`).", ""]
        lines += confirmation_lines(settings, changes, confirm_folds, summary)
    lines += ["## Trials", "", markdown(table), "", *[f"![{f}]({f})" for f in figures]]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def confirmation_lines(settings: StudySettings, changes: list[str], asked: list[int] | None, summary: dict
                       ) -> list[str]:
    """The report's section on unseen folds (and summary['confirm'])."""
    folds = unseen_folds(settings, asked)
    if not folds:
        return ["The search validated on every fold: no fold is left to check the best recipe on "
                "(search on fewer folds, e.g. folds=0, or give --confirm-folds).", ""]
    result = confirm(settings, changes, folds)
    summary["confirm"] = result
    lo, hi = result["ci"]
    return ["## On folds the search never saw", "",
            f"Fold(s) {folds} ({result['persons']} persons), each recipe trained anew: base {result['base_f1']:.4f}, "
            f"best {result['best_f1']:.4f}; best − base **{result['gain']:+.4f} [{lo:+.3f}, {hi:+.3f}]** (95 % "
            f"paired bootstrap over whole persons). {verdict(result)[0].upper()}{verdict(result)[1:]}.", ""]
