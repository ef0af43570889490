"""Train one fold: best/last checkpoints, per-epoch log, out-of-fold probabilities.

`train_fold` reads top to bottom; `FoldTrainer` holds what one optimisation step needs (model,
optimiser, loss scaler, mixed-precision dtype, memory layout) and `FoldProgress` what a resumed
fold must get back (epoch, log, best epoch, throughput counters)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
from timm.utils import ModelEmaV3

from ..core import classes
from ..core import distributed as dist
from ..core.classes import PROB_COLS
from ..core.files import atomic_write_text
from ..core.machine import RunContext, amp_dtype, autocast, loader_workers, peak_memory_gib, seed_everything
from ..core.metrics import macro_f1, summarize
from ..core.progress import progress
from ..core.run_dir import FoldFiles, RunDir
from ..core.tracker import Tracker, open_tracker
from ..data.batches import BatchPlan, CachedBatches, CachedPhotos, DecodedPhotos, LoaderBatches, balanced_weights
from ..data.cache import load_or_build
from ..data.transforms import DeviceNormalise, Geometry, HalfCutMix, PhotoAugment
from ..infer.ensemble import Inference, predict_probs
from ..model.backbones import build_model
from ..model.losses import build_loss, pack_targets
from .optimisation import lr_schedule, optimiser


def training_labels(table: pd.DataFrame, age_boundary: int) -> np.ndarray:
    """Labels the model is trained on: the seed recipe moves the old band's boundary (e.g. 55)."""
    return classes.encode(table["mask"], table["gender"], classes.age_band(table["age"].to_numpy(), age_boundary))


def training_targets(cfg, table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(the classes trained on, what the batches carry: those classes, or each class packed with the range
    the photo's age lies in (`age_lo`..`age_hi` where outside or pseudo-labelled rows give one, else the exact
    age) for age_head=ordinal, and for a band head when some range spans two bands (losses.BandRangeLoss))."""
    labels = training_labels(table, cfg.age_boundary)
    lo, hi = age_bound(table, "age_lo"), age_bound(table, "age_hi")
    if cfg.age_head != "ordinal" and not classes.across_bands(lo, hi, cfg.age_boundary).any():
        return labels, labels
    return labels, pack_targets(labels, lo, hi)


def age_bound(table: pd.DataFrame, column: str) -> np.ndarray:
    """One end of each row's age range: the column where a row has it, else the exact age."""
    ages = table["age"]
    return (table[column].fillna(ages) if column in table else ages).to_numpy().astype(np.int64)


def epoch_seed(seed: int, fold: int, epoch: int) -> int:
    # a pure function of (seed, fold, epoch): an epoch replays the same way on every run
    return (seed * 1_000_003 + fold * 1_009 + epoch) % 2**31


def split_masks(cfg, table: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows). `drop_ages` thins training only; validation stays whole."""
    in_val = (table["fold"] == fold).to_numpy()
    in_train = ~in_val
    if cfg.drop_ages:
        in_train &= ~table["age"].between(*cfg.drop_ages).to_numpy()
    return in_train, in_val


@dataclass(frozen=True)
class FoldRows:
    """One fold's rows of the training table (boolean masks) and their targets."""
    in_train: np.ndarray
    in_val: np.ndarray
    y_train: np.ndarray  # at the training-time age boundary
    y_val: np.ndarray    # the true labels: what the competition scores


def make_batches(cfg, ctx: RunContext, table, rows: FoldRows, mean, std, boxes=None):
    """(train batches, validation batches, the device's normalisation) for one fold (this rank's shard).

    Training photos come from the cache or their files alike, augmented per photo in the loader's workers
    (the recipe's `augment` list); validation batches are the cache's gather or the plain loader."""
    pin = ctx.device.type == "cuda"
    shard = dict(pin=pin, rank=dist.rank(), world=dist.world_size())
    # the classes, not the ages packed with them
    weights = balanced_weights(rows.y_train % classes.N_CLASSES) if cfg.sampler == "balanced" else None
    train_plan = BatchPlan(cfg.batch_size, True, **shard, weights=weights)
    val_plan = BatchPlan(cfg.batch_size, False, **shard)
    augment, workers = PhotoAugment.of(cfg.augment), loader_workers(cfg, ctx.device)
    if cfg.cache:
        array = dist.main_first(lambda: training_cache(cfg, ctx, table, boxes))
        photos = CachedPhotos(array, np.flatnonzero(rows.in_train))
        val = CachedBatches(array, np.flatnonzero(rows.in_val), rows.y_val, val_plan)
    else:
        geo = Geometry(cfg, boxes)
        photos = DecodedPhotos(table.loc[rows.in_train, "path"], geo)
        val = LoaderBatches(DecodedPhotos(table.loc[rows.in_val, "path"], geo), rows.y_val, val_plan, workers)
    train = LoaderBatches(photos, rows.y_train, train_plan, workers, augment)
    return train, val, DeviceNormalise(mean, std, ctx.device)


