import json
import shutil

import pytest

from src.core.run_dir import RunDir
from src.measure import bench
from tests.helpers import FAST, stage


def test_bench_runs_each_recipe_and_writes_one_table(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    monkeypatch.setitem(bench.PROTOCOLS, "cpu", ["folds=0"])
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "seed,recommended", "--name", "t",
                       *[o for o in FAST if not o.startswith("n_folds")], "n_folds=2", "cache=false"]) == 0
    out = tmp_path / "output" / "bench" / "t"
    res = json.loads((out / "results.json").read_text())
    assert [r["recipe"] for r in res["rows"]] == ["seed", "recommended"]
    for r in res["rows"]:
        assert (out / r["recipe"] / "submission.csv").exists()
        assert 0 <= r["eval_f1"] <= 1
    md = (out / "results.md").read_text()
    assert "Δ eval vs seed" in md and "| recommended |" in md
    seed_run = (out / "seed" / "fold0_best.pt").stat().st_mtime_ns
    # the same bench again with one more recipe: finished recipes are reused, not retrained
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "seed,recommended,seed+loss=ce", "--name", "t",
                       *[o for o in FAST if not o.startswith("n_folds")], "n_folds=2", "cache=false"]) == 0
    assert (out / "seed" / "fold0_best.pt").stat().st_mtime_ns == seed_run
    assert not (out / "seed-2").exists()
    assert [r["recipe"] for r in json.loads((out / "results.json").read_text())["rows"]] == \
        ["seed", "recommended", "seed+loss=ce"]
    assert "loss: ce" in (out / "seed+loss=ce" / "config.yaml").read_text()
    # the one-line ablation is also compared with the recipe it changes; the chart is drawn
    rows = {r["recipe"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    change = rows["seed+loss=ce"]["eval_f1"] - rows["seed"]["eval_f1"]
    ablation_line = next(l for l in (out / "results.md").read_text().splitlines() if l.startswith("| seed+loss=ce |"))
    cell = ablation_line.split(" | ")[4]
    assert cell.startswith(f"{change:+.4f} [")  # with its bootstrap interval, which holds the difference
    lo, hi = rows["seed+loss=ce"]["ci_vs_base"]
    assert lo <= round(change, 4) <= hi and cell.endswith(f"[{lo:+.3f}, {hi:+.3f}]")
    # the demo names its eval persons: the interval resamples whole persons, the photo interval is kept beside it
    assert "bootstrap over eval persons" in md and "ci_vs_base_photos" in rows["seed+loss=ce"]
    rec_line = next(l for l in (out / "results.md").read_text().splitlines() if l.startswith("| recommended |"))
    assert rec_line.split(" | ")[4] == "–" and rec_line.split(" | ")[3] != "–"  # its own base: no delta
    assert (out / "results.png").stat().st_size > 10_000
    # only finished recipes: nothing trains, and the table is rewritten for exactly these
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "seed+loss=ce,seed", "--name", "t",
                       *[o for o in FAST if not o.startswith("n_folds")], "n_folds=2", "cache=false"]) == 0
    listed = [l.split(" | ")[0][2:] for l in (out / "results.md").read_text().splitlines() if l.startswith("| seed")]
    assert listed == ["seed+loss=ce", "seed"]
    assert stage("bench", ["--data", str(tiny_data), "--name", "t", "--protocol", "gpu"]) == 2  # other protocol


def test_unknown_recipe_is_refused(tiny_data):
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "seed,nope"]) == 2


def test_recipe_specs_with_changes():
    assert bench.recipe_parts("recommended+crop=face+lr=1e-3") == ("recommended", ["crop=face", "lr=1e-3"])
    assert bench.recipe_parts("seed") == ("seed", [])


