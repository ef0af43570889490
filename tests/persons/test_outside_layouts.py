"""Outside photos as the public sets lay them out (src/persons/outside_layouts.py): each layout found
from a folder's contents, read with its own label conventions, refused where it is malformed."""
import shutil

import pandas as pd
import pytest

from src.core.config import load_saved
from src.core.keys import KEYS
from src.core.run_dir import RunDir
from src.data.demo import generate_outside
from src.data.tables import DataError
from src.persons import outside_persons, outside_set
from src.persons.outside_layouts import FORMATS, LAYOUTS, parse_age_range, read_folder
from tests.helpers import FAST, stage


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Six drawn faces (no real person) to lay out as each public set does."""
    return sorted(generate_outside(tmp_path_factory.mktemp("faces") / "src", n=6, seed=5).glob("*.jpg"))


def aaf_folder(root, faces, ages=(25, 45, 70), genders=("0", "1", "1")):
    """All-Age-Faces: original images/<id>A<age>.jpg; image sets/train.txt and val.txt (0 female, 1 male)."""
    (root / "original images").mkdir(parents=True)
    (root / "image sets").mkdir()
    lines = []
    for i, (face, age, g) in enumerate(zip(faces, ages, genders)):
        name = f"{i:05d}A{age:02d}.jpg"
        shutil.copy(face, root / "original images" / name)
        lines.append(f"{name if i % 2 == 0 else name[:-4]} {g}")  # the README's form has no .jpg: both read
    (root / "image sets" / "train.txt").write_text("\n".join(lines[:2]) + "\n")
    (root / "image sets" / "val.txt").write_text("\n".join(lines[2:]) + "\n")
    return root


def afad_folder(root, faces):
    """AFAD: <age>/<111 male|112 female>/*.jpg."""
    for i, (face, (age, g)) in enumerate(zip(faces, [(22, "111"), (40, "112"), (66, "112")])):
        (root / str(age) / g).mkdir(parents=True)
        shutil.copy(face, root / str(age) / g / f"{i}-0.jpg")
    return root


def fairface_folder(root, faces, ages=("20-29", "50-59", "more than 70", "30-39")):
    """FairFace: train/<n>.jpg with fairface_label_train.csv (file,age,gender,race,service_test)."""
    (root / "train").mkdir(parents=True)
    rows = []
    for i, (face, age) in enumerate(zip(faces, ages)):
        shutil.copy(face, root / "train" / f"{i + 1}.jpg")
        rows.append(dict(file=f"train/{i + 1}.jpg", age=age, gender="Male" if i % 2 else "Female",
                         race="East Asian" if i < 3 else "White", service_test=True))
    pd.DataFrame(rows).to_csv(root / "fairface_label_train.csv", index=False)
    return root


def test_each_layout_is_found_and_read_with_its_own_conventions(tmp_path, faces, capsys):
    folders = {"aaf": aaf_folder(tmp_path / "aaf", faces), "afad": afad_folder(tmp_path / "afad", faces[3:]),
               "fairface": fairface_folder(tmp_path / "ff", faces)}
    expected = {"aaf": {(25, 1), (45, 0), (70, 0)}, "afad": {(22, 0), (40, 1), (66, 1)},
                "fairface": {((20, 29), 1), ((50, 59), 0), ((70, 120), 1), ((30, 39), 0)}}
    for name, folder in folders.items():
        problems = []
        layout, photos = read_folder(folder, "auto", problems)
        assert layout == name and not problems
        got = {((p.age, p.age_hi) if p.age_hi else p.age, p.gender) for p in photos}
        assert got == expected[name], name
    outside = outside_set.checked_outside([folders["aaf"], folders["afad"]])
    assert outside.listed == 6 and len(outside.photos) == 6
    out = capsys.readouterr().out
    assert f"{folders['aaf']} read as aaf: 3 photos (male <30 0, male 30-59 1, male >=60 1, female <30 1" in out
    assert f"{folders['afad']} read as afad: 3 photos" in out


def test_an_age_range_across_a_band_edge_joins_and_is_counted(tmp_path, faces):
    folder = fairface_folder(tmp_path / "ff", faces)
    at_60 = outside_set.checked_outside([folder])
    assert sorted(p.age_range for p in at_60.photos) == [(20, 29), (30, 39), (50, 59), (70, 120)]
    at_55 = outside_set.checked_outside([folder], outside_set.OutsideRules(boundary=55))  # 50-59 straddles the training edge
    assert len(at_55.photos) == 4 and at_55.boundary == 55  # joins: a band head learns its mask and gender
    usable = [(p, d, None) for p, d in zip(at_55.photos, at_55.digests)]
    stats = outside_persons.summary(at_55.listed, usable, {}, at_55.boundary)
    assert (stats["age_exact"], stats["age_range"], stats["across_bands"]) == (0, 4, 1)
    assert outside_persons.summary(at_60.listed, usable, {}, 60)["across_bands"] == 0
    assert "4 known only as a range, 1 of them across a band edge" in outside_persons.summary_lines(
        {**stats, "skipped_no_face": 0, "skipped_small_face": 0, "outside_ages": 0})[1]
    old = outside_set.checked_outside([folder], outside_set.OutsideRules(ages=(55, 120)))  # a range must lie inside extra_ages
    assert [p.age_range for p in old.photos] == [(70, 120)] and old.outside_ages == 3
    asian = outside_set.checked_outside([folder], outside_set.OutsideRules(race="east asian"))
    assert len(asian.photos) == 3 and asian.other_race == 1
    with pytest.raises(DataError, match="names no race"):
        outside_set.checked_outside([afad_folder(tmp_path / "afad", faces)], outside_set.OutsideRules(race="White"))


def test_fairface_age_ranges_parse_and_nothing_else_does():
    assert parse_age_range("0-2") == (1, 2) and parse_age_range("more than 70") == (70, 120)
    assert parse_age_range("60-69") == (60, 69) and parse_age_range("45") == (45, 45)
    assert parse_age_range("old") is None and parse_age_range("30-20") is None
    assert parse_age_range("more than x") is None


def test_an_ambiguous_folder_asks_for_extra_format_and_it_decides(tmp_path, faces):
    folder = fairface_folder(afad_folder(tmp_path / "both", faces), faces)
    with pytest.raises(DataError, match="looks like afad and fairface; choose one with extra_format="):
        outside_set.checked_outside([folder])
    assert len(outside_set.checked_outside([folder], outside_set.OutsideRules(layout="afad")).photos) == 3


def test_malformed_layouts_are_refused_naming_file_and_line(tmp_path, faces):
    aaf = aaf_folder(tmp_path / "aaf", faces)
    with open(aaf / "image sets" / "val.txt", "a") as f:
        f.write("00009A45.jpg 2\n")  # gender 2
    afad = afad_folder(tmp_path / "afad", faces)
    (afad / "40" / "113").mkdir()
    ff = fairface_folder(tmp_path / "ff", faces, ages=("20-29", "adult", "30-39", "40-49"))
    with pytest.raises(DataError) as e:
        outside_set.checked_outside([aaf, afad, ff])
    msg = str(e.value)
    assert "val.txt line 2: '00009A45.jpg 2' is not All-Age-Faces'" in msg
    assert f"{afad / '40' / '113'}: not AFAD's" in msg
    assert "fairface_label_train.csv row 3: age 'adult'" in msg


def test_the_config_offers_every_layout():
    assert KEYS["extra_format"].parse("auto") == "auto"
    for name in FORMATS:
        assert KEYS["extra_format"].parse(name) == name
    assert set(FORMATS) == {"auto", *LAYOUTS}
    with pytest.raises(ValueError):
        KEYS["extra_format"].parse("celeba")


def recommended_fast(data, out, *more) -> int:
    """`bash run.sh --data DATA --config recommended` at test speed."""
    return stage("train", ["--data", str(data), "--config", "recommended", "--name", "r", "--output", str(out), *FAST,
                           "folds=0", *more])


@pytest.mark.parametrize("layout", ["aaf", "afad", "fairface"])
def test_recommended_trains_with_the_data_folders_extra_in_any_layout(tiny_data, tmp_path, faces, capsys, layout):
    """DATA/extra/ as a public set is downloaded: the recommended recipe finds it, says so and which layout it
    read, trains with its persons and decides the eval for macro-F1 on the competition's persons (decision=auto:
    biases fitted on the OOF, applied where they beat argmax nested), the prior the outside persons shifted in
    prior.json and the report.
    FairFace with a band head at age_boundary=55: its 50-59 face spans two bands and trains mask and gender."""
    make = {"aaf": aaf_folder, "afad": afad_folder, "fairface": fairface_folder}[layout]
    folder = make(tiny_data / "extra", faces)
    more = ["age_head=band"] if layout == "fairface" else []
    assert recommended_fast(tiny_data, tmp_path / "out", *more) == 0
    out = capsys.readouterr().out
    assert f"extra=auto: outside faces from {folder} join training (decision=auto" in out.splitlines()[0]
    assert f"{folder.resolve()} read as {layout}: " in out
    run = RunDir(tmp_path / "out" / "r")
    saved = load_saved(run.config)
    assert (saved.saved()["extra"], saved["decision"]) == (str(folder.resolve()), "auto")  # as config.yaml says
    persons = run.read_metrics()["extra"]["persons"]
    prior = run.read_prior()
    assert persons > 0 and sum(prior["trained"]) - sum(prior["competition"]) == 7 * persons
    decision = run.read_metrics()["decision"]
    assert len(decision["biases"]) == 18 and decision["trained_prior"] != decision["competition_prior"]
    assert decision["nested_by"] == "5 groups of persons" and decision["why"] in out  # one fold: groups of persons
    assert decision["applied"] == (decision["oof_f1_nested"] > decision["oof_f1_argmax"])
    assert "the class prior the run trained on differs from the competition's" in run.report.read_text()
    if layout == "fairface":
        assert run.read_metrics()["extra"]["across_bands"] == 1 and "1 of them across a band edge" in \
            run.report.read_text()


def test_recommended_without_an_extra_folder_runs_as_before_and_extra_none_turns_it_off(tiny_data, tmp_path, faces,
                                                                                         capsys):
    assert recommended_fast(tiny_data, tmp_path / "out") == 0
    assert f"extra=auto: no {tiny_data / 'extra'} folder, so no outside faces" in capsys.readouterr().out
    saved = load_saved(RunDir(tmp_path / "out" / "r").config)
    assert (saved.saved()["extra"], saved["decision"]) == ("", "none")
    aaf_folder(tiny_data / "extra", faces)
    assert recommended_fast(tiny_data, tmp_path / "off", "extra=none") == 0
    assert "outside" not in capsys.readouterr().out
    saved = load_saved(RunDir(tmp_path / "off" / "r").config)
    assert (saved.saved()["extra"], saved["decision"]) == ("", "none")


def aaf_download(root, faces):
    """All-Age-Faces as downloaded: five overlapping list files, one picture stored under two names with two
    ages (as 12877A64.jpg / 13074A71.jpg are), and a child of 4."""
    (root / "original images").mkdir(parents=True)
    (root / "image sets").mkdir()
    names = ["00000A25.jpg", "00001A45.jpg", "00002A70.jpg", "00003A04.jpg", "00004A64.jpg", "00005A71.jpg"]
    for name, face in zip(names, [*faces[:5], faces[4]]):
        shutil.copy(face, root / "original images" / name)
    lists = {"train.txt": [0, 1, 3, 4], "val.txt": [2, 5], "train_.txt": [0, 1], "val_.txt": [2],
             "val_shuffle.txt": [2, 0]}
    for file, picked in lists.items():
        (root / "image sets" / file).write_text("".join(f"{names[i]} {i % 2}\n" for i in picked))
    return root


def test_a_download_s_overlapping_lists_count_and_hash_each_photo_once(tmp_path, faces, monkeypatch, capsys):
    folder = aaf_download(tmp_path / "aaf", faces)
    hashed = []
    real = outside_set.file_sha1
    monkeypatch.setattr(outside_set, "file_sha1", lambda p: hashed.append(p) or real(p))
    outside = outside_set.checked_outside([folder], outside_set.OutsideRules(drop_conflicts=True))
    assert f"{folder} read as aaf: 6 photos (11 listings)" in capsys.readouterr().out
    assert sorted(hashed) == sorted(folder.glob("original images/*.jpg"))  # each once
    assert outside.listed == 6 and outside.conflicting == 2 and outside.duplicates == 0
    assert {p.path.name for p in outside.photos} == {"00000A25.jpg", "00001A45.jpg", "00002A70.jpg", "00003A04.jpg"}
    assert len(outside.conflicts) == 1 and "00004A64.jpg and 00005A71.jpg" in outside.conflicts[0]
    with pytest.raises(DataError, match="00004A64.jpg and 00005A71.jpg"):  # extra_conflicts=error: as before
        outside_set.checked_outside([folder])


def test_recommended_trains_with_a_download_as_it_comes(tiny_data, tmp_path, faces, capsys):
    """DATA/extra/ holding All-Age-Faces as downloaded: the run trains; its first lines say the photos (and
    listings), the conflicting photos left out and where they are listed, and the children left out."""
    aaf_download(tiny_data / "extra", faces)
    assert recommended_fast(tiny_data, tmp_path / "out") == 0
    out = capsys.readouterr().out
    youngest = int(pd.read_csv(tiny_data / "train" / "train.csv")["age"].min())
    run = RunDir(tmp_path / "out" / "r")
    assert "read as aaf: 6 photos (11 listings)" in out
    assert f"2 listed with two labels are left out (extra_conflicts=error refuses them instead); each with its two " \
           f"listings: {run.outside_conflicts}" in out
    assert f"1 outside the ages kept (ages {youngest}-120)" in out
    assert "00004A64.jpg and 00005A71.jpg" in run.outside_conflicts.read_text()
    stats = run.read_metrics()["extra"]
    assert (stats["photos"], stats["conflicting_labels"], stats["outside_ages"]) == (6, 2, 1)
    report = run.report.read_text()
    assert f"`extra_ages=auto`: ages {youngest}-120" in report and "`outside_conflicts.txt` lists each" in report
    assert load_saved(run.config)["extra_ages"] == "auto"


def test_afad_folders_that_are_not_ages_are_said(tmp_path, faces):
    afad = afad_folder(tmp_path / "afad", faces)
    (afad / "old" / "111").mkdir(parents=True)
    shutil.copy(faces[0], afad / "old" / "111" / "x.jpg")
    with pytest.raises(DataError) as e:
        outside_set.checked_outside([afad])
    assert f"{afad / 'old'}: 'old' is not an age, but it holds AFAD's 111/112 photo folders" in str(e.value)
    assert f"({afad} has 22, 40, 66)" in str(e.value)


def test_a_race_the_folder_does_not_have_is_refused_with_those_it_has(tmp_path, faces):
    ff = fairface_folder(tmp_path / "ff", faces)
    with pytest.raises(DataError) as e:
        outside_set.checked_outside([ff], outside_set.OutsideRules(race="East Asain"))
    assert "extra_race=East Asain: no photo of" in str(e.value) and "did you mean East Asian?" in str(e.value)
    assert "its races: East Asian, White" in str(e.value)
    assert len(outside_set.checked_outside([ff], outside_set.OutsideRules(race="east asian")).photos) == 3
