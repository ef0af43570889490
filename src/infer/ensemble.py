"""The fold ensemble: the one inference path.

Every prediction of a run's models goes through `ensemble_probs`: the pipeline's eval photos
(`predict_photos`, from the decoded cache or the plain loader), `predict` on any photos (batches
it preprocessed itself) and the validation pass of training (`predict_probs`, one model). Each
fold model's softmax is averaged over its TTA views, then over the fold models.
`EnsembleGraph` is the same computation as one module, for the ONNX export.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn

from ..core import classes
from ..core.config import Config, saved_config
from ..core.machine import amp_dtype, autocast, loader_workers
from ..core.progress import progress
from ..core.run_dir import RunDir
from ..core.values import Pretrained
from ..data.batches import BatchPlan, CachedBatches, DecodedPhotos, LoaderBatches
from ..data.cache import load_or_build
from ..data.transforms import DeviceNormalise, Geometry
from ..model.backbones import build_model
from .decision import EPS as DECISION_EPS


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The input views whose softmax is averaged: the image, and its mirror for tta=flip."""
    return [x, torch.flip(x, dims=[3])] if tta == "flip" else [x]


@dataclass(frozen=True)
class Inference:
    """How models are run on a batch: where, which TTA views, in which precision and memory layout."""
    device: torch.device
    tta: str = "flip"
    amp: torch.dtype | None = None  # None: full precision
    channels_last: bool = False


def view_outputs(model, v: torch.Tensor, curves: bool) -> torch.Tensor:
    """The softmax of one view; with `curves`, followed by the ordinal head's P(age >= t)."""
    if not curves:
        return torch.softmax(model(v).float(), dim=1)
    return model.probabilities_and_curves(v)


@torch.no_grad()
def predict_probs(model, batches, how: Inference, desc: str | None = "predict", normalise=None,
                  curves: bool = False):
    """One model's softmax averaged over TTA views. `normalise` finishes uint8 batches
    (None: the batches are already normalised); desc=None: no progress bar. `curves` (age_head=ordinal):
    returns (probabilities, P(age >= t) per classes.AGE_THRESHOLDS, both averaged over the views)."""
    model.eval()
    out = []
    for x, _ in (batches if desc is None else progress(batches, desc=desc, unit="batch")):
        x = x.to(how.device, non_blocking=True)
        if normalise is not None:
            x = normalise(x)
        if how.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(how.device, how.amp):
            views = [view_outputs(model, v, curves) for v in tta_views(x, how.tta)]
        out.append(torch.stack(views).mean(0).cpu().numpy())
    width = classes.N_CLASSES + (len(classes.AGE_THRESHOLDS) if curves else 0)
    both = np.concatenate(out) if out else np.zeros((0, width), np.float32)
    return (both[:, :classes.N_CLASSES], both[:, classes.N_CLASSES:]) if curves else both


@dataclass
class FoldModel:
    """A trained fold model with what its inputs need: normalisation and the config it was trained with."""
    model: nn.Module
    mean: tuple
    std: tuple
    cfg: Config  # as trained (a run saved by an older version read as it was made: core/migrations.py)
    name: str


def load_fold_model(ckpt_path: Path, device: torch.device, channels_last: bool = False,
                    age_edge: int | None = None) -> FoldModel:
    """Rebuild the architecture from the checkpoint's config, then load its weights. `age_edge`: where an
    ordinal age head starts the >=60 band (the edge fitted on the run's OOF; None: its training edge)."""
    ckpt = RunDir.load_checkpoint(ckpt_path)
    cfg = saved_config(ckpt["config"])
    model, _, _ = build_model(cfg.replace(pretrained=Pretrained("none")))  # the checkpoint carries all weights
    model.load_state_dict(ckpt["model"])
    if age_edge is not None and hasattr(model, "edge"):
        model.edge = age_edge
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return FoldModel(model, ckpt["mean"], ckpt["std"], cfg, Path(ckpt_path).stem)


def fold_models(ckpts: list[Path], device: torch.device, channels_last: bool,
                age_edge: int | None = None) -> Iterator[FoldModel]:
    """One fold model at a time: a GPU need not hold them all."""
    for ck in ckpts:
        yield load_fold_model(ck, device, channels_last, age_edge)


def ensemble_probs(models: Iterable[FoldModel], batches_for: Callable, how: Inference, show: bool = True) -> np.ndarray:
    """Mean over fold models of each model's TTA-averaged softmax.

    `batches_for(fold_model)` gives (batches, normalisation) for that model's preprocessing."""
    total, n = None, 0
    for fm in models:
        batches, normalise = batches_for(fm)
        p = predict_probs(fm.model, batches, how, desc=f"eval {fm.name}" if show else None, normalise=normalise)
        total = p if total is None else total + p
        n += 1
    return total / n


