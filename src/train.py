"""Train one fold: best/last checkpoints, per-epoch log, out-of-fold probabilities."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import distributed as dist
from . import labels as L
from .batches import CachedBatches, LoaderBatches, balanced_weights
from .cache import load_or_build
from .infer import PROB_COLS, amp_dtype, autocast, predict_probs
from .config import drop_ages
from .losses import build_loss
from .metrics import macro_f1, summarize
from .models import build_model
from .runtime import atomic_save, atomic_write_text, peak_memory_gib, pick_device, progress, seed_everything
from .transforms import DeviceAugment, Geometry, build_augment


def training_labels(table: pd.DataFrame, age_boundary: int) -> np.ndarray:
    """Labels the model is trained on: the seed recipe moves the old band's boundary (e.g. 55)."""
    return L.encode(table["mask"], table["gender"], L.age_band(table["age"].to_numpy(), age_boundary))


def epoch_lr(cfg, epoch: int) -> float:
    if cfg.scheduler == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.lr


def epoch_seed(seed: int, fold: int, epoch: int) -> int:
    # a pure function of (seed, fold, epoch): an epoch replays the same way on every run
    return (seed * 1_000_003 + fold * 1_009 + epoch) % 2**31


def split_masks(cfg, table: pd.DataFrame, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows). `drop_ages` thins training only; validation stays whole."""
    in_val = (table["fold"] == fold).to_numpy()
    in_train = ~in_val
    ages = drop_ages(cfg)
    if ages:
        in_train &= ~table["age"].between(*ages).to_numpy()
    return in_train, in_val


def make_batches(cfg, table, in_train, in_val, y_train, y_val, mean, std, device, boxes=None):
    """(train batches, validation batches, device augment or None) for one fold (this rank's shard)."""
    pin = device.type == "cuda"
    shard = dict(rank=dist.rank(), world=dist.world_size())
    weights = balanced_weights(y_train) if cfg.sampler == "balanced" else None
    if cfg.cache:
        array = dist.main_first(lambda: training_cache(cfg, table, boxes))
        train = CachedBatches(array, np.flatnonzero(in_train), y_train, cfg.batch_size, True, pin, **shard,
                              weights=weights)
        val = CachedBatches(array, np.flatnonzero(in_val), y_val, cfg.batch_size, False, pin, **shard)
        return train, val, DeviceAugment.from_config(cfg, mean, std, device)
    tr, va = table[in_train], table[in_val]
    geo = Geometry(cfg, boxes)
    train = LoaderBatches(tr["path"], y_train, geo, build_augment(cfg, mean, std, train=True), cfg.batch_size,
                          True, cfg.num_workers, pin, **shard, weights=weights)
    val = LoaderBatches(va["path"], y_val, geo, build_augment(cfg, mean, std, train=False), cfg.batch_size,
                        False, cfg.num_workers, pin, **shard)
    return train, val, None


def training_cache(cfg, table: pd.DataFrame, boxes: dict | None = None) -> np.ndarray:
    """The decoded cache of every training photo (all folds share it)."""
    return load_or_build(table["path"].tolist(), cfg, desc="caching training images", boxes=boxes)


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


def model_on_device(cfg, device):
    """(model, mean, std, channels_last, amp): NHWC (faster on GPUs and oneDNN CPUs alike), and the
    mixed-precision dtype (CUDA only; None = full precision)."""
    model, mean, std = build_model(cfg)
    model.to(device)
    cl = bool(cfg.channels_last)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    return model, mean, std, cl, amp_dtype(cfg, device)


def optimiser(cfg, model, amp: torch.dtype | None):
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # bf16 needs no loss scaling; fp16 does (its small gradients would underflow)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    return opt, scaler


class HalfCutMix:
    """With probability p a batch becomes left half of each face + right half of another's.

    Each image then carries half of each face, so the loss is the mean of the losses against
    both labels (lambda = 0.5, the area share).
    """

    def __init__(self, p: float):
        self.p = p
        self.generator = torch.Generator()

    def seed(self, s: int) -> None:
        self.generator.manual_seed(s)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        """(x, y_left, y_right, lam); y_right is None when the batch is left as it is."""
        if self.p <= 0 or torch.rand(1, generator=self.generator).item() >= self.p:
            return x, y, None, 1.0
        perm = torch.randperm(x.shape[0], generator=self.generator).to(x.device)
        half = x.shape[3] // 2
        mixed = torch.cat([x[..., :half], x[perm][..., half:]], dim=3)
        return mixed, y, y[perm], half / x.shape[3]


def run_epoch(model, batches, loss_fn, opt, scaler, device, augment, channels_last: bool, amp: torch.dtype | None,
              desc: str = "train", max_batches: int | None = None, mixer: HalfCutMix | None = None) -> dict:
    """One pass of optimisation over `batches`: mean loss, labels, predictions, images, seconds."""
    model.train()
    t0 = time.perf_counter()
    loss_sum, preds, trues = torch.zeros((), device=device), [], []
    bar = progress(batches, desc=desc, unit="batch", total=min(len(batches), max_batches or len(batches)))
    for i, (x, y) in enumerate(bar):
        if max_batches is not None and i >= max_batches:
            break
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x, train=True)
        y_right, lam = None, 1.0
        if mixer is not None:
            x, y, y_right, lam = mixer(x, y)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = model(x)
            loss = loss_fn(logits, y)
            if y_right is not None:
                loss = lam * loss + (1 - lam) * loss_fn(logits, y_right)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        # kept on the device: a .item() per step would stall a GPU
        loss_sum += loss.detach() * len(y)
        preds.append(logits.detach().argmax(1))
        trues.append(y)
        if i % 20 == 0:
            bar.set_postfix(loss=f"{loss_sum.item() / sum(len(t) for t in trues):.4f}",
                            f1=f"{macro_f1(torch.cat(trues).cpu(), torch.cat(preds).cpu()):.3f}")
    bar.close()
    trues, preds = torch.cat(trues).cpu().numpy(), torch.cat(preds).cpu().numpy()  # also waits for the GPU
    loss = loss_sum.item() / max(len(trues), 1)
    return {"loss": loss, "trues": trues, "preds": preds, "images": len(trues),
            "seconds": time.perf_counter() - t0}


def fold_paths(run_dir: Path, fold: int) -> dict:
    return {name: run_dir / f"fold{fold}_{name}" for name in
            ("best.pt", "last.pt", "log.csv", "oof.csv", "result.json")}


def train_fold(cfg, table: pd.DataFrame, fold: int, run_dir: Path, boxes: dict | None = None) -> dict:
    """Train on every fold but `fold`, validate on `fold` (true age boundary), save artifacts."""
    device = pick_device(cfg.device)
    files = fold_paths(run_dir, fold)
    if files["result.json"].exists():
        print(f"fold {fold}: already finished in {run_dir}, skipping", flush=True)
        return json.loads(files["result.json"].read_text())
    seed_everything(cfg.seed + fold)  # same on every rank: identical initial weights
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # each fold's own peak
    model, mean, std, cl, amp = model_on_device(cfg, device)
    net = model
    if dist.enabled():
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    table = table.reset_index(drop=True)
    in_train, in_val = split_masks(cfg, table, fold)
    tr = table[in_train]
    va = table[in_val].reset_index(drop=True)
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(f"fold {fold}: empty train ({len(tr)}) or validation ({len(va)}) split")
    y_train = training_labels(tr, cfg.age_boundary)
    y_val = va["label"].to_numpy()  # true boundary: what the competition scores

    train_batches, val_batches, augment = make_batches(cfg, table, in_train, in_val, y_train, y_val, mean, std,
                                                       device, boxes)
    mixer = HalfCutMix(cfg.cutmix)

    loss_fn = build_loss(cfg, y_train).to(device)
    opt, scaler = optimiser(cfg, model, amp)

    log_rows, best = [], {"f1": -1.0, "epoch": -1, "probs": None}
    train_images, train_seconds, start = 0, 0.0, 0
    if files["last.pt"].exists():  # an interrupted run: continue after its last finished epoch
        ck = torch.load(files["last.pt"], map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        log_rows, best = ck["log"], ck["best"]
        train_images, train_seconds, start = ck["train_images"], ck["train_seconds"], ck["epoch"]
        print(f"fold {fold}: resuming after epoch {start} from {files['last.pt']}", flush=True)
    for epoch in range(start, cfg.epochs):
        s = epoch_seed(cfg.seed, fold, epoch)
        train_batches.seed(s)
        if augment is not None:
            augment.seed(s + 1)
        mixer.seed(s + 2)
        torch.manual_seed(s)
        for group in opt.param_groups:  # a function of the epoch alone, so a resumed run gets the same
            group["lr"] = epoch_lr(cfg, epoch)
        t_epoch = time.perf_counter()
        ep = gather_epoch(run_epoch(net, train_batches, loss_fn, opt, scaler, device, augment, cl, amp,
                                    desc=f"fold {fold} epoch {epoch + 1}/{cfg.epochs}", mixer=mixer))
        n_train, epoch_train_s = ep["images"], ep["seconds"]
        train_images += n_train
        train_seconds += epoch_train_s

        probs = predict_probs(model, val_batches, device, cfg.tta, amp, cl, desc=f"fold {fold} val",
                              augment=augment)
        probs = gather_probs(val_batches, probs, len(y_val))
        val = summarize(y_val, probs)
        val_loss = float(-np.log(np.clip(probs[np.arange(len(y_val)), y_val], 1e-8, 1)).mean())
        row = dict(epoch=epoch + 1, train_loss=ep["loss"], train_f1=macro_f1(ep["trues"], ep["preds"]),
                   val_nll=val_loss, val_f1=val["f1"], val_acc=val["acc"], mask_f1=val["mask_f1"],
                   gender_f1=val["gender_f1"], age_f1=val["age_f1"],
                   train_img_s=n_train / epoch_train_s, seconds=time.perf_counter() - t_epoch)
        log_rows.append(row)
        improved = val["f1"] > best["f1"]
        if improved:
            best = {"f1": val["f1"], "epoch": epoch + 1, "probs": probs}
        if not dist.is_main():
            continue  # every rank took the same decisions; rank 0 alone writes
        pd.DataFrame(log_rows).to_csv(files["log.csv"], index=False, float_format="%.5f")
        state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "epoch": epoch + 1, "val_f1": val["f1"], "config": dict(cfg), "mean": mean, "std": std,
                 "fold": fold}
        if improved:
            atomic_save(state, files["best.pt"])
        # last.pt carries everything needed to continue exactly where this epoch ended
        state.update(optimizer=opt.state_dict(), scaler=scaler.state_dict(), log=log_rows, best=best,
                     train_images=train_images, train_seconds=train_seconds)
        atomic_save(state, files["last.pt"])
        print(f"fold {fold} epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} "
              f"val F1 {val['f1']:.4f} acc {val['acc']:.4f} (mask {val['mask_f1']:.3f} "
              f"gender {val['gender_f1']:.3f} age {val['age_f1']:.3f}) "
              f"{row['train_img_s']:.1f} img/s{'  *best' if improved else ''}", flush=True)

    result = {"fold": fold, "best_epoch": best["epoch"], "best_f1": best["f1"],
              "train_img_s": train_images / max(train_seconds, 1e-9), "train_seconds": train_seconds,
              **peak_memory_gib(device)}
    if not dist.is_main():
        dist.barrier()
        return result
    oof = va[["person", "shot", "path", "label"]].copy()
    oof.insert(0, "fold", fold)
    oof["pred"] = best["probs"].argmax(1)
    oof[PROB_COLS] = best["probs"]
    oof.to_csv(files["oof.csv"], index=False, float_format="%.6f")
    atomic_write_text(json.dumps(result, indent=2), files["result.json"])  # written last: the fold is done
    dist.barrier()
    return result