def training_cache(cfg, ctx: RunContext, table: pd.DataFrame, boxes: dict | None = None) -> np.ndarray:
    """The decoded cache of every training photo (all folds share it)."""
    return load_or_build(table["path"].tolist(), cfg, ctx.cache_root, desc="caching training images", boxes=boxes)


def gather_probs(batches, probs: np.ndarray, n: int) -> np.ndarray:
    """Every rank's shard of predictions put back in sample order (padding duplicates dropped)."""
    if not dist.enabled():
        return probs
    full = np.zeros((n, probs.shape[1]), dtype=probs.dtype)
    for order, part in dist.all_gather((batches.order(), probs)):
        full[order] = part
    return full


def gather_epoch(ep: dict) -> dict:
    """Training loss / labels / predictions summed over ranks."""
    if not dist.enabled():
        return ep
    parts = dist.all_gather((ep["loss"] * ep["images"], ep["images"], ep["trues"], ep["preds"]))
    images = sum(p[1] for p in parts)
    return {**ep, "loss": sum(p[0] for p in parts) / max(images, 1), "images": images,
            "trues": np.concatenate([p[2] for p in parts]), "preds": np.concatenate([p[3] for p in parts])}


@dataclass
class FoldProgress:
    """What a fold has done so far; last.pt carries it, so a resumed fold ends like an uninterrupted one."""
    epoch: int = 0  # epochs finished
    log: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"f1": -1.0, "epoch": -1, "probs": None, "curves": None})
    train_images: int = 0
    train_seconds: float = 0.0

    def add(self, row: dict, val_f1: float, probs: np.ndarray, curves: np.ndarray | None, images: int,
            seconds: float) -> bool:
        """Record a finished epoch; True when it is the best so far."""
        self.epoch = row["epoch"]
        self.log.append(row)
        self.train_images += images
        self.train_seconds += seconds
        if val_f1 > self.best["f1"]:
            self.best = {"f1": val_f1, "epoch": row["epoch"], "probs": probs, "curves": curves}
            return True
        return False


