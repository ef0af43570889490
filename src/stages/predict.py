"""Classify any photos with a run's fold ensemble.

    bash run.sh predict --run RUN [--out FILE] [--engine auto|torch|onnx] [--bench] PATH...

PATH may be image files or folders (searched recursively; hidden files skipped). Any size,
JPEG/PNG/..., EXIF-rotated, grey or RGBA: all become RGB. One CSV row per image: path, class,
mask / gender / age names, the 18 probabilities; a file that can't be read gets a row with
its error instead of stopping the batch. `--engine auto` uses RUN/ensemble.onnx with
onnxruntime when both are there, else PyTorch. `--bench` times both engines on the same
images and checks that their outputs agree.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import torch

from ..core.errors import Exists, NotFound, UserError
from ..core.files import writable_folder
from ..core.paths import user_path
from ..core.run_dir import RunDir, find_run
from ..infer.predict import collect_images, compare_engines, predict
from . import parser, run_stage


def write_rows(df: pd.DataFrame, out: Path | None, run: RunDir) -> None:
    """The CSV to `out` (never over a file) or standard output; beside `out`, which folds made the rows
    when the run is unfinished."""
    if not out:
        df.to_csv(sys.stdout, index=False, float_format="%.6f")
        return
    with open(out, "x") as f:  # "x": never over a file that appeared meanwhile
        df.to_csv(f, index=False, float_format="%.6f")
    print(f"wrote {len(df)} row(s) to {out}", file=sys.stderr)
    used, planned = run.finished_folds(), run.planned_folds()
    if used != planned:  # an unfinished run: say which models made these rows, beside them
        side = out.with_name(out.name + ".folds.json")
        side.write_text(json.dumps({"run": str(run.path), "folds_used": used, "folds_planned": planned}))
        print(f"note: {side} records that {len(used)} of {len(planned)} folds made these rows", file=sys.stderr)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = parser("run.sh predict", __doc__)
    ap.add_argument("--run", required=True, help="run name under output/ or a run folder")
    ap.add_argument("--out", type=user_path, help="CSV file to write (default: standard output)")
    ap.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--bench", action="store_true", help="time PyTorch vs onnxruntime on these images")
    ap.add_argument("paths", nargs="+", type=user_path)
    a = ap.parse_args(argv)
    if a.batch_size < 1:
        ap.error("--batch-size must be at least 1")
    return run_stage(lambda: predict_stage(a))


def predict_stage(a) -> None:
    if a.out and a.out.exists():  # said before any photo is read
        raise Exists(f"{a.out} exists; choose another --out (nothing is overwritten)")
    if a.out and not a.out.parent.is_dir():
        raise NotFound(f"--out {a.out}: the folder {a.out.parent} does not exist")
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
        return
    df = predict(run, paths, a.engine, a.batch_size)
    write_rows(df, a.out, run)
    bad = int((df["error"] != "").sum())
    if bad:
        print(f"{bad} image(s) could not be read; see the 'error' column", file=sys.stderr)
    if bad == len(df):
        raise UserError("no image could be read" if len(df) else "no images found in the given paths")


if __name__ == "__main__":
    sys.exit(main())
