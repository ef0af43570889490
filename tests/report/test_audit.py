import numpy as np
import pandas as pd

from src.core import classes
from src.core.classes import PROB_COLS
from src.data.tables import load_corrections
from src.report import audit


def _person(pid, gender, age_band, p_gender_label=0.95, swap=False, age_pred=None):
    """7 out-of-fold rows for one person with controlled predictions."""
    rows = []
    for shot in classes.SHOTS:
        mask = classes.SHOT_MASK[shot]
        label = int(classes.encode(mask, gender, age_band))
        seen_mask = {1: 2, 2: 1}.get(mask, mask) if swap else mask  # what the picture really shows
        seen_gender = gender if p_gender_label > 0.5 else 1 - gender
        seen_age = age_band if age_pred is None else age_pred
        p = np.full(18, 0.001)
        p[int(classes.encode(seen_mask, seen_gender, seen_age))] = 1.0
        p[int(classes.encode(seen_mask, 1 - seen_gender, seen_age))] = min(p_gender_label, 1 - p_gender_label) * 1.5
        p /= p.sum()
        rows.append({"person": pid, "shot": shot, "label": label, **dict(zip(PROB_COLS, p))})
    return rows


def _oof():
    rows = []
    rows += _person("000001", 0, 0)                               # clean
    rows += _person("000002", 1, 1, p_gender_label=0.1)           # looks male, labelled female
    rows += _person("000003", 0, 1, swap=True)                    # normal / incorrect swapped
    rows += _person("000004", 1, 0, age_pred=2)                   # labelled <30, looks 60+
    rows += _person("000005", 0, 2, p_gender_label=0.3)           # milder gender doubt
    return pd.DataFrame(rows)


def test_candidates_find_each_kind_and_rank_by_confidence():
    c = audit.candidates(audit.person_scores(_oof()))
    kinds = {(r.id, r.kind) for r in c.itertuples()}
    assert kinds == {("000002", "gender"), ("000005", "gender"), ("000003", "swap"), ("000004", "age")}
    assert c["score"].is_monotonic_decreasing
    g = c[c["kind"] == "gender"]
    assert g["id"].tolist() == ["000002", "000005"]  # most confident first
    assert g.iloc[0]["gender"] == "male" and g.iloc[1]["gender"] == "female"
    assert c.set_index("id").loc["000004", "age"] == "60"
    assert c.set_index("id").loc["000003", "mask_fix"] == "swap"


def test_audit_output_is_a_valid_corrections_file(tmp_path):
    rows = _oof()
    extra = pd.DataFrame(_person("000006", 1, 0, p_gender_label=0.1, age_pred=2))  # two findings, one person
    c = audit.candidates(audit.person_scores(pd.concat([rows, extra])))
    assert (c["id"] == "000006").sum() == 2
    path = tmp_path / "a.csv"
    audit.as_corrections(c).to_csv(path, index=False)
    loaded = load_corrections(path).set_index("id")
    assert set(loaded.index) == set(c["id"])
    assert loaded.loc["000006", "gender"] == "male" and loaded.loc["000006", "age"] == "60"


def test_noise_scoring_counts_only_audited_persons():
    c = audit.candidates(audit.person_scores(_oof()))
    noise = pd.DataFrame({"id": ["000002", "000003", "000001", "999999"],
                          "noise": ["gender_flipped", "normal_incorrect_swapped", "gender_flipped", "gender_flipped"]})
    t = audit.score_against_noise(c, {"000001", "000002", "000003", "000004", "000005"}, noise, top=1).set_index("kind")
    assert t.loc["gender", "injected"] == 2  # 999999 was not audited
    assert t.loc["gender", "found"] == 1 and t.loc["gender", "flagged"] == 2
    assert t.loc["gender", "precision"] == 0.5 and t.loc["gender", "recall"] == 0.5
    assert t.loc["swap", "recall"] == 1.0
