"""Experiment trackers: every fold's epochs and the run's final scores where people already look.

    tracker=none          (default) nothing beyond the run folder's own logs
    tracker=tensorboard   RUN/tensorboard/ event files:  .venv/bin/tensorboard --logdir output
    tracker=mlflow        an MLflow run named after the run, in RUN/mlruns (or $MLFLOW_TRACKING_URI)
    tracker=wandb         a Weights & Biases run named after the run, offline in RUN/wandb unless
                          $WANDB_MODE says otherwise (wandb sync uploads it later)

Scalars: fold<k>/<name> per epoch (train_loss, lr, val_f1, val_acc, val_nll, mask_f1, gender_f1,
age_f1, train_img_s), then oof/<name> and eval/<name> (f1, acc, mask_f1, gender_f1, age_f1).
A fold opens the tracker in the process that trains it (parallel folds, torchrun's rank 0), so
each writer appends to the same run; a resumed fold continues from its next epoch.
"""
from __future__ import annotations

import importlib.util
import os
import uuid

import yaml

from .errors import ConfigError
from .run_dir import RunDir

EPOCH_SCALARS = ("train_loss", "lr", "val_f1", "val_acc", "val_nll", "mask_f1", "gender_f1", "age_f1", "train_img_s")
FINAL_SCALARS = ("f1", "acc", "mask_f1", "gender_f1", "age_f1")
PROJECT = "mask-classification"  # the MLflow experiment / W&B project


def check_tracker(name: str) -> None:
    """Refuse up front a tracker whose package is missing (none of them is required)."""
    if name != "none" and importlib.util.find_spec(name) is None:  # each package is named as its tracker
        raise ConfigError(f"tracker={name}: the {name} package is not installed here "
                          f"(pip install {name}), or choose tracker=none")


class Tracker:
    """tracker=none: the run folder's logs are all there is."""

    @classmethod
    def register(cls, run: RunDir, cfg) -> None:
        """Before any fold: what parallel fold workers, opening at once, must find already made."""

    def epoch(self, fold: int, row: dict) -> None:
        pass

    def final(self, scores: dict[str, dict | None]) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def epoch_scalars(fold: int, row: dict) -> dict[str, float]:
    return {f"fold{fold}/{k}": float(row[k]) for k in EPOCH_SCALARS if row.get(k) is not None}


def final_scalars(scores: dict[str, dict | None]) -> dict[str, float]:
    return {f"{where}/{k}": float(m[k]) for where, m in scores.items() if m for k in FINAL_SCALARS if k in m}


class TensorBoard(Tracker):
    def __init__(self, run: RunDir, cfg):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.tensorboard))
        text = yaml.safe_dump(cfg.saved(), sort_keys=True)
        self.writer.add_text("config", "    " + text.replace("\n", "\n    "))  # indented: markdown shows it as code

    def epoch(self, fold, row):
        for tag, value in epoch_scalars(fold, row).items():
            self.writer.add_scalar(tag, value, int(row["epoch"]))
        self.writer.flush()

    def final(self, scores):
        for tag, value in final_scalars(scores).items():
            self.writer.add_scalar(tag, value, 0)
        self.writer.flush()

    def close(self):
        self.writer.close()


def shared_id(run: RunDir, name: str) -> str:
    """One tracker run id per run folder, kept beside it, so every process and a resume append to it."""
    path = run.tracker_id_file(name)
    if not path.exists():
        tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")  # one per writer
        tmp.write_text(uuid.uuid4().hex[:16])
        try:
            os.link(tmp, path)  # atomic, and fails where another process was first: its id stands
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


class MLflow(Tracker):
    @classmethod
    def register(cls, run, cfg):
        cls(run, cfg).close()  # the MLflow run exists before fold workers look for it

    def __init__(self, run: RunDir, cfg):
        import mlflow

        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            # a folder beside the run, no server; MLflow 3 asks for this opt-in to its file store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(run.mlruns.resolve().as_uri())
        mlflow.set_experiment(PROJECT)
        key = shared_id(run, "mlflow")
        found = mlflow.search_runs(filter_string=f"tags.pipeline_run = '{key}'", output_format="list")
        if found:
            self.active = mlflow.start_run(run_id=found[0].info.run_id)
        else:
            self.active = mlflow.start_run(run_name=run.name, tags={"pipeline_run": key})
            mlflow.log_params({k: str(v) for k, v in cfg.items()})

    def epoch(self, fold, row):
        self.mlflow.log_metrics(epoch_scalars(fold, row), step=int(row["epoch"]))

    def final(self, scores):
        self.mlflow.log_metrics(final_scalars(scores), step=0)

    def close(self):
        self.mlflow.end_run()


class WandB(Tracker):
    @classmethod
    def register(cls, run, cfg):
        shared_id(run, "wandb")

    def __init__(self, run: RunDir, cfg):
        import wandb

        self.active = wandb.init(project=PROJECT, name=run.name, id=shared_id(run, "wandb"), resume="allow",
                                 dir=str(run.wandb.parent), mode=os.environ.get("WANDB_MODE", "offline"),
                                 config={k: str(v) for k, v in cfg.items()})

    def epoch(self, fold, row):
        self.active.log({**epoch_scalars(fold, row), f"fold{fold}/epoch": int(row["epoch"])})

    def final(self, scores):
        self.active.summary.update(final_scalars(scores))

    def close(self):
        self.active.finish()


BACKENDS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}


def open_tracker(cfg, run: RunDir) -> Tracker:
    backend = BACKENDS.get(cfg.tracker)
    return backend(run, cfg) if backend else Tracker()


def register_tracker(cfg, run: RunDir) -> None:
    BACKENDS.get(cfg.tracker, Tracker).register(run, cfg)
