"""The folder layouts outside face photos come in (`extra=DIR`, `extra_format=`): each reads a folder as
it is downloaded into labelled photos, and says whether a folder looks like it. A new layout is one
entry of LAYOUTS.

    labels     DIR/labels.csv: file,age,gender (file in DIR or DIR/images; gender male/female, m/f, 0/1)
    utkface    <age>_<gender>_<race>_<date>.jpg anywhere under DIR (gender 0 male, 1 female)
    aaf        All-Age-Faces: DIR/original images/<id>A<age>.jpg, DIR/image sets/*.txt lines
               `<id>A<age>[.jpg] <gender>` (gender 0 female, 1 male)
    afad       AFAD-Full / AFAD-Lite: DIR/<age>/<111|112>/*.jpg (111 male, 112 female)
    fairface   FairFace: DIR/fairface_label_*.csv with file,age,gender,race; age a range (`20-29`,
               `more than 70`): the ordinal head learns the thresholds each range decides; a band head
               its band where the range lies inside one, else its mask and gender only
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from ..core import classes
from ..data.tables import is_hidden

PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
UTK_NAME = re.compile(r"^(\d+)_(\d+)_")  # UTKFace: <age>_<gender>_<race>_<date>; race is not needed
AAF_NAME = re.compile(r"^\d{5}A(\d{2})(\.jpg)?$")
GENDER_WORDS = {"male": 0, "m": 0, "0": 0, "man": 0, "female": 1, "f": 1, "1": 1, "woman": 1}
AFAD_GENDERS = {"111": 0, "112": 1}
AAF_GENDERS = {"0": 1, "1": 0}  # All-Age-Faces: 0 stands for female, 1 for male
FAIRFACE_TOP = 120  # `more than 70`: up to this age


@dataclass(frozen=True)
class OutsidePhoto:
    path: Path
    age: int     # the exact age; with age_hi, the lower end of the range the age is known to lie in
    gender: int  # 0 male, 1 female
    line: str    # where it is listed, for messages: "<DIR>/labels.csv row 7", or the photo itself
    age_hi: int | None = None  # the upper end of an age known only as a range (FairFace); None: exact
    race: str = ""             # where the layout says (FairFace)

    @property
    def age_range(self) -> tuple[int, int]:
        return self.age, self.age if self.age_hi is None else self.age_hi


def parse_age(raw) -> int | None:
    s = str(raw).strip()
    return int(s) if s.isdigit() and 1 <= int(s) <= 120 else None


def parse_age_range(raw) -> tuple[int, int] | None:
    """FairFace's `20-29`, `0-2`, `more than 70` (an exact age is a range of one)."""
    s = str(raw).strip().lower()
    if s.startswith("more than "):
        lo = s[len("more than "):]
        return (int(lo), FAIRFACE_TOP) if lo.isdigit() else None
    parts = s.split("-")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        lo, hi = (int(p) for p in parts)
        return (max(lo, 1), hi) if lo <= hi <= 120 else None
    age = parse_age(s)
    return None if age is None else (age, age)


def listed_path(folder: Path, file: str, where: str, problems: list[str]) -> Path | None:
    """The photo a list names, inside its folder (or its images/); a name that leaves the folder
    (absolute, or through ..) is refused: it could reach the competition's own photos."""
    inside = os.path.normpath(str(file))
    if os.path.isabs(inside) or inside == ".." or inside.startswith(".." + os.sep):
        problems.append(f"{where}: file '{file}' lies outside {folder}; list photos by their name inside the "
                        f"folder (copy or link them in)")
        return None
    candidates = [folder / inside, folder / "images" / inside]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        problems.append(f"{candidates[0]}: listed in {where} but missing (also not in images/)")
    return path


def read_csv_rows(csv_path: Path, columns: tuple[str, ...], problems: list[str]) -> pd.DataFrame | None:
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except Exception as e:
        problems.append(f"{csv_path}: not a readable CSV ({e})")
        return None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        problems.append(f"{csv_path}: missing column(s) {missing} (has {list(df.columns)}); expected "
                        f"{','.join(columns)}")
        return None
    if df.empty:
        problems.append(f"{csv_path}: lists no photos (a header and no rows)")
    return df


def exact_age(raw) -> tuple[int, int] | None:
    age = parse_age(raw)
    return None if age is None else (age, age)


