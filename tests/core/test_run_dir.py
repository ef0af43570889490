"""The run folder's owner: names, markers, finished folds, resume-or-new, older runs."""
import json
import os

import pandas as pd
import pytest

from src.core.config import load_config
from src.core.run_dir import RunBusy, RunDir, find_run, open_run


def _finish_fold(run: RunDir, k: int) -> None:
    run.fold(k).oof.write_text("fold,person,label\n")
    run.fold(k).best.write_bytes(b"a checkpoint")
    run.finish_fold(k, {"fold": k})


def test_a_fold_is_finished_only_by_its_marker_and_the_list_reads_the_markers(tmp_path):
    run = RunDir(tmp_path)
    assert run.finished_folds() == [] and not run.fold(0).finished()
    run.fold(3).last.write_bytes(b"partial")  # an interrupted fold leaves checkpoints, not a marker
    _finish_fold(run, 1)
    _finish_fold(run, 10)
    assert run.finished_folds() == [1, 10] and run.fold(1).finished() and not run.fold(3).finished()
    assert run.fold_result(10) == {"fold": 10}
    assert run.best_checkpoints() == [tmp_path / "fold1_best.pt", tmp_path / "fold10_best.pt"]
    with pytest.raises(FileNotFoundError, match="no finished fold"):
        RunDir(tmp_path / "empty").best_checkpoints()
    run.fold(10).best.unlink()  # finished, its checkpoint removed: named, not a torch.load traceback later
    with pytest.raises(FileNotFoundError, match=r"fold10_best.pt: missing \(fold 10 of this run has no checkpoint"):
        run.best_checkpoints()


def test_the_run_is_finished_by_its_marker_written_after_the_metrics(tmp_path):
    run = RunDir(tmp_path)
    assert not run.finished()
    run.finish_run({"oof": {"f1": 0.5}})
    assert run.finished() and run.marker.exists() and run.read_metrics() == {"oof": {"f1": 0.5}}


def test_runs_made_before_markers_still_count_as_finished(tmp_path):
    run = RunDir(tmp_path)
    run.fold(2).result.write_text(json.dumps({"fold": 2}))  # the old last file of a fold
    run.metrics.write_text("{}")  # the old last file of a run
    assert run.finished_folds() == [2] and run.finished()


def test_load_oof_reads_the_finished_folds_with_person_ids_as_text(tmp_path):
    run = RunDir(tmp_path)
    for k in (0, 1):
        pd.DataFrame({"fold": [k], "person": ["000007"], "label": [k]}).to_csv(run.fold(k).oof, index=False)
        run.finish_fold(k, {"fold": k})
    oof = run.load_oof()
    assert oof["person"].tolist() == ["000007", "000007"] and oof["fold"].tolist() == [0, 1]
    with pytest.raises(FileNotFoundError, match="out-of-fold"):
        RunDir(tmp_path / "none").load_oof([0])


def test_open_run_continues_the_unfinished_run_of_the_same_config_only(tmp_path, capsys):
    cfg = load_config("seed", ["epochs=2"]).replace(data="/d")
    first = open_run("r", cfg, tmp_path)
    first.save_config(cfg)
    with pytest.raises(RunBusy, match=f"process {os.getpid()}"):  # held: a second writer is told by whom
        open_run("r", cfg, tmp_path)
    first.unlock()

    def opened(c):
        run = open_run("r", c, tmp_path)
        run.unlock()
        return run.path

    assert opened(cfg) == first.path  # unfinished, same config: continued
    assert opened(cfg.replace(epochs=3)) == tmp_path / "r-2"  # another config: a new folder, and the note says why
    assert f"note: {first.path} already exists (unfinished, of another config: epochs 2 there, 3 here); this run " \
           f"writes to {tmp_path / 'r-2'}" in capsys.readouterr().out
    assert opened(cfg.replace(data="/other")) == tmp_path / "r-3"  # other data: new
    assert opened(cfg.replace(threads=1)) == first.path  # machine keys don't count
    first.finish_run({})
    assert opened(cfg) == tmp_path / "r-4"  # a finished run is never written over


def test_find_run_by_name_or_folder(tmp_path, monkeypatch):
    from src.core import run_dir

    monkeypatch.setattr(run_dir, "OUTPUT", tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.yaml").write_text("epochs: 1\n")
    assert find_run("a").path == tmp_path / "a" and find_run(str(tmp_path / "a")).path == tmp_path / "a"
    with pytest.raises(FileNotFoundError, match="no run folder"):
        find_run("b")


def test_the_newest_audit_file_is_the_highest_number(tmp_path):
    run = RunDir(tmp_path)
    assert run.latest_audit_file() is None
    for name in ("audit.csv", "audit-2.csv", "audit-9.csv", "audit-10.csv", "audit-10_vs_noise.csv"):
        (tmp_path / name).write_text("id\n")
    assert run.latest_audit_file().name == "audit-10.csv"  # by number, not by name; no side file
