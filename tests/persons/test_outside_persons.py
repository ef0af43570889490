"""Outside photos (extra=): masks drawn where the landmarks say, the label readers and their
refusals, and outside persons kept out of validation, the OOF and the competition's folds."""
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from src.core.config import load_config
from src.core.run_dir import RunDir
from src.data.demo import generate_outside
from src.data.folds import TRAIN_ONLY
from src.data.tables import DataError
from src.persons import outside_faces, outside_persons, outside_set, outside_shots
from src.persons.mask_draw import SHAPES, Face, draw
from src.pipeline import job as pipeline
from src.train.trainer import split_masks
from tests.helpers import FAST, stage

# a face with known landmarks on a 384x512 photo: eyes, nose tip, mouth corners; its box
EYES = np.array([[150.0, 220.0], [234.0, 220.0]])
NOSE = np.array([192.0, 285.0])
MOUTH = np.array([[160.0, 330.0], [224.0, 330.0]])
BOX = (112.0, 140.0, 272.0, 385.0)


def known_face(angle: float = 0.0) -> Face:
    """The face above, turned by `angle` degrees about the photo's centre (landmarks and box with it)."""
    pts = np.vstack([EYES, NOSE, MOUTH])
    a = np.deg2rad(angle)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    c = np.array([192.0, 256.0])
    turned = (pts - c) @ rot.T + c
    x1, y1, x2, y2 = BOX
    corners = (np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]]) - c) @ rot.T + c
    return Face(turned, (*corners.min(0), *corners.max(0)))


def covered(cover: np.ndarray, xy) -> float:
    x, y = (int(round(v)) for v in xy)
    return float(cover[y, x])


@pytest.mark.parametrize("angle", [0.0, 15.0, -20.0])
@pytest.mark.parametrize("shape", SHAPES)
def test_masks_land_where_the_landmarks_say(shape, angle):
    face = known_face(angle)
    img = np.full((512, 384, 3), 128, np.uint8)
    eyes, nose, mouth = face.points[:2], face.points[2], face.points[3:5]
    mouth_centre = mouth.mean(0)
    for seed in range(4):
        out, cover = draw(img, face, "wear", random.Random(seed), shape)
        assert covered(cover, mouth_centre) > 0.99 and all(covered(cover, m) > 0.99 for m in mouth)
        assert covered(cover, nose) > 0.99  # worn correctly: the nose is covered
        assert all(covered(cover, e) == 0 for e in eyes)
        assert (out[cover > 0.99] != 128).any()
        x1, y1, x2, y2 = (int(v) for v in face.box)
        outside_box = np.ones(cover.shape, bool)
        outside_box[max(0, y1 - 8):y2 + 8, max(0, x1 - 8):x2 + 8] = False
        assert (out[(cover == 0) & outside_box] == 128).all()  # the mask and its ear loops stay on the face
        for state in ("nose", "chin"):  # worn incorrectly: the nose tip stays uncovered
            _, cover = draw(img, face, state, random.Random(seed), shape)
            assert covered(cover, nose) == 0 and all(covered(cover, e) == 0 for e in eyes)
            assert cover.sum() > 1000  # but a mask is there, below the nose
            ys = np.nonzero(cover > 0.5)[0]
            assert ys.mean() > face.to_image(np.array([0.0, 0.0]))[1]  # below the eyes
        _, chin = draw(img, face, "chin", random.Random(seed), shape)
        assert covered(chin, mouth_centre) == 0  # on the chin: the mouth is free too


def drawn(src, seed: int, cache, detector=None, ages=None) -> tuple[pd.DataFrame, dict]:
    """(rows, stats) of the outside persons of folder `src`."""
    persons = outside_persons.outside_persons(outside_set.checked_outside([src], outside_set.OutsideRules(ages)), seed, cache, detector)
    return persons.rows, persons.stats


