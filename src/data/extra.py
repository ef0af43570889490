"""Outside face photos (no masks) as extra training persons: `extra=DIR[,DIR...]`, `extra_ages=LO-HI`.

The command and its manual: src/stages/extra.py (`bash run.sh extra --help`).
"""
from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from ..core import labels as L
from ..core.config import ConfigError, user_path
from ..core.runtime import atomic_write_text, progress
from .faces import FaceDetector, file_sha1
from .mask_draw import Face, draw
from .tables import DataError, image_problem, is_hidden, read_image

EXTRA_FOLD = -1                 # in every fold's training rows, never validated (as pseudo-labels)
PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CANVAS = (512, 384)             # H, W of a competition photo
FACE_WIDTH = 0.58               # the face box's share of the canvas width (about the stand-in's photos')
FACE_CENTRE = (0.5, 0.56)       # x, y of the face box's centre, as fractions of the canvas
MIN_FACE = 40                   # pixels: a smaller face holds too little to draw a mask on (skipped)
MIN_PROB = 0.7                  # the photos are known to show a face: a plainer detection still counts
SYNTH_VERSION = 1               # bump when drawing changes meaning: cached persons are drawn anew
UTK_NAME = re.compile(r"^(\d+)_(\d+)_")  # UTKFace: <age>_<gender>_<race>_<date>; race is not needed
GENDER_WORDS = {"male": 0, "m": 0, "0": 0, "man": 0, "female": 1, "f": 1, "1": 1, "woman": 1}
SHOT_STATES = {"mask1": "wear", "mask2": "wear", "mask3": "wear", "mask4": "wear", "mask5": "wear",
               "incorrect_mask": None, "normal": "none"}  # incorrect: nose exposed or on the chin


@dataclass(frozen=True)
class OutsidePhoto:
    path: Path
    age: int
    gender: int  # 0 male, 1 female


# ---- labels -------------------------------------------------------------------------------------

def _parse_age(raw: str) -> int | None:
    s = str(raw).strip()
    return int(s) if s.isdigit() and 1 <= int(s) <= 120 else None


def read_label_csv(folder: Path, csv_path: Path, problems: list[str]) -> list[OutsidePhoto]:
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except Exception as e:
        problems.append(f"{csv_path}: not a readable CSV ({e})")
        return []
    missing = [c for c in ("file", "age", "gender") if c not in df.columns]
    if missing:
        problems.append(f"{csv_path}: missing column(s) {missing} (has {list(df.columns)}); expected file,age,gender")
        return []
    photos = []
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{csv_path} row {i + 2}"
        age, gender = _parse_age(r.age), GENDER_WORDS.get(str(r.gender).strip().lower())
        if age is None:
            problems.append(f"{where}: age '{r.age}' is not a whole number of years (1..120)")
        if gender is None:
            problems.append(f"{where}: gender '{r.gender}' is not male/female (or 0/1)")
        candidates = [folder / r.file, folder / "images" / r.file]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            problems.append(f"{candidates[0]}: listed in {csv_path} row {i + 2} but missing"
                            f"{' (also not in images/)' if not Path(r.file).is_absolute() else ''}")
        if age is not None and gender is not None and path is not None:
            photos.append(OutsidePhoto(path, age, gender))
    return photos


def read_utk_names(folder: Path, problems: list[str]) -> list[OutsidePhoto]:
    photos = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or is_hidden(p) or p.suffix.lower() not in PHOTO_EXTS:
            continue
        m = UTK_NAME.match(p.name)
        age = _parse_age(m.group(1)) if m else None
        gender = {"0": 0, "1": 1}.get(m.group(2)) if m else None
        if m is None:
            problems.append(f"{p}: name is not UTKFace's <age>_<gender>_<race>_<date>.jpg, and {folder} has no "
                            f"labels.csv (file,age,gender)")
        elif age is None or gender is None:
            problems.append(f"{p}: age '{m.group(1)}' or gender '{m.group(2)}' (0 male, 1 female) does not parse")
        else:
            photos.append(OutsidePhoto(p, age, gender))
    return photos


def read_folder(folder: Path, problems: list[str]) -> list[OutsidePhoto]:
    """The labelled photos of one folder; what is wrong goes to `problems`."""
    if not folder.is_dir():
        problems.append(f"{folder}: not a folder")
        return []
    csv_path = folder / "labels.csv"
    photos = read_label_csv(folder, csv_path, problems) if csv_path.is_file() else read_utk_names(folder, problems)
    if not photos and not problems:
        problems.append(f"{folder}: no photos ({', '.join(sorted(PHOTO_EXTS))}) and no labels.csv")
    return photos


