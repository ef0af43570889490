"""The run folder, output/<run>/: the one module that knows its file names.

    config.yaml            the run's settings and records (config.Config.saved())
    folds.csv              person -> fold, fixed when the run begins
    fold<k>_best.pt        the fold's best epoch (what predicts); fold<k>_last.pt: the state to resume from
    fold<k>_log.csv        one row per epoch; fold<k>_oof.csv: out-of-fold probabilities
    fold<k>_result.json    the fold's summary; fold<k>.finished: the fold is done (written last)
    submission.csv, eval_probs.csv, eval_metrics.json      the fold ensemble on eval
    metrics.json, report.md, confusion_*.png, curves.png   the report
    run.finished           the whole run is done (written last)
    ensemble.onnx, audit.csv                                made later by export / audit

A finished run folder is never written over: a new run takes the next free name (<run>-2, ...).
An unfinished run with the same config is continued by the same command.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import torch

from .config import ROOT, Config, load_saved, matches_saved, save_config
from .runtime import atomic_save, atomic_write_text, first_free

OUTPUT = ROOT / "output"
FOLD_FILE = re.compile(r"fold(\d+)\.finished$")
# keys that may differ when an interrupted run is continued (they don't change its numbers)
RESUME_FREE_KEYS = {"num_workers", "threads", "device", "cache_dir", "parallel_folds"}


class FoldFiles:
    def __init__(self, folder: Path, fold: int):
        self.fold = fold
        self.best, self.last = folder / f"fold{fold}_best.pt", folder / f"fold{fold}_last.pt"
        self.log, self.oof = folder / f"fold{fold}_log.csv", folder / f"fold{fold}_oof.csv"
        self.result, self.marker = folder / f"fold{fold}_result.json", folder / f"fold{fold}.finished"

    def finished(self) -> bool:
        # runs made before markers existed: result.json was the fold's last file
        return self.marker.exists() or self.result.exists()


class RunDir:
    def __init__(self, path):
        self.path = Path(path)
        p = self.path
        self.config, self.folds = p / "config.yaml", p / "folds.csv"
        self.submission, self.eval_probs, self.eval_metrics = p / "submission.csv", p / "eval_probs.csv", \
            p / "eval_metrics.json"
        self.metrics, self.report, self.curves = p / "metrics.json", p / "report.md", p / "curves.png"
        self.confusion_oof, self.confusion_eval = p / "confusion_oof.png", p / "confusion_eval.png"
        self.onnx, self.marker = p / "ensemble.onnx", p / "run.finished"

    @property
    def name(self) -> str:
        return self.path.name

    def __str__(self):
        return str(self.path)

    def fold(self, k: int) -> FoldFiles:
        return FoldFiles(self.path, k)

    # ---- config and folds -------------------------------------------------------------------
    def save_config(self, cfg: Config) -> None:
        save_config(cfg, self.config)

    def load_config(self) -> Config:
        return load_saved(self.config)

    def save_folds(self, folds: pd.DataFrame) -> None:
        folds.to_csv(self.folds, index=False)

    def load_folds(self) -> pd.DataFrame:
        return pd.read_csv(self.folds, dtype={"person": str})

    # ---- a fold's files ---------------------------------------------------------------------
    def save_checkpoint(self, state: dict, path: Path) -> None:
        atomic_save(state, path)

    @staticmethod
    def load_checkpoint(path: Path) -> dict:
        return torch.load(path, map_location="cpu", weights_only=False)

    def finish_fold(self, fold: int, result: dict) -> None:
        files = self.fold(fold)
        atomic_write_text(json.dumps(result, indent=2), files.result)
        files.marker.touch()  # the last file: the fold is done

    def fold_result(self, fold: int) -> dict:
        return json.loads(self.fold(fold).result.read_text())

    def finished_folds(self) -> list[int]:
        found = {int(m.group(1)) for p in self.path.glob("fold*.finished") if (m := FOLD_FILE.match(p.name))}
        found |= {int(p.name[4:-len("_result.json")]) for p in self.path.glob("fold*_result.json")
                  if p.name[4:-len("_result.json")].isdigit()}
        return sorted(found)

    def best_checkpoints(self, folds: list[int] | None = None) -> list[Path]:
        """The best.pt of the given folds, or of every finished fold."""
        folds = self.finished_folds() if folds is None else folds
        if not folds:
            raise FileNotFoundError(f"{self.path}: no finished fold to predict with")
        return [self.fold(k).best for k in folds]

    def load_oof(self, folds: list[int] | None = None) -> pd.DataFrame:
        """Out-of-fold probabilities of the given folds (default: every fold that has them)."""
        folds = self.finished_folds() if folds is None else folds
        parts = [pd.read_csv(f.oof, dtype={"person": str}) for k in folds if (f := self.fold(k)).oof.exists()]
        if not parts:
            raise FileNotFoundError(f"{self.path}: no out-of-fold predictions (fold*_oof.csv)")
        return pd.concat(parts, ignore_index=True)

    # ---- the whole run ----------------------------------------------------------------------
    def finished(self) -> bool:
        # runs made before markers existed: metrics.json was the run's last file
        return self.marker.exists() or self.metrics.exists()

    def finish_run(self, metrics: dict) -> None:
        atomic_write_text(json.dumps(metrics, indent=2), self.metrics)
        self.marker.touch()

    def read_metrics(self) -> dict:
        return json.loads(self.metrics.read_text())

    def new_audit_file(self) -> Path:
        return first_free(self.path, "audit", ".csv")  # an earlier, maybe reviewed, audit is kept


def resumable(run: RunDir, cfg: Config) -> bool:
    """An unfinished run with the same config: the same command continues it."""
    if not run.config.is_file() or run.finished():
        return False
    return matches_saved(run.config, cfg, RESUME_FREE_KEYS)


def open_run(name: str, cfg: Config, output: Path) -> RunDir:
    """Continue the unfinished run of the same config, else start a new folder output/<name>[-N]."""
    output.mkdir(parents=True, exist_ok=True)
    n = 1
    while (candidate := output / (name if n == 1 else f"{name}-{n}")).exists():
        if resumable(RunDir(candidate), cfg):
            print(f"continuing the unfinished run in {candidate}")
            return RunDir(candidate)
        n += 1
    fresh = first_free(output, name)
    fresh.mkdir()
    if fresh.name != name:
        print(f"note: {output / name} already exists; this run writes to {fresh}")
    return RunDir(fresh)


def find_run(run: str) -> RunDir:
    """A run by folder path or by name under output/."""
    p = Path(run)
    for candidate in (p, OUTPUT / run):
        if (candidate / "config.yaml").is_file():
            return RunDir(candidate)
    raise FileNotFoundError(f"--run {run}: no run folder with a config.yaml (looked in {p} and output/{run})")
