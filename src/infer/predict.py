"""Classify any photos with a run's fold ensemble; export the ensemble as one ONNX file.

The command and its manual: src/stages/predict.py (`bash run.sh predict --help`).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..core import classes
from ..core.classes import PROB_COLS
from ..core.errors import NotFound
from ..core.progress import progress
from ..core.run_dir import OUTPUT, RunDir
from ..data.background import check_background
from ..data.cache import cache_root
from ..data.faces import face_boxes
from ..data.transforms import Geometry, normaliser
from .decision import adjusted_probs
from .ensemble import EnsembleGraph, FoldModel, Inference, ensemble_probs, load_fold_model

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class Preprocess:
    """paths -> (float batch of the readable ones, per-path error or None), as the run trained."""

    def __init__(self, fm: FoldModel):
        self.cfg = fm.cfg
        self.size = fm.cfg.img_size
        self.augment = normaliser(fm.mean, fm.std)

    def __call__(self, paths: list[Path]) -> tuple[np.ndarray, list[str | None]]:
        boxes = None
        if self.cfg.crop == "face":  # new photos are detected (and cached) like the training ones
            boxes = face_boxes([str(p) for p in paths], cache_root(self.cfg.cache_dir, OUTPUT))
        geometry = Geometry(self.cfg, boxes)
        arrays, errors = [], []
        for p in paths:
            try:
                arrays.append(self.augment(image=geometry(str(p)))["image"].transpose(2, 0, 1))
                errors.append(None)
            except FileNotFoundError:
                errors.append("file not found")
            except Exception as e:  # keep going: one bad file must not stop the batch
                errors.append(f"{type(e).__name__}: {e}")
        x = np.stack(arrays).astype(np.float32) if arrays else np.zeros((0, 3, *self.size), np.float32)
        return x, errors


def load_ensemble(run: RunDir) -> tuple[list[FoldModel], Preprocess]:
    """(every finished fold's model on the CPU, channels-last: oneDNN's fast layout; the preprocessing)."""
    edge = run.fitted_age_edge()  # age_head=ordinal: the edge the run's eval used
    models = [load_fold_model(ck, torch.device("cpu"), True, edge) for ck in run.best_checkpoints()]
    check_background(models[0].cfg.background)  # the run's background removal runs here too, or nothing does
    return models, Preprocess(models[0])


def collect_images(paths: list[str], skipped: dict | None = None) -> list[Path]:
    """The photos named, and those found in the folders named (searched recursively; hidden files left
    out). What a folder scan passes over is counted into `skipped` (reason -> count)."""
    out = []
    for raw in paths:
        p = Path(raw)
        if not p.is_dir():
            out.append(p)  # named explicitly: tried whatever it is, so a bad file gets an error row
            continue
        for f in sorted(p.rglob("*")):
            if any(part.startswith(".") for part in f.relative_to(p).parts) or f.is_dir():
                continue
            if f.is_symlink() and not f.exists():
                reason = "broken link"
            elif f.suffix.lower() not in IMAGE_SUFFIXES:
                reason = f"{f.suffix.lower() or 'no suffix'} (not one of {' '.join(sorted(IMAGE_SUFFIXES))})"
            else:
                out.append(f)
                continue
            if skipped is not None:
                skipped[reason] = skipped.get(reason, 0) + 1
    return out


class TorchEngine:
    """The pipeline's own inference path (`ensemble.ensemble_probs`) on preprocessed batches."""
    name = "torch"

    def __init__(self, models: list[FoldModel], biases: list[float] | None = None):
        self.models, self.biases = models, biases

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch = [(torch.from_numpy(x), None)]
        how = Inference(torch.device("cpu"), self.models[0].cfg.tta, None, True)
        probs = ensemble_probs(self.models, lambda fm: (batch, None), how, show=False)
        return probs if self.biases is None else adjusted_probs(probs, np.array(self.biases))


class OnnxEngine:
    name = "onnxruntime"

    def __init__(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]


