"""Outside face photos (no masks) as extra training persons: `extra=DIR[,DIR...]`, `extra_ages=LO-HI`.

The command and its manual: src/stages/extra.py (`bash run.sh extra --help`).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from ..core import classes
from ..core.config import OUTSIDE_AGES_AUTO, ConfigError, comma_items, user_path
from ..core.errors import closest_names
from ..core.files import atomic_write_text
from ..core.progress import parallel_map, progress
from ..data.faces import FaceDetector, file_sha1
from ..data.tables import DataError, check_images, read_image
from .mask_draw import Face, draw
from .outside_layouts import OutsidePhoto, cell_counts, read_folder

EXTRA_FOLD = -1                 # in every fold's training rows, never validated (as pseudo-labels)
CANVAS = (512, 384)             # H, W of a competition photo
FACE_WIDTH = 0.58               # the face box's share of the canvas width (about the stand-in's photos')
FACE_CENTRE = (0.5, 0.56)       # x, y of the face box's centre, as fractions of the canvas
MIN_FACE = 40                   # pixels: a smaller face holds too little to draw a mask on (skipped)
MIN_PROB = 0.7                  # the photos are known to show a face: a plainer detection still counts
SYNTH_VERSION = 3               # bump when drawing changes meaning: cached persons are drawn anew
SHOT_STATES = {"mask1": "wear", "mask2": "wear", "mask3": "wear", "mask4": "wear", "mask5": "wear",
               "incorrect_mask": None, "normal": "none"}  # incorrect: nose exposed or on the chin


@dataclass(frozen=True)
class OutsideSet:
    """The outside photos that may join training (one per content, inside the ages), checked, and what the
    others were: every photo listed is one of them or counted here (a photo named by several list files, with
    the same label, is one photo)."""
    where: str                  # the folders, for messages
    photos: list[OutsidePhoto]
    digests: list[str]          # SHA-1 of each photo's bytes
    listed: int                 # photos (files) listed, each once however many lists name it
    duplicates: int             # the same content under another name again (with the same labels)
    outside_ages: int
    conflicting: int = 0        # extra_conflicts=drop: photos (files) whose content is listed with two labels
    other_race: int = 0         # extra_race: photos of another race
    boundary: int = classes.TRUE_AGE_BOUNDARY  # the training-time >=60 edge (an age range across it: a band head
                                         # trains that photo's mask and gender only)
    conflicts: tuple[str, ...] = ()  # extra_conflicts=drop: each left-out photo's two listings, one line each
    ages: tuple[int, int] | None = None  # the ages kept (extra_ages, settled), None: all


# ---- labels ---------------------------------------------------------------------------------------

def conflicts(photos: list[OutsidePhoto], digests: list[str]) -> tuple[list[str], set[str]]:
    """One photo (the same file, or the same bytes) listed with two labels: (a message naming both lines for
    each, the digests of such photos). Public sets have them (All-Age-Faces: the same picture under two
    names and two ages); the last listing must not silently win."""
    first: dict[str, OutsidePhoto] = {}
    problems, torn = [], set()
    for photo, digest in zip(photos, digests):
        seen = first.setdefault(digest, photo)
        if (seen.age_range, seen.gender) != (photo.age_range, photo.gender):
            names = seen.path.name if seen.path == photo.path else f"{seen.path.name} and {photo.path.name}"
            problems.append(f"{seen.line} and {photo.line}: the same photo ({names}) with two labels, "
                            f"{classes.GENDER_NAMES[seen.gender]} {seen.age} and {classes.GENDER_NAMES[photo.gender]} "
                            f"{photo.age}; keep one line (or extra_conflicts=drop leaves such photos out)")
            torn.add(digest)
    return problems, torn


def leaks(photos: list[OutsidePhoto], digests: list[str], competition: list[str]) -> list[str]:
    """An outside photo byte-identical to a competition photo (train or eval) would train on what is
    scored. Only competition photos of the same size as an outside one are hashed."""
    by_size: dict[int, list[tuple[OutsidePhoto, str]]] = {}
    for photo, digest in zip(photos, digests):
        by_size.setdefault(photo.path.stat().st_size, []).append((photo, digest))
    problems = []
    for path in competition:
        try:
            same_size = by_size.get(os.stat(path).st_size)
        except OSError:  # a missing competition photo is the data check's to report
            continue
        if same_size:
            digest = file_sha1(path)
            problems += [f"{photo.line}: {photo.path} is the competition's photo {path} (byte for byte); an outside "
                         f"photo must not be a training or eval photo" for photo, d in same_size if d == digest]
    return problems


@dataclass(frozen=True)
class OutsideRules:
    """What an outside photo must pass besides its own labels and pixels (the config keys extra_format,
    extra_ages, extra_race, extra_conflicts, age_boundary, age_head; the competition's photos it must not be)."""
    ages: tuple[int, int] | None = None
    drop_conflicts: bool = False         # extra_conflicts=drop: a photo listed with two labels is left out
    competition: tuple[str, ...] = ()    # every competition train and eval photo
    layout: str = "auto"                 # extra_format: the layout of every folder, or found from its contents
    race: str = ""                       # extra_race: only photos of this race (where the layout says)
    boundary: int = classes.TRUE_AGE_BOUNDARY  # the training-time >=60 edge (counted: age ranges across a band edge)


def read_layouts(folders: list[Path], rules: OutsideRules, problems: list[str]) -> list[OutsidePhoto]:
    """Every folder read as its layout (said, with photos per gender x band), one entry per photo and label
    (a photo several list files name with the same label is one); what is wrong to `problems`."""
    photos = []
    for folder in folders:
        before = len(problems)
        layout, listings = read_folder(folder, rules.layout, problems)
        found = first_listings(listings)
        check_race(folder, layout, found, rules.race, problems)
        if len(problems) == before:
            files = len({p.path for p in found})
            again = f" ({len(listings)} listings)" if len(listings) != files else ""
            print(f"outside photos: {folder} read as {layout}: {files} photos{again} ({cell_counts(found)})",
                  flush=True)
        photos += found
    return photos


def first_listings(listings: list[OutsidePhoto]) -> list[OutsidePhoto]:
    """Each photo and label once, at its first listing (All-Age-Faces' five lists overlap)."""
    seen: dict[tuple, OutsidePhoto] = {}
    for p in listings:
        seen.setdefault((p.path, p.age_range, p.gender, p.race), p)
    return list(seen.values())


def check_race(folder: Path, layout: str, found: list[OutsidePhoto], race: str, problems: list[str]) -> None:
    """extra_race= must be a race the folder's layout names (the races it has are said otherwise)."""
    if not race or not found:
        return
    races = sorted({p.race for p in found if p.race})
    if not races:
        problems.append(f"extra_race={race}: {folder} ({layout}) names no race; leave extra_race out")
    elif race.lower() not in {r.lower() for r in races}:
        close = " or ".join(closest_names(race, races))
        hint = f" (did you mean {close}?)" if close else ""
        problems.append(f"extra_race={race}: no photo of {folder} has that race{hint}; its races: {', '.join(races)}")


def one_band(photo: OutsidePhoto, boundary: int) -> bool:
    """Does the photo's age (a range, or exact) lie inside one age band, at the training edge and at 60? (A
    band head learns only the mask and gender of one that does not: model/losses.BandRangeLoss.)"""
    lo, hi = photo.age_range
    return not any(classes.across_bands(lo, hi, b) for b in {boundary, classes.TRUE_AGE_BOUNDARY})


def read_outside(folders: list[Path], rules: OutsideRules, problems: list[str], check_pixels: bool = True
                 ) -> OutsideSet | None:
    """The outside photos of every folder: labels, pixels, one label per photo, none of the competition's;
    what is wrong goes to `problems` (None then). Each photo file is checked and hashed once. One per content
    is kept (a content listed with two labels: left out and counted with extra_conflicts=drop), then those of
    the race, with an age inside the ages (an age range across a band edge too: see `across_bands`)."""
    before = len(problems)
    photos = read_layouts(folders, rules, problems)
    files = list(dict.fromkeys(p.path for p in photos))
    if check_pixels and len(problems) == before:
        problems += check_images(files, "checking the outside photos")
    if len(problems) > before:
        return None
    digest_of = {f: file_sha1(f) for f in progress(files, desc="hashing the outside photos", unit="img")}
    digests = [digest_of[p.path] for p in photos]
    torn_problems, torn = conflicts(photos, digests)
    if not rules.drop_conflicts:
        problems += torn_problems
    one_each = list({p.path: (p, d) for p, d in zip(photos, digests)}.values())
    problems += leaks([p for p, _ in one_each], [d for _, d in one_each], list(rules.competition))
    if len(problems) > before:
        return None
    clear = [(d, p) for d, p in zip(digests, photos) if d not in torn]
    unique = dict(clear)  # the same photo twice is one person
    raced = {d: p for d, p in unique.items() if not rules.race or p.race.lower() == rules.race.lower()}
    kept = {d: p for d, p in raced.items()
            if rules.ages is None or rules.ages[0] <= p.age_range[0] <= p.age_range[1] <= rules.ages[1]}
    torn_files = sum(digest_of[f] in torn for f in files)
    return OutsideSet(where=",".join(map(str, folders)), photos=list(kept.values()), digests=list(kept),
                      listed=len(files), duplicates=len(files) - torn_files - len(unique),
                      outside_ages=len(raced) - len(kept), conflicting=torn_files, other_race=len(unique) - len(raced),
                      boundary=rules.boundary, conflicts=tuple(torn_problems) if rules.drop_conflicts else (),
                      ages=rules.ages)


def checked_outside(folders: list[Path], rules: OutsideRules = OutsideRules()) -> OutsideSet:
    """read_outside, its problems raised as one DataError."""
    problems: list[str] = []
    outside = read_outside(folders, rules, problems)
    if problems:
        raise DataError("the outside photos (extra=)", problems)
    return outside


def extra_folders(setting: str) -> list[Path]:
    """`extra=A,B`: the folders (config.yaml holds them resolved; a relative one is taken from where the user
    stands)."""
    return [user_path(s) for s in comma_items(setting)] if setting else []


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


def synthesise(photo: OutsidePhoto, digest: str, face: Face, seed: int, root: Path) -> Path:
    """The folder of the photo's 7 shots under `root`, drawn once (a function of content, seed, version)."""
    key = hashlib.sha1(f"{digest}-{seed}-{SYNTH_VERSION}-{CANVAS}-{FACE_WIDTH}-{FACE_CENTRE}".encode()).hexdigest()[:20]
    folder = root / key
    if (folder / BOXES).is_file() and all((folder / f"{s}.jpg").is_file() for s in classes.SHOTS):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}-"))
    try:
        shots = person_shots(read_image(photo.path), face, random.Random(f"{seed}-{digest}"))
        for shot, (img, _) in shots.items():
            Image.fromarray(img).save(tmp / f"{shot}.jpg", quality=92)
        boxes = {shot: [round(float(v), 2) for v in f.box] for shot, (_, f) in shots.items()}
        (tmp / BOXES).write_text(json.dumps(boxes, sort_keys=True))
        if folder.exists():  # a half-made folder of a killed run
            shutil.rmtree(folder)
        os.replace(tmp, folder)
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


