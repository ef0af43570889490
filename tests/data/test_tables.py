import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from src.core import classes
from src.data.tables import DataError, load_eval, load_train, read_image


def test_loader_reads_mixed_extensions_and_skips_junk(tiny_data):
    exts = {p.suffix for p in (tiny_data / "train" / "images").rglob("*") if p.is_file()}
    junk = list((tiny_data / "train" / "images").rglob("._*"))
    assert {".jpg", ".jpeg", ".png"} <= exts and junk  # the demo data carries the quirks
    t = load_train(tiny_data)
    n_persons = len(pd.read_csv(tiny_data / "train" / "train.csv"))
    assert len(t) == 7 * n_persons
    assert not any("/._" in p for p in t["path"])
    assert all(sorted(shots) == sorted(classes.SHOTS) for shots in t.groupby("person")["shot"].apply(list))
    assert t["person"].str.len().eq(6).all()  # ids keep their leading zeros
    row = t.iloc[0]
    assert row["label"] == classes.encode(row["mask"], row["gender"], classes.age_band(row["age"]))


def test_eval_table_keeps_info_order_and_answers(tiny_data):
    e = load_eval(tiny_data)
    info = pd.read_csv(tiny_data / "eval" / "info.csv")
    assert e["ImageID"].tolist() == info["ImageID"].tolist()
    assert "true" in e and e["true"].between(0, 17).all()


def _person_dir(data, k=0):
    return sorted((data / "train" / "images").iterdir())[k]


def _problems(fn, data):
    with pytest.raises(DataError) as ei:
        fn(data)
    return str(ei.value), ei.value.problems


def test_missing_train_csv(tiny_data):
    (tiny_data / "train" / "train.csv").unlink()
    msg, _ = _problems(load_train, tiny_data)
    assert "train.csv: missing" in msg


def test_every_bad_person_folder_is_listed(tiny_data):
    a, b, c, d = (_person_dir(tiny_data, k) for k in range(4))
    next(a.glob("mask3.*")).unlink()                       # missing shot
    normal = next(b.glob("normal.*"))
    shutil.copy(normal, b / ("normal.jpeg" if normal.suffix != ".jpeg" else "normal.jpg"))  # two 'normal'
    shutil.rmtree(c)                                       # csv row without folder
    (d.parent / "999999_male_Asian_33").mkdir()            # folder without csv row
    msg, problems = _problems(load_train, tiny_data)
    assert f"{a}: no 'mask3' image" in msg
    assert f"{b}: 2 'normal' images" in msg
    assert f"{c}: folder for train.csv row" in msg
    assert "999999_male_Asian_33: folder has no row" in msg
    assert len(problems) == 4


def test_empty_truncated_and_garbage_images_are_named(tiny_data):
    p = _person_dir(tiny_data)
    empty = next(p.glob("mask1.*"))
    empty.write_bytes(b"")
    trunc = next(p.glob("mask2.*"))
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    garbage = next(p.glob("mask4.*"))
    garbage.write_bytes(b"this is not a picture")
    msg, problems = _problems(load_train, tiny_data)
    assert f"{empty}: empty file" in msg
    assert f"{trunc}: unreadable or truncated" in msg
    assert f"{garbage}: unreadable or truncated" in msg
    assert len(problems) == 3


def test_bad_csv_values(tiny_data):
    csv = tiny_data / "train" / "train.csv"
    df = pd.read_csv(csv, dtype=str)
    df.loc[0, "gender"] = "unknown"
    df.loc[1, "age"] = "forty"
    df.to_csv(csv, index=False)
    msg, _ = _problems(load_train, tiny_data)
    assert "row 2: gender 'unknown'" in msg and "row 3: age 'forty'" in msg


def test_eval_id_without_image(tiny_data):
    info = tiny_data / "eval" / "info.csv"
    df = pd.read_csv(info)
    missing = df["ImageID"].iloc[[1, 3]].tolist()
    for m in missing:
        (tiny_data / "eval" / "images" / m).unlink()
    msg, problems = _problems(load_eval, tiny_data)
    for m in missing:
        assert f"{m}: image listed in {info} is missing" in msg
    assert len(problems) == 2


def test_missing_eval_folder(tiny_data):
    shutil.rmtree(tiny_data / "eval" / "images")
    msg, _ = _problems(load_eval, tiny_data)
    assert "eval/images: missing folder" in msg


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "r.jpg"
    im.save(path, exif=exif, quality=95)
    out = read_image(path)
    assert out.shape == (40, 20, 3)
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half now on top


