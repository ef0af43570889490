"""The five landmarks of each outside photo's face (MTCNN through data/faces.FaceDetector), found once per photo
content and cached in <cache>/extra_faces.csv, read back exactly as written: a fresh, resumed and re-drawn run draws
from the same landmarks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import ConfigError
from ..core.files import atomic_write_text
from ..core.progress import progress
from ..data.faces import FaceDetector
from ..data.tables import read_image
from .mask_draw import Face
from .outside_layouts import OutsidePhoto

FACE_COLUMNS = ["sha1", "x1", "y1", "x2", "y2", "prob"] + [f"p{i}{a}" for i in range(5) for a in "xy"]


class LandmarkDetector:
    """MTCNN's most confident face (faces.FaceDetector, on up to 512 px for the five landmarks):
    (Face, probability) in the photo's pixels, or None."""

    def __init__(self):
        try:
            self.detector = FaceDetector(side=512, needed_for="extra=")
        except RuntimeError as e:
            raise ConfigError(str(e)) from None

    def __call__(self, img: np.ndarray) -> tuple[Face, float] | None:
        found = self.detector.most_confident(img, landmarks=True)
        if found is None:
            return None
        box, prob, points = found
        return Face(points, tuple(float(v) for v in box)), prob


def as_cached(found: tuple[Face, float] | None) -> tuple[Face, float] | None:
    """A detection as the cache holds it (every number at 2 decimals, read back exactly): fresh, resumed and
    re-drawn runs draw from the same landmarks, so they make the same persons byte for byte."""
    if found is None:
        return None
    face, prob = found
    r = lambda v: float(f"{v:.2f}")  # noqa: E731 (what "%.2f" in the CSV and a round-trip read give)
    return Face(np.array([[r(x), r(y)] for x, y in face.points]), tuple(r(v) for v in face.box)), r(prob)


def save_faces(path: Path, known: dict[str, tuple | None]) -> None:
    rows = [(k, *v[0].box, v[1], *v[0].points.ravel()) if v else (k, *[np.nan] * 15) for k, v in known.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(pd.DataFrame(rows, columns=FACE_COLUMNS).to_csv(index=False, float_format="%.2f"), path)


def load_faces(path: Path) -> dict[str, tuple | None]:
    """What save_faces wrote; every number read as Python reads its text (what `as_cached` gives)."""
    known: dict[str, tuple | None] = {}
    if not path.exists():
        return known
    for r in pd.read_csv(path, dtype=str, keep_default_na=False).itertuples(index=False):
        v = {c: float(getattr(r, c)) if getattr(r, c) else float("nan") for c in FACE_COLUMNS[1:]}
        known[r.sha1] = None if np.isnan(v["prob"]) else (
            Face(np.array([[v[f"p{i}x"], v[f"p{i}y"]] for i in range(5)]), (v["x1"], v["y1"], v["x2"], v["y2"])),
            v["prob"])
    return known


def detect_all(photos: list[OutsidePhoto], digests: list[str], cache_dir: Path, detector=None,
               save_every: int = 500) -> dict[str, tuple | None]:
    """sha1 of each photo -> (Face, probability) or None; detected once per content, cached (the
    probability too: MIN_PROB is applied where the faces are used, so changing it detects nothing again)."""
    path = Path(cache_dir) / "extra_faces.csv"
    known = load_faces(path)
    todo = [(p, d) for p, d in zip(photos, digests) if d not in known]
    if todo:
        detector = detector or LandmarkDetector()
        for i, (p, d) in enumerate(progress(todo, desc="finding faces in the outside photos", unit="img",
                                            total=len(todo))):
            known[d] = as_cached(detector(read_image(p.path)))
            if (i + 1) % save_every == 0:  # a killed run keeps what it found (UTKFace: 23,000 photos)
                save_faces(path, known)
        save_faces(path, known)
    return {d: known[d] for d in digests}
