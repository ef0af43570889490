"""The run folder, output/<run>/: the one module that knows its file names.

    config.yaml            the run's settings and records (config.Config.saved())
    folds.csv              person -> fold, fixed when the run begins
    fold<k>_best.pt        the fold's best epoch (what predicts); fold<k>_last.pt: the state to resume from
    fold<k>_log.csv        one row per epoch; fold<k>_oof.csv: out-of-fold probabilities
    fold<k>_result.json    the fold's summary; fold<k>.finished: the fold is done (written last)
    submission.csv, eval_probs.csv, eval_metrics.json      the fold ensemble on eval
    metrics.json, report.md, confusion_*.png, curves.png   the report
    run.finished           the whole run is done (written last)
    run.lock               held (flock) by the process writing the run; says who it is
    ensemble.onnx (+ ensemble.onnx.json: the folds and checkpoints it holds), audit.csv   export / audit
    age_edge.json          age_head=ordinal: the >=60 edge fitted on the OOF (the eval, predict and export use it)
    outside_conflicts.txt  extra_conflicts=drop: the outside photos left out for being listed with two labels
    prior.json             the class counts of the competition's training rows and of all rows trained on
                           (outside persons, pseudo-labels): decision=prior puts the competition's prior back
    blend.json             a blend's folder (run.sh blend): its runs, weights and biases
    gallery.html, gallery/ the error-analysis page and its thumbnails (run.sh gallery)
    tensorboard/, mlruns/, wandb/   tracker=... (tracker.py), with mlflow_run_id / wandb_run_id

A finished run folder is never written over: a new run takes the next free name (<run>-2, ...).
An unfinished run with the same config is continued by the same command.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import time
from pathlib import Path

import pandas as pd
import torch

from .config import Config, load_saved, matches_saved, save_config, saved_differences
from .errors import ConfigError, NotFound, UserError
from .files import atomic_save, atomic_write_text, first_free
from .paths import ROOT, user_path

OUTPUT = ROOT / "output"
# a fold's marker, or (runs made before markers existed) its result.json, the fold's last file then
FOLD_DONE = re.compile(r"fold(\d+)(?:\.finished|_result\.json)$")
AUDIT_FILE = re.compile(r"audit(?:-(\d+))?\.csv$")  # new_audit_file's names
# keys that may differ when an interrupted run is continued (they don't change its numbers)
RESUME_FREE_KEYS = {"num_workers", "threads", "device", "cache_dir", "parallel_folds", "tracker"}


PARTIAL = ("*.tmp", "*.part", "*.part.npy")  # what an interrupted atomic write leaves behind


class RunBusy(UserError, RuntimeError):
    """Another process is writing the run folder."""


def check_run_name(name: str) -> str:
    """A run name is one plain folder name under the output folder."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise ConfigError(f"--name {name!r}: a run name is a plain folder name (no '/', no leading '.'); "
                          f"use --output to put runs elsewhere")
    return name


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
        self.onnx_record, self.lock_file = p / "ensemble.onnx.json", p / "run.lock"
        self.onnx_partial = p / "ensemble.onnx.part"  # renamed to ensemble.onnx when complete
        self.blend_record = p / "blend.json"  # a blend's runs, weights and biases
        self.age_edge = p / "age_edge.json"  # age_head=ordinal: the >=60 edge fitted on the OOF (src/infer/age_edge.py)
        self.prior = p / "prior.json"  # class counts: the competition's training rows, and all rows trained on
        self.outside_conflicts = p / "outside_conflicts.txt"  # extra_conflicts=drop: what was left out, and why
        self.gallery, self.gallery_thumbs = p / "gallery.html", p / "gallery"
        self.tensorboard, self.mlruns, self.wandb = p / "tensorboard", p / "mlruns", p / "wandb"  # tracker=...
        self._lock = None

    @property
    def name(self) -> str:
        return self.path.name

    def __str__(self):
        return str(self.path)

    def fold(self, k: int) -> FoldFiles:
        return FoldFiles(self.path, k)

    # ---- one writer at a time ---------------------------------------------------------------
    def lock(self) -> None:
        """Hold the run folder for this process (released when it ends, however it ends); RunBusy
        names the holder when another process has it."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunBusy(f"{self.path} is being written by {holder}; wait for it to end, or choose another "
                          f"--name") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                  .encode(), 0)
        self._lock = fd
        self.clean_partial()

    def unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing releases the flock
            self._lock = None

    def clean_partial(self) -> list[Path]:
        """Remove what interrupted atomic writes left (safe only while holding the lock)."""
        gone = [p for pattern in PARTIAL for p in self.path.glob(pattern)]
        for p in gone:
            p.unlink(missing_ok=True)
        return gone

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
        return sorted({int(m.group(1)) for p in self.path.glob("fold*") if (m := FOLD_DONE.match(p.name))})

    def planned_folds(self) -> list[int]:
        """The folds the run's config trains (an unfinished run has finished fewer)."""
        return list(self.load_config().folds)

    def best_checkpoints(self, folds: list[int] | None = None) -> list[Path]:
        """The best.pt of the given folds, or of every finished fold."""
        folds = self.finished_folds() if folds is None else folds
        if not folds:
            raise NotFound(f"{self.path}: no finished fold to predict with")
        missing = [k for k in folds if not self.fold(k).best.is_file()]
        if missing:
            raise NotFound(f"{', '.join(str(self.fold(k).best) for k in missing)}: missing (fold "
                           f"{', '.join(map(str, missing))} of this run has no checkpoint: unfinished, or its files "
                           f"were removed or moved); run its training command again to finish it, or use a run that "
                           f"has them")
        return [self.fold(k).best for k in folds]

    def load_oof(self, folds: list[int] | None = None) -> pd.DataFrame:
        """Out-of-fold probabilities of the given folds (default: every fold that has them)."""
        folds = self.finished_folds() if folds is None else folds
        parts = [pd.read_csv(f.oof, dtype={"person": str}) for k in folds if (f := self.fold(k)).oof.exists()]
        if not parts:
            raise NotFound(f"{self.path}: no out-of-fold predictions (fold*_oof.csv)")
        return pd.concat(parts, ignore_index=True)

    def fitted_age_edge(self) -> int | None:
        """age_head=ordinal: the edge the eval used (None: not fitted, the models' training edge)."""
        return json.loads(self.age_edge.read_text())["edge"] if self.age_edge.exists() else None

    def decision_biases(self) -> list[float] | None:
        """decision=bias, auto or prior: the per-class log-probability biases the finished run's eval used (predict
        and the export add them too); None without a decision, one that applied none (auto), or before the run
        finished."""
        if not self.metrics.is_file():
            return None
        decision = self.read_metrics().get("decision")
        return decision["biases"] if isinstance(decision, dict) and decision.get("applied", True) else None

    # ---- the ONNX export ----------------------------------------------------------------------
    def model_state(self) -> dict:
        """Which fold models predict now: fold -> [size, modification time] of its best.pt (and the
        fitted age edge and decision biases, which the export bakes in)."""
        state = {str(k): [(st := self.fold(k).best.stat()).st_size, st.st_mtime_ns] for k in self.finished_folds()}
        if self.age_edge.exists():
            state["age_edge"] = self.fitted_age_edge()
        biases = self.decision_biases()
        if biases is not None:
            state["decision_biases"] = biases
        return state

    def record_export(self) -> None:
        """Say which fold models ensemble.onnx holds (written after it)."""
        atomic_write_text(json.dumps({"folds": self.model_state()}, indent=1), self.onnx_record)

    def export_is_current(self) -> bool:
        """Does ensemble.onnx hold exactly the fold models that predict now?"""
        if not (self.onnx.exists() and self.onnx_record.exists()):
            return False
        return json.loads(self.onnx_record.read_text()).get("folds") == self.model_state()

    # ---- the whole run ----------------------------------------------------------------------
    def finished(self) -> bool:
        # runs made before markers existed: metrics.json was the run's last file
        return self.marker.exists() or self.metrics.exists()

    def finish_run(self, metrics: dict) -> None:
        atomic_write_text(json.dumps(metrics, indent=2), self.metrics)
        self.marker.touch()

    def save_prior(self, competition: list[int], trained: list[int]) -> None:
        atomic_write_text(json.dumps({"competition": competition, "trained": trained}), self.prior)

    def save_outside_conflicts(self, lines) -> None:
        atomic_write_text("".join(f"{line}\n" for line in lines), self.outside_conflicts)

    def read_prior(self) -> dict | None:
        """{"competition": 18 class counts, "trained": 18 class counts}, or None (a run made before prior.json)."""
        return json.loads(self.prior.read_text()) if self.prior.is_file() else None

    def read_metrics(self) -> dict:
        return json.loads(self.metrics.read_text())

    def new_audit_file(self) -> Path:
        return first_free(self.path, "audit", ".csv")  # an earlier, maybe reviewed, audit is kept

    def tracker_id_file(self, tracker: str) -> Path:
        """Which MLflow / W&B run this folder appends to (every process, and a resume, use it)."""
        return self.path / f"{tracker}_run_id"

    def latest_audit_file(self) -> Path | None:
        """The newest of audit.csv, audit-2.csv, ... (None before the first audit)."""
        numbered = [(int(m.group(1) or 1), p) for p in self.path.glob("audit*.csv") if (m := AUDIT_FILE.match(p.name))]
        return max(numbered)[1] if numbered else None


