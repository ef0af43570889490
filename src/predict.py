"""Classify any photos with a run's fold ensemble; export the ensemble as one ONNX file.

    bash run.sh predict --run RUN [--out FILE] [--engine auto|torch|onnx] [--bench] PATH...
    bash run.sh export --run RUN

PATH may be image files or folders (searched recursively; hidden files skipped). Any size,
JPEG/PNG/..., EXIF-rotated, grey or RGBA: all become RGB. One CSV row per image: path, class,
mask / gender / age names, the 18 probabilities; a file that can't be read gets a row with
its error instead of stopping the batch. `--engine auto` uses RUN/ensemble.onnx with
onnxruntime when both are there, else PyTorch. `--bench` times both engines on the same
images and checks that their outputs agree.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import labels as L
from .cache import cache_root
from .ensemble import EnsembleGraph, FoldModel, Inference, ensemble_probs, load_fold_model
from .faces import face_boxes
from .labels import PROB_COLS
from .run_dir import OUTPUT, RunDir, find_run
from .config import user_path
from .runtime import CannotWrite, progress, writable_folder
from .transforms import Geometry, normaliser

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

    def __init__(self, models: list[FoldModel]):
        self.models = models

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch = [(torch.from_numpy(x), None)]
        how = Inference(torch.device("cpu"), self.models[0].cfg.tta, None, True)
        return ensemble_probs(self.models, lambda fm: (batch, None), how, show=False)


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
    graph = EnsembleGraph([fm.model for fm in models], models[0].cfg.tta).eval()
    h, w = prep.size
    example = torch.zeros(2, 3, h, w)
    out = run.onnx
    tmp = run.onnx_partial
    torch.onnx.export(graph, (example,), str(tmp), input_names=["image"], output_names=["probs"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                      verbose=False)
    tmp.replace(out)
    run.record_export()
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): input 'image' (batch, 3, {h}, {w}) normalised, "
          f"output 'probs' (batch, 18)")
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
            raise FileNotFoundError(f"--engine onnx: {why}; run `bash run.sh export --run {run.name}`")
        if onnx_path.exists():
            print(f"note: {why}; predicting with PyTorch", file=sys.stderr)
    return TorchEngine(models)


def predict(run: RunDir, paths: list[Path], engine_choice: str = "auto", batch_size: int = 32) -> pd.DataFrame:
    models, prep = load_ensemble(run)
    engine = pick_engine(run, models, engine_choice)
    planned = list(run.load_config().folds)
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
                m, g, a = (int(v) for v in L.decode(c))
                row.update({"class": c, "mask": L.MASK_NAMES[m], "gender": L.GENDER_NAMES[g], "age": L.AGE_NAMES[a],
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


def export_main(argv: list[str]) -> int:
    """bash run.sh export --run RUN"""
    ap = argparse.ArgumentParser(prog="run.sh export", allow_abbrev=False)
    ap.add_argument("--run", required=True)
    a = ap.parse_args(argv)
    try:
        export_onnx(find_run(a.run))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def write_rows(df: pd.DataFrame, out: Path | None, run: RunDir) -> None:
    """The CSV to `out` (never over a file) or standard output; beside `out`, which folds made the rows
    when the run is unfinished."""
    if not out:
        df.to_csv(sys.stdout, index=False, float_format="%.6f")
        return
    with open(out, "x") as f:  # "x": never over a file that appeared meanwhile
        df.to_csv(f, index=False, float_format="%.6f")
    print(f"wrote {len(df)} row(s) to {out}", file=sys.stderr)
    used, planned = run.finished_folds(), list(run.load_config().folds)
    if used != planned:  # an unfinished run: say which models made these rows, beside them
        side = out.with_name(out.name + ".folds.json")
        side.write_text(json.dumps({"run": str(run.path), "folds_used": used, "folds_planned": planned}))
        print(f"note: {side} records that {len(used)} of {len(planned)} folds made these rows", file=sys.stderr)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    ap = argparse.ArgumentParser(prog="run.sh predict", description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run name under output/ or a run folder")
    ap.add_argument("--out", type=user_path, help="CSV file to write (default: standard output)")
    ap.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--bench", action="store_true", help="time PyTorch vs onnxruntime on these images")
    ap.add_argument("paths", nargs="+", type=user_path)
    a = ap.parse_args(argv)
    if a.batch_size < 1:
        ap.error("--batch-size must be at least 1")
    if a.out and a.out.exists():  # said before any photo is read
        print(f"error: {a.out} exists; choose another --out (nothing is overwritten)", file=sys.stderr)
        return 2
    if a.out and not a.out.parent.is_dir():
        print(f"error: --out {a.out}: the folder {a.out.parent} does not exist", file=sys.stderr)
        return 2
    try:
        if a.out:
            writable_folder(a.out.parent, "--out")  # a read-only place fails now, not after the work
        run = find_run(a.run)
        skipped: dict = {}
        paths = collect_images(a.paths, skipped)
        if skipped:
            print("skipped in the folders: " + ", ".join(f"{n} {why}" for why, n in sorted(skipped.items())),
                  file=sys.stderr)
        if a.bench:
            r = compare_engines(run, paths, a.batch_size)
            print(f"{r['images']} images, batch {r['batch_size']}, {r['folds']} fold model(s), "
                  f"{torch.get_num_threads()} CPU threads:\n"
                  f"  PyTorch eager  {r['torch_img_s']:.1f} img/s\n  onnxruntime    {r['onnxruntime_img_s']:.1f} img/s\n"
                  f"  speed-up {r['speedup']:.2f}x, max |difference| {r['max_abs_diff']:.2e}")
            return 0
        df = predict(run, paths, a.engine, a.batch_size)
    except (FileNotFoundError, CannotWrite) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_rows(df, a.out, run)
    bad = int((df["error"] != "").sum())
    if bad:
        print(f"{bad} image(s) could not be read; see the 'error' column", file=sys.stderr)
    if bad == len(df):
        print("error: no image could be read" if len(df) else "error: no images found in the given paths",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
