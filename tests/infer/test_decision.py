"""The decision layer: per-class biases for macro-F1, and their nested estimate."""
import math

import numpy as np
import pandas as pd
import pytest

from src.core import classes
from src.core.metrics import fast_macro_f1
from src.core.run_dir import RunDir
from src.data.demo import generate_outside
from src.infer.decision import decide, fit_biases, nested_estimate, prior_biases
from tests.helpers import shifted_case, softmax, train_fast


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


def test_the_prior_biases_are_the_log_ratio_of_the_two_priors():
    competition = [10, 30, 0, 60] + [0] * 14
    trained = [20, 30, 10, 90] + [0] * 14  # outside persons added 10 of class 0, 10 of class 2, 30 of class 3
    b = prior_biases(competition, trained)
    assert b[0] == pytest.approx(math.log(0.1 / (20 / 150)))
    assert b[1] == pytest.approx(math.log(0.3 / 0.2)) and b[3] == pytest.approx(math.log(0.6 / 0.6))
    assert b[2] == 0 and (b[4:] == 0).all()  # a class missing from either prior is left alone
    assert (prior_biases(competition, competition) == 0).all()  # nothing added: nothing to put back


def test_decision_prior_puts_the_prior_back_in_a_run_with_outside_persons(tiny_data, tmp_path):
    faces = generate_outside(tmp_path / "faces", n=4, seed=3)
    assert train_fast(tiny_data, tmp_path, f"extra={faces}", "decision=prior", "folds=0", name="p") == 0
    run = RunDir(tmp_path / "p")
    prior = run.read_prior()
    assert sum(prior["trained"]) - sum(prior["competition"]) == 7 * run.read_metrics()["extra"]["persons"] > 0
    decision = run.read_metrics()["decision"]
    np.testing.assert_allclose(decision["biases"], prior_biases(prior["competition"], prior["trained"]))
    assert "decision=prior" in run.report.read_text()
    eval_probs = pd.read_csv(run.eval_probs)[classes.PROB_COLS].to_numpy()
    assert eval_probs.sum(1) == pytest.approx(1, abs=1e-4)


def test_auto_applies_the_biases_only_where_they_beat_argmax_on_held_out_persons():
    """decision=auto with one trained fold: the biases are checked over five groups of its persons; fitted on
    noise they do not beat argmax there, so none are applied; on a real shift they are."""
    from src.infer.decision import decide_for_run

    rng = np.random.default_rng(3)
    n = 1400
    persons = np.repeat(np.arange(n // 7), 7)
    y = np.repeat(rng.integers(0, 18, n // 7), 7)
    noise = softmax(rng.normal(0, 1, (n, 18)) + 2.0 * np.eye(18)[y])
    biases, report = decide_for_run(noise, y, np.zeros(n, int), persons, auto=True)
    assert report["nested_by"] == "5 groups of persons" and report["oof_f1_nested"] is not None
    assert report["applied"] == (report["oof_f1_nested"] > report["oof_f1_argmax"])
    assert (biases is None) != report["applied"]
    shifted, ys = shifted_case(1400, seed=2)
    biases, report = decide_for_run(shifted, ys, np.zeros(1400, int), np.repeat(np.arange(200), 7), auto=True)
    assert report["applied"] and biases is not None and "beats argmax" in report["why"]
    forced, report = decide_for_run(noise, y, np.zeros(n, int), persons)  # decision=bias: the user's choice
    assert forced is not None and report["applied"]
