"""The training table of a run: the competition's persons with their folds, then the rows that train in every
fold and are never validated (fold TRAIN_ONLY): pseudo-labelled eval photos (pseudo_from=) and outside persons
(extra=), and the face box of every row (crop=face). Built by one function, for the job (src/pipeline/job.py)
and for each parallel fold worker (src/pipeline/fold_worker.py), so both train on the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core import distributed as dist
from ..data.faces import face_boxes
from ..data.folds import attach_folds, in_folds
from ..persons.outside_persons import OutsidePersons, outside_rows
from ..persons.outside_set import OutsideSet
from ..persons.pseudo import PSEUDO_SHOT, add_pseudo, pseudo_rows


@dataclass(frozen=True)
class TrainingTable:
    rows: pd.DataFrame                 # every training row with its fold (TRAIN_ONLY: trains in every fold)
    pseudo: dict | None = None         # pseudo_from: how many eval photos joined, per class
    outside: OutsidePersons | None = None  # extra=: the outside persons, what joined and what was skipped

    @property
    def competition_paths(self) -> list[str]:
        """The photos of the competition's own persons (face boxes found by the detector, cached by content)."""
        return self.rows.loc[in_folds(self.rows), "path"].tolist()


def training_rows(cfg, competition: pd.DataFrame, folds: pd.DataFrame, eval_table: pd.DataFrame | None,
                  cache_root: Path, outside_set: OutsideSet | None = None) -> TrainingTable:
    """The competition's rows with their `folds`, the pseudo rows (pseudo_from=, picked from `eval_table`), the
    outside persons (extra=; `outside_set` as the data check read it, else read again with extra_ages=auto as
    this data's youngest person settles it; rank 0 draws, other ranks read its cache)."""
    rows = attach_folds(competition, folds)
    pseudo = None
    if cfg.pseudo_from:
        rows, pseudo = add_pseudo(rows, pseudo_rows(cfg.pseudo_from, cfg.pseudo_threshold, eval_table))
        print(f"pseudo-labels from {cfg.pseudo_from}: {pseudo['photos']} eval photos at p >= {cfg.pseudo_threshold} "
              f"join the training data", flush=True)
    youngest = int(competition["age"].min())
    outside = dist.main_first(lambda: outside_rows(cfg, cache_root, outside_set, youngest))
    if outside is not None:
        rows = pd.concat([rows, outside.rows], ignore_index=True)  # age_lo/age_hi: NaN (exact) for the others
    return TrainingTable(rows=rows, pseudo=pseudo, outside=outside)


def training_boxes(cfg, training: TrainingTable, cache_root: Path, eval_paths: list[str] = ()) -> dict | None:
    """crop=face: the face box of every training row (and of `eval_paths`, which hold the pseudo-labelled photos):
    the detector's for photos (cached by content; rank 0 finds them, the others read its cache), an outside
    person's shots those they were drawn by. Otherwise only the outside persons' boxes, where background=grabcut
    seeds from them (no detector runs for it: the competition's photos are seeded at their centre)."""
    if cfg.crop != "face":
        known = training.outside.boxes if training.outside else {}
        return dict(known) if cfg.background == "grabcut" and known else None
    pseudo = training.rows.loc[training.rows["shot"] == PSEUDO_SHOT, "path"].tolist()  # eval photos themselves
    photos = training.competition_paths + (list(eval_paths) or pseudo)
    boxes = dist.main_first(lambda: face_boxes(photos, cache_root))
    boxes.update(training.outside.boxes if training.outside else {})
    return boxes