def test_shots_of_an_outside_person_follow_the_competition_layout(tmp_path):
    src = generate_outside(tmp_path / "photos", n=6, seed=3)
    rows, stats = drawn(src, 5, tmp_path / "cache")
    assert stats["persons"] + stats["skipped_no_face"] + stats["skipped_small_face"] == stats["photos"] == 6
    assert stats["duplicates"] == 0
    assert stats["persons"] >= 3 and sum(stats["per_cell"].values()) == stats["persons"]
    labels = pd.read_csv(src / "labels.csv")
    assert len(rows) == 7 * stats["persons"] and (rows["fold"] == TRAIN_ONLY).all()
    for person, shots in rows.groupby("person"):
        assert sorted(shots["shot"]) == sorted(["mask1", "mask2", "mask3", "mask4", "mask5", "incorrect_mask",
                                                "normal"])
        assert shots.set_index("shot")["mask"].to_dict()["incorrect_mask"] == 1
        assert shots["age"].nunique() == 1 and shots["age"].iloc[0] in set(labels["age"])
        for p in shots["path"]:
            assert Image.open(p).size == (384, 512)
    # drawn once: a second call finds every person in the cache and detects nothing
    again, _ = drawn(src, 5, tmp_path / "cache", detector=lambda img: pytest.fail("detected again"))
    assert again["path"].tolist() == rows["path"].tolist()
    other, _ = drawn(src, 6, tmp_path / "cache")
    assert set(other["path"]).isdisjoint(rows["path"])  # another seed draws other shots


def test_a_photo_without_a_face_is_skipped_and_counted(tmp_path):
    src = generate_outside(tmp_path / "photos", n=2, seed=1)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (384, 288, 3), dtype=np.uint8)).save(src / "noise.jpg")
    labels = pd.read_csv(src / "labels.csv")
    pd.concat([labels, pd.DataFrame([{"file": "noise.jpg", "age": 70, "gender": "male"}])]).to_csv(
        src / "labels.csv", index=False)
    rows, stats = drawn(src, 0, tmp_path / "cache")
    assert stats["skipped_no_face"] == 1 and stats["persons"] == 2 and len(rows) == 14


def test_the_same_photo_twice_is_one_person_and_counted(tmp_path):
    src = generate_outside(tmp_path / "photos", n=2, seed=1)
    labels = pd.read_csv(src / "labels.csv")
    (src / "copy.jpg").write_bytes((src / labels.loc[0, "file"]).read_bytes())
    pd.concat([labels, labels.head(1).assign(file="copy.jpg")]).to_csv(src / "labels.csv", index=False)
    face = Face(np.vstack([EYES, NOSE, MOUTH]) * 0.75, tuple(np.array(BOX) * 0.75))
    rows, stats = drawn(src, 0, tmp_path / "cache", detector=lambda img: (face, 0.99))
    assert stats["photos"] == 3 and stats["duplicates"] == 1 and stats["persons"] == 2 and len(rows) == 14


def test_a_doubtful_face_is_skipped_and_a_sure_one_kept(tmp_path):
    src = generate_outside(tmp_path / "photos", n=2, seed=1)
    face = Face(np.vstack([EYES, NOSE, MOUTH]) * 0.75, tuple(np.array(BOX) * 0.75))
    answers = iter([(face, outside_persons.MIN_PROB - 0.01), (face, outside_persons.MIN_PROB + 0.01)])
    rows, stats = drawn(src, 0, tmp_path / "cache", detector=lambda img: next(answers))
    assert stats["skipped_no_face"] == 1 and stats["persons"] == 1 and len(rows) == 7


def test_extra_ages_keeps_only_those_ages(tmp_path):
    src = generate_outside(tmp_path / "photos", n=10, seed=2)
    ages = pd.read_csv(src / "labels.csv")["age"]
    outside = outside_set.checked_outside([src], outside_set.OutsideRules((55, 120)))
    assert sorted(p.age for p in outside.photos) == sorted(a for a in ages if a >= 55)
    assert outside.outside_ages == int((ages < 55).sum()) and outside.listed == 10


def test_utkface_names_are_read(tmp_path):
    src = generate_outside(tmp_path / "utk", n=5, seed=4, utkface=True)
    photos = outside_set.checked_outside([src]).photos
    assert len(photos) == 5
    for p in photos:
        age, gender = p.path.name.split("_")[:2]
        assert (p.age, p.gender) == (int(age), int(gender))


def bad_folder(tmp_path, case: str):
    src = generate_outside(tmp_path / "photos", n=3, seed=1)
    labels = pd.read_csv(src / "labels.csv", dtype=str)
    if case == "columns":
        labels.rename(columns={"age": "years"}).to_csv(src / "labels.csv", index=False)
        return src, "missing column(s) ['age']"
    if case == "age":
        labels.loc[1, "age"] = "forty"
        labels.to_csv(src / "labels.csv", index=False)
        return src, "row 3: age 'forty'"
    if case == "gender":
        labels.loc[0, "gender"] = "x"
        labels.to_csv(src / "labels.csv", index=False)
        return src, "row 2: gender 'x'"
    if case == "missing":
        (src / labels.loc[2, "file"]).unlink()
        return src, f"{labels.loc[2, 'file']}: listed in"
    if case == "unreadable":
        (src / labels.loc[0, "file"]).write_bytes(b"not a jpeg")
        return src, f"{labels.loc[0, 'file']}: unreadable"
    if case == "empty":
        empty = tmp_path / "empty"
        empty.mkdir()
        return empty, "no known layout"
    if case == "utk":  # without labels.csv, UTKFace names: one whose gender is not 0/1
        (src / "labels.csv").unlink()
        for i, f in enumerate(sorted(src.glob("*.jpg"))):
            f.rename(src / f"{40 + i}_{7 if i == 0 else 1}_2_20170101.jpg")
        return src, "40_7_2_20170101.jpg: age '40' or gender '7'"
    raise AssertionError(case)


