"""A small synthetic dataset in the competition layout, learnable from its pixels.

Used by `bash run.sh` when no data is given, and by the tests. Each person is a drawn face:
gender shows as hair length (long = female), age band as hair brightness (dark, grey,
white), the mask as a coloured patch over nose+mouth (wear), mouth+chin only (incorrect), or
nothing (normal). Shots of one person differ by position, colours and noise, like the
competition's 7 photos of one sitting. Includes the competition's quirks: .jpeg/.png files
and `._` AppleDouble junk.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from ..core import classes
from ..core.errors import Exists
from .tables import Layout

W, H = 96, 128  # 3:4 like the competition's 384x512
MASK_COLOURS = [(40, 90, 200), (230, 230, 235), (20, 20, 25), (200, 60, 140), (60, 160, 90)]


def _age_for(rng, band: int) -> int:
    return int(rng.integers(*[(18, 30), (30, 60), (60, 61)][band]))  # ages are capped at 60


def draw_face(rng, gender: int, age: int, mask: int, w: int = W, h: int = H) -> Image.Image:
    s = w / W
    bg = tuple(int(c) for c in rng.integers(60, 200, 3))
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    cx, cy = w / 2 + rng.normal(0, 3 * s), h * 0.48 + rng.normal(0, 3 * s)
    fw, fh = 26 * s * rng.uniform(0.92, 1.08), 34 * s * rng.uniform(0.92, 1.08)
    band = classes.age_band(age)
    base = [35, 120, 225][band] + rng.normal(0, 10)
    hair = tuple(int(np.clip(base + rng.normal(0, 6), 0, 255)) for _ in range(3))
    if gender == 1:  # long hair falling past the jaw
        d.rectangle([cx - fw - 8 * s, cy - fh * 0.6, cx + fw + 8 * s, cy + fh * 1.3], fill=hair)
    d.ellipse([cx - fw - 4 * s, cy - fh - 8 * s, cx + fw + 4 * s, cy + 2 * s], fill=hair)  # hair cap
    skin = tuple(int(c) for c in np.clip(np.array([225, 185, 150]) + rng.normal(0, 12, 3), 0, 255))
    d.ellipse([cx - fw, cy - fh, cx + fw, cy + fh], fill=skin)
    ey = cy - fh * 0.25
    for ex in (cx - fw * 0.4, cx + fw * 0.4):
        d.ellipse([ex - 3 * s, ey - 2 * s, ex + 3 * s, ey + 2 * s], fill=(30, 30, 30))
    ny, my = cy + fh * 0.1, cy + fh * 0.5
    d.polygon([(cx, ny - 6 * s), (cx - 4 * s, ny + 4 * s), (cx + 4 * s, ny + 4 * s)], fill=(170, 110, 90))
    d.line([cx - 8 * s, my, cx + 8 * s, my], fill=(150, 40, 50), width=max(1, int(2 * s)))
    if mask != 2:
        colour = MASK_COLOURS[rng.integers(len(MASK_COLOURS))]
        top = ny - 8 * s if mask == 0 else my - 6 * s  # incorrect: the nose stays exposed
        d.rounded_rectangle([cx - fw * 0.95, top, cx + fw * 0.95, cy + fh * 1.02], radius=6 * s, fill=colour)
    arr = np.asarray(img).astype(np.float32)
    arr = arr * rng.uniform(0.85, 1.15) + rng.normal(0, 6, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _save(img: Image.Image, path: Path) -> None:
    fmt = {".png": "PNG"}.get(path.suffix, "JPEG")
    img.save(path, fmt, **({"quality": 90} if fmt == "JPEG" else {}))


def generate(out: Path, n_train: int = 90, n_eval: int = 30, seed: int = 0,
             size: tuple[int, int] = (W, H)) -> Path:
    """Write the layout under `out` (train/, eval/ with answers.csv). Returns `out`."""
    out = Path(out)
    if (out / "train").exists() or (out / "eval").exists():
        raise Exists(f"{out} already holds a dataset; choose an empty folder")
    rng = np.random.default_rng(seed)
    w, h = size
    n = n_train + n_eval
    # every gender x age cell occurs in both splits; the 60+ cells stay rarer, as in the competition
    strata = np.array([(g, a) for g in (0, 1) for a in (0, 1, 2)] * 3 + [(0, 0), (1, 0), (0, 1), (1, 1)] * 3)
    persons = [tuple(strata[i % len(strata)]) for i in range(n)]
    order = rng.permutation(n)
    train_idx, eval_idx = order[:n_train], order[n_train:]

    layout = Layout(out)
    img_dir = layout.train_images
    img_dir.mkdir(parents=True)
    rows = []
    for k, i in enumerate(sorted(train_idx)):
        g, a = persons[i]
        age = _age_for(rng, a)
        pid = f"{i + 1:06d}"
        folder = f"{pid}_{classes.GENDER_NAMES[g]}_Asian_{age}"
        (img_dir / folder).mkdir()
        for shot in classes.SHOTS:
            ext = ".jpg"
            if k % 17 == 3:
                ext = ".jpeg"
            elif k % 23 == 5 and shot == "normal":
                ext = ".png"
            _save(draw_face(rng, g, age, classes.SHOT_MASK[shot], w, h), img_dir / folder / f"{shot}{ext}")
        if k % 11 == 0:  # macOS junk that must be ignored
            (img_dir / folder / "._mask1.jpg").write_bytes(b"\x00\x05\x16\x07junk")
        rows.append(dict(id=pid, gender=classes.GENDER_NAMES[g], race="Asian", age=age, path=folder))
    pd.DataFrame(rows).to_csv(layout.train_csv, index=False)

    eval_dir = layout.eval_images
    eval_dir.mkdir(parents=True)
    info = []
    for i in sorted(eval_idx):
        g, a = persons[i]
        age = _age_for(rng, a)
        for shot in classes.SHOTS:
            m = classes.SHOT_MASK[shot]
            buf = io.BytesIO()
            draw_face(rng, g, age, m, w, h).save(buf, "JPEG", quality=90)
            name = hashlib.sha1(buf.getvalue()).hexdigest() + ".jpg"
            (eval_dir / name).write_bytes(buf.getvalue())
            info.append((name, int(classes.encode(m, g, classes.age_band(age))), f"{i + 1:06d}"))
    info = [info[j] for j in rng.permutation(len(info))]  # the competition's order is not by person
    pd.DataFrame({"ImageID": [r[0] for r in info], "ans": 0}).to_csv(layout.eval_info, index=False)
    pd.DataFrame({"ImageID": [r[0] for r in info], "ans": [r[1] for r in info]}).to_csv(
        layout.eval_answers, index=False)
    pd.DataFrame({"ImageID": [r[0] for r in info], "person": [r[2] for r in info]}).to_csv(
        layout.eval_persons, index=False)
    return out


def generate_outside(out: Path, n: int = 12, seed: int = 0, utkface: bool = False) -> Path:
    """Drawn faces without masks, as outside photos come (`extra=`): a folder of photos large enough for
    the face detector (288x384) with labels.csv (file,age,gender), or UTKFace names
    (<age>_<gender>_<race>_<date>.jpg) when `utkface`. Ages 18-85, not capped."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        g, age = int(rng.integers(2)), int(rng.integers(18, 86))
        name = f"{age}_{g}_2_2017010{i:010d}.jpg" if utkface else f"{i:05d}.jpg"
        _save(draw_face(rng, g, min(age, 60), 2, 288, 384), out / name)
        rows.append(dict(file=name, age=age, gender=classes.GENDER_NAMES[g]))
    if not utkface:
        pd.DataFrame(rows).to_csv(out / "labels.csv", index=False)
    return out