def csv_photos(folder: Path, csv_path: Path, columns: tuple[str, ...], ages: tuple[Callable, str],
               problems: list[str]) -> list[OutsidePhoto]:
    """The rows of a `file,age,gender[,race]` CSV as photos; `ages`: (the age column's parser to a range or
    None, what a bad value is not). A range of one year is an exact age."""
    df = read_csv_rows(csv_path, columns, problems)
    photos = []
    for i, r in enumerate(df.to_dict("records") if df is not None else []):
        where = f"{csv_path} row {i + 2}"
        age, gender = ages[0](r["age"]), GENDER_WORDS.get(str(r["gender"]).strip().lower())
        if age is None:
            problems.append(f"{where}: age '{r['age']}' is not {ages[1]}")
        if gender is None:
            problems.append(f"{where}: gender '{r['gender']}' is not male/female (or 0/1)")
        path = listed_path(folder, r["file"], where, problems)
        if age is not None and gender is not None and path is not None:
            photos.append(OutsidePhoto(path, age[0], gender, where, None if age[0] == age[1] else age[1],
                                       str(r.get("race", "")).strip()))
    return photos


def read_label_csv(folder: Path, problems: list[str]) -> list[OutsidePhoto]:
    return csv_photos(folder, folder / "labels.csv", ("file", "age", "gender"),
                      (exact_age, "a whole number of years (1..120)"), problems)


def photo_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and not is_hidden(p) and p.suffix.lower() in PHOTO_EXTS]


def read_utk_names(folder: Path, problems: list[str]) -> list[OutsidePhoto]:
    photos = []
    for p in photo_files(folder):
        m = UTK_NAME.match(p.name)
        age = parse_age(m.group(1)) if m else None
        gender = {"0": 0, "1": 1}.get(m.group(2)) if m else None
        if m is None:
            problems.append(f"{p}: name is not UTKFace's <age>_<gender>_<race>_<date>.jpg")
        elif age is None or gender is None:
            problems.append(f"{p}: age '{m.group(1)}' or gender '{m.group(2)}' (0 male, 1 female) does not parse")
        else:
            photos.append(OutsidePhoto(p, age, gender, str(p)))
    return photos


def read_aaf(folder: Path, problems: list[str]) -> list[OutsidePhoto]:
    """All-Age-Faces: every line of `image sets/*.txt`, the photo in `original images/`."""
    photos = []
    for txt in sorted((folder / "image sets").glob("*.txt")):
        for n, line in enumerate(txt.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            where, parts = f"{txt} line {n}", line.split()
            m = AAF_NAME.match(parts[0]) if len(parts) == 2 else None
            gender = AAF_GENDERS.get(parts[1]) if m else None
            if m is None or gender is None or parse_age(m.group(1)) is None:
                problems.append(f"{where}: '{line.strip()}' is not All-Age-Faces' `<id>A<age>.jpg <0 female|1 male>`")
                continue
            name = parts[0] if parts[0].endswith(".jpg") else parts[0] + ".jpg"
            path = listed_path(folder / "original images", name, where, problems)
            if path is not None:
                photos.append(OutsidePhoto(path, parse_age(m.group(1)), gender, where))
    if not photos and not problems:
        problems.append(f"{folder / 'image sets'}: no lines in its .txt files")
    return photos


def read_afad(folder: Path, problems: list[str]) -> list[OutsidePhoto]:
    """AFAD: <age>/<111|112>/*.jpg; other folders beside the age folders are not photos of it."""
    photos = []
    for odd in sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.isdigit() and not is_hidden(d)):
        if any((odd / g).is_dir() for g in AFAD_GENDERS):
            ages = sorted((d.name for d in folder.iterdir() if d.is_dir() and d.name.isdigit()), key=int)
            shown = ", ".join(ages[:3]) + (" ..." if len(ages) > 3 else "")
            problems.append(f"{odd}: '{odd.name}' is not an age, but it holds AFAD's 111/112 photo folders; AFAD's "
                            f"age folders are numbers ({folder} has {shown}): rename it to its age, or move it out")
    for age_dir in sorted(d for d in folder.iterdir() if d.is_dir() and d.name.isdigit()):
        age = parse_age(age_dir.name)
        for gender_dir in sorted(d for d in age_dir.iterdir() if d.is_dir()):
            gender = AFAD_GENDERS.get(gender_dir.name)
            if age is None or gender is None:
                problems.append(f"{gender_dir}: not AFAD's <age 1..120>/<111 male|112 female>")
                continue
            photos += [OutsidePhoto(p, age, gender, str(p)) for p in photo_files(gender_dir)]
    return photos


