"""tracker=...: the epochs and final scores reach the tracker, read back with its own reader."""
import importlib.util
import json

import pandas as pd
import pytest

from src.core.run_dir import RunDir
from src.core.tracker import EPOCH_SCALARS, FINAL_SCALARS
from src.pipeline.job import run_job
from tests.helpers import FAST, stage


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in a TensorBoard log folder, through TensorBoard's own event reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_every_epoch_and_the_final_scores(tiny_data, tmp_path):
    result = run_job(tiny_data, None, FAST + ["folds=all", "epochs=2", "scheduler=cosine", "tracker=tensorboard"],
                     "tb", tmp_path / "out")
    run = RunDir(result["run_dir"])
    logged = scalars(run.tensorboard)
    for fold in (0, 1):
        log = pd.read_csv(run.fold(fold).log)
        for name in EPOCH_SCALARS:
            steps = logged[f"fold{fold}/{name}"]
            assert [s for s, _ in steps] == [1, 2]
            assert [v for _, v in steps] == pytest.approx(log[name].tolist(), rel=1e-4, abs=1e-5)
        assert log["lr"].iloc[1] < log["lr"].iloc[0]  # the cosine schedule's second epoch
    metrics = run.read_metrics()
    eval_metrics = json.loads(run.eval_metrics.read_text())
    for name in FINAL_SCALARS:
        assert logged[f"oof/{name}"][0][1] == pytest.approx(metrics["oof"][name], abs=1e-6)
        assert logged[f"eval/{name}"][0][1] == pytest.approx(eval_metrics[name], abs=1e-6)


def test_no_tracker_by_default(tiny_data, tmp_path):
    result = run_job(tiny_data, None, FAST + ["folds=0"], "plain", tmp_path / "out")
    run = RunDir(result["run_dir"])
    assert run.load_config().tracker == "none" and not run.tensorboard.exists()


def test_a_tracker_whose_package_is_missing_is_refused_up_front(tiny_data, tmp_path, capsys):
    missing = [t for t in ("mlflow", "wandb") if importlib.util.find_spec(t) is None]
    if not missing:
        pytest.skip("mlflow and wandb are both installed here")
    out = tmp_path / "out"
    rc = stage("train", ["--data", str(tiny_data), "--output", str(out), *FAST, f"tracker={missing[0]}"])
    err = capsys.readouterr().err
    assert rc == 2 and f"tracker={missing[0]}" in err and "pip install" in err and "Traceback" not in err
    assert not out.exists()  # refused before any folder


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed (optional)")
def test_mlflow_local_store(tiny_data, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = run_job(tiny_data, None, FAST + ["folds=0", "epochs=2", "tracker=mlflow"], "ml", tmp_path / "out")
    run = RunDir(result["run_dir"])
    client = mlflow.tracking.MlflowClient(tracking_uri=run.mlruns.resolve().as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("mask-classification").experiment_id])
    assert found.info.run_name == run.name
    history = client.get_metric_history(found.info.run_id, "fold0/val_f1")
    log = pd.read_csv(run.fold(0).log)
    assert sorted((h.step, round(h.value, 4)) for h in history) == [(1, round(log["val_f1"][0], 4)),
                                                                     (2, round(log["val_f1"][1], 4))]
    assert found.data.metrics["oof/f1"] == pytest.approx(run.read_metrics()["oof"]["f1"], abs=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (optional)")
def test_wandb_offline_run(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = run_job(tiny_data, None, FAST + ["folds=0", "tracker=wandb"], "wb", tmp_path / "out")
    run = RunDir(result["run_dir"])
    run_id = run.tracker_id_file("wandb").read_text().strip()
    # the fold's writer and the final scores' writer append to one W&B run, kept offline in the folder
    logs = sorted(run.wandb.glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(logs) == 2 and all(p.stat().st_size > 0 for p in logs)


def test_processes_opening_at_once_share_one_tracker_run_id(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from src.core.tracker import shared_id

    run = RunDir(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: shared_id(run, "mlflow"), range(32)))
    assert len(ids) == 1 and run.tracker_id_file("mlflow").read_text().strip() in ids
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow_run_id"]  # no temporary file left
