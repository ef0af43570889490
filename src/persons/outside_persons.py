"""Checked outside photos (outside_set.py) as training-only persons: each photo with a face large and sure
enough becomes a person of seven drawn shots (outside_shots.py), rows of fold TRAIN_ONLY (in every fold's training,
never validated); what joined and what was skipped, why, is counted for the first lines and the report.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from ..core import classes
from ..core.progress import parallel_map
from ..core.values import folders_text
from ..data.folds import TRAIN_ONLY
from ..data.tables import DataError
from .outside_faces import detect_all
from .outside_set import OutsideSet, checked_outside, one_band, outside_rules
from .outside_shots import BOXES, CANVAS, clear_stale_drafts, synthesise

MIN_FACE = 40                   # pixels: a smaller face holds too little to draw a mask on (skipped)
MIN_PROB = 0.7                  # the photos are known to show a face: a plainer detection still counts


@dataclass(frozen=True)
class OutsidePersons:
    rows: pd.DataFrame   # 7 training rows per person, fold TRAIN_ONLY
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
                             fold=TRAIN_ONLY, age_lo=lo, age_hi=hi))
            boxes[path] = (*shot_boxes[shot], prob)
    table = pd.DataFrame(rows, columns=["person", "folder", "gender", "age", "shot", "mask", "path", "label", "fold",
                                        "age_lo", "age_hi"])
    return OutsidePersons(rows=table, stats=stats, boxes=boxes)


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


def outside_rows(cfg, cache_dir: Path, outside: OutsideSet | None = None, youngest: int | None = None
                 ) -> OutsidePersons | None:
    """`extra=`/`extra_ages=` of a config: the outside persons (None when off); `outside` as the data check
    read it, else read here (a fold worker, with the competition data's `youngest` person)."""
    if not cfg.extra:
        return None
    outside = outside or checked_outside(list(cfg.extra), outside_rules(cfg, youngest=youngest))
    persons = outside_persons(outside, cfg.seed, cache_dir)
    print(f"outside photos ({folders_text(cfg.extra)}): {persons.stats['persons']} persons join training. "
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