class FoldTrainer:
    """One fold's model (DDP-wrapped under torchrun), optimiser, loss scaler, AMP dtype and layout, and with
    ema= the moving average of its weights (what validates and predicts)."""

    def __init__(self, cfg, device: torch.device, train_labels: np.ndarray, ranged: bool = False):
        self.cfg, self.device = cfg, device
        model, self.mean, self.std = build_model(cfg)
        model.to(device)
        self.channels_last = bool(cfg.channels_last)  # NHWC: faster on GPUs and oneDNN CPUs alike
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.amp = amp_dtype(cfg, device)
        self.net = model
        if dist.enabled():
            self.net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.loss_fn = build_loss(cfg, train_labels, ranged).to(device)
        self.opt, self.scaler = optimiser(cfg, model, self.amp)
        self.mixer = HalfCutMix(cfg.cutmix)
        self.schedule, self.updates_per_epoch, self.update = None, 0, 0
        self.ema = ModelEmaV3(model, decay=cfg.ema, use_warmup=cfg.ema_warmup) if cfg.ema else None

    @property
    def predicting(self) -> torch.nn.Module:
        """The weights that validate and predict: the moving average with ema=, else the trained ones."""
        return self.ema.module if self.ema is not None else self.model

    def plan(self, updates_per_epoch: int) -> None:
        """The learning-rate schedule, once the optimiser steps an epoch holds are known (`lr_schedule`)."""
        self.schedule, self.updates_per_epoch = lr_schedule(self.cfg, self.opt, updates_per_epoch), updates_per_epoch

    def start_epoch(self, epoch: int, seed: int) -> None:
        """The epoch's random streams and where its learning rates start: functions of the epoch alone (the
        schedule's of its step count), so a resumed run replays it exactly."""
        self.mixer.seed(seed + 2)
        torch.manual_seed(seed)
        self.update = epoch * self.updates_per_epoch
        if self.schedule is not None and self.cfg.sched_step == "epoch":
            self.schedule.step(epoch)  # each group at its layer_decay share of the rate

    def lr(self) -> float:
        """The rate of the last step (the whole rate: layer_decay's groups train at shares of it)."""
        return max(group["lr"] for group in self.opt.param_groups)

    def train_epoch(self, batches, normalise, desc: str = "train", max_batches: int | None = None) -> dict:
        """One pass of optimisation: mean loss, labels, predictions, images, seconds (summed over ranks).
        `normalise` finishes uint8 batches on the device (None: they come normalised)."""
        return gather_epoch(self._run_epoch(batches, normalise, desc, max_batches))

    def _run_epoch(self, batches, normalise, desc: str, max_batches: int | None) -> dict:
        net, device, loss_fn = self.net, self.device, self.loss_fn
        net.train()
        t0 = time.perf_counter()
        loss_sum, preds, trues = torch.zeros((), device=device), [], []
        bar = progress(batches, desc=desc, unit="batch", total=min(len(batches), max_batches or len(batches)))
        for i, (x, y) in enumerate(bar):
            if max_batches is not None and i >= max_batches:
                break
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if normalise is not None:
                x = normalise(x)
            x, y, y_right, lam = self.mixer(x, y)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, self.amp):
                logits = net(x)
                loss = loss_fn(logits, y)
                if y_right is not None:
                    loss = lam * loss + (1 - lam) * loss_fn(logits, y_right)
            if self.schedule is not None and self.cfg.sched_step == "update":
                self.schedule.step_update(self.update)  # this step's rate (warm-up: from warmup_lr)
            self.update += 1
            self.opt.zero_grad(set_to_none=True)
            # a second-order optimiser (adahessian) needs the graph of the gradients, as timm's train.py gives it
            self.scaler.scale(loss).backward(create_graph=getattr(self.opt, "is_second_order", False))
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.ema is not None:
                # the ramp counts updates (the first one copies the weights); without it, ema= from the start
                self.ema.update(self.model, step=self.update if self.cfg.ema_warmup else None)
            # kept on the device: a .item() per step would stall a GPU
            loss_sum += loss.detach() * len(y)
            preds.append(logits.detach()[:, :classes.N_CLASSES].argmax(1))  # an ordinal head's age logits follow
            trues.append(y % classes.N_CLASSES)  # an ordinal target carries the age too
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum.item() / sum(len(t) for t in trues):.4f}",
                                f1=f"{macro_f1(torch.cat(trues).cpu(), torch.cat(preds).cpu()):.3f}")
        bar.close()
        trues, preds = torch.cat(trues).cpu().numpy(), torch.cat(preds).cpu().numpy()  # also waits for the GPU
        return {"loss": loss_sum.item() / max(len(trues), 1), "trues": trues, "preds": preds, "images": len(trues),
                "seconds": time.perf_counter() - t0}

    def validate(self, batches, normalise, n: int, desc: str = "val") -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities of the validation photos in their order, and for age_head=ordinal their
        P(age >= t)), every rank's shard gathered."""
        ordinal = self.cfg.age_head == "ordinal"
        how = Inference(self.device, self.cfg.tta, self.amp, self.channels_last)
        out = predict_probs(self.predicting, batches, how, desc=desc, normalise=normalise, curves=ordinal)
        probs, curves = out if ordinal else (out, None)
        return gather_probs(batches, probs, n), None if curves is None else gather_probs(batches, curves, n)

    def weights_state(self, fold: int, epoch: int, val_f1: float) -> dict:
        """What best.pt holds: the weights that predict (`predicting`) and what predicting with them needs."""
        return {"model": cpu_state(self.predicting),
                "epoch": epoch, "val_f1": val_f1, "config": self.cfg.stamped(), "mean": self.mean, "std": self.std,
                "fold": fold}

    def save(self, run: RunDir, files: FoldFiles, fold: int, prog: FoldProgress, val_f1: float,
             improved: bool) -> None:
        state = self.weights_state(fold, prog.epoch, val_f1)
        if improved:
            run.save_checkpoint(state, files.best)
        # last.pt carries everything needed to continue exactly where this epoch ended
        state.update(optimizer=self.opt.state_dict(), scaler=self.scaler.state_dict(), log=prog.log, best=prog.best,
                     train_images=prog.train_images, train_seconds=prog.train_seconds)
        if self.ema is not None:  # both: "model" the average that predicts, "trained" the weights that train on
            state["trained"] = cpu_state(self.model)
        run.save_checkpoint(state, files.last)

    def resume(self, path) -> FoldProgress:
        ck = RunDir.load_checkpoint(path)
        self.model.load_state_dict(ck["trained"] if self.ema is not None else ck["model"])
        if self.ema is not None:
            self.ema.module.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.scaler.load_state_dict(ck["scaler"])
        return FoldProgress(epoch=ck["epoch"], log=ck["log"], best=ck["best"], train_images=ck["train_images"],
                            train_seconds=ck["train_seconds"])


def cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def epoch_row(epoch: int, ep: dict, y_val: np.ndarray, probs: np.ndarray, seconds: float,
              lr: float) -> tuple[dict, dict]:
    """(the log row of an epoch, its validation summary)."""
    val = summarize(y_val, probs)
    val_nll = float(-np.log(np.clip(probs[np.arange(len(y_val)), y_val], 1e-8, 1)).mean())
    row = dict(epoch=epoch + 1, lr=lr, train_loss=ep["loss"], train_f1=macro_f1(ep["trues"], ep["preds"]),
               val_nll=val_nll, val_f1=val["f1"], val_acc=val["acc"], mask_f1=val["mask_f1"],
               gender_f1=val["gender_f1"], age_f1=val["age_f1"], train_img_s=ep["images"] / ep["seconds"],
               seconds=seconds)
    return row, val


