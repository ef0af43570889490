"""parallel_folds: some folds of a prepared run trained in a process of their own.

    python -m src.pipeline.fold_worker RUN_DIR --folds 0,2 --cache-root DIR --device cuda|cpu [--threads N]

The parent (`pipeline.job.train_folds`) has made the run folder, its config.yaml and folds.csv and
built the training cache; a worker reads those, never a recipe, so it trains exactly the run the
parent prepared. One worker per visible GPU (CUDA_VISIBLE_DEVICES), or CPU processes sharing the
cores when there is none.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import torch

from ..core.machine import RunContext, WorkerError, pick_device, set_threads
from ..core.paths import ROOT
from ..core.run_dir import RunDir
from ..data.tables import load_eval, training_table
from ..train.trainer import train_fold
from .training_table import training_boxes, training_rows


def train_in_parallel(run: RunDir, ctx: RunContext, folds: list[int], workers: int) -> None:
    """Spread folds over workers, one per visible GPU (CPU processes without one), then wait."""
    n_gpu = torch.cuda.device_count() if ctx.device.type != "cpu" else 0
    n = min(workers, len(folds), n_gpu or workers)
    groups = [folds[i::n] for i in range(n)]
    print(f"training folds {groups} in {n} parallel worker(s){' on GPUs 0..' + str(n - 1) if n_gpu else ''}",
          flush=True)
    procs = []
    for i, group in enumerate(groups):
        env = dict(os.environ)
        cmd = [sys.executable, "-m", "src.pipeline.fold_worker", str(run.path), "--folds", ",".join(map(str, group)),
               "--cache-root", str(ctx.cache_root)]
        if n_gpu:
            env["CUDA_VISIBLE_DEVICES"] = str(i)
            cmd += ["--device", "cuda"]
        else:
            cmd += ["--device", "cpu", "--threads", str(max(1, (os.cpu_count() or 2) // n))]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
    failed = [g for g, p in zip(groups, procs) if p.wait() != 0]
    if failed:
        raise WorkerError(f"parallel workers for folds {failed} failed; rerun the same command to continue")


def work(run: RunDir, folds: list[int], ctx: RunContext) -> None:
    """The parent's training table built again from the run folder (its config, folds and the cached outside
    persons), then each fold trained."""
    cfg = run.load_config()
    eval_table = load_eval(ctx.data_dir) if cfg.pseudo_from else None  # the pseudo rows are picked from it
    training = training_rows(cfg, training_table(cfg, ctx.data_dir), run.load_folds(), eval_table, ctx.cache_root)
    boxes = training_boxes(cfg, training, ctx.cache_root)  # the parent's cache
    for fold in folds:
        train_fold(cfg, ctx, training.rows, fold, run, boxes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m src.pipeline.fold_worker", description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--folds", required=True)
    ap.add_argument("--cache-root", type=Path, required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    run = RunDir(a.run_dir)
    set_threads(a.threads)
    data = Path(run.load_config().data)
    work(run, [int(f) for f in a.folds.split(",")], RunContext(data, pick_device(a.device), a.cache_root,
                                                               run.path.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
