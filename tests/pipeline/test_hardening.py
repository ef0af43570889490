"""Every mistake a user can make: exit code 2, a message naming the culprit, no traceback, and
nothing made or left behind where the check should come first; and nothing silently wrong."""
import fcntl
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from src.core.config import load_config
from src.data.demo import generate_outside
from src.data.tables import DataError, load_train, read_image
from src.infer import predict
from src.measure import bench
from src.pipeline.job import prepare
from tests.helpers import FAST, copy_run, refused, stage, train_fast

# ---- what the user typed --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../escape", "/tmp/abs-run", "a/b", ".", ".hidden"])
def test_a_run_name_must_be_a_plain_name(tiny_data, tmp_path, capsys, name):
    out = tmp_path / "out"
    refused(train_fast(tiny_data, out, name=name), capsys, "plain folder name")
    assert not out.exists() and not (tmp_path / "escape").exists()


@pytest.mark.parametrize("bad", ["epochs=0", "lr=0", "batch_size=0", "lr=-1", "device=gpu", "n_folds=1"])
def test_bad_values_are_refused_before_any_folder(tiny_data, tmp_path, capsys, bad):
    out = tmp_path / "out"
    refused(train_fast(tiny_data, out, bad), capsys, bad.split("=")[0])
    assert not out.exists()


def test_more_folds_than_persons_leaves_no_run_folder(tiny_data, tmp_path, capsys):
    out = tmp_path / "out"
    refused(train_fast(tiny_data, out, "n_folds=50", "folds=0"), capsys, "12 person(s) cannot be split", "n_folds=50")
    assert not (out / "h").exists()


def test_a_recipe_with_a_yaml_error_names_the_file_and_line(tiny_data, tmp_path, capsys):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("epochs: 2\nlr: [1e-3\nmodel: resnet18\n")
    code = stage("train", ["--data", str(tiny_data), "--config", str(recipe), "--output", str(tmp_path / "out")])
    refused(code, capsys, str(recipe), "line")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_refused_up_front(tiny_data, tmp_path, capsys):
    refused(train_fast(tiny_data, tmp_path / "out", "device=cuda"), capsys, "device=cuda", "no CUDA GPU")
    assert not (tmp_path / "out").exists()