@dataclass(frozen=True)
class OutsidePersons:
    rows: pd.DataFrame   # 7 training rows per person, fold EXTRA_FOLD
    stats: dict          # what joined and what was skipped (summary)
    boxes: dict          # path of every drawn shot -> its face box (x1, y1, x2, y2, probability): crop=face


def usable_faces(outside: OutsideSet, faces: dict) -> tuple[list, int, int]:
    """([(photo, digest, face)] of the photos a mask can be drawn on, how many had no face, how many a small one)."""
    usable, no_face, small = [], 0, 0
    for photo, digest in zip(outside.photos, outside.digests):
        found = faces[digest]
        if found is None or found[1] < MIN_PROB:
            no_face += 1
        elif found[0].box[2] - found[0].box[0] < MIN_FACE:
            small += 1
        else:
            usable.append((photo, digest, found[0]))
    return usable, no_face, small


def outside_persons(outside: OutsideSet, seed: int, cache_dir: Path, detector=None, limit: int | None = None
                    ) -> OutsidePersons:
    """The outside photos as training persons; a DataError when none of them joins."""
    if limit:  # a preview: a sample across the ages, not the first files
        picked = sorted(random.Random(seed).sample(range(len(outside.photos)), min(limit, len(outside.photos))))
        outside = OutsideSet(where=outside.where, photos=[outside.photos[i] for i in picked],
                             digests=[outside.digests[i] for i in picked], listed=len(picked), duplicates=0,
                             outside_ages=0, boundary=outside.boundary, ages=outside.ages)
    faces = detect_all(outside.photos, outside.digests, cache_dir, detector)
    usable, no_face, small = usable_faces(outside, faces)
    skipped = {"skipped_no_face": no_face, "skipped_small_face": small, "duplicates": outside.duplicates,
               "outside_ages": outside.outside_ages, "conflicting_labels": outside.conflicting,
               "other_race": outside.other_race, "ages_kept": ages_text(outside.ages)}
    stats = summary(outside.listed, usable, skipped, outside.boundary)
    if not usable:
        raise DataError(f"extra={outside.where}", [f"none of its {outside.listed} photos joins training. "
                                                   f"{skipped_line(stats)}"])
    root = Path(cache_dir) / "extra"
    clear_stale_drafts(root)
    made = parallel_map(lambda u: synthesise(*u, seed, root), usable, os.cpu_count() or 1,
                        "drawing masks on the outside photos", "person")
    rows, boxes = [], {}
    for (photo, digest, _), folder in zip(usable, made):
        prob = faces[digest][1]
        shot_boxes = json.loads((folder / BOXES).read_text())
        lo, hi = photo.age_range
        for shot in classes.SHOTS:
            mask, path = classes.SHOT_MASK[shot], str(folder / f"{shot}.jpg")
            rows.append(dict(person=f"extra_{digest[:12]}", folder="", gender=photo.gender, age=lo, shot=shot,
                             mask=mask, path=path, label=int(classes.encode(mask, photo.gender, classes.age_band(lo))),
                             fold=EXTRA_FOLD, age_lo=lo, age_hi=hi))
            boxes[path] = (*shot_boxes[shot], prob)
    table = pd.DataFrame(rows, columns=["person", "folder", "gender", "age", "shot", "mask", "path", "label", "fold",
                                        "age_lo", "age_hi"])
    return OutsidePersons(table, stats, boxes)


