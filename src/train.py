"""Train one fold: best/last checkpoints, per-epoch log, out-of-fold probabilities."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import labels as L
from .datasets import FaceDataset, reseed_worker
from .infer import PROB_COLS, autocast, predict_probs
from .losses import build_loss
from .metrics import macro_f1, summarize
from .models import build_model
from .runtime import atomic_save, atomic_write_text, pick_device, seed_everything
from .transforms import build_transform


def training_labels(table: pd.DataFrame, age_boundary: int) -> np.ndarray:
    """Labels the model is trained on: the seed recipe moves the old band's boundary (e.g. 55)."""
    return L.encode(table["mask"], table["gender"], L.age_band(table["age"].to_numpy(), age_boundary))


def epoch_seed(seed: int, fold: int, epoch: int) -> int:
    # a pure function of (seed, fold, epoch): an epoch replays the same way on every run
    return (seed * 1_000_003 + fold * 1_009 + epoch) % 2**31


def make_loader(ds, cfg, device, shuffle: bool, seed: int = 0) -> DataLoader:
    gen = torch.Generator()
    gen.manual_seed(seed)
    return DataLoader(ds, batch_size=cfg.batch_size, shuffle=shuffle, num_workers=cfg.num_workers,
                      pin_memory=device.type == "cuda", drop_last=False, generator=gen,
                      worker_init_fn=reseed_worker, persistent_workers=False)


def fold_paths(run_dir: Path, fold: int) -> dict:
    return {name: run_dir / f"fold{fold}_{name}" for name in
            ("best.pt", "last.pt", "log.csv", "oof.csv", "result.json")}


def train_fold(cfg, table: pd.DataFrame, fold: int, run_dir: Path) -> dict:
    """Train on every fold but `fold`, validate on `fold` (true age boundary), save artifacts."""
    device = pick_device(cfg.device)
    files = fold_paths(run_dir, fold)
    if files["result.json"].exists():
        print(f"fold {fold}: already finished in {run_dir}, skipping", flush=True)
        return json.loads(files["result.json"].read_text())
    seed_everything(cfg.seed + fold)
    model, mean, std = build_model(cfg)
    model.to(device)
    cl = device.type == "cuda" and cfg.channels_last
    if cl:
        model = model.to(memory_format=torch.channels_last)
    use_amp = device.type == "cuda" and cfg.amp

    tr = table[table["fold"] != fold].reset_index(drop=True)
    va = table[table["fold"] == fold].reset_index(drop=True)
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(f"fold {fold}: empty train ({len(tr)}) or validation ({len(va)}) split")
    y_train = training_labels(tr, cfg.age_boundary)
    y_val = va["label"].to_numpy()  # true boundary: what the competition scores

    train_tf = build_transform(cfg, mean, std, train=True)
    train_ds = FaceDataset(tr["path"], y_train, train_tf)
    val_ds = FaceDataset(va["path"], y_val, build_transform(cfg, mean, std, train=False))
    train_loader = make_loader(train_ds, cfg, device, shuffle=True)
    val_loader = make_loader(val_ds, cfg, device, shuffle=False)

    loss_fn = build_loss(cfg, y_train).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())

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
        train_loader.generator.manual_seed(s)
        train_tf.set_random_seed(s)  # used directly when num_workers=0
        torch.manual_seed(s)
        model.train()
        t0 = time.perf_counter()
        losses, preds, trues = [], [], []
        bar = tqdm(train_loader, desc=f"fold {fold} epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   leave=False, mininterval=1.0, disable=None)
        for x, y in bar:
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, use_amp):
                logits = model(x)
                loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
            preds.append(logits.argmax(1).cpu().numpy())
            trues.append(y.cpu().numpy())
            bar.set_postfix(loss=f"{np.mean(losses):.4f}",
                            f1=f"{macro_f1(np.concatenate(trues), np.concatenate(preds)):.3f}")
        bar.close()
        epoch_train_s = time.perf_counter() - t0
        train_images += len(train_ds)
        train_seconds += epoch_train_s

        probs = predict_probs(model, val_loader, device, cfg.tta, use_amp, cl, desc=f"fold {fold} val")
        val = summarize(y_val, probs)
        val_loss = float(-np.log(np.clip(probs[np.arange(len(y_val)), y_val], 1e-8, 1)).mean())
        row = dict(epoch=epoch + 1, train_loss=float(np.mean(losses)),
                   train_f1=macro_f1(np.concatenate(trues), np.concatenate(preds)),
                   val_nll=val_loss, val_f1=val["f1"], val_acc=val["acc"], mask_f1=val["mask_f1"],
                   gender_f1=val["gender_f1"], age_f1=val["age_f1"],
                   train_img_s=len(train_ds) / epoch_train_s, seconds=time.perf_counter() - t0)
        log_rows.append(row)
        pd.DataFrame(log_rows).to_csv(files["log.csv"], index=False, float_format="%.5f")
        state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "epoch": epoch + 1, "val_f1": val["f1"], "config": dict(cfg), "mean": mean, "std": std,
                 "fold": fold}
        improved = val["f1"] > best["f1"]
        if improved:
            best = {"f1": val["f1"], "epoch": epoch + 1, "probs": probs}
            atomic_save(state, files["best.pt"])
        # last.pt carries everything needed to continue exactly where this epoch ended
        state.update(optimizer=opt.state_dict(), scaler=scaler.state_dict(), log=log_rows, best=best,
                     train_images=train_images, train_seconds=train_seconds)
        atomic_save(state, files["last.pt"])
        print(f"fold {fold} epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f} "
              f"val F1 {val['f1']:.4f} acc {val['acc']:.4f} (mask {val['mask_f1']:.3f} "
              f"gender {val['gender_f1']:.3f} age {val['age_f1']:.3f}) "
              f"{row['train_img_s']:.1f} img/s{'  *best' if improved else ''}", flush=True)

    oof = va[["person", "shot", "path", "label"]].copy()
    oof.insert(0, "fold", fold)
    oof["pred"] = best["probs"].argmax(1)
    oof[PROB_COLS] = best["probs"]
    oof.to_csv(files["oof.csv"], index=False, float_format="%.6f")
    result = {"fold": fold, "best_epoch": best["epoch"], "best_f1": best["f1"],
              "train_img_s": train_images / max(train_seconds, 1e-9), "train_seconds": train_seconds}
    atomic_write_text(json.dumps(result, indent=2), files["result.json"])  # written last: the fold is done
    return result