def read_fairface(folder: Path, problems: list[str]) -> list[OutsidePhoto]:
    """FairFace: every fairface_label_*.csv (train, val); the age a range, the race kept."""
    return [photo for csv_path in sorted(folder.glob("fairface_label_*.csv"))
            for photo in csv_photos(folder, csv_path, ("file", "age", "gender", "race"),
                                    (parse_age_range, "a range like 20-29 or 'more than 70'"), problems)]


def looks_afad(folder: Path) -> bool:
    return any(d.is_dir() and d.name.isdigit() and any((d / g).is_dir() for g in AFAD_GENDERS)
               for d in folder.iterdir())


def looks_utkface(folder: Path) -> bool:
    return any(UTK_NAME.match(p.name) for p in photo_files(folder)[:200])


@dataclass(frozen=True)
class Layout:
    name: str
    found: Callable[[Path], bool]
    read: Callable[[Path, list[str]], list[OutsidePhoto]]


LAYOUTS = {layout.name: layout for layout in (
    Layout("labels", lambda f: (f / "labels.csv").is_file(), read_label_csv),
    Layout("aaf", lambda f: (f / "image sets").is_dir() and (f / "original images").is_dir(), read_aaf),
    Layout("afad", looks_afad, read_afad),
    Layout("fairface", lambda f: any(f.glob("fairface_label_*.csv")), read_fairface),
    Layout("utkface", looks_utkface, read_utk_names),
)}
FORMATS = ("auto", *LAYOUTS)


def layout_of(folder: Path, forced: str, problems: list[str]) -> Layout | None:
    """The layout `extra_format=` names, else the one the folder's contents show (labels.csv, being written
    by the user, wins over the rest); none or several: a problem naming what was looked for."""
    if forced != "auto":
        return LAYOUTS[forced]
    if LAYOUTS["labels"].found(folder):
        return LAYOUTS["labels"]
    matches = [layout for layout in LAYOUTS.values() if layout.found(folder)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        problems.append(f"{folder}: looks like {' and '.join(m.name for m in matches)}; choose one with "
                        f"extra_format= ({' | '.join(LAYOUTS)})")
    else:
        problems.append(f"{folder}: no known layout: no labels.csv (file,age,gender), no UTKFace names "
                        f"(<age>_<gender>_<race>_<date>.jpg), no All-Age-Faces 'image sets/' + 'original images/', "
                        f"no AFAD <age>/<111|112>/ folders, no FairFace fairface_label_*.csv")
    return None


def read_folder(folder: Path, forced: str, problems: list[str]) -> tuple[str, list[OutsidePhoto]]:
    """(the layout read, the labelled photos of one folder); what is wrong goes to `problems`."""
    if not folder.is_dir():
        problems.append(f"{folder}: not a folder")
        return "", []
    before = len(problems)
    layout = layout_of(folder, forced, problems)
    if layout is None:
        return "", []
    photos = layout.read(folder, problems)
    if not photos and len(problems) == before:
        problems.append(f"{folder}: no photos ({', '.join(sorted(PHOTO_EXTS))}) as {layout.name} lays them out")
    return layout.name, photos


def cell_counts(photos: list[OutsidePhoto]) -> str:
    """`male <30 3, ...`: photos per gender x age band (a range across bands: `across bands`)."""
    cells = {f"{classes.GENDER_NAMES[g]} {classes.AGE_NAMES[b]}": 0 for g in (0, 1) for b in range(3)}
    across = 0
    for p in photos:
        lo, hi = p.age_range
        if classes.age_band(lo) != classes.age_band(hi):
            across += 1
        else:
            cells[f"{classes.GENDER_NAMES[p.gender]} {classes.AGE_NAMES[classes.age_band(lo)]}"] += 1
    return ", ".join(f"{k} {v}" for k, v in cells.items()) + (f", age range across bands {across}" if across else "")
