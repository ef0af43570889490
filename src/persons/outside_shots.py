"""The seven shots of an outside person (mask1-5, incorrect_mask, normal), drawn from one photo without a mask:
framed as a competition photo frames a face, each shot a small turn, zoom and change of light, masks drawn on by
the landmarks (mask_draw.py). Drawn once per (photo content, seed, SYNTH_VERSION) into the cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..core import classes
from ..data.tables import read_image
from .mask_draw import Face, draw
from .outside_layouts import OutsidePhoto

CANVAS = (512, 384)             # H, W of a competition photo
FACE_WIDTH = 0.58               # the face box's share of the canvas width (about the stand-in's photos')
FACE_CENTRE = (0.5, 0.56)       # x, y of the face box's centre, as fractions of the canvas
SYNTH_VERSION = 3               # bump when drawing changes meaning: cached persons are drawn anew
SHOT_STATES = {"mask1": "wear", "mask2": "wear", "mask3": "wear", "mask4": "wear", "mask5": "wear",
               "incorrect_mask": None, "normal": "none"}  # incorrect: nose exposed or on the chin


def framed(img: np.ndarray, face: Face) -> tuple[np.ndarray, Face]:
    """The photo scaled and shifted so the face sits where a competition photo has it (borders mirrored)."""
    H, W = CANVAS
    x1, y1, x2, y2 = face.box
    s = FACE_WIDTH * W / max(x2 - x1, 1.0)
    tx, ty = FACE_CENTRE[0] * W - s * (x1 + x2) / 2, FACE_CENTRE[1] * H - s * (y1 + y2) / 2
    m = np.array([[s, 0, tx], [0, s, ty]])
    out = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REFLECT_101)
    return out, moved(face, m)


def moved(face: Face, m: np.ndarray) -> Face:
    pts = np.hstack([face.points, np.ones((5, 1))]) @ m.T
    x1, y1, x2, y2 = face.box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]]) @ m.T
    return Face(pts, (*corners.min(0), *corners.max(0)))


def jittered(img: np.ndarray, face: Face, rng: random.Random) -> tuple[np.ndarray, Face]:
    """One shot of the sitting: a small turn, zoom, shift and change of light."""
    H, W = img.shape[:2]
    m = cv2.getRotationMatrix2D((W / 2 + rng.uniform(-12, 12), H / 2 + rng.uniform(-12, 12)),
                                rng.uniform(-6, 6), rng.uniform(0.93, 1.07))
    out = cv2.warpAffine(img, m, (W, H), borderMode=cv2.BORDER_REFLECT_101)
    out = np.clip(out.astype(np.float32) * rng.uniform(0.8, 1.15) + rng.uniform(-15, 15), 0, 255).astype(np.uint8)
    return out, moved(face, m)


def person_shots(img: np.ndarray, face: Face, rng: random.Random) -> dict[str, tuple[np.ndarray, Face]]:
    """The 7 shots of one outside photo (RGB uint8, CANVAS sized), each with where its face is."""
    base, face = framed(img, face)
    shots = {}
    for shot, state in SHOT_STATES.items():
        photo, f = jittered(base, face, rng)
        if state is None:
            state = "nose" if rng.random() < 0.7 else "chin"
        shots[shot] = (photo if state == "none" else draw(photo, f, state, rng)[0]), f
    return shots


BOXES = "boxes.json"  # in a drawn person's folder: each shot's face box (crop=face crops outside persons by it)


def drawn(folder: Path) -> bool:
    """A drawn person's folder is complete: its 7 shots and their boxes."""
    return (folder / BOXES).is_file() and all((folder / f"{s}.jpg").is_file() for s in classes.SHOTS)


def synthesise(photo: OutsidePhoto, digest: str, face: Face, seed: int, root: Path) -> Path:
    """The folder of the photo's 7 shots under `root`, drawn once (a function of content, seed, version)."""
    key = hashlib.sha1(f"{digest}-{seed}-{SYNTH_VERSION}-{CANVAS}-{FACE_WIDTH}-{FACE_CENTRE}".encode()).hexdigest()[:20]
    folder = root / key
    if drawn(folder):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
    try:
        shots = person_shots(read_image(photo.path), face, random.Random(f"{seed}-{digest}"))
        for shot, (img, _) in shots.items():
            Image.fromarray(img).save(tmp / f"{shot}.jpg", quality=92)
        boxes = {shot: [round(float(v), 2) for v in f.box] for shot, (_, f) in shots.items()}
        (tmp / BOXES).write_text(json.dumps(boxes, sort_keys=True))
        if drawn(folder):  # another process (a tune worker, a second bench) drew the same shots meanwhile
            return folder
        if folder.exists():  # a half-made folder (a file of it deleted by hand)
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process's folder took the name between the check and the move
            if not drawn(folder):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


DRAFT_HOURS = 1  # a half-drawn person's folder (.<key>-*) older than this belongs to a process that was killed


def clear_stale_drafts(root: Path) -> None:
    """Remove the temporary folders of persons whose drawing was killed (SIGTERM, a lost machine); a draft
    younger than DRAFT_HOURS may be another run's, drawing into the same cache now."""
    if not root.is_dir():
        return
    old = time.time() - DRAFT_HOURS * 3600
    for draft in root.glob(".*-*"):
        if draft.is_dir() and draft.stat().st_mtime < old:
            shutil.rmtree(draft, ignore_errors=True)