def write_oof(files: FoldFiles, fold: int, va: pd.DataFrame, probs: np.ndarray, curves: np.ndarray | None) -> None:
    oof = va[["person", "shot", "path", "label"]].copy()
    oof.insert(0, "fold", fold)
    oof["pred"] = probs.argmax(1)
    oof[PROB_COLS] = probs
    if curves is not None:
        oof[classes.CURVE_COLS] = curves
    oof.to_csv(files.oof, index=False, float_format="%.6f")


def train_fold(cfg, ctx: RunContext, table: pd.DataFrame, fold: int, run: RunDir, boxes: dict | None = None,
               on_epoch: Callable[[int, int, float], None] | None = None) -> dict:
    """Train on every fold but `fold`, validate on `fold` (true age boundary), save its files; `on_epoch(fold,
    epoch, val_f1)` after each epoch is saved (a search's pruner may stop the run there: it resumes from it)."""
    files = run.fold(fold)
    if files.finished():
        print(f"fold {fold}: already finished in {run}, skipping", flush=True)
        return run.fold_result(fold)
    device = ctx.device
    seed_everything(cfg.seed + fold)  # same on every rank: identical initial weights
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # each fold's own peak

    table = table.reset_index(drop=True)
    in_train, in_val = split_masks(cfg, table, fold)
    va = table[in_val].reset_index(drop=True)
    if not in_train.any() or len(va) == 0:
        raise ValueError(f"fold {fold}: empty train ({in_train.sum()}) or validation ({len(va)}) split")
    labels, y_train = training_targets(cfg, table[in_train])
    y_val = va["label"].to_numpy()  # true boundary: what the competition scores

    trainer = FoldTrainer(cfg, device, labels, ranged=y_train is not labels)
    rows = FoldRows(in_train, in_val, y_train, y_val)
    train_batches, val_batches, normalise = make_batches(cfg, ctx, table, rows, trainer.mean, trainer.std, boxes)
    trainer.plan(len(train_batches))
    prog = FoldProgress()
    if files.last.exists():  # an interrupted run: continue after its last finished epoch
        prog = trainer.resume(files.last)
        print(f"fold {fold}: resuming after epoch {prog.epoch} from {files.last}", flush=True)
    with open_tracker(cfg, run) if dist.is_main() else Tracker() as tracker:
        for epoch in range(prog.epoch, cfg.epochs):
            s = epoch_seed(cfg.seed, fold, epoch)
            train_batches.seed(s)
            trainer.start_epoch(epoch, s)
            t_epoch = time.perf_counter()
            ep = trainer.train_epoch(train_batches, normalise, desc=f"fold {fold} epoch {epoch + 1}/{cfg.epochs}")
            probs, curves = trainer.validate(val_batches, normalise, len(y_val), desc=f"fold {fold} val")
            row, val = epoch_row(epoch, ep, y_val, probs, time.perf_counter() - t_epoch, trainer.lr())
            improved = prog.add(row, val["f1"], probs, curves, ep["images"], ep["seconds"])
            if not dist.is_main():
                continue  # every rank took the same decisions; rank 0 alone writes
            # whole or not at all: a Ctrl-C while it was written left a truncated log ("no epoch saved yet")
            atomic_write_text(pd.DataFrame(prog.log).to_csv(index=False, float_format="%.5f"), files.log)
            trainer.save(run, files, fold, prog, val["f1"], improved)
            print(f"fold {fold} epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} "
                  f"val F1 {val['f1']:.4f} acc {val['acc']:.4f} (mask {val['mask_f1']:.3f} "
                  f"gender {val['gender_f1']:.3f} age {val['age_f1']:.3f}) "
                  f"{row['train_img_s']:.1f} img/s{'  *best' if improved else ''}", flush=True)
            tracker.epoch(fold, row)
            if on_epoch is not None:
                on_epoch(fold, epoch, val["f1"])

    result = {"fold": fold, "best_epoch": prog.best["epoch"], "best_f1": prog.best["f1"],
              "train_img_s": prog.train_images / max(prog.train_seconds, 1e-9), "train_seconds": prog.train_seconds,
              **peak_memory_gib(device)}
    if dist.is_main():
        write_oof(files, fold, va, prog.best["probs"], prog.best.get("curves"))  # older last.pt: no curves
        run.finish_fold(fold, result)  # written last: the fold is done
    dist.barrier()
    return result
