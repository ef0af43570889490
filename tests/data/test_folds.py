import numpy as np
import pandas as pd
import pytest

from src.core import classes
from src.data.folds import attach_folds, make_folds


def _table(n_persons=203, seed=0, spread_ages=False):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_persons):
        g = int(rng.random() < 0.6)
        age = int(rng.choice([20, 25, 35, 45, 58, 60], p=[0.3, 0.15, 0.2, 0.2, 0.08, 0.07]))
        if spread_ages:  # every age of the middle band, the 55..59 among them
            age = int(rng.integers(30, 60)) if 30 <= age < 60 else age
        for shot in classes.SHOTS:
            rows.append(dict(person=f"{i:06d}", gender=g, age=age, shot=shot))
    return pd.DataFrame(rows)


def test_no_person_in_two_folds():
    t = attach_folds(_table(), make_folds(_table(), 5, seed=3))
    assert t.groupby("person")["fold"].nunique().eq(1).all()
    assert set(t["fold"]) == set(range(5))


@pytest.mark.parametrize("split", ["stratified", "iterative"])
def test_every_gender_age_cell_balanced_within_one_person(split):
    t = _table()
    folds = make_folds(t, 5, seed=3, split=split)
    assert attach_folds(t, folds).groupby("person")["fold"].nunique().eq(1).all()
    counts = pd.crosstab(folds["stratum"], folds["fold"])
    assert len(counts) == 6
    assert (counts.max(axis=1) - counts.min(axis=1)).le(1).all(), counts


def _near_boundary_spread(t: pd.DataFrame, split: str, seed: int) -> int:
    """max - min over folds of the persons aged 55..59 in each fold's validation."""
    f = make_folds(t, 5, seed=seed, split=split)
    ages = t.drop_duplicates("person").set_index("person")["age"]
    near = f[ages.loc[f["person"]].between(55, 59).to_numpy()]
    counts = near["fold"].value_counts().reindex(range(5), fill_value=0)
    return int(counts.max() - counts.min())


def test_iterative_split_balances_the_ages_next_to_the_boundary():
    """What iterative-stratification buys: the 55-59 persons (inside one gender x age cell, so
    StratifiedKFold cannot see them) spread evenly over the folds."""
    spreads = {split: [_near_boundary_spread(_table(400, seed=s, spread_ages=True), split, s) for s in range(4)]
               for split in ("stratified", "iterative")}
    assert max(spreads["iterative"]) <= 1, spreads
    assert sum(spreads["stratified"]) > sum(spreads["iterative"]), spreads


def test_same_seed_same_folds_other_seed_other_folds():
    t = _table()
    a, b, c = make_folds(t, 5, 7), make_folds(t, 5, 7), make_folds(t, 5, 8)
    assert a.equals(b)
    assert not a["fold"].equals(c["fold"])


def test_stratum_uses_true_age_band():
    t = _table()
    folds = make_folds(t, 5, 0).set_index("person")
    first = t.drop_duplicates("person").set_index("person")
    assert (folds["stratum"] == first["gender"] * 3 + classes.age_band(first["age"].to_numpy())).all()