CASES = ["columns", "age", "gender", "missing", "unreadable", "empty", "utk"]


@pytest.mark.parametrize("case", CASES)
def test_bad_outside_photos_are_refused_naming_the_file(tmp_path, case):
    src, expected = bad_folder(tmp_path, case)
    with pytest.raises(DataError) as e:
        outside_set.checked_outside([src])
    assert expected in str(e.value) and str(src) in str(e.value)


def test_the_job_refuses_bad_outside_photos_before_any_folder(tiny_data, tmp_path, capsys):
    src, expected = bad_folder(tmp_path, "age")
    code = stage("train", ["--data", str(tiny_data), "--config", "seed", "--output", str(tmp_path / "out"), *FAST,
                          f"extra={src}"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not (tmp_path / "out" / "seed").exists()


def test_outside_persons_train_every_fold_and_are_never_validated(tiny_data, tmp_path, monkeypatch):
    generate_outside(tmp_path / "photos", n=6, seed=3)
    plain = pipeline.prepare(tiny_data, "seed", FAST, "plain", tmp_path / "out")
    plain.run.unlock()
    monkeypatch.chdir(tmp_path)  # extra= is taken from where the user stands
    job = pipeline.prepare(tiny_data, "seed", [*FAST, "extra=photos"], "x", tmp_path / "out")
    try:
        outside = job.table["person"].str.startswith("extra_").to_numpy()
        assert outside.sum() == 7 * job.outside["persons"] > 0
        assert (job.table.loc[outside, "fold"] == TRAIN_ONLY).all()
        for fold in (0, 1):
            in_train, in_val = split_masks(job.cfg, job.table, fold)
            assert in_train[outside].all() and not in_val[outside].any()
        # the competition persons' folds are the ones made without them
        assert job.run.load_folds()[["person", "fold"]].equals(plain.run.load_folds()[["person", "fold"]])
        assert job.table.loc[~outside, plain.table.columns].equals(plain.table)
        assert job.table.loc[~outside, ["age_lo", "age_hi"]].isna().all().all()  # exact ages: no range
    finally:
        job.run.unlock()


def test_a_run_with_outside_persons_scores_the_competition_persons_alone(tiny_data, tmp_path):
    src = generate_outside(tmp_path / "photos", n=6, seed=3)
    assert stage("train", ["--data", str(tiny_data), "--config", "seed", "--name", "x", "--output", str(tmp_path),
                          *FAST, f"extra={src}", "extra_ages=30-120"]) == 0
    run = RunDir(tmp_path / "x")
    oof = run.load_oof()
    assert not oof["person"].astype(str).str.startswith("extra_").any() and len(oof) == 84  # 12 persons x 7
    stats = json.loads(run.metrics.read_text())["extra"]
    ages = pd.read_csv(src / "labels.csv")["age"]
    assert stats["outside_ages"] == int((ages < 30).sum()) and stats["photos"] == 6
    report = run.report.read_text()
    assert "## Outside persons" in report and f"{stats['persons']} outside persons" in report
    assert run.load_config().decision == "auto" and "## Decision (`decision=auto`)" in report  # with extra


def test_the_preview_stage_writes_a_contact_sheet_and_never_over_a_file(tmp_path, monkeypatch, capsys):
    generate_outside(tmp_path / "photos", n=6, seed=3)
    monkeypatch.chdir(tmp_path)
    args = ["--from", "photos", "--preview", "2", "--out", "sheet.png", "--cache-dir", "cache"]
    assert stage("extra", args) == 0
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.size[0] == 7 * 96 and sheet.size[1] == 2 * (128 + 16)
    assert (tmp_path / "cache" / "extra_faces.csv").exists()
    assert stage("extra", args) == 2  # the same --out again: refused
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert stage("extra", ["--from", "nowhere", "--out", "x.png"]) == 2
    assert "nowhere: not a folder" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    fresh = tmp_path / "clone" / "output"  # a fresh clone has no output/ yet: the default --out makes it
    monkeypatch.setattr("src.stages.extra.OUTPUT", fresh)
    assert stage("extra", ["--from", "photos", "--preview", "1", "--cache-dir", "cache"]) == 0
    assert Image.open(fresh / "extra-preview.png").size[0] == 7 * 96


# ---- hardening: what leaks, vanishes or changes on a rerun ---------------------------------------

def unrounded_detector(img):
    """Landmarks with many decimals (as MTCNN gives them), a function of the photo alone."""
    h, w = img.shape[:2]
    k = w / 384 * (1 + img.mean() / 1e4)
    return Face(np.vstack([EYES, NOSE, MOUTH]) * k + 0.123456, tuple(np.array(BOX) * k + 0.0987)), 0.987654


def test_fresh_resumed_and_redrawn_persons_are_byte_identical(tmp_path):
    src = generate_outside(tmp_path / "photos", n=3, seed=2)
    fresh, _ = drawn(src, 7, tmp_path / "a", detector=unrounded_detector)
    (tmp_path / "other").mkdir()  # another cache, drawn from nothing: the same bytes
    other, _ = drawn(src, 7, tmp_path / "other", detector=unrounded_detector)
    for folder in (tmp_path / "a" / "extra").iterdir():  # as after Ctrl-C while drawing: the landmarks cached,
        if folder.name < "8":                            # some persons drawn, the others not
            for f in folder.iterdir():
                f.unlink()
            folder.rmdir()
    redrawn, _ = drawn(src, 7, tmp_path / "a", detector=lambda img: pytest.fail("detected again"))
    assert fresh["path"].tolist() == redrawn["path"].tolist()
    for a, b, c in zip(fresh["path"], redrawn["path"], other["path"]):
        assert Path(a).read_bytes() == Path(b).read_bytes() == Path(c).read_bytes()
    assert (Path(fresh["path"][0]).parent / outside_shots.BOXES).is_file()


def test_no_outside_person_left_is_refused_with_the_skip_counts(tmp_path):
    src = tmp_path / "noise"
    src.mkdir()
    for i in range(2):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (384, 288, 3), np.uint8)).save(src / f"{i}.jpg")
    pd.DataFrame({"file": ["0.jpg", "1.jpg"], "age": [70, 71], "gender": ["male", "female"]}).to_csv(
        src / "labels.csv", index=False)
    with pytest.raises(DataError, match="none of its 2 photos joins training") as e:
        drawn(src, 0, tmp_path / "cache")
    assert "2 without a face found" in str(e.value) and str(src) in str(e.value)


