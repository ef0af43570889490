"""What many test files share: the fast settings, running a stage as `bash run.sh STAGE ...` would,
a refusal's checks, private copies of runs, probabilities from logits."""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from src.core import classes
from src.core.classes import PROB_COLS
from src.core.config import load_config
from src.core.run_dir import RunDir


def stage(name: str, argv: list[str]) -> int:
    """`bash run.sh NAME ARGS...` in this process: src/stages/NAME.py's main, its exit code."""
    return importlib.import_module(f"src.stages.{name}").main(argv)


# config for runs that must finish in seconds
FAST = ["model=test_efficientnet", "pretrained=false", "img_size=32,24", "crop_frac=1.0", "epochs=1", "batch_size=16",
        "n_folds=2", "num_workers=0", "lr=1e-3", "threads=2"]


def train_fast(data, out, *more: str, name: str = "h") -> int:
    """`bash run.sh --data DATA --config seed --name NAME --output OUT` with FAST and `more`: its exit code."""
    return stage("train", ["--data", str(data), "--config", "seed", "--name", name, "--output", str(out), *FAST,
                           *more])


def copy_run(run: RunDir, dest: Path) -> RunDir:
    """A private copy of a run folder, for a test that changes it (the shared tiny run stays as trained)."""
    shutil.copytree(run.path, dest)
    return RunDir(dest)


def fake_run(path: Path, data: Path, oof: pd.DataFrame, oof_probs: np.ndarray, eval_ids, eval_probs: np.ndarray
             ) -> RunDir:
    """A finished run folder holding only what the post-hoc stages read (blend, gallery, audit): the
    demo recipe's config on `data`, each fold's OOF rows (`oof`: fold, person, shot, path, label) with
    `oof_probs`, and eval_probs.csv; written as a run writes them."""
    run = RunDir(path)
    run.path.mkdir(parents=True)
    run.save_config(load_config("demo").replace(data=str(data)))
    for k in sorted(oof["fold"].unique()):
        sel = (oof["fold"] == k).to_numpy()
        part = oof[sel].copy()
        part["pred"] = oof_probs[sel].argmax(1)
        part[PROB_COLS] = oof_probs[sel]
        part.to_csv(run.fold(int(k)).oof, index=False, float_format="%.6f")
        run.finish_fold(int(k), {"fold": int(k)})
    table = pd.DataFrame(eval_probs, columns=PROB_COLS)
    table.insert(0, "ImageID", list(eval_ids))
    table.to_csv(run.eval_probs, index=False, float_format="%.6f")
    return run


def refused(code: int, capsys, *words: str, rc: int = 2) -> str:
    """The command ended with `rc`, no traceback, and its message holds every word."""
    err = capsys.readouterr().err
    assert code == rc, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def shifted_case(n=3000, seed=0):
    """Good logits with class 5 pushed down by 1.5 nats: argmax misses most of class 5."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes.N_CLASSES, n)
    z = rng.normal(0, 1, (n, classes.N_CLASSES))
    z[np.arange(n), y] += 2.0
    z[:, 5] -= 1.5
    return softmax(z), y
