"""Detect the faces of a dataset ahead of training (crop=face caches them anyway; see src/data/faces.py).

    python -m src.stages.faces --data DIR --cache DIR [--threads N]
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..data.faces import box_cache_path, face_boxes, fallback_count
from ..data.tables import load_eval, load_train
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("python -m src.stages.faces", __doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache", required=True, help="cache folder (a run's cache_dir)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: find_faces(a.data, Path(a.cache), a.threads))


def find_faces(data: str, cache: Path, threads: int) -> None:
    torch.set_num_threads(threads)
    paths = [*load_train(data, check_pixels=False)["path"], *load_eval(data, check_pixels=False)["path"]]
    boxes = face_boxes(paths, cache)
    print(f"{len(paths)} photos, no face found in {fallback_count(boxes)}; boxes in {box_cache_path(cache)}")


if __name__ == "__main__":
    sys.exit(main())
