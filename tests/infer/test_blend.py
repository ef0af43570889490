"""The blend of finished runs, on small synthetic cases."""
import numpy as np
import pandas as pd
import pytest

from src.core.classes import PROB_COLS
from src.core.run_dir import RunDir
from src.infer import blend
from tests.helpers import fake_run, shifted_case, softmax, stage


def test_blend_weights_favour_the_better_model():
    probs, y = shifted_case(2000, seed=4)
    rng = np.random.default_rng(5)
    bad = softmax(rng.normal(0, 1, probs.shape))
    w = blend.fit_weights([bad, probs], y)
    assert w.sum() == pytest.approx(1) and (w >= 0).all() and w[1] > 0.8


@pytest.fixture
def two_runs(tiny_data, tmp_path):
    from src.data.folds import make_folds
    from src.data.tables import load_eval, load_train

    table = load_train(tiny_data, check_pixels=False)
    folds = make_folds(table, 2, 0)
    oof = table.merge(folds[["person", "fold"]], on="person")[["fold", "person", "shot", "label", "path"]]
    ev = load_eval(tiny_data, check_pixels=False)
    rng = np.random.default_rng(0)
    good = softmax(np.eye(18)[oof["label"]] * 3 + rng.normal(0, 1, (len(oof), 18)))
    good_eval = softmax(np.eye(18)[ev["true"]] * 3 + rng.normal(0, 1, (len(ev), 18)))
    noisy = softmax(rng.normal(0, 1, (len(oof), 18)))
    noisy_eval = softmax(rng.normal(0, 1, (len(ev), 18)))
    runs = tmp_path / "runs"
    a = fake_run(runs / "good", tiny_data, oof, good, ev["ImageID"], good_eval)
    b = fake_run(runs / "noisy", tiny_data, oof, noisy, ev["ImageID"], noisy_eval)
    for run in (a, b):
        folds.to_csv(run.folds, index=False)
    return a, b, folds, oof


def test_blend_writes_a_run_folder_with_honest_estimates(two_runs, tmp_path):
    a, b, _, _ = two_runs
    r = blend.blend([str(a.path), str(b.path)], "bias", "mix", tmp_path / "out")
    out = RunDir(tmp_path / "out" / "mix")
    assert out.finished() and out.submission.exists() and out.eval_probs.exists() and out.blend_record.exists()
    assert r["weights"][0] > r["weights"][1]  # the good run carries the blend
    assert r["oof_nested_f1"] is not None and r["oof_nested_f1"] <= r["oof"]["f1"] + 1e-9
    assert set(r["eval_vs_runs"]) == {"good", "noisy"}
    sub = pd.read_csv(out.submission)
    probs = pd.read_csv(out.eval_probs)[PROB_COLS].to_numpy()
    assert (sub["ans"].to_numpy() == probs.argmax(1)).all()  # eval_probs' argmax is the submission
    assert "nested" in out.report.read_text()


def test_blend_refuses_runs_made_on_other_folds(two_runs, tmp_path, capsys):
    a, b, folds, _ = two_runs
    other = folds.assign(fold=1 - folds["fold"])
    other.to_csv(b.folds, index=False)
    assert stage("blend", ["--runs", f"{a.path},{b.path}", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not the folds of" in err and str(b.folds) in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_blend_decision_prior_uses_the_runs_recorded_priors(two_runs, tmp_path, capsys):
    a, b, _, _ = two_runs
    counts = np.arange(1, 19)
    a.save_prior(counts.tolist(), (counts + 5 * (np.arange(18) % 3 == 2)).tolist())  # more >=60 trained on
    assert stage("blend", ["--runs", str(a.path), "--decision", "prior", "--name", "pa", "--output",
                           str(tmp_path / "out")]) == 0
    record = pd.read_json(RunDir(tmp_path / "out" / "pa").blend_record, typ="series")
    want = blend.prior_biases(counts, counts + 5 * (np.arange(18) % 3 == 2))
    np.testing.assert_allclose(record["biases"], want)
    assert (want[2::3] < 0).all() and (want[0::3] > 0).all()  # the >=60 classes pushed back down
    capsys.readouterr()
    refused_code = stage("blend", ["--runs", f"{a.path},{b.path}", "--decision", "prior", "--output",
                                   str(tmp_path / "out")])
    assert refused_code == 2 and f"{b.prior}: missing" in capsys.readouterr().err


def test_blend_decides_on_the_runs_own_probabilities_not_on_their_decision(two_runs, tmp_path):
    """A run trained with decision=bias carries its biases in eval_probs.csv: blend takes them off first, so
    --decision none is the models' argmax and --decision prior shifts by the prior alone (it was prior + the
    run's biases)."""
    import json

    from src.infer.decision import adjusted_probs

    a, _, _, _ = two_runs
    raw = pd.read_csv(a.eval_probs)[PROB_COLS].to_numpy()
    biases = np.where(np.arange(18) % 3 == 2, 1.5, 0.0)  # what decision=bias put on the eval: >=60 pushed up
    decided = adjusted_probs(raw, biases)
    table = pd.read_csv(a.eval_probs)
    table[PROB_COLS] = decided
    table.to_csv(a.eval_probs, index=False, float_format="%.6f")
    a.metrics.write_text(json.dumps({"decision": {"biases": biases.tolist(), "applied": True}}))
    counts = np.arange(1, 19)
    a.save_prior(counts.tolist(), (counts * 2).tolist())
    for decision, shift in (("none", np.zeros(18)), ("prior", blend.prior_biases(counts, counts * 2))):
        blend.blend([str(a.path)], decision, f"b-{decision}", tmp_path / "out")
        got = pd.read_csv(RunDir(tmp_path / "out" / f"b-{decision}").eval_probs)[PROB_COLS].to_numpy()
        np.testing.assert_allclose(got, adjusted_probs(raw, shift), atol=2e-4)
    a.metrics.write_text(json.dumps({"decision": {"biases": biases.tolist(), "applied": False}}))  # auto chose none
    table.assign(**{c: raw[:, i] for i, c in enumerate(PROB_COLS)}).to_csv(a.eval_probs, index=False)
    blend.blend([str(a.path)], "none", "b-auto", tmp_path / "out")
    got = pd.read_csv(RunDir(tmp_path / "out" / "b-auto").eval_probs)[PROB_COLS].to_numpy()
    np.testing.assert_allclose(got, raw, atol=2e-6)


def test_blend_auto_keeps_the_biases_only_where_they_beat_argmax_nested(two_runs, tmp_path):
    a, b, _, _ = two_runs
    r = blend.blend([str(a.path), str(b.path)], "auto", "auto", tmp_path / "out")
    inputs = blend.load_inputs([a, b])
    y, folds = inputs.oof["label"].to_numpy(), inputs.oof["fold"].to_numpy()
    plain, with_b = (blend.fast_macro_f1(y, blend.nested(inputs.oof_probs, y, folds, d)) for d in ("none", "bias"))
    keep = with_b > plain
    assert r["decision"] == ("bias" if keep else "none") and (r["biases"] is not None) == keep
    assert "--decision auto: nested" in r["decision_why"] and r["nested_by"] == "folds"
