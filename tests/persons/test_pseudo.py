"""Pseudo-labels: confident eval photos join every fold's training rows, never a validation fold."""
import json

import pandas as pd
import pytest
import torch

from src.core import classes
from src.core.run_dir import RunDir
from src.model.losses import unpack
from src.persons.pseudo import BAND_AGES
from src.pipeline import job as pipeline
from src.train.trainer import split_masks, training_targets
from tests.helpers import FAST, stage


@pytest.fixture(scope="module")
def teacher(tiny_run):
    return tiny_run  # only read


def test_pseudo_rows_are_in_every_folds_training_rows_and_no_validation(teacher, tiny_data, tmp_path):
    job = pipeline.prepare(tiny_data, "seed", [*FAST, f"pseudo_from={teacher.path}", "pseudo_threshold=0"],
                           "s", tmp_path)
    try:
        pseudo = job.table["person"].str.startswith("pseudo_")
        assert pseudo.sum() == len(job.eval_table) == job.pseudo["photos"] == sum(job.pseudo["per_class"])
        for fold in (0, 1):
            in_train, in_val = split_masks(job.cfg, job.table, fold)
            assert in_train[pseudo.to_numpy()].all() and not in_val[pseudo.to_numpy()].any()
        assert set(job.table.loc[pseudo, "path"]) == set(job.eval_table["path"])
        # a pseudo-label knows the band, not the age: age_head=ordinal trains the thresholds the band decides
        rows = job.table[pseudo]
        bands = classes.age_band(rows["age"].to_numpy())
        want = [BAND_AGES[int(b)] for b in bands]
        assert list(zip(rows["age_lo"].astype(int), rows["age_hi"].astype(int))) == want
        _, packed = training_targets(job.cfg.replace(age_head="ordinal"), job.table)
        _, lo, hi = unpack(torch.tensor(packed[pseudo.to_numpy()]))
        assert lo.tolist() == [w[0] for w in want] and hi.tolist() == [min(w[1], 60) for w in want]
    finally:
        job.run.unlock()


def test_a_pseudo_labelled_run_reports_its_photos_and_keeps_them_out_of_the_oof(teacher, tiny_data, tmp_path):
    assert stage("train", ["--data", str(tiny_data), "--config", "seed", "--name", "p", "--output", str(tmp_path),
                          *FAST, f"pseudo_from={teacher.path}", "pseudo_threshold=0.05"]) == 0
    run = RunDir(tmp_path / "p")
    stats = json.loads(run.metrics.read_text())["pseudo"]
    teacher_probs = pd.read_csv(teacher.eval_probs).iloc[:, 1:].to_numpy()
    assert stats["photos"] == int((teacher_probs.max(1) >= 0.05).sum())
    oof = run.load_oof()
    assert not oof["person"].astype(str).str.startswith("pseudo_").any() and len(oof) == 84
    assert "## Pseudo-labels" in run.report.read_text()


def test_pseudo_from_a_run_that_is_not_there_is_refused(tiny_data, tmp_path, capsys):
    code = stage("train", ["--data", str(tiny_data), "--config", "seed", "--output", str(tmp_path), *FAST,
                          "pseudo_from=no_such_run"])
    err = capsys.readouterr().err
    assert code == 2 and "pseudo_from=no_such_run" in err and "Traceback" not in err
    assert not (tmp_path / "seed").exists()  # refused before the run folder is made
