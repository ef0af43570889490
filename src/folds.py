"""Person-level folds stratified on gender x age band.

All 7 shots of a person share gender and age, so StratifiedGroupKFold over images with
person groups reduces exactly to StratifiedKFold over persons. Splitting the person table
directly keeps every gender x age cell balanced to within one person per fold and keeps
a person's shots together (no leakage between near-identical photos).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from . import labels as L


def make_folds(table: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """person -> fold (one row per person, sorted by person id)."""
    persons = table.groupby("person", sort=True).agg(gender=("gender", "first"), age=("age", "first"))
    strata = persons["gender"].to_numpy() * 3 + L.age_band(persons["age"].to_numpy())
    if len(persons) < n_folds:
        raise ValueError(f"{len(persons)} persons cannot be split into {n_folds} folds")
    fold = np.full(len(persons), -1)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # a stratum smaller than n_folds (the rare 60+ cells in small data) is fine here
        warnings.filterwarnings("ignore", message="The least populated class")
        for k, (_, val_idx) in enumerate(skf.split(np.zeros(len(persons)), strata)):
            fold[val_idx] = k
    return pd.DataFrame({"person": persons.index, "fold": fold, "stratum": strata})


def attach_folds(table: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    missing = sorted(set(table["person"]) - set(folds["person"]))
    if missing:
        raise ValueError(f"folds file has no fold for person(s) {missing[:10]}")
    return table.merge(folds[["person", "fold"]], on="person", how="left", validate="many_to_one")
