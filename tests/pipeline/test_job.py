"""A tiny end-to-end run (seconds): folds -> train -> TTA ensemble -> submission -> report."""
import json

import numpy as np
import pandas as pd
import pytest

from src.pipeline import job as pipeline
from tests.helpers import train_fast


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "output"


def _run(data, name, *extra, out=None):
    return train_fast(data, out or data.parent / "output", *extra, name=name)


def test_end_to_end_writes_valid_submission_and_report(tiny_run, tiny_data_master):
    run = tiny_run.path
    info = pd.read_csv(tiny_data_master / "eval" / "info.csv")
    sub = pd.read_csv(run / "submission.csv")
    assert list(sub.columns) == ["ImageID", "ans"]
    assert sub["ImageID"].tolist() == info["ImageID"].tolist()  # each once, in info.csv order
    assert sub["ans"].between(0, 17).all()
    for f in ("report.md", "metrics.json", "confusion_oof.png", "confusion_eval.png", "curves.png",
              "config.yaml", "folds.csv", "eval_probs.csv", "fold0_best.pt", "fold0_last.pt",
              "fold1_oof.csv", "fold1_log.csv"):
        assert (run / f).is_file(), f
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["oof_per_fold"]) == {"0", "1"}
    assert 0 <= metrics["oof"]["f1"] <= 1 and metrics["eval"]["n"] == len(info)
    assert len(metrics["oof"]["per_class_f1"]) == 18
    report = (run / "report.md").read_text()
    assert "out-of-fold" in report and "eval (fold ensemble + TTA)" in report and "model: test_efficientnet" in report
    oof = pd.concat([pd.read_csv(run / f"fold{k}_oof.csv") for k in (0, 1)])
    folds = pd.read_csv(run / "folds.csv", dtype={"person": str})
    assert len(oof) == 7 * len(folds)  # every training image predicted exactly once out of fold
    assert oof["path"].is_unique


def test_runs_are_reproducible_and_never_overwritten(tiny_data, out_dir):
    assert _run(tiny_data, "rep", "folds=0") == 0
    first = (out_dir / "rep" / "fold0_oof.csv").read_bytes()
    assert _run(tiny_data, "rep", "folds=0") == 0
    assert (out_dir / "rep" / "fold0_oof.csv").read_bytes() == first  # untouched
    again = out_dir / "rep-2" / "fold0_oof.csv"
    assert again.read_bytes() == first  # same seed, same numbers on CPU
    assert not (out_dir / "rep" / "fold1_best.pt").exists()  # folds=0 trains fold 0 only


def test_training_age_boundary_changes_training_not_scoring(tiny_data, out_dir):
    assert _run(tiny_data, "b55", "folds=0", "age_boundary=55", "cache=false") == 0  # the plain loader too
    oof = pd.read_csv(out_dir / "b55" / "fold0_oof.csv")
    t = pd.read_csv(tiny_data / "train" / "train.csv", dtype={"id": str}).set_index("path")
    from src.core import classes
    ages = oof["path"].map(lambda p: t.loc[p.split("/")[-2], "age"])
    assert (classes.decode(oof["label"])[2] == classes.age_band(ages.to_numpy())).all()  # scored with 60


def test_bad_data_exits_nonzero_naming_the_path(tiny_data, out_dir, capsys):
    bad = next((tiny_data / "train" / "images").iterdir()) / "mask1.jpg"
    if bad.exists():
        bad.write_bytes(b"")
    else:
        bad = next(bad.parent.glob("mask1.*"))
        bad.write_bytes(b"")
    assert _run(tiny_data, "bad") == 2
    assert f"{bad}: empty file" in capsys.readouterr().err
    assert not (out_dir / "bad").exists()  # nothing written before the data is valid


def test_bad_override_exits_nonzero(tiny_data, out_dir, capsys):
    assert _run(tiny_data, "x", "epochz=1") == 2
    assert "unknown config key" in capsys.readouterr().err


def test_parallel_folds_match_sequential_training(tiny_data, out_dir):
    assert _run(tiny_data, "seq") == 0
    assert _run(tiny_data, "par", "parallel_folds=2") == 0
    for k in (0, 1):
        a = pd.read_csv(out_dir / "seq" / f"fold{k}_oof.csv")
        b = pd.read_csv(out_dir / "par" / f"fold{k}_oof.csv")
        cols = [f"p{i}" for i in range(18)]
        assert (a[cols] - b[cols]).abs().to_numpy().max() < 1e-3
    assert (out_dir / "par" / "submission.csv").exists()
    assert "parallel_folds: 2" in (out_dir / "par" / "config.yaml").read_text()


