"""The whole job (`bash run.sh`, src/stages/train.py): validate data -> folds -> train each fold ->
TTA fold ensemble -> report, in the run folder core/run_dir.py names.

Three steps, each a function other stages call: `prepare` (config, data, folds, run folder),
`train_folds` (in this process, under torchrun, or spread over parallel workers) and `finish`
(the fold ensemble on eval, submission, report). `run_job` does all three.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ..core import distributed as dist
from ..core.classes import N_CLASSES
from ..core.config import Config, load_config, settle_outside
from ..core.errors import ConfigError
from ..core.files import CannotWrite, free_mib, writable_folder
from ..core.machine import RunContext, loader_workers, out_of_memory_advice, pick_device, set_threads
from ..core.paths import ROOT
from ..core.run_dir import OUTPUT, RunDir, check_run_name, find_run, open_run
from ..core.tracker import check_tracker, open_tracker, register_tracker
from ..core.values import OUTSIDE_AUTO, OUTSIDE_SUBFOLDER, folders_text
from ..data.background import check_background
from ..data.cache import cache_root
from ..data.folds import in_folds, make_folds
from ..data.tables import DataError, Layout, find_data, load_eval, training_table
from ..infer.age_edge import fit_for_run, oof_probs_as_eval
from ..infer.decision import adjusted_probs, decide_for_run, prior_report, prior_shares
from ..infer.ensemble import PhotoReading, predict_photos, run_features
from ..infer.grouping import TOP, apply_grouping
from ..infer.submission import write_submission
from ..model.backbones import build_model, check_input_size
from ..model.losses import check_loss
from ..model.weights import resolve
from ..persons.outside_set import OutsideSet, outside_rules, read_outside
from ..report.gallery import write_gallery
from ..report.run_report import Outcome, build_report, plot_confusion
from ..train.optimisation import check_optimiser
from ..train.trainer import train_fold, training_cache
from .fold_worker import train_in_parallel
from .training_table import TrainingTable, training_boxes, training_rows

DEMO_DIR = ROOT / "input" / "demo"


@dataclass
class Job:
    """A prepared run: its settings, where it runs, its folder and its data."""
    cfg: Config
    ctx: RunContext
    run: RunDir
    table: pd.DataFrame        # training photos, with their fold
    eval_table: pd.DataFrame
    boxes: dict | None         # crop=face: the face box of every photo (background=grabcut: outside persons')
    face_stats: dict | None
    started: float
    pseudo: dict | None = None  # pseudo_from: how many eval photos joined training, per class
    outside: dict | None = None  # extra=: how many outside persons joined training, and how many were skipped
    on_epoch: Callable[[int, int, float], None] | None = None  # after each saved epoch (fold, epoch, val F1): tune's


def ensure_demo_data() -> None:
    from ..data.demo import generate

    if not Layout(DEMO_DIR).has_train():
        print(f"no data given and {ROOT / 'input/data'} is absent: generating the demo dataset in {DEMO_DIR}")
        generate(DEMO_DIR)


def competition_tables(cfg: Config, data_dir: Path, problems: list[str]) -> tuple:
    """(training table, eval table, person folds), each None where it cannot be made; what is wrong goes to
    `problems` (the tables', the corrections', the folds' (too few persons to split))."""
    table = eval_table = folds = None
    if not Path(data_dir).is_dir():  # one line, not four about the files it would hold
        what = "a file, not a folder" if Path(data_dir).exists() else "no such folder"
        problems.append(f"{data_dir}: {what} (a data folder holds train/ and eval/)")
        return table, eval_table, folds
    try:
        table = training_table(cfg, data_dir)
        folds = make_folds(table, cfg.n_folds, cfg.seed, cfg.split, cfg.age_boundary)
    except DataError as e:
        problems += e.problems
    try:
        eval_table = load_eval(data_dir)
    except DataError as e:
        problems += e.problems
    return table, eval_table, folds


def load_data(cfg: Config, data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, OutsideSet | None]:
    """(training table, eval table, person folds, the outside photos of `extra=`): every problem of the
    data and of the outside photos in one list."""
    problems: list[str] = []
    table, eval_table, folds = competition_tables(cfg, data_dir, problems)
    outside = None
    if cfg.extra:  # checked against every competition photo, train and eval: none may come back as outside
        competition = [p for t in (table, eval_table) if t is not None for p in t["path"]]
        youngest = None if table is None else int(table["age"].min())  # extra_ages=auto: adults as these
        outside = read_outside(list(cfg.extra), outside_rules(cfg, competition, youngest), problems)
    if problems:
        raise DataError(str(data_dir) + (f" and extra={folders_text(cfg.extra)}" if cfg.extra else ""), problems)
    return table, eval_table, folds, outside


def prepare(data: str | Path | None = None, recipe: str | None = None, overrides: list[str] | None = None,
            name: str | None = None, output: Path = OUTPUT) -> Job:
    """Config, weights, data check, folds and the run folder: everything before the first epoch.

    Everything the user typed is checked before any folder is made or any photo read."""
    started = time.perf_counter()
    cfg, data_dir, device = run_settings(data, recipe, list(overrides or []), name)
    if data_dir == DEMO_DIR:
        ensure_demo_data()
    if not dist.is_main():
        sys.stdout = open(os.devnull, "w")  # one rank speaks; errors still reach stderr
    ctx = RunContext(Path(data_dir), device, cache_root(cfg.cache_dir, output), Path(output))
    writable_folder(ctx.output, "--output")
    writable_folder(ctx.cache_root, "cache_dir")
    set_threads(cfg.threads)

    print(f"checking {data_dir} ...", flush=True)
    table, eval_table, folds, outside_set = load_data(cfg, ctx.data_dir)
    print(f"train: {table['person'].nunique()} persons, {len(table)} images; eval: {len(eval_table)} images"
          f"{' (with answers)' if 'true' in eval_table else ''}", flush=True)
    check_cache_space(cfg, ctx, len(table) + len(eval_table) + 7 * len(outside_set.photos if outside_set else []))
    # before the run folder: a bad pseudo_from is refused, and the outside persons are drawn (folds unchanged)
    training = training_rows(cfg, table, folds, eval_table, ctx.cache_root, outside_set)
    say_decision(cfg, training)

    # rank 0 opens (and locks) the folder; the other ranks learn its path
    opened = open_run(name or cfg.recipe, cfg, ctx.output) if dist.is_main() else None
    path = dist.broadcast(str(opened.path) if opened else None)
    run = opened or RunDir(path)
    try:
        if dist.is_main():
            record_run(run, cfg, folds)
            record_conflicts(run, outside_set)
            record_prior(run, training.rows)
        print(f"run {run.name}: model {cfg.model}, folds {list(cfg.folds)} of {cfg.n_folds}, "
              f"{cfg.epochs} epochs, {loader_workers(cfg, ctx.device)} loader workers, outputs in {run}", flush=True)
        boxes, face_stats = detect_faces(cfg, ctx, training, eval_table)
    except BaseException:
        run.unlock()
        raise
    return Job(cfg=cfg, ctx=ctx, run=run, table=training.rows, eval_table=eval_table, boxes=boxes,
               face_stats=face_stats, started=started, pseudo=training.pseudo,
               outside=training.outside.stats if training.outside else None)


def say_decision(cfg: Config, training: TrainingTable) -> None:
    """With outside persons the eval's decision is said in the first lines: how it is made, how to turn it off."""
    if training.outside is None or cfg.decision == "none":
        return
    how = {"bias": "decided for macro-F1 by biases fitted on the competition's persons (the OOF)",
           "auto": "decided for macro-F1 by biases fitted on the competition's persons (the OOF) if they beat "
                   "plain argmax on persons held out of their fit",
           "prior": "put back to the competition's class prior"}[cfg.decision]
    print(f"decision={cfg.decision}: the eval's classes are {how}, as the outside persons shift the class prior "
          f"(decision=none turns it off)", flush=True)


def run_settings(data, recipe: str | None, overrides: list[str], name: str | None) -> tuple[Config, Path, torch.device]:
    """(the config, the data folder, this process's device): the demo's recipe when there is no data;
    a bad run name, a missing tracker, an unknown model or weights that do not fit it refused here."""
    cfg = load_config(recipe or "seed", overrides)
    data_dir = find_data(data, cfg.data_dir)
    if data_dir is None:  # nothing given and no data of the user's: the demo, with its small recipe
        data_dir = DEMO_DIR
        if not recipe:
            cfg = load_config("demo", overrides)
    check_run_name(name or cfg.recipe)
    check_tracker(cfg.tracker)
    if cfg.pseudo_from:  # saved as the run's folder: a run continued from elsewhere reads the same one
        try:
            cfg = cfg.replace(pseudo_from=str(find_run(cfg.pseudo_from, "pseudo_from=").path))
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
    if dist.world_size() > 1 and -(-cfg.batch_size // dist.world_size()) < 2:
        raise ConfigError(f"batch_size={cfg.batch_size} over {dist.world_size()} processes gives each a batch of one "
                          f"photo, which BatchNorm cannot train on: batch_size >= {2 * dist.world_size()}")
    device = pick_device(dist.init(cfg.device))  # under torchrun: this rank's GPU (or cpu + gloo)
    check_optimiser(cfg, device, dist.world_size())
    cfg = outside_settled(cfg, data_dir)  # after init: rank 0 says it
    # found (or refused) before the data is read: a missing download must not cost a validation pass
    cfg = cfg.replace(weights=resolve(cfg.model, cfg.pretrained).record(), data=str(data_dir))
    # an unknown model, weights that do not fit it, or an img_size it cannot take: refused before any folder
    check_input_size(build_model(cfg)[0], cfg.model, cfg.img_size)
    check_loss(cfg.loss)
    check_background(cfg.background)
    return cfg, data_dir, device


def outside_settled(cfg: Config, data_dir: Path) -> Config:
    """extra=auto (the recommended recipe) settled by the data folder (config.settle_outside), and said in the
    first lines: whether outside faces join, from where, and how to turn them off."""
    if cfg.extra != OUTSIDE_AUTO:
        return cfg
    settled_cfg = settle_outside(cfg, data_dir)
    found = Path(data_dir) / OUTSIDE_SUBFOLDER
    if dist.is_main():
        print(f"extra=auto: outside faces from {found} join training (decision={settled_cfg.decision}; extra=none "
              f"turns them off)" if settled_cfg.extra else f"extra=auto: no {found} folder, so no outside faces (a "
              f"public face set put there as downloaded would join training: docs/usage.md)", flush=True)
    return settled_cfg


def record_run(run: RunDir, cfg: Config, folds: pd.DataFrame) -> None:
    """Rank 0: the run's folds (a continued run must keep its own), config and tracker."""
    if run.folds.exists():
        if not run.load_folds()[["person", "fold"]].equals(folds[["person", "fold"]]):
            raise DataError(str(run), [f"{run.folds}: the data changed since this run began; start a new run "
                                       f"(--name)"])
    else:
        run.save_folds(folds)
    run.save_config(cfg)
    register_tracker(cfg, run)  # before parallel fold workers open it at once


def record_conflicts(run: RunDir, outside: OutsideSet | None) -> None:
    """extra_conflicts=drop: the outside photos left out for two labels, each with its two listings, in the run
    folder (said in the first lines; report.md points to it)."""
    if outside is None or not outside.conflicts:
        return
    run.save_outside_conflicts(outside.conflicts)
    print(f"outside photos: {outside.conflicting} listed with two labels are left out (extra_conflicts=error refuses "
          f"them instead); each with its two listings: {run.outside_conflicts}", flush=True)


def record_prior(run: RunDir, table: pd.DataFrame) -> None:
    """The class counts of the competition's training rows and of every row trained on (outside persons and
    pseudo-labels too), for decision=prior (src/infer/decision.py)."""
    def count(rows: pd.DataFrame) -> list[int]:
        return [int(c) for c in np.bincount(rows["label"].to_numpy(dtype=int), minlength=N_CLASSES)]

    run.save_prior(count(table[in_folds(table)]), count(table))


def check_cache_space(cfg: Config, ctx: RunContext, photos: int) -> None:
    """cache=true: room for the decoded photos, said before the run folder (the cache is built later)."""
    if not cfg.cache:
        return
    h, w = cfg.img_size
    need, free = photos * h * w * 3 / 2**20, free_mib(ctx.cache_root)
    if need > free:  # an upper bound: caches built earlier are reused, not written again
        raise CannotWrite(f"cannot write the decoded cache in {ctx.cache_root}: {photos} photos at {h}x{w} need up "
                          f"to {need:.0f} MiB, {free:.0f} MiB free there (free some space, point cache_dir= "
                          f"elsewhere, or cache=false)")


def detect_faces(cfg: Config, ctx: RunContext, training: TrainingTable, eval_table: pd.DataFrame
                 ) -> tuple[dict | None, dict | None]:
    """crop=face: boxes for every train and eval photo (pipeline/training_table.training_boxes), and how many
    photos had no face found (said, and in the report)."""
    eval_paths = eval_table["path"].tolist()
    boxes = training_boxes(cfg, training, ctx.cache_root, eval_paths)
    if boxes is None or cfg.crop != "face":  # (background=grabcut's outside boxes: no crops to count)
        return boxes, None
    train_paths, outside = training.rows["path"].tolist(), training.outside
    stats = {"train_photos": len(train_paths), "train_fallbacks": sum(boxes[p] is None for p in train_paths),
             "eval_photos": len(eval_paths), "eval_fallbacks": sum(boxes[p] is None for p in eval_paths),
             "outside_photos": len(outside.boxes) if outside else 0}
    print(f"face crops: no face found in {stats['train_fallbacks']} of {stats['train_photos']} training "
          f"(outside persons' shots included: {stats['outside_photos']}) and {stats['eval_fallbacks']} of "
          f"{stats['eval_photos']} eval photos (centre crop used for those)", flush=True)
    return boxes, stats


def train_folds(job: Job) -> list[dict]:
    """Every selected fold trained (or found finished): in parallel workers when asked, then here."""
    cfg, folds = job.cfg, list(job.cfg.folds)
    if cfg.parallel_folds > 1 and len(folds) > 1 and not dist.enabled():
        if cfg.cache:  # built once here; the workers read it instead of racing to build it each
            training_cache(cfg, job.ctx, job.table, job.boxes)
        train_in_parallel(job.run, job.ctx, folds, cfg.parallel_folds)
    # folds finished by parallel workers (or an earlier try) are skipped
    return [train_fold(cfg, job.ctx, job.table, fold, job.run, job.boxes, job.on_epoch) for fold in folds]


def post_hoc(job: Job, probs):
    """The opt-in steps after the fold ensemble, fitted on the run's OOF (at the eval's age edge):
    persons grouped (`group_eval`, src/infer/grouping.py), then the decision (`decision=bias`: fitted for
    macro-F1; `auto`: the same where it beats argmax nested; `decision=prior`: the competition's class prior put
    back; src/infer/decision.py).
    Returns (eval probabilities, what grouping reported, what the decision reported)."""
    cfg, run = job.cfg, job.run
    grouping = decision = None
    if cfg.group_eval or cfg.decision in ("bias", "auto"):  # the steps fitted on the OOF
        oof = run.load_oof(list(cfg.folds))
        oof_probs, y, oof_folds = oof_probs_as_eval(run, oof), oof["label"].to_numpy(), oof["fold"].to_numpy()
        if cfg.group_eval:
            oof_f, eval_f = run_features(run, oof["path"].tolist(), oof_folds, job.eval_table["path"].tolist(),
                                         photo_reading(job), TOP)
            (oof_probs,), (probs,), grouping = apply_grouping(oof, [oof_probs], oof_f, [probs], eval_f,
                                                              cfg.group_eval)
        if cfg.decision in ("bias", "auto"):
            biases, decision = decide_for_run(oof_probs, y, oof_folds, oof["person"].to_numpy(), cfg.decision == "auto")
            probs = probs if biases is None else adjusted_probs(probs, biases)
            chosen = "argmax of log p + the biases" if decision["applied"] else "plain argmax"
            print(f"{decision['why']}: the eval's classes are {chosen}", flush=True)
            prior = run.read_prior()
            if prior and prior["trained"] != prior["competition"]:  # outside persons, pseudo-labels: both shown
                decision.update(prior_shares(prior))
    if cfg.decision == "prior":  # fixed by the run's priors: no OOF needed
        decision = prior_report(run.read_prior())
        probs = adjusted_probs(probs, np.array(decision["biases"]))
    return probs, grouping, decision


def photo_reading(job: Job) -> PhotoReading:
    return PhotoReading(job.cfg, job.ctx.device, job.ctx.cache_root, job.boxes)


def finish(job: Job, results: list[dict]) -> dict:
    """The fold ensemble on eval -> submission.csv; report.md and metrics.json; the run's marker."""
    cfg, run, eval_table = job.cfg, job.run, job.eval_table
    ckpts = run.best_checkpoints(list(cfg.folds))
    age_edge, edge_report = fit_for_run(run, list(cfg.folds), cfg.age_boundary) if cfg.age_head == "ordinal" \
        else (None, None)
    probs = predict_photos(ckpts, eval_table["path"].tolist(), photo_reading(job), age_edge)
    probs, grouping, decision = post_hoc(job, probs)
    eval_metrics = write_submission(run, eval_table, probs)
    if eval_metrics:
        plot_confusion(eval_table["true"].to_numpy(), probs.argmax(1),
                       f"eval confusion ({len(eval_table)} images, {len(ckpts)}-fold ensemble)", run.confusion_eval)
    outcome = Outcome(folds=results, eval=eval_metrics, face_crops=job.face_stats, decision=decision, grouping=grouping,
                      pseudo=job.pseudo, extra=job.outside, age_edge=edge_report)
    metrics = build_report(run, cfg, list(cfg.folds), outcome)
    gallery = write_gallery(run)
    with open_tracker(cfg, run) as tracker:
        tracker.final({"oof": metrics["oof"], "eval": eval_metrics})
    metrics["wall_seconds"] = time.perf_counter() - job.started
    run.finish_run(metrics)

    print(f"\nout-of-fold macro-F1 {metrics['oof']['f1']:.4f} (acc {metrics['oof']['acc']:.4f})")
    if eval_metrics:
        print(f"eval macro-F1 {eval_metrics['f1']:.4f} (acc {eval_metrics['acc']:.4f}; mask "
              f"{eval_metrics['mask_f1']:.3f} gender {eval_metrics['gender_f1']:.3f} age {eval_metrics['age_f1']:.3f})")
    print(f"wrote {run.submission} and {run.report} in {metrics['wall_seconds']:.0f} s; the mistakes to look at: "
          f"{gallery}")
    return {"run_dir": run.path, **metrics}


def run_job(data: str | Path | None = None, recipe: str | None = None, overrides: list[str] | None = None,
            name: str | None = None, output: Path = OUTPUT) -> dict:
    """prepare -> train_folds -> finish (rank 0 alone finishes under torchrun)."""
    job = prepare(data, recipe, overrides, name, output)
    try:
        try:
            results = train_folds(job)
        except torch.OutOfMemoryError:
            raise out_of_memory_advice(job.cfg, job.run) from None
        except KeyboardInterrupt:
            raise Interrupted(where_interrupted(job.run, list(job.cfg.folds))) from None
        main_rank = dist.is_main()
        dist.shutdown()
        if not main_rank:
            return {"run_dir": job.run.path}
        return finish(job, results)
    finally:
        job.run.unlock()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training: says where the run stopped and how to continue it."""


def where_interrupted(run: RunDir, folds: list[int]) -> str:
    """'interrupted after fold k epoch e' from what the run folder holds (its last saved epoch)."""
    todo = [k for k in folds if not run.fold(k).finished()]
    if not todo:
        return f"interrupted after the last fold finished ({run}); run the same command to finish it"
    log = run.fold(todo[0]).log
    epochs = len(pd.read_csv(log)) if log.exists() else 0
    where = f"fold {todo[0]} epoch {epochs}" if epochs else f"fold {todo[0]} began (no epoch of it saved yet)"
    return f"interrupted after {where}; run the same command to continue ({run})"

