"""Inference: softmax averaged over TTA views and fold models -> submission.csv."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import labels as L
from .config import completed
from .batches import CachedBatches, LoaderBatches
from .cache import load_or_build
from .metrics import summarize
from .models import build_model
from .runtime import pick_device, progress
from .transforms import DeviceAugment, Geometry, build_augment

PROB_COLS = [f"p{i}" for i in range(L.N_CLASSES)]


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The input views whose softmax is averaged: the image, and its mirror for tta=flip."""
    return [x, torch.flip(x, dims=[3])] if tta == "flip" else [x]


def amp_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype on CUDA (None: full precision, always on the CPU).

    amp_dtype=auto takes bf16 where the GPU has it (no loss scaling needed), else fp16."""
    if device.type != "cuda" or not cfg.amp:
        return None
    if cfg.amp_dtype == "fp16" or (cfg.amp_dtype == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is not None:
        return torch.autocast(device.type, dtype=dtype)
    return torch.autocast(device.type, enabled=False)


@torch.no_grad()
def predict_probs(model, batches, device, tta: str = "flip", amp: torch.dtype | None = None,
                  channels_last: bool = False, desc: str = "predict", augment=None) -> np.ndarray:
    """Softmax averaged over TTA views. `augment` finishes uint8 cache batches (None: already normalised)."""
    model.eval()
    out = []
    for x, _ in progress(batches, desc=desc, unit="batch"):
        x = x.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x, train=False)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            probs = [torch.softmax(model(v).float(), dim=1) for v in tta_views(x, tta)]
        out.append(torch.stack(probs).mean(0).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, L.N_CLASSES), np.float32)


def load_fold_model(ckpt_path: Path, device: torch.device):
    """Rebuild the architecture from the checkpoint's config, then load its weights."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    cfg = completed(ckpt["config"])  # an older run is preprocessed the way it was trained
    cfg["pretrained"] = "false"  # the checkpoint carries all weights
    model, _, _ = build_model(cfg)
    model.load_state_dict(ckpt["model"])
    return model.to(device), ckpt["mean"], ckpt["std"], cfg


def ensemble_probs(ckpts: list[Path], paths: list[str], cfg, device=None, boxes: dict | None = None) -> np.ndarray:
    """Mean over fold models of each model's TTA-averaged softmax."""
    device = device or pick_device(cfg.device)
    total = None
    pin = device.type == "cuda"
    array = load_or_build(paths, cfg, desc="caching eval images", boxes=boxes) if cfg.cache else None
    for ckpt in ckpts:
        model, mean, std, mcfg = load_fold_model(ckpt, device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if array is not None:
            batches = CachedBatches(array, np.arange(len(paths)), None, cfg.batch_size, False, pin)
            augment = DeviceAugment(mean, std, 0.0, device)
        else:
            batches = LoaderBatches(paths, None, Geometry(mcfg, boxes), build_augment(mcfg, mean, std, train=False),
                                    cfg.batch_size, False, cfg.num_workers, pin)
            augment = None
        p = predict_probs(model, batches, device, cfg.tta, amp_dtype(cfg, device), bool(cfg.channels_last),
                          desc=f"eval {ckpt.stem}", augment=augment)
        total = p if total is None else total + p
    return total / len(ckpts)


def write_submission(run_dir: Path, eval_table: pd.DataFrame, probs: np.ndarray) -> dict | None:
    """submission.csv in info.csv order, eval_probs.csv, and eval metrics when answers exist."""
    sub = pd.DataFrame({"ImageID": eval_table["ImageID"], "ans": probs.argmax(1)})
    sub.to_csv(run_dir / "submission.csv", index=False)
    prob_df = pd.DataFrame(probs, columns=PROB_COLS)
    prob_df.insert(0, "ImageID", eval_table["ImageID"].values)
    prob_df.to_csv(run_dir / "eval_probs.csv", index=False, float_format="%.6f")
    if "true" not in eval_table:
        return None
    metrics = summarize(eval_table["true"].to_numpy(), probs)
    (run_dir / "eval_metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