def resumable(run: RunDir, cfg: Config) -> bool:
    """An unfinished run with the same config: the same command continues it."""
    if not run.config.is_file() or run.finished():
        return False
    return matches_saved(run.config, cfg, RESUME_FREE_KEYS)


def not_continued(run: RunDir, cfg: Config) -> str:
    """Why the same command does not continue an unfinished run (a key changed, or a new default): for the note."""
    if not run.config.is_file() or run.finished():
        return ""
    changes = saved_differences(run.config, cfg, RESUME_FREE_KEYS)
    return f" (unfinished, of another config: {'; '.join(changes)})" if changes else ""


def open_run(name: str, cfg: Config, output: Path) -> RunDir:
    """Continue the unfinished run of the same config, else start a new folder output/<name>[-N];
    either way the folder comes back locked for this process."""
    check_run_name(name)
    output.mkdir(parents=True, exist_ok=True)
    n = 1
    while (run := RunDir(output / (name if n == 1 else f"{name}-{n}"))).path.exists():
        if resumable(run, cfg):
            run.lock()  # two commands at once must not train into one folder
            print(f"continuing the unfinished run in {run}")
            return run
        n += 1
    run.path.mkdir()  # the first free name
    if run.name != name:
        print(f"note: {output / name} already exists{not_continued(RunDir(output / name), cfg)}; this run writes "
              f"to {run}")
    run.lock()
    return run


def find_run(run: str, named_by: str = "--run") -> RunDir:
    """A run by folder path (from where the user stands) or by name under output/; `named_by` is what the
    user typed it as (an option, a key, an argument), for the message."""
    p = user_path(run)
    candidates = list(dict.fromkeys([p, OUTPUT / run]))  # an absolute path is looked for once
    for candidate in candidates:
        if (candidate / "config.yaml").is_file():
            return RunDir(candidate)
    looked = " and ".join(map(str, candidates))
    typed = f"{named_by}{run}" if named_by.endswith("=") else f"{named_by} {run}"
    raise NotFound(f"{typed}: no run folder with a config.yaml (looked in {looked})")


def read_eval_probs(run: RunDir) -> pd.DataFrame | None:
    """ImageID + the 18 probabilities, or None when the run wrote none."""
    return pd.read_csv(run.eval_probs) if run.eval_probs.is_file() else None
