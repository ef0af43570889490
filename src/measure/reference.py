"""The parity row of the bench: the independent ~170-line implementation of the seed recipe
(`../shared/reference/seedref.py`, the yardstick), run at the bench protocol's settings.

    bash run.sh bench --recipes reference,seed [--reference PATH]

The script is not part of the project; the bench only drives it (as a subprocess, so nothing of
ours touches its numbers) and turns its output into a run folder like the pipeline's
(`metrics.json`, `eval_probs.csv`), so the table and its intervals treat it like any recipe.
It trains on its own random 4:1 person split and scores the same eval photos as every recipe.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.config import load_config
from ..core.errors import ConfigError
from ..core.metrics import summarize
from ..core.paths import ROOT
from ..core.run_dir import RunDir
from ..data.tables import Layout, load_eval, read_image
from ..infer.submission import write_eval_probs
from ..model.weights import OFFLINE_WEIGHTS, package_file

NAME = "reference"
# settings the script has an argument for, and those that don't change what it computes
SCRIPT_KEYS = {"model", "pretrained", "img_size", "crop_frac", "epochs", "batch_size", "lr", "age_boundary", "seed",
               "folds", "n_folds", "num_workers", "threads", "device", "cache", "cache_dir", "parallel_folds", "amp",
               "amp_dtype", "channels_last", "data_dir"}
DEFAULT_SCRIPT = ROOT.parent / "shared" / "reference" / "seedref.py"


def script_args(overrides: list[str], data: str) -> list[str]:
    """seedref.py's arguments for the seed recipe under these overrides (the bench protocol's).

    The reference knows one fold, the offline-weighted lite models and an absolute centre crop, so
    the protocol must ask for exactly that; the crop is crop_frac of the data's photo size.
    """
    cfg = load_config("seed", overrides)
    seed_recipe = load_config("seed")
    unsupported = sorted(k for k in cfg if k not in SCRIPT_KEYS and cfg[k] != seed_recipe.get(k))
    if unsupported:
        raise ConfigError(f"the reference script cannot change {unsupported}; it takes {sorted(SCRIPT_KEYS)}")
    if cfg.model not in OFFLINE_WEIGHTS or cfg.pretrained.source not in ("imagenet", "package"):
        raise ConfigError(f"the reference row needs pretrained=true and one of {sorted(OFFLINE_WEIGHTS)} "
                          f"(got model={cfg.model} pretrained={cfg.pretrained}): use --protocol cpu")
    if len(cfg.folds) != 1:
        raise ConfigError("the reference row trains one 4:1 split: the protocol must train one fold")
    layout = Layout(Path(data))
    train_csv = pd.read_csv(layout.train_csv)
    folder = layout.train_images / str(train_csv["path"].iloc[0])
    first = next(p for p in sorted(folder.iterdir()) if not p.name.startswith("."))
    ph, pw = read_image(first).shape[:2]
    h, w = cfg.img_size
    return ["--data", str(data), "--eval", str(Path(data) / "eval"), "--model", cfg.model,
            "--weights", str(package_file(cfg.model)), "--size", f"{h}x{w}",
            "--crop", f"{round(ph * cfg.crop_frac)}x{round(pw * cfg.crop_frac)}", "--epochs", str(cfg.epochs),
            "--bs", str(cfg.batch_size), "--lr", str(cfg.lr), "--old", str(cfg.age_boundary), "--seed", str(cfg.seed)]


# the script's own files in its run folder (the pipeline's files are named by src/core/run_dir.py)
RESULT, PROBS, COMMAND = "seedref.json", "seedref.eval_probs.npy", "command.json"


def finish(run: RunDir, data: str, wall: float) -> None:
    """The script's result + eval probabilities -> metrics and eval probabilities in the pipeline's format."""
    res = json.loads((run.path / RESULT).read_text())
    probs = np.load(run.path / PROBS)
    answers = pd.read_csv(Layout(Path(data)).eval_answers)  # the script's row order
    truth = load_eval(data, check_pixels=False).set_index("ImageID").loc[answers["ImageID"], "true"].to_numpy()
    write_eval_probs(run, answers["ImageID"].values, probs)
    last = res["log"][-1]
    metrics = {"oof": {"f1": last["val_f1"], "mask_f1": None, "gender_f1": None, "age_f1": None,
                       "note": "validation macro-F1 of the last epoch on the script's own 4:1 split"},
               "eval": summarize(truth, probs),
               "folds": [{"train_img_s": float(np.mean([r["train_img_s"] for r in res["log"]]))}],
               "wall_seconds": wall}
    run.finish_run(metrics)


def run(script: Path, run_dir: Path, overrides: list[str], data: str) -> int:
    """Train the reference into run_dir (reused when it finished with the same arguments)."""
    if not script.is_file():
        print(f"error: the reference row needs the yardstick script, not found at {script} (--reference PATH)",
              file=sys.stderr)
        return 2
    if not Layout(Path(data)).eval_answers.is_file():
        print(f"error: the reference row is scored on {Path(data) / 'eval' / 'answers.csv'}, which does not exist",
              file=sys.stderr)
        return 2
    try:
        args = script_args(overrides, data)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run = RunDir(run_dir)
    saved = run.path / COMMAND
    if run.finished():
        if json.loads(saved.read_text())["args"] != args:
            print(f"error: {run_dir} was made with other settings; use another bench --name", file=sys.stderr)
            return 2
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"script": str(script), "args": args}, indent=1))
    t0 = time.perf_counter()
    code = subprocess.call([sys.executable, str(script), *args, "--out", str(run.path / RESULT)], cwd=ROOT)
    if code != 0:
        print(f"error: {script} exited with {code}", file=sys.stderr)
        return 2
    finish(run, data, time.perf_counter() - t0)
    return 0