def test_a_changed_recipe_is_not_silently_reused(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    monkeypatch.setitem(bench.PROTOCOLS, "cpu", ["folds=0"])
    args = ["--data", str(tiny_data), "--recipes", "seed+epochs=1", "--name", "c",
            *[o for o in FAST if not o.startswith(("n_folds", "epochs"))], "n_folds=2", "cache=false"]
    assert stage("bench", args) == 0
    run = RunDir(tmp_path / "output" / "bench" / "c" / "seed+epochs=1")
    same = ["folds=0", *args[6:], "epochs=1"]
    assert bench.config_changes(run, "seed", same, str(tiny_data)) == []
    assert bench.config_changes(run, "seed", [*same[:-1], "epochs=2"], str(tiny_data)) == ["epochs 1 there, 2 here"]
    # extra=auto (the recommended recipe) is what the data folder makes it: none here, outside faces with extra/
    assert bench.config_changes(run, "seed", [*same, "extra=auto"], str(tiny_data)) == []
    with_extra = tmp_path / "with-extra"
    shutil.copytree(tiny_data, with_extra)
    (with_extra / "extra").mkdir()
    assert bench.config_changes(run, "seed", [*same, "extra=auto"], str(with_extra))
    # a run made before a key existed still counts as the same recipe (the key has its default)
    text = run.config.read_text()
    run.config.write_text("\n".join(l for l in text.splitlines() if not l.startswith("scheduler:")))
    assert bench.config_changes(run, "seed", same, str(tiny_data)) == []
    # the same bench with a protocol that changed: refused, naming what changed
    monkeypatch.setitem(bench.PROTOCOLS, "cpu", ["folds=0", "label_smoothing=0.2"])
    assert stage("bench", args) == 2
    err = capsys.readouterr().err
    assert "seed+epochs=1 has changed since bench c ran it" in err
    assert "label_smoothing 0.1 there, 0.2 here; use another --name" in err


FAKE_REFERENCE = '''
import argparse, csv, json, sys
import numpy as np
ap = argparse.ArgumentParser()
for k in ("--data", "--eval", "--model", "--weights", "--size", "--crop", "--epochs", "--bs", "--lr", "--old",
          "--seed", "--out"):
    ap.add_argument(k)
a = ap.parse_args()
rows = list(csv.DictReader(open(a.eval + "/answers.csv")))
probs = np.full((len(rows), 18), 0.01)
for i, r in enumerate(rows):  # right on every photo but the first
    probs[i, (int(r["ans"]) + (i == 0)) % 18] = 0.9
np.save(a.out[:-len(".json")] + ".eval_probs.npy", probs)
json.dump({"log": [{"epoch": 1, "loss": 1.0, "val_f1": 0.5, "train_img_s": 10.0}], "args": sys.argv[1:]},
          open(a.out, "w"))
'''


def test_reference_row_runs_the_yardstick_at_the_protocols_settings(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    monkeypatch.setitem(bench.PROTOCOLS, "cpu", ["model=tf_efficientnet_lite0", "pretrained=true", "folds=0",
                                                 "img_size=32,24", "crop_frac=0.5", "epochs=2", "batch_size=16"])
    script = tmp_path / "ref.py"
    script.write_text(FAKE_REFERENCE)
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "reference", "--name", "p",
                       "--reference", str(script)]) == 0
    run = tmp_path / "output" / "bench" / "p" / "reference"
    args = json.loads((run / "seedref.json").read_text())["args"]
    opts = dict(zip(args[::2], args[1::2]))
    assert (opts["--size"], opts["--crop"], opts["--epochs"], opts["--bs"]) == ("32x24", "32x24", "2", "16")
    assert (opts["--lr"], opts["--old"], opts["--model"]) == ("8e-05", "55", "tf_efficientnet_lite0")  # the seed's
    row = json.loads((tmp_path / "output" / "bench" / "p" / "results.json").read_text())["rows"][0]
    assert row["recipe"] == "reference" and row["oof_f1"] == 0.5
    assert 0.8 < row["eval_f1"] < 1.0 and row["eval_acc"] == 1 - 1 / 28  # one of the 28 eval photos wrong
    md = (tmp_path / "output" / "bench" / "p" / "results.md").read_text()
    assert "| reference |" in md and "its own 4:1 person split" in md
    # rerun: reused; other settings under the same name: refused; a missing script: a clear error
    mtime = (run / "seedref.json").stat().st_mtime_ns
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "reference", "--name", "p",
                       "--reference", str(script)]) == 0
    assert (run / "seedref.json").stat().st_mtime_ns == mtime
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "reference", "--name", "p", "--reference",
                       str(script), "epochs=3"]) == 2
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "reference", "--name", "q",
                       "--reference", str(tmp_path / "none.py")]) == 2
    # another seed of the reference: its own row, compared with the reference; a change it can't make: refused
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "reference,reference+seed=7", "--name", "p",
                       "--reference", str(script)]) == 0
    args = json.loads((run.parent / "reference+seed=7" / "seedref.json").read_text())["args"]
    assert dict(zip(args[::2], args[1::2]))["--seed"] == "7"
    line = next(l for l in (run.parent / "results.md").read_text().splitlines() if l.startswith("| reference+seed=7"))
    assert line.split(" | ")[4].startswith("+0.0000 [")  # same fake predictions: no difference from reference
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "reference+loss=ce", "--name", "p2",
                       "--reference", str(script)]) == 2