def test_argument_abbreviations_are_not_guessed(tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        stage("train", ["--dat", str(tiny_data), "--output", str(tmp_path / "out")])
    assert e.value.code == 2 and "--dat" in capsys.readouterr().err


def test_an_unwritable_output_is_a_message_naming_the_path(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    refused(train_fast(tiny_data, blocker / "out"), capsys, "cannot write", str(blocker))


def test_speed_needs_at_least_one_image(capsys):
    with pytest.raises(SystemExit) as e:
        stage("speed", ["--images", "0"])
    assert e.value.code == 2 and "--images" in capsys.readouterr().err


def test_bench_checks_every_recipe_before_training_the_first(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    trained = []
    monkeypatch.setattr(bench, "run_job", lambda *a, **k: trained.append(a))
    code = stage("bench", ["--data", str(tiny_data), "--recipes", "seed,seed+epochz=2", "--name", "b", *FAST])
    refused(code, capsys, "recipe seed+epochz=2", "epochz")
    assert trained == [] and not (tmp_path / "output" / "bench" / "b" / "seed").exists()


# ---- the data -------------------------------------------------------------------------------

def _edit_train_csv(data, fn):
    csv = data / "train" / "train.csv"
    df = pd.read_csv(csv, dtype=str)
    fn(df)
    df.to_csv(csv, index=False)


def test_train_and_eval_problems_come_in_one_list(tiny_data, tmp_path, capsys):
    _edit_train_csv(tiny_data, lambda df: df.__setitem__("gender", ["robot"] + list(df["gender"][1:])))
    next((tiny_data / "eval" / "images").iterdir()).unlink()
    refused(train_fast(tiny_data, tmp_path / "out"), capsys, "2 problem(s)", "robot", "is missing")
    assert not (tmp_path / "out" / "h").exists()


def test_implausible_ages_duplicate_folders_and_escaping_paths_are_errors(tiny_data):
    def damage(df):
        df.loc[0, "age"] = "0"
        df.loc[1, "age"] = "150"
        df.loc[2, "path"] = df.loc[3, "path"]  # two ids, one folder: its photos would land in two folds
        df.loc[4, "path"] = "../../eval/images"  # outside train/images
    _edit_train_csv(tiny_data, damage)
    with pytest.raises(DataError) as e:
        load_train(tiny_data, check_pixels=False)
    text = str(e.value)
    assert "age 0 is not a plausible age" in text and "age 150 is not a plausible age" in text
    assert "already the folder of another row" in text and "is not a folder inside" in text


def test_a_tiny_photo_is_an_error(tiny_data):
    photo = next(p for p in (tiny_data / "train" / "images").rglob("mask1.*"))
    Image.new("RGB", (1, 1)).save(photo)
    with pytest.raises(DataError, match=r"1x1 pixels is too small"):
        load_train(tiny_data)


def test_a_16_bit_photo_is_decoded_not_whitened(tmp_path):
    grey = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode.startswith("I;16")
    rgb = read_image(tmp_path / "wide.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    np.testing.assert_allclose(rgb[..., 0], grey / 257, atol=0.51)  # the whole range, not clipped to white
    Image.fromarray(grey.astype(np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(ValueError, match="mode F"):
        read_image(tmp_path / "float.tiff")


def test_palette_and_cmyk_photos_become_the_right_colours(tmp_path):
    img = Image.new("RGB", (32, 32), (200, 30, 60))
    img.quantize(colors=4).save(tmp_path / "p.png")  # an exact palette entry
    img.convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    assert np.abs(read_image(tmp_path / "p.png").astype(int) - [200, 30, 60]).max() <= 8
    assert np.abs(read_image(tmp_path / "c.jpg").astype(int) - [200, 30, 60]).max() <= 8


def test_corrections_errors_cite_the_files_own_line(tiny_data, tmp_path):
    from src.data.tables import load_corrections

    ids = pd.read_csv(tiny_data / "train" / "train.csv", dtype=str)["id"]
    f = tmp_path / "c.csv"
    f.write_text(f"# where these came from\nid,gender\n# a note\n{ids[0]},male\n\n{ids[1]},robot\n")
    with pytest.raises(DataError, match=rf"{f} line 6 \(id {ids[1]}\)"):
        load_corrections(f)


# ---- outputs that can't lie -----------------------------------------------------------------

@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory):
    return copy_run(tiny_run, tmp_path_factory.mktemp("hardening_runs") / "h")


def test_a_stale_onnx_export_is_never_used(finished, tiny_data_master, capsys):
    photos = sorted((tiny_data_master / "eval" / "images").iterdir())[:3]
    predict.export_onnx(finished)
    assert stage("predict", ["--run", str(finished.path), "--engine", "onnx", *map(str, photos)]) == 0
    capsys.readouterr()
    os.utime(finished.fold(0).best, ns=(1, 1))  # the fold's model was rewritten since the export
    refused(stage("predict", ["--run", str(finished.path), "--engine", "onnx", *map(str, photos)]), capsys,
             "stale", "bash run.sh export")
    assert stage("predict", ["--run", str(finished.path), *map(str, photos)]) == 0  # auto: PyTorch, and says so
    assert "predicting with PyTorch" in capsys.readouterr().err


def test_predict_checks_out_before_reading_photos_and_fails_when_nothing_was_read(finished, tmp_path, capsys,
                                                                                monkeypatch):
    real = predict.predict
    monkeypatch.setattr(predict, "predict", lambda *a, **k: pytest.fail("predicted before checking --out"))
    refused(stage("predict", ["--run", str(finished.path), "--out", str(tmp_path / "no" / "x.csv"), "p.jpg"]), capsys,
             "does not exist")
    (tmp_path / "taken.csv").write_text("keep me")
    refused(stage("predict", ["--run", str(finished.path), "--out", str(tmp_path / "taken.csv"), "p.jpg"]), capsys,
             "exists")
    assert (tmp_path / "taken.csv").read_text() == "keep me"
    monkeypatch.setattr(predict, "predict", real)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a photo")
    refused(stage("predict", ["--run", str(finished.path), str(junk)]), capsys, "no image could be read")


def test_export_of_a_run_without_a_finished_fold_isrefused(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text("epochs: 1\n")
    refused(stage("export", ["--run", str(tmp_path / "r")]), capsys, "no finished fold")


def test_a_second_process_on_the_same_run_is_told_who_holds_it(tiny_run, tiny_data_master, tmp_path, capsys):
    out = tmp_path / "out"
    run = copy_run(tiny_run, out / "busy")
    run.marker.unlink()  # make it look unfinished, so the same command would continue it
    run.metrics.unlink()
    fd = os.open(run.lock_file, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, b"process 4242 on somewhere since now")
    try:
        refused(train_fast(tiny_data_master, out, name="busy"), capsys, "being written by process 4242")
    finally:
        os.close(fd)
    assert not (out / "busy-2").exists()


def test_partial_files_of_a_killed_write_are_cleaned_when_the_run_continues(tiny_run, tiny_data_master, tmp_path):
    out = tmp_path / "out"
    run = copy_run(tiny_run, out / "c")
    run.marker.unlink()
    run.metrics.unlink()
    orphans = [run.path / "fold0_last.ptabc123.tmp", run.path / "metrics.json.tmp", run.onnx_partial]
    for p in orphans:
        p.write_bytes(b"half")
    assert train_fast(tiny_data_master, out, name="c") == 0  # the same command continues (and finishes) it
    assert not any(p.exists() for p in orphans) and run.finished()


def test_a_full_disk_is_a_message_naming_the_file(tiny_data, tmp_path, capsys, monkeypatch):
    import torch

    def full(obj, f, *a, **k):  # what torch's zip writer says when the disk fills
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4416 vs 4310")

    monkeypatch.setattr(torch, "save", full)
    err = refused(train_fast(tiny_data, tmp_path / "out", "folds=0"), capsys, "cannot write", "fold0_",
                   "unexpected pos", "MiB free")
    assert "Traceback" not in err
    assert not list((tmp_path / "out" / "h").glob("*.tmp"))  # the half-written checkpoint is gone


# ---- outside photos (extra=) and the other keys that name paths -------------------------------

def noise_folder(path: Path, n: int = 2) -> Path:
    """Outside photos where no face can be found."""
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (384, 288, 3), np.uint8)).save(path / f"{i}.jpg")
    pd.DataFrame({"file": [f"{i}.jpg" for i in range(n)], "age": [70] * n, "gender": ["male"] * n}).to_csv(
        path / "labels.csv", index=False)
    return path


@pytest.mark.parametrize("case", ["no face", "no age", "comma", "ages alone"])
def test_outside_photos_that_leave_no_person_are_refused_before_any_folder(tiny_data, tmp_path, capsys, case):
    faces = generate_outside(tmp_path / "faces", n=2, seed=1)
    noise = noise_folder(tmp_path / "noise")
    setting, words = {"no face": ([f"extra={noise}"], ["none of its 2 photos", "without a face"]),
                      "no age": ([f"extra={faces}", "extra_ages=100-120"], ["none of its 2 photos",
                                                                           "2 outside the ages kept (ages 100-120)"]),
                      "comma": (["extra=,"], ["extra=,", "an empty item"]),
                      "ages alone": (["extra_ages=55-120"], ["extra_ages=55-120 without extra="])}[case]
    out = tmp_path / "out"
    refused(train_fast(tiny_data, out, *setting), capsys, *words)
    assert not (out / "h").exists()


def test_a_data_folders_extra_that_is_a_file_is_said(tiny_data, tmp_path, capsys):
    (tiny_data / "extra").write_bytes(b"PK\x03\x04")  # the download, not unpacked
    refused(train_fast(tiny_data, tmp_path / "out", "extra=auto"), capsys,
            f"{tiny_data / 'extra'}: a file, not a folder; extra=auto reads outside face photos from a folder")
    assert not (tmp_path / "out").exists()


def test_data_and_outside_photo_problems_come_in_one_list(tiny_data, tmp_path, capsys):
    faces = generate_outside(tmp_path / "faces", n=2, seed=1)
    labels = pd.read_csv(faces / "labels.csv", dtype=str)
    labels.loc[0, "age"] = "old"
    labels.to_csv(faces / "labels.csv", index=False)
    gone = sorted((tiny_data / "train" / "images").rglob("mask2.*"))[0]
    gone.unlink()
    err = refused(train_fast(tiny_data, tmp_path / "out", f"extra={faces}"), capsys, "age 'old'", gone.parent.name)
    assert err.count("error:") == 1


def test_an_outside_copy_of_a_competition_photo_is_refused_naming_both(tiny_data, tmp_path, capsys):
    faces = generate_outside(tmp_path / "faces", n=2, seed=1)
    train_photo = sorted((tiny_data / "train" / "images").rglob("mask1.*"))[0]
    (faces / "copy.jpg").write_bytes(train_photo.read_bytes())
    labels = pd.read_csv(faces / "labels.csv", dtype=str)
    pd.concat([labels, pd.DataFrame([{"file": "copy.jpg", "age": "33", "gender": "female"}])]).to_csv(
        faces / "labels.csv", index=False)
    refused(train_fast(tiny_data, tmp_path / "out", f"extra={faces}"), capsys, str(faces / "copy.jpg"),
            str(train_photo))
    assert not (tmp_path / "out" / "h").exists()


def test_path_keys_are_saved_resolved_and_a_run_continues_from_elsewhere(tiny_data, tmp_path, monkeypatch):
    generate_outside(tmp_path / "here" / "faces", n=3, seed=3)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    job = prepare(tiny_data, "seed", [*FAST, "extra=faces", "cache_dir=cache", "crop=face"], "x", tmp_path / "out")
    job.run.unlock()
    saved = yaml.safe_load(job.run.config.read_text())
    assert saved["extra"] == str(tmp_path / "here" / "faces") and saved["cache_dir"] == str(tmp_path / "here" / "cache")
    # crop=face: outside persons are cropped by the face they were drawn on, and counted
    outside = job.table.loc[job.table["fold"] < 0, "path"].tolist()
    assert outside and all(job.boxes[p] is not None for p in outside)
    assert job.face_stats["outside_photos"] == len(outside) and job.face_stats["train_photos"] == len(job.table)
    monkeypatch.chdir(tmp_path / "elsewhere")  # the saved config, read from another folder: the same files
    cfg = load_config(str(job.run.config))
    assert cfg.saved()["extra"] == saved["extra"] and cfg.cache_dir == saved["cache_dir"]


def test_overrides_go_anywhere_on_the_command_line(tiny_data, tmp_path):
    assert stage("train", ["epochs=1", "--data", str(tiny_data), *FAST[:-1], "--config", "seed", "--name", "anywhere",
                           "--output", str(tmp_path), FAST[-1]]) == 0
    assert (tmp_path / "anywhere" / "submission.csv").exists()


def test_compare_names_its_arguments_and_refuses_a_run_against_itself(tiny_run, tmp_path, capsys):
    refused(stage("compare", [str(tiny_run.path), str(tiny_run.path)]), capsys, "the same folder")
    err = refused(stage("compare", [str(tiny_run.path), str(tmp_path / "nowhere")]), capsys, "RUN_B")
    assert "--run" not in err and f"looked in {tmp_path / 'nowhere'})" in err  # once, not "in X and X"


def test_the_preview_checks_its_picture_can_be_written_before_any_work(tmp_path, monkeypatch, capsys):
    faces = generate_outside(tmp_path / "faces", n=2, seed=1)
    (tmp_path / "locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "locked" else real_access(p, mode))
    refused(stage("extra", ["--from", str(faces), "--out", str(tmp_path / "locked" / "x.png"),
                            "--cache-dir", str(tmp_path / "cache")]), capsys, "--out", "locked")
    assert not (tmp_path / "cache").exists()  # nothing drawn


@pytest.mark.parametrize("args,words", [
    (["folds=0,,1"], ["folds=0,,1"]),
    (["corrections=afolder"], ["afolder: a folder, not a CSV file"]),
    (["--output", "afile"], ["--output", "afile is not a folder"]),
])
def test_the_other_path_and_list_keys_refuse_the_same_mistakes(tiny_data, tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afolder").mkdir()
    (tmp_path / "afile").write_text("x")
    refused(stage("train", ["--data", str(tiny_data), "--output", "out", *FAST, *args]), capsys, *words)  # the last
    assert not (tmp_path / "out").exists()                                                           # --output wins


@pytest.mark.parametrize("stage_name,args", [("blend", ["--runs", "a,,b"]), ("bench", ["--recipes", "seed,"]),
                                             ("extra", ["--from", "photos,"])])
def test_a_stray_comma_in_a_list_option_is_named(stage_name, args, capsys):
    with pytest.raises(SystemExit) as e:
        stage(stage_name, args)
    assert e.value.code == 2 and "an empty item between commas" in capsys.readouterr().err


def test_an_img_size_the_model_cannot_take_is_refused_naming_the_size_it_takes(tiny_data, tmp_path, capsys):
    """vit_tiny_patch16_224 img_size=224 was a traceback after the run folder was made (a ViT's size is fixed)."""
    import timm

    takes = timm.create_model("test_vit").pretrained_cfg["input_size"][1:]
    refused(train_fast(tiny_data, tmp_path / "out", "model=test_vit"), capsys,
            "model=test_vit cannot take img_size=32,24: ",
            f"it takes {takes[0]}x{takes[1]} photos only (img_size={takes[0]},{takes[1]})")
    assert not (tmp_path / "out").exists()


def test_a_typed_path_with_dots_is_read_and_saved_normalised(tiny_data, tmp_path, monkeypatch, capsys):
    """`--data tools/../data` and `extra=x/../faces` are the folders themselves: the first lines, config.yaml and
    the run's records name them without `..` (once they read `.../tools/../data/extra`)."""
    generate_outside(tmp_path / "faces", n=2, seed=4)
    (tmp_path / "tools").mkdir()
    monkeypatch.chdir(tmp_path)
    dotted = Path("tools") / ".." / os.path.relpath(tiny_data, tmp_path)
    job = prepare(dotted, "seed", [*FAST, "extra=tools/../faces", "folds=0"], "dots", tmp_path / "out")
    job.run.unlock()
    out = capsys.readouterr().out
    assert f"checking {tiny_data} ..." in out and "/../" not in out and "tools" not in out
    saved = yaml.safe_load(job.run.config.read_text())
    assert (saved["data"], saved["extra"]) == (str(tiny_data), str(tmp_path / "faces"))
