"""Pseudo-labels (opt-in, `pseudo_from=RUN pseudo_threshold=0.9`): a second round of training that
adds the eval photos a finished run is confident about to every fold's training data.

A photo joins when the run's eval probability of its predicted class is at least the threshold;
it is labelled with that class (mask, gender and age band; the band's age is a representative one,
so a training-time `age_boundary` below 60 still sees the >=60 band as such), and its age is known as the
band's range: the ordinal head learns the thresholds it decides, a band head whose training edge falls
inside it (30-59 at age_boundary=55) learns that photo's mask and gender only. Pseudo rows carry
fold TRAIN_ONLY (-1): they are in the training rows of every fold and never in a validation fold, so OOF scores
stay on labelled persons only. The eval score of such a run is transductive (it trained on the
eval photos' predicted labels), as the competition's 2nd-generation teams did.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core import classes
from ..core.classes import PROB_COLS
from ..core.errors import ConfigError
from ..core.run_dir import find_run, read_eval_probs
from ..data.folds import TRAIN_ONLY

PSEUDO_SHOT = "pseudo"  # the shot column of a pseudo-labelled row (an eval photo)
PSEUDO_AGE = {0: 25, 1: 45, 2: 65}  # a pseudo-label's age: inside its band whatever age_boundary training uses
BAND_AGES = {0: (1, 29), 1: (30, 59), 2: (60, 120)}  # what a band says of the age: age_head=ordinal trains on that


def pseudo_rows(run_name: str, threshold: float, eval_table: pd.DataFrame) -> pd.DataFrame:
    """The confident eval photos of `run_name` as training rows (fold TRAIN_ONLY)."""
    try:
        run = find_run(run_name, "pseudo_from=")
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    probs = read_eval_probs(run)
    if probs is None:
        raise ConfigError(f"pseudo_from={run_name}: {run.path} has no eval probabilities (is it finished?)")
    merged = eval_table[["ImageID", "path"]].merge(probs, on="ImageID", how="inner", validate="one_to_one")
    if len(merged) != len(eval_table):
        raise ConfigError(f"pseudo_from={run_name}: its eval photos are not this data's ({len(merged)} of "
                          f"{len(eval_table)} IDs match)")
    p = merged[PROB_COLS].to_numpy()
    keep = p.max(1) >= threshold
    cls = p.argmax(1)[keep]
    mask, gender, band = classes.decode(cls)
    return pd.DataFrame({"person": "pseudo_" + merged["ImageID"][keep].astype(str).values,
                         "folder": "", "gender": gender, "age": [PSEUDO_AGE[int(b)] for b in band],
                         "shot": PSEUDO_SHOT, "mask": mask, "path": merged["path"][keep].values, "label": cls,
                         "fold": TRAIN_ONLY, "age_lo": [BAND_AGES[int(b)][0] for b in band],
                         "age_hi": [BAND_AGES[int(b)][1] for b in band]})


def add_pseudo(table: pd.DataFrame, rows: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The training table with the pseudo rows appended, and how many were added per class."""
    counts = np.bincount(rows["label"].to_numpy(dtype=int), minlength=classes.N_CLASSES)
    stats = {"photos": int(len(rows)), "per_class": [int(c) for c in counts]}
    return pd.concat([table, rows], ignore_index=True), stats  # age_lo/age_hi: NaN (exact) for the labelled rows