def test_reference_row_needs_offline_lite_weights(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    script = tmp_path / "ref.py"
    script.write_text(FAKE_REFERENCE)
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "reference", "--name", "g", "--protocol", "gpu",
                       "--reference", str(script)]) == 2
    assert "pretrained=true" in capsys.readouterr().err


def test_the_real_yardstick_script_runs_through_the_bench(tiny_data, tmp_path, monkeypatch):
    """The shared seedref.py itself (when this checkout has it beside it), on tiny data."""
    from src.measure import reference
    if not reference.DEFAULT_SCRIPT.is_file():
        pytest.skip(f"{reference.DEFAULT_SCRIPT} is not beside this checkout")
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    monkeypatch.setitem(bench.PROTOCOLS, "cpu", ["model=tf_efficientnet_lite0", "pretrained=true", "folds=0",
                                                 "img_size=32,24", "crop_frac=0.8", "epochs=1", "batch_size=32"])
    assert stage("bench", ["--data", str(tiny_data), "--recipes", "reference", "--name", "r"]) == 0
    row = json.loads((tmp_path / "output" / "bench" / "r" / "results.json").read_text())["rows"][0]
    assert 0 <= row["eval_f1"] <= 1 and row["train_img_s"] > 0


def test_blend_rows_are_made_post_hoc_from_earlier_rows(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    monkeypatch.setitem(bench.PROTOCOLS, "cpu", ["folds=0"])
    args = ["--data", str(tiny_data), "--name", "b", *FAST]
    assert stage("bench", [*args, "--recipes", "seed,blend:seed|nope"]) == 2  # a blend of a row that isn't there
    assert "nope" in capsys.readouterr().err
    assert stage("bench", [*args, "--recipes", "seed,seed+lr=3e-3,blend:seed|seed+lr=3e-3+decision=bias"]) == 0
    out = tmp_path / "output" / "bench" / "b"
    rows = {r["recipe"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    row = rows["blend:seed|seed+lr=3e-3+decision=bias"]
    assert row["eval_f1"] is not None and row["ci_vs_baseline"] is not None
    made = RunDir(out / bench.folder("blend:seed|seed+lr=3e-3+decision=bias"))
    assert made.finished() and json.loads(made.blend_record.read_text())["decision"] == "bias"
    assert "| blend:seed\\|seed+lr=3e-3+decision=bias | " in (out / "results.md").read_text()  # '|' escaped


def test_each_age_bands_f1_is_the_mean_of_its_six_classes():
    per_class = [c / 17 for c in range(18)]
    young, middle, old = bench.band_f1s(per_class)
    assert old == pytest.approx(sum(c / 17 for c in (2, 5, 8, 11, 14, 17)) / 6)
    assert young == pytest.approx(sum(c / 17 for c in (0, 3, 6, 9, 12, 15)) / 6)
    assert middle == pytest.approx(sum(c / 17 for c in (1, 4, 7, 10, 13, 16)) / 6)
    assert (young + middle + old) / 3 == pytest.approx(sum(per_class) / 18)  # macro-F1 is their mean
    assert bench.band_f1s(None) == [None, None, None]


def test_a_blend_rows_options_are_its_last_parts_and_its_recipe_keeps_its_own():
    """`blend:A+decision=prior`: the options are the trailing parts, each its last one, so a blended recipe that
    itself ends in decision=none (the trained row without the prior) keeps it."""
    trained = "recommended+extra=x+decision=none"
    assert bench.blend_parts(f"blend:{trained}+decision=prior") == ([trained], "prior", 0)
    assert bench.blend_parts(f"blend:{trained}+decision=bias+group_eval=7") == ([trained], "bias", 7)
    assert bench.blend_parts("blend:seed|seed+lr=3e-3") == (["seed", "seed+lr=3e-3"], "none", 0)


def test_the_plot_of_a_bench_where_every_score_is_zero_warns_nothing(tmp_path):
    import warnings

    from src.measure.bench import plot

    zero = {"eval_f1": 0.0, "oof_f1": 0.0, "mask_f1": 0.0, "gender_f1": 0.0, "age_f1": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "identical low and high xlims" was one
        plot([{**zero, "recipe": "seed"}, {**zero, "recipe": "recommended"}], "seed", tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 0
