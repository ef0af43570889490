"""Person-level folds.

All 7 shots of a person share gender and age, so StratifiedGroupKFold over images with person
groups reduces exactly to a split of the person table, which keeps a person's shots together (no
leakage between near-identical photos).

split=stratified (default): StratifiedKFold over the six gender x age-band cells: each cell is
  balanced to within one person per fold.
split=iterative: MultilabelStratifiedKFold (iterative-stratification) over those six cells plus
  a seventh label, "age next to the band boundary" (55..59: the ages the seed recipe trains as
  >=60 and the eval scores as 30-59). StratifiedKFold cannot balance that small group as well
  (it is one of its cells' sub-parts), so one fold's validation could hold most of the ages
  that decide the age band's hardest cases.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from ..core import classes
from .tables import DataError

NEAR_BOUNDARY = 55  # ages NEAR_BOUNDARY..59 sit next to the >=60 band (the seed trains them as >=55)
# the fold of rows that train in every fold and are never validated: outside persons, pseudo-labelled eval photos
TRAIN_ONLY = -1


def in_folds(table: pd.DataFrame) -> pd.Series:
    """The rows of the competition's own persons (those with a fold), not the TRAIN_ONLY ones."""
    return table["fold"] != TRAIN_ONLY


def person_table(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("person", sort=True).agg(gender=("gender", "first"), age=("age", "first"))


def make_folds(table: pd.DataFrame, n_folds: int, seed: int, split: str = "stratified",
               age_boundary: int = classes.TRUE_AGE_BOUNDARY) -> pd.DataFrame:
    """person -> fold (one row per person, sorted by person id)."""
    persons = person_table(table)
    strata = persons["gender"].to_numpy() * 3 + classes.age_band(persons["age"].to_numpy())
    if len(persons) < n_folds:
        raise DataError("the training data", [f"{len(persons)} person(s) cannot be split into n_folds={n_folds} "
                                               f"folds: lower n_folds (at least 2) or add persons"])
    fold = np.full(len(persons), -1)
    if split == "iterative":
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        ages = persons["age"].to_numpy()
        near = (ages >= min(NEAR_BOUNDARY, age_boundary)) & (ages < classes.TRUE_AGE_BOUNDARY)
        labels = np.column_stack([np.eye(6, dtype=int)[strata], near.astype(int)])
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(persons)), labels)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(persons)), strata)
    with warnings.catch_warnings():
        # a stratum smaller than n_folds (the rare 60+ cells in small data) is fine here
        warnings.filterwarnings("ignore", message="The least populated class")
        try:
            for k, (_, val_idx) in enumerate(parts):
                fold[val_idx] = k
        except ValueError as e:  # sklearn: every cell has fewer persons than folds
            cells = {f"{classes.GENDER_NAMES[s // 3]} {classes.AGE_NAMES[s % 3]}": int(n)
                     for s, n in zip(*np.unique(strata, return_counts=True))}
            raise DataError("the training data", [f"{len(persons)} person(s) in gender x age cells {cells}: every "
                                                   f"cell has fewer persons than n_folds={n_folds}, so no fold can "
                                                   f"be stratified; lower n_folds or add persons ({e})"]) from None
    return pd.DataFrame({"person": persons.index, "fold": fold, "stratum": strata})


def attach_folds(table: pd.DataFrame, folds: pd.DataFrame) -> pd.DataFrame:
    missing = sorted(set(table["person"]) - set(folds["person"]))
    if missing:
        raise ValueError(f"folds file has no fold for person(s) {missing[:10]}")
    return table.merge(folds[["person", "fold"]], on="person", how="left", validate="many_to_one")
