"""The whole job: validate data -> folds -> train each fold -> TTA fold ensemble -> report.

    python -m src.pipeline [--data DIR] [--config NAME|FILE] [--name RUN] [key=value ...]

Everything a run makes goes to output/<run>/. A finished run folder is never written over:
a new run takes the next free name (<run>-2, <run>-3, ...). An unfinished run with the same
config is continued: finished folds are skipped, the interrupted fold resumes after its last
finished epoch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from . import distributed as dist
from .config import ROOT, ConfigError, load_config, matches_saved, save_config, selected_folds
from .cache import cache_dir
from .data import DataError, load_eval, load_train
from .faces import face_boxes
from .folds import attach_folds, make_folds
from .infer import ensemble_probs, write_submission
from .weights import WeightsError, resolve
from .report import build_report, plot_confusion
from .runtime import OutOfMemory, first_free, out_of_memory_advice, set_threads
from .train import fold_paths, train_fold, training_cache

DEMO_DIR = ROOT / "input" / "demo"
OUTPUT = ROOT / "output"


def new_run_dir(name: str, output: Path) -> Path:
    """output/<name>, or the first free output/<name>-N: earlier runs are never overwritten."""
    output.mkdir(parents=True, exist_ok=True)
    candidate = first_free(output, name)
    candidate.mkdir()
    if candidate.name != name:
        print(f"note: {output / name} already exists; this run writes to {candidate}")
    return candidate


# keys that may differ when an interrupted run is continued (they don't change its numbers)
RESUME_FREE_KEYS = {"num_workers", "threads", "device", "cache_dir", "parallel_folds"}


def resumable(run_dir: Path, cfg) -> bool:
    """An unfinished run with the same config: the same command continues it."""
    saved = run_dir / "config.yaml"
    if not saved.is_file() or (run_dir / "metrics.json").exists():
        return False
    return matches_saved(saved, cfg, RESUME_FREE_KEYS)


def open_run_dir(name: str, cfg, output: Path) -> Path:
    """Continue the unfinished run of the same config, else start a new folder."""
    n = 1
    while (candidate := output / (name if n == 1 else f"{name}-{n}")).exists():
        if resumable(candidate, cfg):
            print(f"continuing the unfinished run in {candidate}")
            return candidate
        n += 1
    return new_run_dir(name, output)


def resolve_data(arg: str | None, cfg) -> tuple[Path, bool]:
    """(data dir, is_demo). --data wins; then the config's data_dir if present; else the demo."""
    if arg:
        return Path(arg), False
    default = Path(cfg.data_dir)
    if not default.is_absolute():
        default = ROOT / default
    if default.exists():
        return default, False
    return DEMO_DIR, True


def ensure_demo_data() -> None:
    from .demo_data import generate

    if not (DEMO_DIR / "train" / "train.csv").exists():
        print(f"no data given and {ROOT / 'input/data'} is absent: generating the demo dataset in {DEMO_DIR}")
        generate(DEMO_DIR)


def corrections_path(value: str) -> Path | None:
    if not value:
        return None
    named = ROOT / "configs" / "corrections" / f"{value}.csv"
    return named if named.is_file() else Path(value)