SHIFT_AND_COLOUR = "[HorizontalFlip: {p: 0.5}, Affine: {translate_px: [-2, 2], p: 0.5}, ColorJitter: {p: 0.5}]"


def test_training_with_and_without_the_cache_gives_the_same_numbers(tiny_data, out_dir):
    """One augmentation (per photo, seeded per draw, in the loader's workers) and one sample order for both
    data paths, whatever the number of workers."""
    opts = ["folds=0", "epochs=2", f"augment={SHIFT_AND_COLOUR}", "cutmix=0.5"]
    assert _run(tiny_data, "cached", *opts, "cache=true", "num_workers=0") == 0
    assert _run(tiny_data, "plain", *opts, "cache=false", "num_workers=2") == 0
    a, b = out_dir / "cached", out_dir / "plain"
    assert (a / "fold0_oof.csv").read_bytes() == (b / "fold0_oof.csv").read_bytes()
    assert (a / "submission.csv").read_bytes() == (b / "submission.csv").read_bytes()
    la, lb = pd.read_csv(a / "fold0_log.csv"), pd.read_csv(b / "fold0_log.csv")
    cols = ["train_loss", "train_f1", "val_nll", "val_f1"]
    assert la[cols].equals(lb[cols])


def test_the_background_is_removed_alike_in_the_loaders_worker_processes(tiny_data, out_dir):
    """cache=false: each worker process cuts the photos out itself and gives the pixels the cache holds, also in
    a process whose main thread ran the segmenter already (as an earlier run in a bench or a study leaves it): a
    worker forked from it would wait forever on that graph, or abort making its own."""
    pytest.importorskip("mediapipe")
    from src.data.background import selfie_alpha
    selfie_alpha(np.zeros((64, 64, 3), np.uint8))
    opts = ["folds=0", "background=selfie", "background_fill=blur"]
    assert _run(tiny_data, "cached", *opts, "cache=true", "num_workers=0") == 0
    assert _run(tiny_data, "plain", *opts, "cache=false", "num_workers=2") == 0
    a, b = out_dir / "cached", out_dir / "plain"
    assert (a / "fold0_oof.csv").read_bytes() == (b / "fold0_oof.csv").read_bytes()
    assert (a / "submission.csv").read_bytes() == (b / "submission.csv").read_bytes()


def test_quality_options_run_end_to_end(tiny_data, out_dir):
    assert _run(tiny_data, "opts", "folds=0", "head=multi", "cutmix=0.5", "sampler=balanced", "loss=focal_f1",
                "drop_ages=57-59", f"augment={SHIFT_AND_COLOUR}") == 0
    sub = pd.read_csv(out_dir / "opts" / "submission.csv")
    assert sub["ans"].between(0, 17).all()


def test_face_crop_run_counts_fallbacks(tiny_data, out_dir):
    assert _run(tiny_data, "faces", "folds=0", "crop=face") == 0
    m = json.loads((out_dir / "faces" / "metrics.json").read_text())
    fc = m["face_crops"]
    assert fc["train_photos"] == 84 and fc["eval_photos"] == 28
    assert 0 <= fc["train_fallbacks"] <= fc["train_photos"]
    assert "## Face crops" in (out_dir / "faces" / "report.md").read_text()
    assert (out_dir / "cache" / "faces.csv").exists()


def test_out_of_memory_names_what_to_lower_and_the_run_continues(tiny_data, out_dir, monkeypatch, capsys):
    import torch

    real = pipeline.train_fold

    def oom_in_fold_1(cfg, ctx, table, fold, run, boxes=None, on_epoch=None):
        if fold == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(cfg, ctx, table, fold, run, boxes, on_epoch)

    monkeypatch.setattr(pipeline, "train_fold", oom_in_fold_1)
    assert _run(tiny_data, "oom") == 2
    err = capsys.readouterr().err
    assert "ran out of memory" in err and "batch_size=16" in err and "img_size=32,24" in err
    assert "batch_size=8" in err and "Traceback" not in err
    run = out_dir / "oom"
    assert (run / "fold0_result.json").exists() and not (run / "fold1_result.json").exists()
    first = (run / "fold0_best.pt").stat().st_mtime_ns
    monkeypatch.setattr(pipeline, "train_fold", real)
    assert _run(tiny_data, "oom") == 0  # the same command continues the run: fold 0 is not trained again
    assert (run / "fold0_best.pt").stat().st_mtime_ns == first and (run / "fold1_result.json").exists()
    assert not (out_dir / "oom-2").exists()
    report = (run / "report.md").read_text()
    assert "peak host RAM" in report and " GiB | – |" in report  # host memory measured; no GPU here
