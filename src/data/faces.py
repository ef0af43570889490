"""Face crops: detect once with MTCNN, cache boxes by file content, crop with a margin.

`crop=face` replaces the centre crop by a box around the detected face, grown by `face_margin`
(a fraction of the face's size on every side) and widened or heightened to the network's
aspect ratio. Photos where no face is found fall back to the centre crop, and are counted.
The same crop is used for training, validation, eval and `predict`.

Boxes are cached in <cache_dir>/faces.csv keyed by the SHA-1 of the file's bytes, so a rerun,
another run or a renamed copy of a photo never runs the detector again.
MTCNN's weights ship inside the facenet-pytorch wheel (installed by run.sh with --no-deps).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..core.files import atomic_write_text
from ..core.progress import progress
from .tables import read_image

DETECT_SIDE = 256  # detection runs on a copy whose longer side is this: faster, the boxes scaled back
MIN_PROB = 0.90
BOX_COLUMNS = ["sha1", "x1", "y1", "x2", "y2", "prob"]


def file_sha1(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


class FaceDetector:
    """MTCNN (on the GPU where there is one, else the CPU's cores), run on a copy whose longer side is at most
    `side`; returns the most confident face box in original pixel coordinates (crop=face; `most_confident`
    also serves extra=)."""

    def __init__(self, side: int = DETECT_SIDE, needed_for: str = "crop=face"):
        try:
            from facenet_pytorch import MTCNN
        except ImportError as e:
            raise RuntimeError(f"{needed_for} needs facenet-pytorch 2.6.0 (bash run.sh installs it with --no-deps): "
                               f"{e}") from None
        self.mtcnn = MTCNN(keep_all=True, device="cuda" if torch.cuda.is_available() else "cpu", post_process=False)
        self.side = side

    def most_confident(self, img: np.ndarray, landmarks: bool = False) -> tuple | None:
        """(box x1,y1,x2,y2, probability, five landmarks (5, 2) or None) of the most confident face, in the
        photo's pixels; None when MTCNN finds none."""
        h, w = img.shape[:2]
        scale = min(1.0, self.side / max(h, w))
        small = Image.fromarray(img).resize((max(1, round(w * scale)), max(1, round(h * scale))))
        found = self.mtcnn.detect(small, landmarks=landmarks)
        if found[0] is None:
            return None
        probs = np.asarray(found[1], dtype=float)  # object arrays on numpy 2
        best = int(np.argmax(probs))
        points = np.asarray(found[2][best], dtype=float) / scale if landmarks else None
        return np.asarray(found[0][best], dtype=float) / scale, float(probs[best]), points

    def __call__(self, img: np.ndarray) -> tuple | None:
        found = self.most_confident(img)
        if found is None or found[1] < MIN_PROB:
            return None
        x1, y1, x2, y2 = found[0]
        return float(x1), float(y1), float(x2), float(y2), found[1]


def box_cache_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / "faces.csv"


def load_box_cache(cache_dir: Path) -> dict[str, tuple | None]:
    path = box_cache_path(cache_dir)
    if not path.exists():
        return {}
    df = pd.read_csv(path, dtype={"sha1": str})
    return {r.sha1: (None if np.isnan(r.prob) else (r.x1, r.y1, r.x2, r.y2, r.prob))
            for r in df.itertuples(index=False)}


def save_box_cache(cache_dir: Path, boxes: dict[str, tuple | None]) -> None:
    path = box_cache_path(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(k, *(v if v is not None else (np.nan,) * 5)) for k, v in boxes.items()]
    atomic_write_text(pd.DataFrame(rows, columns=BOX_COLUMNS).to_csv(index=False, float_format="%.2f"), path)


def face_boxes(paths: list[str], cache_dir: Path, detector=None, save_every: int = 500) -> dict[str, tuple | None]:
    """path -> box (or None: no face). Detects only photos whose content is not in the cache yet."""
    known = load_box_cache(cache_dir)
    digests = {p: file_sha1(p) if os.path.isfile(p) else "" for p in paths}
    todo = [p for p in paths if digests[p] not in known]
    if todo:
        detector = detector or FaceDetector()
        for i, p in enumerate(progress(todo, desc="detecting faces", unit="img", total=len(todo))):
            try:
                img = read_image(p)
            except Exception:  # unreadable: no box, and nothing cached (the caller reports the file)
                continue
            known[digests[p]] = detector(img)
            if (i + 1) % save_every == 0:  # a killed detection run keeps what it found
                save_box_cache(cache_dir, known)
        save_box_cache(cache_dir, known)
    return {p: known.get(digests[p]) for p in paths}


def face_window(box: tuple, img_h: int, img_w: int, out_h: int, out_w: int, margin: float) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) to crop: the box grown by `margin`, made out_h:out_w, kept inside the photo."""
    x1, y1, x2, y2 = box[:4]
    bw, bh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = bw * (1 + 2 * margin), bh * (1 + 2 * margin)
    aspect = out_w / out_h
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    w, h = min(w, img_w), min(h, img_h)  # a face larger than the photo: as much as there is
    left = int(round(min(max(cx - w / 2, 0), img_w - w)))
    top = int(round(min(max(cy - h / 2, 0), img_h - h)))
    return left, top, left + int(round(w)), top + int(round(h))


def fallback_count(boxes: dict[str, tuple | None]) -> int:
    return sum(b is None for b in boxes.values())