@dataclass(frozen=True)
class PhotoReading:
    """How a run's photos are read for its models: the run's config (input size, crop, batch size,
    cache or loader), the device, the cache folder and the face boxes (crop=face)."""
    cfg: Config
    device: torch.device
    cache_root: Path
    boxes: dict | None = None


def photo_batches(paths: list[str], reading: PhotoReading) -> Callable:
    """`batches_for(fold_model)` over a list of photo paths: the decoded cache (built once) or the
    plain loader, each model's own normalisation on the device."""
    cfg, device = reading.cfg, reading.device
    plan, workers = BatchPlan(cfg.batch_size, False, pin=device.type == "cuda"), loader_workers(cfg, device)
    array = load_or_build(paths, cfg, reading.cache_root, desc="caching eval images",
                          boxes=reading.boxes) if cfg.cache else None

    def batches_for(fm: FoldModel):
        if array is not None:
            batches = CachedBatches(array, np.arange(len(paths)), None, plan)
        else:
            batches = LoaderBatches(DecodedPhotos(paths, Geometry(fm.cfg, reading.boxes)), None, plan, workers)
        return batches, DeviceNormalise(fm.mean, fm.std, device)

    return batches_for


def predict_photos(ckpts: list[Path], paths: list[str], reading: PhotoReading, age_edge: int | None = None
                   ) -> np.ndarray:
    """The ensemble's probabilities for a list of photo paths (the pipeline's eval set)."""
    cfg, device = reading.cfg, reading.device
    models = fold_models(ckpts, device, cfg.channels_last, age_edge)
    return ensemble_probs(models, photo_batches(paths, reading),
                          Inference(device, cfg.tta, amp_dtype(cfg, device), cfg.channels_last))


@torch.no_grad()
def photo_features(models: Iterable[FoldModel], batches_for: Callable, device: torch.device,
                   top: float = 1.0) -> np.ndarray:
    """Pooled penultimate features of each photo (of its top `top` fraction: above the mask, where
    a person's shots agree), L2-normalised per model and averaged over the models (what
    `grouping` compares photos by)."""
    total, n = None, 0
    for fm in models:
        net = fm.model.backbone if hasattr(fm.model, "backbone") else fm.model  # the multi-task head's backbone
        net.eval()
        batches, normalise = batches_for(fm)
        parts = []
        for x, _ in progress(batches, desc=f"features {fm.name}", unit="batch"):
            x = normalise(x.to(device))
            x = x[:, :, : max(8, round(x.shape[2] * top))]
            f = net.forward_head(net.forward_features(x), pre_logits=True).float()
            parts.append(torch.nn.functional.normalize(f, dim=1).cpu().numpy())
        feats = np.concatenate(parts)
        total = feats if total is None else total + feats
        n += 1
    return total / n


class EnsembleGraph(nn.Module):
    """`ensemble_probs` on one normalised batch as a single module (what the ONNX file holds)."""

    def __init__(self, models, tta: str, biases: list[float] | None = None):
        super().__init__()
        self.models = nn.ModuleList(models)
        self.tta = tta
        # decision=bias / prior: softmax(log p + b), as the run's eval (decision.adjusted_probs)
        self.register_buffer("biases", None if biases is None else torch.tensor(biases, dtype=torch.float32))

    def forward(self, x):
        per_model = [torch.stack([torch.softmax(m(v), dim=1) for v in tta_views(x, self.tta)]).mean(0)
                     for m in self.models]
        probs = torch.stack(per_model).mean(0)
        if self.biases is None:
            return probs
        return torch.softmax(torch.log(probs.clamp_min(DECISION_EPS)) + self.biases, dim=1)


def run_features(run: RunDir, oof_paths: list[str], oof_folds: np.ndarray, eval_paths: list[str],
                 reading: PhotoReading, top: float) -> tuple[np.ndarray, np.ndarray]:
    """(features of each OOF photo from the model of its own fold, features of each eval photo
    averaged over the fold models): what grouping needs, without a model that trained on the photo."""
    device = reading.device
    eval_batches = photo_batches(eval_paths, reading)  # decoded once for every fold
    oof_feats, eval_feats = None, []
    folds = [int(k) for k in np.unique(oof_folds)]
    for k, checkpoint in zip(folds, run.best_checkpoints(folds)):  # a missing checkpoint named, not a traceback
        fm = load_fold_model(checkpoint, device)
        sel = np.flatnonzero(oof_folds == k)
        f = photo_features([fm], photo_batches([oof_paths[i] for i in sel], reading), device, top)
        if oof_feats is None:
            oof_feats = np.zeros((len(oof_paths), f.shape[1]), np.float32)
        oof_feats[sel] = f
        eval_feats.append(photo_features([fm], eval_batches, device, top))
    return oof_feats, np.mean(eval_feats, axis=0)