def test_grayscale_and_rgba_become_rgb(tmp_path):
    Image.new("L", (8, 6), 128).save(tmp_path / "g.png")
    Image.new("RGBA", (8, 6), (10, 20, 30, 0)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "g.png").shape == (6, 8, 3)
    assert read_image(tmp_path / "a.png").shape == (6, 8, 3)


def test_corrections_fix_labels_without_touching_data(tiny_data, tmp_path):
    before = load_train(tiny_data)
    persons = before.drop_duplicates("person").set_index("person")
    p0, p1, p2 = persons.index[:3]
    new_gender = "female" if persons.loc[p0, "gender"] == 0 else "male"
    corr = tmp_path / "corr.csv"
    pd.DataFrame([
        dict(id=p0, gender=new_gender, age="", mask_fix="", note="gender flip"),
        dict(id=p1, gender="", age="65", mask_fix="swap", note="old; swapped shots"),
        dict(id=p2, gender="", age="", mask_fix="incorrect_is_wear", note=""),
    ]).to_csv(corr, index=False)
    after = load_train(tiny_data, corr).set_index(["person", "shot"])
    b = before.set_index(["person", "shot"])
    assert (after.loc[p0, "gender"] != b.loc[p0, "gender"]).all()
    assert (after.loc[p1, "age"] == 65).all() and (classes.decode(after.loc[p1, "label"])[2] == 2).all()
    assert after.loc[(p1, "normal"), "mask"] == 1 and after.loc[(p1, "incorrect_mask"), "mask"] == 2
    assert after.loc[(p2, "incorrect_mask"), "mask"] == 0
    others = ~after.index.get_level_values(0).isin([p0, p1, p2])
    assert (after.loc[others, "label"] == b.loc[after.index[others], "label"]).all()
    assert load_train(tiny_data)["label"].tolist() == before["label"].tolist()  # disk untouched


def test_bad_corrections_rejected(tiny_data, tmp_path):
    corr = tmp_path / "corr.csv"
    pd.DataFrame([dict(id="123456", gender="", mask_fix="")]).to_csv(corr, index=False)
    with pytest.raises(DataError, match="id 123456 is not a person"):
        load_train(tiny_data, corr)
    pd.DataFrame([dict(id="000001", gender="x", mask_fix="flip")]).to_csv(corr, index=False)
    with pytest.raises(DataError) as ei:
        load_train(tiny_data, corr)
    assert "gender 'x'" in str(ei.value) and "mask_fix 'flip'" in str(ei.value)


def test_shipped_competition_corrections_parse_and_are_opt_in():
    from src.core.keys import DEFAULTS
    from src.data.tables import corrections_path, load_corrections
    assert DEFAULTS["corrections"] == ""  # never applied unless asked for
    path = corrections_path("competition")
    assert path.name == "competition.csv" and path.is_file()
    c = load_corrections(path)
    assert (c["mask_fix"] == "swap").sum() == 3 and (c["mask_fix"] == "incorrect_is_wear").sum() == 2
    assert (c["gender"] == "male").sum() == 19 and (c["gender"] == "female").sum() == 4
    assert c.set_index("id").loc["004348", "age"] == "60"
    assert "000725" not in set(c["id"])  # disputed: left alone
    assert c["note"].str.len().gt(0).all()


def test_one_rule_finds_the_default_data(tmp_path, monkeypatch):
    from src.data import tables

    standin = tmp_path / "standin"
    monkeypatch.setattr(tables, "STANDIN", standin)
    assert tables.find_data(tmp_path / "given", "nowhere") == tmp_path / "given"  # --data always wins
    assert tables.find_data(None, str(tmp_path / "missing")) is None  # nothing: the stage decides
    (standin / "train").mkdir(parents=True)
    (standin / "train" / "train.csv").write_text("id\n")
    assert tables.find_data(None, str(tmp_path / "missing")) == standin
    (tmp_path / "mine").mkdir()  # the config's data_dir, even broken, comes first: its problems get reported
    assert tables.find_data(None, str(tmp_path / "mine")) == tmp_path / "mine"


def test_eval_persons_are_read_and_a_photo_without_one_is_refused(tiny_data):
    ev = load_eval(tiny_data)
    assert ev["person"].nunique() == 4 and (ev.groupby("person").size() == 7).all()
    persons = pd.read_csv(tiny_data / "eval" / "persons.csv", dtype=str)
    persons.iloc[1:].to_csv(tiny_data / "eval" / "persons.csv", index=False)
    with pytest.raises(DataError, match=r"persons.csv: no person for 1 ImageID"):
        load_eval(tiny_data)