def export_onnx(run: RunDir, loaded: tuple[list[FoldModel], Preprocess] | None = None) -> Path:
    """RUN/ensemble.onnx (+ its record); `loaded`: the run's models when the caller has them already."""
    models, prep = loaded or load_ensemble(run)
    graph = EnsembleGraph([fm.model for fm in models], models[0].cfg.tta, run.decision_biases()).eval()
    h, w = prep.size
    example = torch.zeros(2, 3, h, w)
    out = run.onnx
    tmp = run.onnx_partial
    torch.onnx.export(graph, (example,), str(tmp), input_names=["image"], output_names=["probs"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                      verbose=False)
    tmp.replace(out)
    run.record_export()
    cfg = models[0].cfg
    removed = "" if cfg.background == "keep" else (f"; the photos' background removed first (background="
                                                   f"{cfg.background}, background_fill={cfg.background_fill}: the "
                                                   f"network does not do it, `bash run.sh predict` does)")
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): input 'image' (batch, 3, {h}, {w}) normalised, "
          f"output 'probs' (batch, 18){removed}")
    return out


def pick_engine(run: RunDir, models: list[FoldModel], choice: str):
    """onnxruntime when asked (or for auto) and the export holds exactly the run's finished folds."""
    onnx_path = run.onnx
    if choice in ("auto", "onnx"):
        try:
            import onnxruntime  # noqa: F401
            have_ort = True
        except ImportError:
            have_ort = False
        current = run.export_is_current()
        if current and have_ort:
            return OnnxEngine(onnx_path)
        why = (f"{onnx_path} is missing" if not onnx_path.exists() else
               f"{onnx_path} is stale: it does not hold the run's {len(models)} finished fold model(s) as they are "
               f"now" if not current else "the onnxruntime package is missing")
        if choice == "onnx":
            raise NotFound(f"--engine onnx: {why}; run `bash run.sh export --run {run.name}`")
        if onnx_path.exists():
            print(f"note: {why}; predicting with PyTorch", file=sys.stderr)
    return TorchEngine(models, run.decision_biases())


def predict(run: RunDir, paths: list[Path], engine_choice: str = "auto", batch_size: int = 32) -> pd.DataFrame:
    models, prep = load_ensemble(run)
    engine = pick_engine(run, models, engine_choice)
    planned = run.planned_folds()
    unfinished = f" (only {len(models)} of the run's {len(planned)} folds are finished: folds " \
                 f"{run.finished_folds()})" if len(models) < len(planned) else ""
    print(f"predicting {len(paths)} image(s) with {len(models)} of {len(planned)} fold model(s) via "
          f"{engine.name}{unfinished}", file=sys.stderr)
    rows = []
    starts = range(0, len(paths), batch_size)
    for start in progress(starts, desc="predict", unit="batch", total=len(starts)):
        chunk = paths[start:start + batch_size]
        x, errors = prep(chunk)
        probs = iter(engine(x)) if len(x) else iter(())
        for p, err in zip(chunk, errors):
            row = {"path": str(p)}
            if err is None:
                pr = next(probs)
                c = int(pr.argmax())
                m, g, a = (int(v) for v in classes.decode(c))
                row.update({"class": c, "mask": classes.MASK_NAMES[m], "gender": classes.GENDER_NAMES[g],
                            "age": classes.AGE_NAMES[a],
                            **{k: float(v) for k, v in zip(PROB_COLS, pr)}, "error": ""})
            else:
                row.update({"class": "", "mask": "", "gender": "", "age": "", "error": err})
            rows.append(row)
    columns = ["path", "class", "mask", "gender", "age", *PROB_COLS, "error"]
    return pd.DataFrame(rows, columns=columns)


def compare_engines(run: RunDir, paths: list[Path], batch_size: int, repeats: int = 3) -> dict:
    """images/s of PyTorch eager vs onnxruntime on the same preprocessed batches, and how far apart
    their outputs are."""
    models, prep = load_ensemble(run)
    if not run.export_is_current():
        export_onnx(run, (models, prep))
    x, errors = prep(paths)
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    engines = [TorchEngine(models), OnnxEngine(run.onnx)]
    result, outputs = {"images": len(x), "batch_size": batch_size, "folds": len(models)}, {}
    for eng in engines:
        eng(batches[0])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = np.concatenate([eng(b) for b in batches])
            best = min(best, time.perf_counter() - t0)
        outputs[eng.name] = out
        result[f"{eng.name}_img_s"] = len(x) / best
    result["speedup"] = result["onnxruntime_img_s"] / result["torch_img_s"]
    result["max_abs_diff"] = float(np.abs(outputs["torch"] - outputs["onnxruntime"]).max())
    return result
