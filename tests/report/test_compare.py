"""`compare`: two runs are the same numbers, or the file that differs is named."""
import csv
import io
import json

import torch

from src.core.files import atomic_save
from src.report.compare import compare_runs
from tests.helpers import copy_run, refused, stage


def set_column(path, column: str, value: str) -> None:
    """One column of a CSV set to `value` in every row, the other columns' text untouched."""
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({**r, column: value} for r in rows)


def verdicts(a, b) -> dict:
    return dict(compare_runs(a, b))


def test_a_copy_is_the_same_and_only_the_machine_may_differ(tiny_run, tmp_path, capsys):
    copy = copy_run(tiny_run, tmp_path / "copy")
    assert stage("compare", [str(tiny_run.path), str(copy.path)]) == 0
    assert "the same numbers" in capsys.readouterr().out
    set_column(copy.fold(0).log, "seconds", "99.5")  # another machine's clock
    m = json.loads(copy.metrics.read_text())
    m["wall_seconds"] = m.get("wall_seconds", 0) + 9
    copy.metrics.write_text(json.dumps(m))
    ckpt = torch.load(copy.fold(0).last, weights_only=False)
    ckpt["train_seconds"] += 3
    atomic_save(ckpt, copy.fold(0).last)
    v = verdicts(tiny_run, copy)
    assert v[copy.fold(0).log.name] == v[copy.metrics.name] == v[copy.fold(0).last.name] == "same numbers"
    assert v["submission.csv"] == "identical"


def test_a_changed_number_a_changed_weight_and_a_missing_file_are_named(tiny_run, tmp_path, capsys):
    copy = copy_run(tiny_run, tmp_path / "copy")
    set_column(copy.fold(1).log, "val_f1", "0.12345")
    ckpt = torch.load(copy.fold(0).best, weights_only=False)
    name = next(k for k, t in ckpt["model"].items() if t.is_floating_point())
    ckpt["model"][name] = ckpt["model"][name] + 1e-6  # one weight tensor, nudged
    atomic_save(ckpt, copy.fold(0).best)
    copy.submission.unlink()
    v = verdicts(tiny_run, copy)
    assert v[copy.fold(1).log.name] == v[copy.fold(0).best.name] == "DIFFERENT"
    assert v["submission.csv"] == "only in A" and v["folds.csv"] == "identical"
    assert stage("compare", [str(tiny_run.path), str(copy.path)]) == 1
    assert "3 file(s) differ" in capsys.readouterr().out


def test_a_run_that_is_not_there_is_refused(tiny_run, tmp_path, capsys):
    refused(stage("compare", [str(tiny_run.path), str(tmp_path / "nowhere")]), capsys, "nowhere", "config.yaml")


def test_the_same_command_twice_is_the_same_numbers_under_two_names(tiny_data_master, tiny_run, tmp_path, capsys):
    """RUN and RUN-2 of one command: only the run's own name differs (it was 'metrics.json DIFFERENT')."""
    from src.core.run_dir import RunDir
    from tests.helpers import train_fast

    first = copy_run(tiny_run, tmp_path / "tiny")
    assert train_fast(tiny_data_master, tmp_path, name="tiny") == 0  # finished: the same command makes tiny-2
    again = RunDir(tmp_path / "tiny-2")
    assert json.loads(again.metrics.read_text())["run"] == "tiny-2"
    capsys.readouterr()
    assert stage("compare", [str(first.path), str(again.path)]) == 0, capsys.readouterr().out
    m = json.loads(again.metrics.read_text())
    m["oof"]["f1"] += 0.01  # a number still counts
    again.metrics.write_text(json.dumps(m))
    assert verdicts(first, again)["metrics.json"] == "DIFFERENT"