def test_a_photo_listed_with_two_labels_is_refused_naming_both_lines(tmp_path):
    src = generate_outside(tmp_path / "photos", n=3, seed=1)
    labels = pd.read_csv(src / "labels.csv", dtype=str)
    again = labels.head(1).assign(age=str(int(labels.loc[0, "age"]) + 1))  # the same file, another age
    (src / "copy.jpg").write_bytes((src / labels.loc[1, "file"]).read_bytes())  # the same bytes, other gender
    other = labels.iloc[[1]].assign(file="copy.jpg", gender="female" if labels.loc[1, "gender"] == "male" else "male")
    pd.concat([labels, again, other]).to_csv(src / "labels.csv", index=False)
    with pytest.raises(DataError) as e:
        outside_set.checked_outside([src])
    assert "row 2 and" in str(e.value) and "row 5: the same photo" in str(e.value)
    assert "row 3 and" in str(e.value)
    assert f"row 6: the same photo ({labels.loc[1, 'file']} and copy.jpg)" in str(e.value)
    dropped = outside_set.checked_outside([src], outside_set.OutsideRules(drop_conflicts=True))  # extra_conflicts=drop
    assert [p.path.name for p in dropped.photos] == [labels.loc[2, "file"]]
    # photos (files), not listings: the first file (listed twice), the second and its copy
    assert dropped.conflicting == 3 and dropped.listed == 4 and dropped.duplicates == dropped.outside_ages == 0
    assert len(dropped.conflicts) == 2 and "row 6: the same photo" in dropped.conflicts[1]


def test_a_photo_outside_the_folder_or_of_the_competition_is_refused(tmp_path, tiny_data):
    src = generate_outside(tmp_path / "photos", n=2, seed=1)
    labels = pd.read_csv(src / "labels.csv", dtype=str)
    eval_photo = sorted((tiny_data / "eval" / "images").iterdir())[0]
    train_photo = sorted((tiny_data / "train" / "images").rglob("normal.*"))[0]
    (src / "mine.jpg").write_bytes(train_photo.read_bytes())
    extra_rows = pd.DataFrame({"file": [os.path.relpath(eval_photo, src), str(eval_photo), "mine.jpg"],
                               "age": ["40"] * 3, "gender": ["male"] * 3})
    pd.concat([labels, extra_rows]).to_csv(src / "labels.csv", index=False)
    with pytest.raises(DataError) as e:
        outside_set.checked_outside([src])
    assert "row 4: file '../" in str(e.value) and f"row 5: file '{eval_photo}' lies outside" in str(e.value)
    labels_ok = pd.concat([labels, extra_rows.iloc[[2]]])
    labels_ok.to_csv(src / "labels.csv", index=False)
    with pytest.raises(DataError) as e:
        outside_set.checked_outside([src], outside_set.OutsideRules(competition=(str(eval_photo), str(train_photo))))
    assert f"row 4: {src / 'mine.jpg'} is the competition's photo {train_photo}" in str(e.value)


def test_a_header_only_labels_csv_says_it_lists_no_photos(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    (src / "labels.csv").write_text("file,age,gender\n")
    with pytest.raises(DataError, match="lists no photos"):
        outside_set.checked_outside([src])


def test_a_person_drawn_meanwhile_by_another_process_is_used_not_an_error(tmp_path, monkeypatch):
    """Two benches (or tune workers) on one cache draw the same person at once: the second to finish finds the
    first's complete folder and uses it (it used to fail moving its own onto it: 'Directory not empty')."""
    src = generate_outside(tmp_path / "photos", n=3, seed=2)
    fresh, _ = drawn(src, 7, tmp_path / "a", detector=unrounded_detector)
    first = Path(fresh["path"][0]).parent
    keep = {f.name: f.read_bytes() for f in first.iterdir()}
    shutil.rmtree(tmp_path / "a" / "extra")
    real, real_rmtree = outside_shots.person_shots, shutil.rmtree

    def the_other_process_finishes_first(*args):
        shots = real(*args)
        if not first.exists():  # the other process's folder lands while this one draws
            first.mkdir(parents=True)
            for name, data in keep.items():
                (first / name).write_bytes(data)
        return shots

    def rmtree(path, *args, **kw):  # the other process may be reading its shots (its cache build): never removed
        assert Path(path) != first, "removed a complete person drawn by another process"
        real_rmtree(path, *args, **kw)

    monkeypatch.setattr(outside_shots, "person_shots", the_other_process_finishes_first)
    monkeypatch.setattr(outside_shots.shutil, "rmtree", rmtree)
    again, _ = drawn(src, 7, tmp_path / "a", detector=lambda img: pytest.fail("detected again"))
    assert again["path"].tolist() == fresh["path"].tolist()
    assert {f.name: f.read_bytes() for f in first.iterdir()} == keep
    assert not [d for d in first.parent.iterdir() if d.name.startswith(".")]  # this process's draft removed


def test_a_killed_drawing_leaves_no_draft_behind_for_long(tmp_path):
    root = tmp_path / "extra"
    stale, live = root / ".abc-1", root / ".def-2"
    for d in (stale, live):
        d.mkdir(parents=True)
        (d / "mask1.jpg").write_bytes(b"half")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    outside_shots.clear_stale_drafts(root)
    assert not stale.exists() and live.exists()  # a fresh draft may be another run's, drawing now


def test_prepare_draws_every_person_ahead_and_the_run_draws_nothing(tiny_data, tmp_path, monkeypatch, capsys):
    faces = generate_outside(tmp_path / "faces", n=5, seed=6)
    cache = tmp_path / "cache"
    assert stage("extra", ["--from", str(faces), "--prepare", "--seed", "42", "--cache-dir", str(cache)]) == 0
    said = capsys.readouterr().out
    drawn = sorted(p.name for p in (cache / "extra").iterdir())
    assert "prepared" in said and len(drawn) >= 3 and not list(tmp_path.glob("*.png"))
    monkeypatch.setattr(outside_shots, "person_shots", lambda *a: pytest.fail("drawn again"))  # the run finds them all
    monkeypatch.setattr(outside_faces, "LandmarkDetector", lambda: pytest.fail("detected again"))
    persons = outside_persons.outside_rows(load_config("seed", [f"extra={faces}", "seed=42"]), cache)
    assert persons.stats["persons"] == len(drawn)
    assert stage("extra", ["--from", str(faces), "--prepare", "--out", "x.png"]) == 2
    assert "--prepare draws every person" in capsys.readouterr().err