def summary(photos: int, usable: list, skipped: dict, boundary: int = classes.TRUE_AGE_BOUNDARY) -> dict:
    """What the report says: persons joined per gender x age band, how much of their age is known (exact,
    a range inside one band, a range across a band edge: at 60 or the training-time `boundary`), and what was
    skipped why (every photo listed is one or the other: persons + the skipped counts = photos)."""
    cells = {f"{classes.GENDER_NAMES[g]} {classes.AGE_NAMES[b]}": 0 for g in (0, 1) for b in range(3)}
    races: dict[str, int] = {}
    for photo, _, _ in usable:
        cells[f"{classes.GENDER_NAMES[photo.gender]} {classes.AGE_NAMES[classes.age_band(photo.age)]}"] += 1
        if photo.race:
            races[photo.race] = races.get(photo.race, 0) + 1
    ranged = sum(photo.age_hi is not None for photo, _, _ in usable)
    across = sum(not one_band(photo, boundary) for photo, _, _ in usable)
    return {"photos": photos, "persons": len(usable), "per_cell": cells, "per_race": dict(sorted(races.items())),
            "age_exact": len(usable) - ranged, "age_range": ranged, "across_bands": across, **skipped}


COMPETITION_YOUNGEST = 18  # the competition's persons are adults: extra_ages=auto where no data is known (a preview)
OLDEST = 120


