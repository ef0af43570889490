"""Persons grouped at test time: planted clusters found, ambiguous photos left alone, smoothing."""
import numpy as np
import pandas as pd
import pytest

from src.core import classes
from src.infer.grouping import apply_grouping, group_photos, grouping_quality, smooth_by_group
from tests.helpers import stage


def _planted(persons=40, size=7, spread=0.05, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (persons, dim))
    feats = np.repeat(centres, size, axis=0) + rng.normal(0, spread, (persons * size, dim))
    return feats, np.repeat(np.arange(persons), size)


def test_planted_persons_are_recovered_exactly():
    feats, persons = _planted()
    order = np.random.default_rng(1).permutation(len(persons))  # anonymous, shuffled like eval IDs
    groups = group_photos(feats[order], 7)
    q = grouping_quality(groups, persons[order])
    assert q["coverage"] == 1.0 and q["purity"] == 1.0 and q["pair_precision"] == 1.0 and q["pair_recall"] == 1.0


def test_ambiguous_photos_are_left_alone():
    feats, persons = _planted(persons=10)
    # person 0's photos sit exactly between persons 1 and 2: no clique of 7 holds them
    feats[persons == 0] = (feats[persons == 1].mean(0) + feats[persons == 2].mean(0)) / 2 + \
        np.random.default_rng(2).normal(0, 0.05, (7, feats.shape[1]))
    # and a person with only 5 photos can never make a group of 7
    feats, persons = np.vstack([feats, _planted(1, 5, seed=9)[0]]), np.concatenate([persons, np.full(5, 99)])
    groups = group_photos(feats, 7)
    assert (groups[persons == 99] == -1).all()
    q = grouping_quality(groups, persons)
    assert q["pair_precision"] == 1.0  # whatever was grouped is one person
    assert (groups[persons == 3] >= 0).all()  # clear persons are still grouped


def test_smoothing_shares_gender_and_age_but_keeps_each_photos_mask():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(18), size=7)
    out = smooth_by_group(probs, np.zeros(7, int))
    m_in, g_in, a_in = classes.subtask_probs(probs)
    m_out, g_out, a_out = classes.subtask_probs(out)
    np.testing.assert_allclose(m_out, m_in, atol=1e-12)
    np.testing.assert_allclose(g_out, np.repeat(g_in.mean(0, keepdims=True), 7, 0), atol=1e-12)
    np.testing.assert_allclose(a_out, np.repeat(a_in.mean(0, keepdims=True), 7, 0), atol=1e-12)
    np.testing.assert_allclose(out.sum(1), 1, atol=1e-12)
    untouched = smooth_by_group(probs, np.full(7, -1))
    np.testing.assert_array_equal(untouched, probs)


def test_grouping_fixes_a_photo_whose_gender_the_others_outvote():
    feats, persons = _planted(persons=12)
    y = classes.encode(0, persons % 2, 1)  # all masks worn, gender alternating by person
    probs = np.full((len(y), 18), 0.01)
    probs[np.arange(len(y)), y] = 0.83
    wrong = 3  # one photo of person 0 looks like the other gender
    probs[wrong] = np.roll(probs[wrong], 3)
    (oof,), (ev,), report = apply_grouping(pd.DataFrame({"fold": 0, "person": persons, "label": y}), [probs], feats, [probs], feats, 7)
    assert probs[wrong].argmax() != y[wrong] and oof[wrong].argmax() == y[wrong]
    assert report["oof"]["purity"] == 1.0 and report["oof_f1_after"][0] > report["oof_f1_before"][0]
    np.testing.assert_allclose(ev, oof)


def test_a_run_with_group_eval_and_decision_bias_reports_both(tiny_data, tmp_path):
    import json

    from src.core.classes import PROB_COLS
    from src.core.run_dir import RunDir
    from tests.helpers import FAST

    assert stage("train", ["--data", str(tiny_data), "--config", "seed", "--name", "g", "--output", str(tmp_path),
                          *FAST, "group_eval=7", "decision=bias"]) == 0
    run = RunDir(tmp_path / "g")
    metrics = json.loads(run.metrics.read_text())
    g, d = metrics["grouping"], metrics["decision"]
    assert g["size"] == 7 and 0 <= g["oof"]["coverage"] <= 1 and len(g["oof_f1_after"]) == 1
    assert len(d["biases"]) == 18 and d["oof_f1_in_sample"] >= d["oof_f1_argmax"]
    assert d["oof_f1_nested"] is not None  # two folds trained: one held out at a time
    report = run.report.read_text()
    assert "## Persons grouped at test time" in report and "## Decision" in report
    probs = pd.read_csv(run.eval_probs)[PROB_COLS].to_numpy()
    assert (pd.read_csv(run.submission)["ans"].to_numpy() == probs.argmax(1)).all()  # the decided classes


@pytest.mark.parametrize("bad", ["group_eval=1", "group_eval=-2"])
def test_group_size_is_checked(bad):
    from src.core.config import load_config
    from src.core.errors import ConfigError

    with pytest.raises(ConfigError, match="group_eval"):
        load_config("seed", [bad])
