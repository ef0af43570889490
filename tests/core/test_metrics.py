import numpy as np
import pytest

from src.core import metrics


def test_weighted_macro_f1_matches_sklearn_on_resamples():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 18, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 18, 300))
    assert np.isclose(metrics.weighted_macro_f1(y, pred, np.ones((1, 300)))[0], metrics.macro_f1(y, pred))
    idx = rng.integers(0, 300, 300)  # a resample, as counts per photo
    counts = np.bincount(idx, minlength=300)[None, :].astype(float)
    assert np.isclose(metrics.weighted_macro_f1(y, pred, counts)[0], metrics.macro_f1(y[idx], pred[idx]))


def test_fast_macro_f1_is_the_metrics_macro_f1():
    rng = np.random.default_rng(1)
    y, p = rng.integers(0, 18, 500), rng.integers(0, 16, 500)  # two classes never predicted
    assert metrics.fast_macro_f1(y, p) == pytest.approx(metrics.macro_f1(y, p), abs=1e-12)


def test_paired_bootstrap_separates_a_real_gain_from_none():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 18, 2000)
    weak = np.where(rng.random(2000) < 0.5, y, rng.integers(0, 18, 2000))
    strong = np.where(rng.random(2000) < 0.2, weak, y)  # fixes most of weak's errors
    delta, lo, hi = metrics.paired_bootstrap(y, weak, strong, n_boot=300)
    assert 0 < lo < delta < hi
    assert metrics.paired_bootstrap(y, weak, weak, n_boot=50) == (0.0, 0.0, 0.0)
    delta, lo, hi = metrics.paired_bootstrap(y, strong, weak, n_boot=300)
    assert lo < delta < hi < 0


def test_person_bootstrap_resamples_whole_persons():
    groups = np.repeat(np.arange(50), 7)  # 50 persons, 7 photos each
    w = metrics.resample_weights(len(groups), 200, seed=3, groups=groups)
    per_person = w.reshape(200, 50, 7)
    assert (per_person == per_person[:, :, :1]).all()  # a person's photos are drawn together
    assert (w.sum(1) == len(groups)).all() and (per_person[:, :, 0].sum(1) == 50).all()
    assert (w == 0).any() and (w >= 2).any()  # with replacement: some persons out, some twice


def test_person_bootstrap_is_wider_when_a_persons_photos_agree():
    """When a person's 7 photos are right or wrong together, resampling photos understates the spread."""
    rng = np.random.default_rng(4)
    persons = np.repeat(np.arange(300), 7)
    y = np.repeat(rng.integers(0, 18, 300), 7)
    a = np.where(np.repeat(rng.random(300) < 0.7, 7), y, (y + 1) % 18)
    b = np.where(np.repeat(rng.random(300) < 0.7, 7), y, (y + 2) % 18)
    _, lo_p, hi_p = metrics.paired_bootstrap(y, a, b, n_boot=300)
    d, lo, hi = metrics.paired_bootstrap(y, a, b, n_boot=300, groups=persons)
    assert lo < d < hi and (hi - lo) > 1.8 * (hi_p - lo_p)