def settled_ages(setting, youngest: int | None) -> tuple[int, int] | None:
    """extra_ages as applied: auto -> from the competition data's youngest person (`youngest`; the competition's
    18 where no data is known) up; a range, or None (all), as it is."""
    if setting != OUTSIDE_AGES_AUTO:
        return setting
    return (COMPETITION_YOUNGEST if youngest is None else int(youngest), OLDEST)


def outside_rules(cfg, competition: list[str] = (), youngest: int | None = None) -> OutsideRules:
    """The rules of a config's extra_* keys; `youngest`: the competition data's youngest person (extra_ages=auto)."""
    return OutsideRules(settled_ages(cfg.extra_ages, youngest), cfg.extra_conflicts == "drop", tuple(competition),
                        cfg.extra_format, cfg.extra_race, cfg.age_boundary)


def extra_rows(cfg, cache_dir: Path, outside: OutsideSet | None = None, youngest: int | None = None
               ) -> OutsidePersons | None:
    """`extra=`/`extra_ages=` of a config: the outside persons (None when off); `outside` as the data check
    read it, else read here (a fold worker, with the competition data's `youngest` person)."""
    if not cfg.extra:
        return None
    outside = outside or checked_outside(extra_folders(cfg.extra), outside_rules(cfg, youngest=youngest))
    persons = outside_persons(outside, cfg.seed, cache_dir)
    print(f"outside photos ({cfg.extra}): {persons.stats['persons']} persons join training. "
          + skipped_line(persons.stats), flush=True)
    return persons


