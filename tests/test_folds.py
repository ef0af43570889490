import numpy as np
import pandas as pd

from src import labels as L
from src.folds import attach_folds, make_folds


def _table(n_persons=203, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_persons):
        g = int(rng.random() < 0.6)
        age = int(rng.choice([20, 25, 35, 45, 58, 60], p=[0.3, 0.15, 0.2, 0.2, 0.08, 0.07]))
        for shot in L.SHOTS:
            rows.append(dict(person=f"{i:06d}", gender=g, age=age, shot=shot))
    return pd.DataFrame(rows)


def test_no_person_in_two_folds():
    t = attach_folds(_table(), make_folds(_table(), 5, seed=3))
    assert t.groupby("person")["fold"].nunique().eq(1).all()
    assert set(t["fold"]) == set(range(5))


def test_every_gender_age_cell_balanced_within_one_person():
    t = _table()
    folds = make_folds(t, 5, seed=3)
    counts = pd.crosstab(folds["stratum"], folds["fold"])
    assert len(counts) == 6
    assert (counts.max(axis=1) - counts.min(axis=1)).le(1).all(), counts


def test_same_seed_same_folds_other_seed_other_folds():
    t = _table()
    a, b, c = make_folds(t, 5, 7), make_folds(t, 5, 7), make_folds(t, 5, 8)
    assert a.equals(b)
    assert not a["fold"].equals(c["fold"])


def test_stratum_uses_true_age_band():
    t = _table()
    folds = make_folds(t, 5, 0).set_index("person")
    first = t.drop_duplicates("person").set_index("person")
    assert (folds["stratum"] == first["gender"] * 3 + L.age_band(first["age"].to_numpy())).all()