def run(args) -> dict:
    recipe = args.config
    data_dir, demo = resolve_data(args.data, load_config(recipe or "seed", args.overrides))
    if demo and not recipe:
        recipe = "demo"
    cfg = load_config(recipe or "seed", args.overrides)
    # found (or refused) before the data is read: a missing download must not cost a validation pass
    cfg["weights"] = resolve(cfg.model, cfg.pretrained).record()
    if demo:
        ensure_demo_data()
    cfg["data_dir"] = str(data_dir)
    cfg["device"] = dist.init(cfg.device)  # under torchrun: this rank's GPU (or cpu + gloo)
    if not dist.is_main():
        sys.stdout = open(os.devnull, "w")  # one rank speaks; errors still reach stderr
    if not cfg.cache_dir:
        cfg["cache_dir"] = str(Path(args.output) / "cache")
    set_threads(cfg.threads)
    folds_to_train = selected_folds(cfg)

    t0 = time.perf_counter()
    print(f"checking {data_dir} ...", flush=True)
    table = load_train(data_dir, corrections_path(cfg.corrections))
    eval_table = load_eval(data_dir)
    print(f"train: {table['person'].nunique()} persons, {len(table)} images; eval: {len(eval_table)} images"
          f"{' (with answers)' if 'true' in eval_table else ''}", flush=True)
    if cfg.max_images:
        keep = table["person"].drop_duplicates().sample(frac=1, random_state=cfg.seed)
        keep = set(keep.iloc[: max(cfg.n_folds, cfg.max_images // 7)])
        table = table[table["person"].isin(keep)].reset_index(drop=True)
        print(f"max_images={cfg.max_images}: using {len(table)} training images")

    if args.train_only:  # a worker of parallel_folds: the parent made the run folder
        run_dir = Path(args.train_only)
    else:
        run_dir = Path(dist.broadcast(str(open_run_dir(args.name or cfg.recipe, cfg, Path(args.output)))
                                      if dist.is_main() else None))
    folds = make_folds(table, cfg.n_folds, cfg.seed)
    if dist.is_main():
        if (run_dir / "folds.csv").exists():  # a continued run must keep its folds
            saved = pd.read_csv(run_dir / "folds.csv", dtype={"person": str})
            if not saved[["person", "fold"]].equals(folds[["person", "fold"]]):
                raise DataError(str(run_dir), [f"{run_dir / 'folds.csv'}: the data changed since this run "
                                               f"began; start a new run (--name)"])
        else:
            folds.to_csv(run_dir / "folds.csv", index=False)
        if not args.train_only:
            save_config(cfg, run_dir / "config.yaml")
    table = attach_folds(table, folds)
    print(f"run {run_dir.name}: model {cfg.model}, folds {folds_to_train} of {cfg.n_folds}, "
          f"{cfg.epochs} epochs, outputs in {run_dir}", flush=True)

    try:
        return train_predict_report(args, cfg, table, eval_table, folds_to_train, run_dir, t0)
    except torch.OutOfMemoryError:
        raise out_of_memory_advice(cfg, run_dir) from None


def train_predict_report(args, cfg, table, eval_table, folds_to_train, run_dir, t0) -> dict:
    boxes, face_stats = detect_faces(cfg, table, eval_table)
    if cfg.parallel_folds > 1 and len(folds_to_train) > 1 and not dist.enabled() and not args.train_only:
        if cfg.cache:  # built once here; the workers read it instead of racing to build it each
            training_cache(cfg, table, boxes)
        train_folds_in_parallel(args, cfg, folds_to_train, run_dir)
    results = []
    for fold in folds_to_train:  # folds finished by parallel workers (or an earlier try) are skipped
        results.append(train_fold(cfg, table, fold, run_dir, boxes))
    main_rank = dist.is_main()
    dist.shutdown()
    if not main_rank or args.train_only:
        return {"run_dir": run_dir}  # rank 0 / the parent alone predicts and reports
    ckpts = [fold_paths(run_dir, f)["best.pt"] for f in folds_to_train]
    probs = ensemble_probs(ckpts, eval_table["path"].tolist(), cfg, boxes=boxes)
    eval_metrics = write_submission(run_dir, eval_table, probs)
    if eval_metrics:
        plot_confusion(eval_table["true"].to_numpy(), probs.argmax(1),
                       f"eval confusion ({len(eval_table)} images, {len(ckpts)}-fold ensemble)",
                       run_dir / "confusion_eval.png")
    metrics = build_report(run_dir, cfg, folds_to_train, results, eval_metrics, face_stats)
    metrics["wall_seconds"] = time.perf_counter() - t0
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))

    print(f"\nout-of-fold macro-F1 {metrics['oof']['f1']:.4f} (acc {metrics['oof']['acc']:.4f})")
    if eval_metrics:
        print(f"eval macro-F1 {eval_metrics['f1']:.4f} (acc {eval_metrics['acc']:.4f}; mask "
              f"{eval_metrics['mask_f1']:.3f} gender {eval_metrics['gender_f1']:.3f} age {eval_metrics['age_f1']:.3f})")
    print(f"wrote {run_dir / 'submission.csv'} and {run_dir / 'report.md'} in {metrics['wall_seconds']:.0f} s")
    return {"run_dir": run_dir, **metrics}


class WorkerError(RuntimeError):
    pass


def detect_faces(cfg, table, eval_table) -> tuple[dict | None, dict | None]:
    """crop=face: boxes for every train and eval photo (cached by content), and fallback counts."""
    if cfg.crop != "face":
        return None, None
    train_paths, eval_paths = table["path"].tolist(), eval_table["path"].tolist()
    boxes = dist.main_first(lambda: face_boxes(train_paths + eval_paths, cache_dir(cfg)))  # others read its cache
    stats = {"train_photos": len(train_paths), "train_fallbacks": sum(boxes[p] is None for p in train_paths),
             "eval_photos": len(eval_paths), "eval_fallbacks": sum(boxes[p] is None for p in eval_paths)}
    print(f"face crops: no face found in {stats['train_fallbacks']} of {stats['train_photos']} training and "
          f"{stats['eval_fallbacks']} of {stats['eval_photos']} eval photos (centre crop used for those)", flush=True)
    return boxes, stats


def train_folds_in_parallel(args, cfg, folds: list[int], run_dir: Path) -> None:
    """Spread folds over workers, one per visible GPU (CPU processes without one), then wait."""
    import subprocess

    import torch

    n_gpu = torch.cuda.device_count() if str(cfg.device) != "cpu" else 0
    n = min(cfg.parallel_folds, len(folds), n_gpu or cfg.parallel_folds)
    groups = [folds[i::n] for i in range(n)]
    print(f"training folds {groups} in {n} parallel worker(s){' on GPUs 0..' + str(n - 1) if n_gpu else ''}",
          flush=True)
    procs = []
    for i, group in enumerate(groups):
        env = dict(os.environ)
        overrides = [f"folds={','.join(map(str, group))}", "parallel_folds=0"]  # the rest: the saved config
        if n_gpu:
            env["CUDA_VISIBLE_DEVICES"] = str(i)
            overrides.append("device=cuda")
        else:
            overrides += ["device=cpu", f"threads={max(1, (os.cpu_count() or 2) // n)}"]
        cmd = [sys.executable, "-m", "src.pipeline", "--data", cfg.data_dir, "--output", args.output,
               "--train-only", str(run_dir), "--config", str(run_dir / "config.yaml")] + overrides
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
    failed = [g for g, p in zip(groups, procs) if p.wait() != 0]
    if failed:
        raise WorkerError(f"parallel workers for folds {failed} failed; rerun the same command to continue")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="run.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="competition-layout data dir (default: input/data, else the demo)")
    ap.add_argument("--config", help="recipe name in configs/ (seed, demo, ...) or a YAML file")
    ap.add_argument("--name", help="run name: output/<name>/ (default: the recipe name)")
    ap.add_argument("--output", default=str(OUTPUT), help="where run folders go (default: output/)")
    ap.add_argument("--train-only", help=argparse.SUPPRESS)  # internal: a parallel_folds worker
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except (DataError, ConfigError, WeightsError, WorkerError, OutOfMemory) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
