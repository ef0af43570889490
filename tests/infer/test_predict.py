"""The predictor on a folder of awkward photos, and the ONNX export agreeing with PyTorch."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from src.core.classes import PROB_COLS
from src.core.run_dir import RunDir
from src.data.background import Background
from src.data.demo import generate_outside
from src.infer import predict
from tests.helpers import copy_run, stage, train_fast


@pytest.fixture(scope="module")
def run_dir(tiny_run, tmp_path_factory):
    return copy_run(tiny_run, tmp_path_factory.mktemp("predict_runs") / "p")


def test_predict_gives_the_pipelines_eval_probabilities(run_dir, tiny_data_master):
    """One inference path: `predict` on the eval photos reproduces the run's own eval_probs.csv
    (the pipeline read them from the decoded cache, predict decodes each file itself)."""
    info = pd.read_csv(tiny_data_master / "eval" / "info.csv")
    df = predict.predict(run_dir, [tiny_data_master / "eval" / "images" / i for i in info["ImageID"]], "torch")
    saved = pd.read_csv(run_dir.eval_probs)
    assert len(run_dir.finished_folds()) == 2
    np.testing.assert_allclose(df[PROB_COLS].to_numpy(float), saved[PROB_COLS].to_numpy(float), atol=2e-5)


@pytest.fixture
def photos(tmp_path, tiny_data_master):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    src = Image.open(next((tiny_data_master / "eval" / "images").iterdir())).convert("RGB")
    src.resize((300, 400)).save(d / "plain.jpg")
    rgba = src.convert("RGBA")
    rgba.putalpha(128)
    rgba.save(d / "alpha.png")
    src.convert("L").save(d / "sub" / "grey.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    src.rotate(90, expand=True).save(d / "rotated.jpg", exif=exif)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "._plain.jpg").write_bytes(b"junk")
    (d / "notes.txt").write_text("not an image")
    return d


def test_predict_folder_of_mixed_photos(run_dir, photos):
    df = predict.predict(run_dir, predict.collect_images([str(photos)]), "torch")
    names = {p.split("/")[-1]: r for p, r in zip(df["path"], df.to_dict("records"))}
    assert set(names) == {"plain.jpg", "alpha.png", "grey.jpg", "rotated.jpg", "broken.jpg"}
    assert names["broken.jpg"]["error"] and names["broken.jpg"]["class"] == ""
    good = df[df["error"] == ""]
    assert len(good) == 4
    probs = good[predict.PROB_COLS].to_numpy(dtype=float)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert (good["class"].astype(int) == probs.argmax(1)).all()
    assert set(good["mask"]) <= {"wear", "incorrect", "not_worn"}


def test_rotated_photo_predicted_like_the_upright_one(run_dir, photos, tiny_data_master):
    src = next((tiny_data_master / "eval" / "images").iterdir())
    Image.open(src).convert("RGB").save(photos / "upright.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(src).convert("RGB").rotate(90, expand=True).save(photos / "turned.jpg", exif=exif, quality=95)
    df = predict.predict(run_dir, [photos / "upright.jpg", photos / "turned.jpg"], "torch")
    a, b = df[predict.PROB_COLS].to_numpy(dtype=float)
    np.testing.assert_allclose(a, b, atol=0.02)


def test_onnx_export_matches_torch(run_dir, photos):
    paths = predict.collect_images([str(photos)])
    ref = predict.predict(run_dir, paths, "torch")
    predict.export_onnx(run_dir)
    got = predict.predict(run_dir, paths, "onnx")
    ok = ref["error"] == ""
    diff = np.abs(ref.loc[ok, predict.PROB_COLS].to_numpy(float) - got.loc[ok, predict.PROB_COLS].to_numpy(float))
    assert diff.max() < 1e-4
    assert (got["error"] != "").sum() == 1


def test_cli_writes_csv_and_never_overwrites(run_dir, photos, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert stage("predict", ["--run", str(run_dir.path), "--out", str(out), "--engine", "torch", str(photos)]) == 0
    df = pd.read_csv(out)
    assert len(df) == 5 and "p17" in df.columns
    assert stage("predict", ["--run", str(run_dir.path), "--out", str(out), str(photos)]) == 2
    assert "exists" in capsys.readouterr().err


def test_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert stage("predict", ["--run", str(tmp_path / "nope"), str(tmp_path)]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_predict_and_the_export_decide_as_the_runs_eval_did(tiny_data_master, tmp_path):
    """decision=prior (here with outside persons, so the biases are not zero): predict, by PyTorch and by
    the ONNX export, gives the run's eval_probs.csv, biases included."""
    faces = generate_outside(tmp_path / "faces", n=4, seed=3)
    assert train_fast(tiny_data_master, tmp_path, f"extra={faces}", "decision=prior", "folds=0", name="d") == 0
    run = RunDir(tmp_path / "d")
    assert any(abs(b) > 0.01 for b in run.decision_biases())
    info = pd.read_csv(tiny_data_master / "eval" / "info.csv")
    paths = [tiny_data_master / "eval" / "images" / i for i in info["ImageID"]]
    saved = pd.read_csv(run.eval_probs)[PROB_COLS].to_numpy(float)
    by_torch = predict.predict(run, paths, "torch")[PROB_COLS].to_numpy(float)
    np.testing.assert_allclose(by_torch, saved, atol=2e-5)
    predict.export_onnx(run)
    by_onnx = predict.predict(run, paths, "onnx")[PROB_COLS].to_numpy(float)
    np.testing.assert_allclose(by_onnx, saved, atol=1e-4)


@pytest.mark.parametrize("method", ["grabcut", "selfie"])
def test_predict_removes_the_background_as_the_runs_eval_did(method, tiny_data_master, tmp_path, monkeypatch,
                                                              capsys):
    """background= set: eval read the cut-out photos from the cache (outside persons seeded by their drawn boxes),
    predict and the ONNX path cut each file out themselves, and give the same probabilities."""
    if method == "selfie":
        pytest.importorskip("mediapipe")
    faces = generate_outside(tmp_path / "faces", n=3, seed=3)
    assert train_fast(tiny_data_master, tmp_path, f"extra={faces}", f"background={method}", "folds=0",
                      name="b") == 0
    run = RunDir(tmp_path / "b")
    info = pd.read_csv(tiny_data_master / "eval" / "info.csv")
    paths = [tiny_data_master / "eval" / "images" / i for i in info["ImageID"]]
    saved = pd.read_csv(run.eval_probs)[PROB_COLS].to_numpy(float)
    np.testing.assert_allclose(predict.predict(run, paths, "torch")[PROB_COLS].to_numpy(float), saved, atol=2e-5)
    predict.export_onnx(run)
    assert f"background removed first (background={method}" in capsys.readouterr().out  # the network does not
    np.testing.assert_allclose(predict.predict(run, paths, "onnx")[PROB_COLS].to_numpy(float), saved, atol=1e-4)
    monkeypatch.setattr(Background, "of", classmethod(lambda cls, cfg: None))  # the photos as they are
    kept = predict.predict(run, paths, "torch")[PROB_COLS].to_numpy(float)
    assert not np.allclose(kept, saved, atol=2e-5)  # the removal is what makes them agree