def summary_lines(stats: dict) -> list[str]:
    """The report's lines about the outside persons."""
    cells = ", ".join(f"{k} {v}" for k, v in stats["per_cell"].items())
    lines = [f"{stats['persons']} outside persons (of {stats['photos']} photos listed), 7 drawn shots each: {cells}."]
    if stats.get("age_range"):
        lines.append(f"Ages: {stats['age_exact']} exact, {stats['age_range']} known only as a range, "
                     f"{stats.get('across_bands', 0)} of them across a band edge (the ordinal head trains on the "
                     f"thresholds a range decides; a band head on a range's one band, or on its mask and gender only "
                     f"where it spans two).")
    if stats.get("per_race"):
        lines.append("Race (as the layout names it): " + ", ".join(f"{k} {v}" for k, v in stats["per_race"].items())
                     + ".")
    return [*lines, skipped_line(stats)]


def skipped_line(stats: dict) -> str:
    return (f"Skipped: {stats['skipped_no_face']} without a face found (or below {MIN_PROB} confidence), "
            f"{stats['skipped_small_face']} with a face under {MIN_FACE} px wide, {stats.get('duplicates', 0)} "
            f"the same photo again, {stats['outside_ages']} outside the ages kept "
            f"({stats.get('ages_kept', 'extra_ages')}), {stats.get('conflicting_labels', 0)} listed with two labels "
            f"(extra_conflicts=drop), {stats.get('other_race', 0)} of another race (extra_race).")


def ages_text(ages: tuple[int, int] | None) -> str:
    return "all ages" if ages is None else f"ages {ages[0]}-{ages[1]}"


# ---- the preview stage --------------------------------------------------------------------------

def contact_sheet(rows: pd.DataFrame, n: int, thumb: int = 96) -> np.ndarray:
    """n persons, one per line, their 7 shots side by side (RGB uint8)."""
    persons = rows["person"].drop_duplicates().tolist()[:n]
    tw, th = thumb, thumb * CANVAS[0] // CANVAS[1]
    sheet = np.full((len(persons) * (th + 16), len(classes.SHOTS) * tw, 3), 255, np.uint8)
    for i, person in enumerate(persons):
        mine = rows[rows["person"] == person].set_index("shot")
        for j, shot in enumerate(classes.SHOTS):
            img = np.asarray(Image.open(mine.loc[shot, "path"]).convert("RGB").resize((tw, th), Image.BILINEAR))
            sheet[i * (th + 16): i * (th + 16) + th, j * tw:(j + 1) * tw] = img
        r = mine.iloc[0]
        cv2.putText(sheet, f"{classes.GENDER_NAMES[int(r.gender)]} {int(r.age)}", (4, i * (th + 16) + th + 12),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet
