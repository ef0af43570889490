"""The decision layer: per-class biases for macro-F1, and their nested estimate."""
import numpy as np
import pytest

from src.core.metrics import fast_macro_f1
from src.infer.decision import decide, fit_biases, nested_estimate
from tests.helpers import shifted_case, softmax


def test_bias_search_recovers_a_known_shift_and_never_lowers_the_fitted_f1():
    probs, y = shifted_case()
    b = fit_biases(probs, y, grid=np.round(np.arange(-2, 2.01, 0.1), 2), passes=3)
    assert b[5] - np.median(np.delete(b, 5)) == pytest.approx(1.5, abs=0.45)  # class 5 pushed back up
    before, after = fast_macro_f1(y, probs.argmax(1)), fast_macro_f1(y, decide(probs, b))
    assert after > before + 0.02
    for seed in range(3):  # on pure noise too: never below the argmax it starts from
        noise = softmax(np.random.default_rng(seed).normal(0, 1, (400, 18)))
        yn = np.random.default_rng(seed + 9).integers(0, 18, 400)
        assert fast_macro_f1(yn, decide(noise, fit_biases(noise, yn))) >= fast_macro_f1(yn, noise.argmax(1))


def test_nested_estimate_is_below_the_in_sample_one_on_noise():
    rng = np.random.default_rng(3)
    probs, y = softmax(rng.normal(0, 1, (900, 18))), rng.integers(0, 18, 900)
    folds = np.arange(900) % 3
    in_sample = fast_macro_f1(y, decide(probs, fit_biases(probs, y)))
    nested, _ = nested_estimate(probs, y, folds)
    assert nested < in_sample
    assert nested_estimate(probs, y, np.zeros(900)) is None  # one fold: nothing to hold out