def read_outside(folders: list[Path], ages: tuple[int, int] | None, check_pixels: bool = True
                 ) -> tuple[list[OutsidePhoto], int]:
    """(the photos of every folder inside `ages`, how many were outside it); every problem of every
    folder in one DataError, before any work."""
    problems: list[str] = []
    photos = [p for f in folders for p in read_folder(f, problems)]
    if check_pixels and not problems:
        with ThreadPoolExecutor(4) as pool:
            problems += [r for r in pool.map(image_problem, [p.path for p in photos]) if r]
    if problems:
        raise DataError("the outside photos (extra=)", problems)
    kept = [p for p in photos if ages is None or ages[0] <= p.age <= ages[1]]
    return kept, len(photos) - len(kept)


def extra_folders(setting: str) -> list[Path]:
    """`extra=A,B`: the folders, from where the user stands."""
    return [user_path(s.strip()) for s in setting.split(",") if s.strip()]


# ---- landmarks ----------------------------------------------------------------------------------

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


def save_faces(path: Path, known: dict[str, tuple | None]) -> None:
    rows = [(k, *v[0].box, v[1], *v[0].points.ravel()) if v else (k, *[np.nan] * 15) for k, v in known.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(pd.DataFrame(rows, columns=FACE_COLUMNS).to_csv(index=False, float_format="%.2f"), path)


def detect_all(photos: list[OutsidePhoto], digests: list[str], cache_dir: Path, detector=None,
               save_every: int = 500) -> dict[str, tuple | None]:
    """sha1 of each photo -> (Face, probability) or None; detected once per content, cached (the
    probability too: MIN_PROB is applied where the faces are used, so changing it detects nothing again)."""
    path = Path(cache_dir) / "extra_faces.csv"
    known: dict[str, tuple | None] = {}
    if path.exists():
        for r in pd.read_csv(path, dtype={"sha1": str}).itertuples(index=False):
            known[r.sha1] = None if np.isnan(r.prob) else (
                Face(np.array([[getattr(r, f"p{i}x"), getattr(r, f"p{i}y")] for i in range(5)]),
                     (r.x1, r.y1, r.x2, r.y2)), r.prob)
    todo = [(p, d) for p, d in zip(photos, digests) if d not in known]
    if todo:
        detector = detector or LandmarkDetector()
        for i, (p, d) in enumerate(progress(todo, desc="finding faces in the outside photos", unit="img",
                                            total=len(todo))):
            known[d] = detector(read_image(p.path))
            if (i + 1) % save_every == 0:  # a killed run keeps what it found (UTKFace: 23,000 photos)
                save_faces(path, known)
        save_faces(path, known)
    return {d: known[d] for d in digests}


# ---- the seven shots ----------------------------------------------------------------------------

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


def person_shots(img: np.ndarray, face: Face, rng: random.Random) -> dict[str, np.ndarray]:
    """The 7 shots of one outside photo (RGB uint8, CANVAS sized)."""
    base, face = framed(img, face)
    shots = {}
    for shot, state in SHOT_STATES.items():
        photo, f = jittered(base, face, rng)
        if state is None:
            state = "nose" if rng.random() < 0.7 else "chin"
        shots[shot] = photo if state == "none" else draw(photo, f, state, rng)[0]
    return shots


def synthesise(photo: OutsidePhoto, digest: str, face: Face, seed: int, root: Path) -> Path:
    """The folder of the photo's 7 shots under `root`, drawn once (a function of content, seed, version)."""
    key = hashlib.sha1(f"{digest}-{seed}-{SYNTH_VERSION}-{CANVAS}-{FACE_WIDTH}-{FACE_CENTRE}".encode()).hexdigest()[:20]
    folder = root / key
    if all((folder / f"{s}.jpg").is_file() for s in L.SHOTS):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
    try:
        shots = person_shots(read_image(photo.path), face, random.Random(f"{seed}-{digest}"))
        for shot, img in shots.items():
            Image.fromarray(img).save(tmp / f"{shot}.jpg", quality=92)
        if folder.exists():  # a half-made folder of a killed run
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def outside_persons(folders: list[Path], ages: tuple[int, int] | None, seed: int, cache_dir: Path,
                    detector=None, limit: int | None = None) -> tuple[pd.DataFrame, dict]:
    """(training rows of the outside persons, fold EXTRA_FOLD; what joined and what was skipped)."""
    photos, outside_ages = read_outside(folders, ages)
    if limit:  # a preview: a sample across the ages, not the first files
        photos = random.Random(seed).sample(photos, min(limit, len(photos)))
    listed = len(photos)
    digests = [file_sha1(p.path) for p in photos]
    unique = dict(zip(digests, photos))  # the same photo twice is one person
    digests, photos = list(unique), list(unique.values())
    duplicates = listed - len(photos)
    faces = detect_all(photos, digests, cache_dir, detector)
    usable, no_face, small = [], 0, 0
    for photo, digest in zip(photos, digests):
        found = faces[digest]
        if found is None or found[1] < MIN_PROB:
            no_face += 1
        elif found[0].box[2] - found[0].box[0] < MIN_FACE:
            small += 1
        else:
            usable.append((photo, digest, found[0]))
    root = Path(cache_dir) / "extra"
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        made = list(progress(pool.map(lambda u: synthesise(*u, seed, root), usable), total=len(usable),
                             desc="drawing masks on the outside photos", unit="person"))
    rows = []
    for (photo, digest, _), folder in zip(usable, made):
        for shot in L.SHOTS:
            mask = L.SHOT_MASK[shot]
            rows.append(dict(person=f"extra_{digest[:12]}", folder="", gender=photo.gender, age=photo.age, shot=shot,
                             mask=mask, path=str(folder / f"{shot}.jpg"),
                             label=int(L.encode(mask, photo.gender, L.age_band(photo.age))), fold=EXTRA_FOLD))
    table = pd.DataFrame(rows, columns=["person", "folder", "gender", "age", "shot", "mask", "path", "label", "fold"])
    skipped = {"skipped_no_face": no_face, "skipped_small_face": small, "duplicates": duplicates,
               "outside_ages": outside_ages}
    return table, summary(listed + outside_ages, usable, skipped)


def summary(photos: int, usable: list, skipped: dict) -> dict:
    """What the report says: persons joined per gender x age band, and what was skipped why (every photo
    listed is one or the other: persons + the skipped counts = photos)."""
    cells = {f"{L.GENDER_NAMES[g]} {L.AGE_NAMES[b]}": 0 for g in (0, 1) for b in range(3)}
    for photo, _, _ in usable:
        cells[f"{L.GENDER_NAMES[photo.gender]} {L.AGE_NAMES[L.age_band(photo.age)]}"] += 1
    return {"photos": photos, "persons": len(usable), "per_cell": cells, **skipped}


def extra_rows(cfg, cache_dir: Path) -> tuple[pd.DataFrame, dict] | tuple[None, None]:
    """`extra=`/`extra_ages=` of a config: the outside persons' rows and summary (None, None when off)."""
    if not cfg.extra:
        return None, None
    rows, stats = outside_persons(extra_folders(cfg.extra), cfg.extra_ages, cfg.seed, cache_dir)
    print(f"outside photos ({cfg.extra}): {stats['persons']} persons join training. " + skipped_line(stats),
          flush=True)
    return rows, stats


def summary_lines(stats: dict) -> list[str]:
    """The report's lines about the outside persons."""
    cells = ", ".join(f"{k} {v}" for k, v in stats["per_cell"].items())
    return [f"{stats['persons']} outside persons (of {stats['photos']} photos listed), 7 drawn shots each: {cells}.",
            skipped_line(stats)]


def skipped_line(stats: dict) -> str:
    return (f"Skipped: {stats['skipped_no_face']} without a face found (or below {MIN_PROB} confidence), "
            f"{stats['skipped_small_face']} with a face under {MIN_FACE} px wide, {stats.get('duplicates', 0)} "
            f"the same photo again, {stats['outside_ages']} outside extra_ages.")


# ---- the preview stage --------------------------------------------------------------------------

def contact_sheet(rows: pd.DataFrame, n: int, thumb: int = 96) -> np.ndarray:
    """n persons, one per line, their 7 shots side by side (RGB uint8)."""
    persons = rows["person"].drop_duplicates().tolist()[:n]
    tw, th = thumb, thumb * CANVAS[0] // CANVAS[1]
    sheet = np.full((len(persons) * (th + 16), len(L.SHOTS) * tw, 3), 255, np.uint8)
    for i, person in enumerate(persons):
        mine = rows[rows["person"] == person].set_index("shot")
        for j, shot in enumerate(L.SHOTS):
            img = np.asarray(Image.open(mine.loc[shot, "path"]).convert("RGB").resize((tw, th), Image.BILINEAR))
            sheet[i * (th + 16): i * (th + 16) + th, j * tw:(j + 1) * tw] = img
        r = mine.iloc[0]
        cv2.putText(sheet, f"{L.GENDER_NAMES[int(r.gender)]} {int(r.age)}", (4, i * (th + 16) + th + 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet
