"""`bash run.sh background`: the contact sheet of what the model will see, and the fill's share by class."""
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from src.core import classes
from src.report.background_preview import TILE_H, fill_table, spread_sample
from tests.helpers import stage


def test_the_sample_takes_the_classes_in_turn_one_photo_per_person():
    persons = [f"{i:06d}" for i in range(6)]  # 6 persons x 3 shots, 2 classes of each
    table = pd.DataFrame({"person": np.repeat(persons, 3), "label": np.repeat([0, 0, 0, 7, 7, 7], 3)})
    table["path"] = [f"p{i}.jpg" for i in range(len(table))]
    first = spread_sample(table, 4, seed=1)
    assert sorted(first["label"]) == [0, 0, 7, 7] and first["person"].is_unique
    assert spread_sample(table, 4, seed=1).equals(first)
    assert len(spread_sample(table, 50, seed=1)) == 6  # one photo per person, however many are asked for


def test_the_fill_table_gives_each_groups_share_and_the_largest_gap():
    labels = [classes.encode(m, g, a) for m, g, a in [(0, 0, 0), (0, 1, 1), (2, 0, 2), (2, 1, 0)]]
    sample = pd.DataFrame({"label": labels})
    lines = fill_table(sample, {"grabcut": [0.1, 0.3, 0.5, 0.7]})
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    row = dict(zip(head, [c.strip() for c in lines[2].strip("|").split("|")]))
    assert row["all"] == "0.400"
    assert row[classes.MASK_NAMES[0]] == "0.200" and row[classes.MASK_NAMES[1]] == "–"  # no incorrect mask shown
    assert row[classes.MASK_NAMES[2]] == "0.600" and row[classes.AGE_NAMES[0]] == "0.400"
    assert row["largest gap"] == "0.400"  # mask: 0.6 - 0.2 (gender 0.3 vs 0.5, age 0.4, 0.3, 0.5)


def test_the_stage_writes_the_sheet_and_the_table_and_refuses_what_it_cannot_do(tiny_data, tmp_path, monkeypatch,
                                                                               capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--data", str(tiny_data), "--preview", "3", "--measure", "9", "--methods", "grabcut", "--out", "s.png",
            "img_size=48,36", "cache_dir=cache"]
    assert stage("background", args) == 0
    sheet = Image.open(tmp_path / "s.png")
    assert sheet.size == (2 * round(36 * TILE_H / 48), 3 * (TILE_H + 16))  # keep, grabcut; 3 photos
    out = capsys.readouterr().out
    assert "9 photos of" in out and out.count("| grabcut |") == 1
    assert stage("background", args) == 2  # never over a file
    assert "already exists" in capsys.readouterr().err
    for methods, words in [("keep", "name at least one of grabcut, selfie"), ("grabkut", "grabkut")]:
        assert stage("background", ["--data", str(tiny_data), "--methods", methods, "--out", "t.png"]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # the segmenter not installed: said before any photo
    assert stage("background", ["--data", str(tiny_data), "--methods", "grabcut,selfie", "--out", "t.png"]) == 2
    assert "mediapipe" in capsys.readouterr().err and not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("preview", ["0", "-1"])
def test_an_empty_preview_is_refused(tiny_data, tmp_path, preview, capsys):
    assert stage("background", ["--data", str(tiny_data), "--preview", preview, "--out", str(tmp_path / "x.png")]) == 2
    assert "at least one photo" in capsys.readouterr().err
