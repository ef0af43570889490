import numpy as np

from src import metrics


def test_weighted_macro_f1_matches_sklearn_on_resamples():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 18, 300)
    pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, 18, 300))
    assert np.isclose(metrics.weighted_macro_f1(y, pred, np.ones((1, 300)))[0], metrics.macro_f1(y, pred))
    idx = rng.integers(0, 300, 300)  # a resample, as counts per photo
    counts = np.bincount(idx, minlength=300)[None, :].astype(float)
    assert np.isclose(metrics.weighted_macro_f1(y, pred, counts)[0], metrics.macro_f1(y[idx], pred[idx]))


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
