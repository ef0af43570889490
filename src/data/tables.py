"""Competition layout -> per-image tables, with validation and label corrections.

Layout (under a data dir):
    train/train.csv                       id,gender,race,age,path
    train/images/<path>/<shot>.<ext>      shot in mask1..mask5, incorrect_mask, normal
    eval/info.csv                         ImageID,ans
    eval/images/<ImageID>
    eval/answers.csv (optional)           ImageID,ans with the true class
    eval/persons.csv (optional)           ImageID,person: whose photo each is (the bench's intervals then
                                          resample whole persons)

Everything is checked before training starts; all problems are collected and reported
together (DataError), so a user fixes the data in one pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from ..core import classes
from ..core.errors import UserError
from ..core.paths import CONFIG_DIR, ROOT, user_path
from ..core.progress import parallel_map

IMAGE_EXTS = {".jpg", ".jpeg", ".png"}
GENDERS = {"male": 0, "female": 1}
CORRECTION_COLUMNS = ("id", "gender", "age", "mask_fix", "note")
MASK_FIXES = ("swap", "incorrect_is_wear")


@dataclass(frozen=True)
class Layout:
    """The competition layout under a data folder: the one place its file names are spelled."""
    root: Path

    @property
    def train_csv(self) -> Path:
        return self.root / "train" / "train.csv"

    @property
    def train_images(self) -> Path:
        return self.root / "train" / "images"

    @property
    def eval_info(self) -> Path:
        return self.root / "eval" / "info.csv"

    @property
    def eval_images(self) -> Path:
        return self.root / "eval" / "images"

    @property
    def eval_answers(self) -> Path:
        return self.root / "eval" / "answers.csv"

    @property
    def eval_persons(self) -> Path:
        return self.root / "eval" / "persons.csv"

    def has_train(self) -> bool:
        return self.train_csv.exists()


STANDIN = ROOT / "input" / "standin"


def find_data(given: str | Path | None, configured: str) -> Path | None:
    """The one rule every stage uses for its data folder: --data when given; else the config's
    `data_dir` (input/data) when that folder exists (checked like any data, so a broken one is
    reported, not passed over); else the stand-in (input/standin) when built; else None, and the
    stage says what it does then (the pipeline: the demo data)."""
    if given:
        return user_path(given)
    default = Path(configured) if Path(configured).is_absolute() else ROOT / configured
    if default.exists():
        return default
    return STANDIN if Layout(STANDIN).has_train() else None


class DataError(UserError, ValueError):
    """Bad input data; the message lists every offending path."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in {where}:\n{listing}")


def is_hidden(path: Path) -> bool:
    """AppleDouble `._x` files and other dot-files are junk, never data."""
    return path.name.startswith(".")


MIN_SIDE = 16  # pixels: a smaller photo cannot hold a face (an error, like an unreadable file)
AGE_RANGE = (1, 120)  # a labelled age outside this is a typo, not a person (an error)
# modes PIL converts to RGB faithfully; wide integer greys are scaled down first (see `to_rgb`)
RGB_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
WIDE_GREY = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def to_rgb(im: Image.Image) -> np.ndarray:
    """RGB uint8 from any photo mode: 16-bit greys are scaled to 8 bits (PIL's own convert would
    clip them to white); modes with no faithful RGB (float, LAB, ...) are refused by name."""
    if im.mode in WIDE_GREY:
        a = np.asarray(im).astype(np.int64)
        top = 255 if a.max(initial=0) <= 255 else 65535
        if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
            raise ValueError(f"{im.mode} photo with values outside 0..65535")
        grey = np.rint(a * (255 / top)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode not in RGB_MODES:
        raise ValueError(f"photo mode {im.mode} has no faithful RGB form; save it as 8-bit RGB")
    return np.asarray(im.convert("RGB"))


def read_image(path) -> np.ndarray:
    """RGB uint8 array, EXIF orientation applied, any usable mode (L, RGBA, P, CMYK, 16-bit, ...) converted."""
    with Image.open(path) as im:
        return to_rgb(ImageOps.exif_transpose(im))


def image_problem(path: Path) -> str | None:
    """Why an image can't be used, or None. Decodes the whole stream so truncation shows."""
    try:
        if path.stat().st_size == 0:
            return f"{path}: empty file"
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
            im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))  # JPEG: fast, still reads it all
            im.load()
        if min(w, h) < MIN_SIDE:
            return f"{path}: {w}x{h} pixels is too small for a face photo (at least {MIN_SIDE}x{MIN_SIDE})"
        if mode not in RGB_MODES | WIDE_GREY:
            return f"{path}: photo mode {mode} has no faithful RGB form; save it as 8-bit RGB"
    except FileNotFoundError:
        return f"{path}: missing"
    except Exception as e:  # PIL raises many types for corrupt files
        return f"{path}: unreadable or truncated image ({type(e).__name__}: {e})"
    return None


def check_images(paths: list[Path], desc: str, workers: int = 4) -> list[str]:
    return [r for r in parallel_map(image_problem, paths, workers, desc) if r]


def _read_csv(path: Path, required: tuple[str, ...], problems: list[str], comments: bool = False) -> pd.DataFrame | None:
    if not path.is_file():
        problems.append(f"{path}: {'a folder, not a CSV file' if path.is_dir() else 'missing'}")
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#" if comments else None)
    except Exception as e:
        problems.append(f"{path}: not a readable CSV ({e})")
        return None
    missing = [c for c in required if c not in df.columns]
    if missing:
        problems.append(f"{path}: missing column(s) {missing} (has {list(df.columns)})")
        return None
    return df


def find_shots(folder: Path) -> tuple[dict[str, Path], list[str], list[str]]:
    """shot name -> file, plus problems and ignored extra files for one person folder."""
    found: dict[str, list[Path]] = {}
    extras = []
    for f in sorted(folder.iterdir()):
        if is_hidden(f) or f.is_dir():
            continue
        if f.suffix.lower() in IMAGE_EXTS and f.stem in classes.SHOT_MASK:
            found.setdefault(f.stem, []).append(f)
        else:
            extras.append(str(f))
    problems = []
    for shot in classes.SHOTS:
        files = found.get(shot, [])
        if not files:
            problems.append(f"{folder}: no '{shot}' image (.jpg/.jpeg/.png)")
        elif len(files) > 1:
            problems.append(f"{folder}: {len(files)} '{shot}' images {[f.name for f in files]}, expected one")
    return {k: v[0] for k, v in found.items()}, problems, extras


def data_lines(path: Path) -> list[int]:
    """The file line number of each data row of a CSV whose '#' lines and blank lines are skipped."""
    numbers = [n for n, line in enumerate(path.read_text().splitlines(), 1)
               if line.strip() and not line.lstrip().startswith("#")]
    return numbers[1:]  # the first is the header


def load_corrections(path: Path, known_ids: set[str] | None = None) -> pd.DataFrame:
    """The corrections file, every problem of it (each with its line number) in one DataError; with
    `known_ids`, an id that is not a person of train.csv is one of them."""
    problems: list[str] = []
    df = _read_csv(path, ("id",), problems, comments=True)  # '#' lines document where fixes came from
    if df is None:
        raise DataError(str(path), problems)
    df = df[[c for c in df.columns if c in CORRECTION_COLUMNS]].copy()
    for c in CORRECTION_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    df["id"] = df["id"].str.strip()
    lines = data_lines(path)
    df["line"] = lines
    for i, row in df.iterrows():
        where = f"{path} line {lines[i]} (id {row['id']})"
        if known_ids is not None and row["id"] not in known_ids:
            problems.append(f"{where}: id {row['id']} is not a person in train.csv")
        if row["gender"] and row["gender"] not in GENDERS:
            problems.append(f"{where}: gender '{row['gender']}' is not male/female")
        if row["age"] and not row["age"].strip().isdigit():
            problems.append(f"{where}: age '{row['age']}' is not a whole number")
        if row["mask_fix"] and row["mask_fix"] not in MASK_FIXES:
            problems.append(f"{where}: mask_fix '{row['mask_fix']}' is not one of {MASK_FIXES}")
    for i in np.flatnonzero(df["id"].duplicated().to_numpy()):
        problems.append(f"{path} line {lines[i]} (id {df['id'].iloc[i]}): id listed more than once")
    if problems:
        raise DataError(str(path), problems)
    return df


def load_train(data_dir, corrections: str | Path | None = None, check_pixels: bool = True) -> pd.DataFrame:
    """One row per training image: person, gender, age, shot, mask, path, label (true boundary)."""
    data_dir = Path(data_dir)
    problems: list[str] = []
    layout = Layout(data_dir)
    csv_path, img_root = layout.train_csv, layout.train_images
    df = _read_csv(csv_path, ("id", "gender", "age", "path"), problems)
    if not img_root.is_dir():
        problems.append(f"{img_root}: missing folder")
    if df is None or problems:
        raise DataError(str(data_dir), problems)

    rows, seen_paths = person_rows(df, csv_path, img_root, problems)
    dup = df["id"][df["id"].duplicated()].tolist()
    if dup:
        problems.append(f"{csv_path}: id(s) listed more than once {dup}")
    for d in sorted(img_root.iterdir()):
        if d.is_dir() and not is_hidden(d) and d.name not in seen_paths:
            problems.append(f"{d}: folder has no row in {csv_path}")
    if check_pixels and rows:
        problems += check_images([Path(r["path"]) for r in rows], "checking train images")
    corr = None
    if corrections:  # its problems join the data's: one list, every line numbered
        try:
            corr = load_corrections(Path(corrections), set(df["id"].str.strip()))
        except DataError as e:
            problems += e.problems
    if problems:
        raise DataError(str(data_dir), problems)

    table = pd.DataFrame(rows)
    if corr is not None:
        table = apply_corrections(table, corr, str(corrections))
    table["label"] = classes.encode(table["mask"], table["gender"], classes.age_band(table["age"].to_numpy()))
    return table.reset_index(drop=True)


def person_rows(df: pd.DataFrame, csv_path: Path, img_root: Path, problems: list[str]) -> tuple[list[dict], set]:
    """(one row per photo of every usable train.csv row, the folders named); what is wrong with a row,
    its folder or its shots goes to `problems`."""
    rows = []
    seen_paths = set()
    root = img_root.resolve()
    for i, r in enumerate(df.itertuples(index=False)):
        where = f"{csv_path} row {i + 2}"
        gender = GENDERS.get(r.gender.strip().lower())
        if gender is None:
            problems.append(f"{where}: gender '{r.gender}' is not male/female")
        age_ok = r.age.strip().isdigit()
        if not age_ok:
            problems.append(f"{where}: age '{r.age}' is not a whole number")
        elif not AGE_RANGE[0] <= int(r.age) <= AGE_RANGE[1]:
            problems.append(f"{where}: age {int(r.age)} is not a plausible age ({AGE_RANGE[0]}..{AGE_RANGE[1]})")
            age_ok = False
        folder = img_root / r.path
        if r.path in seen_paths:
            problems.append(f"{where} (id {r.id}): path '{r.path}' is already the folder of another row; "
                            f"each person needs a folder of their own")
            continue
        seen_paths.add(r.path)
        if not r.path.strip() or not folder.resolve().is_relative_to(root) or folder.resolve() == root:
            problems.append(f"{where} (id {r.id}): path '{r.path}' is not a folder inside {img_root}")
            continue
        if not folder.is_dir():
            problems.append(f"{folder}: folder for train.csv row {i + 2} (id {r.id}) is missing")
            continue
        shots, shot_problems, extras = find_shots(folder)
        problems += shot_problems
        for e in extras:
            print(f"warning: ignoring unexpected file {e}")
        if gender is None or not age_ok or shot_problems:
            continue
        for shot in classes.SHOTS:
            rows.append(dict(person=r.id, folder=r.path, gender=gender, age=int(r.age),
                             shot=shot, mask=classes.SHOT_MASK[shot], path=str(shots[shot])))
    return rows, seen_paths


def corrections_path(value: str) -> Path | None:
    """`corrections=`: a name of configs/corrections/, else a file from where the user stands."""
    if not value:
        return None
    named = CONFIG_DIR / "corrections" / f"{value}.csv"
    return named if named.is_file() else user_path(value)


def training_table(cfg, data_dir: Path) -> pd.DataFrame:
    """The training photos, corrected, thinned to `max_images` (whole persons) when asked."""
    table = load_train(data_dir, corrections_path(cfg.corrections))
    if cfg.max_images:
        keep = table["person"].drop_duplicates().sample(frac=1, random_state=cfg.seed)
        keep = set(keep.iloc[: max(cfg.n_folds, cfg.max_images // 7)])
        table = table[table["person"].isin(keep)].reset_index(drop=True)
        print(f"max_images={cfg.max_images}: using {len(table)} training images")
    return table


def apply_corrections(table: pd.DataFrame, corr: pd.DataFrame, source: str) -> pd.DataFrame:
    """Fix known mislabels at load time; the data on disk is never touched."""
    table = table.copy()
    unknown = sorted(set(corr["id"]) - set(table["person"]))
    if unknown:
        raise DataError(source, [f"{source}: id {u} is not a person in train.csv" for u in unknown])
    for row in corr.itertuples(index=False):
        sel = table["person"] == row.id
        if row.gender:
            table.loc[sel, "gender"] = GENDERS[row.gender]
        if row.age:
            table.loc[sel, "age"] = int(row.age)
        if row.mask_fix == "swap":
            normal = sel & (table["shot"] == "normal")
            incorrect = sel & (table["shot"] == "incorrect_mask")
            table.loc[normal, "mask"] = classes.SHOT_MASK["incorrect_mask"]
            table.loc[incorrect, "mask"] = classes.SHOT_MASK["normal"]
        elif row.mask_fix == "incorrect_is_wear":
            table.loc[sel & (table["shot"] == "incorrect_mask"), "mask"] = 0
    print(f"applied {len(corr)} correction(s) from {source}")
    return table


def load_eval(data_dir, check_pixels: bool = True) -> pd.DataFrame:
    """eval/info.csv rows in file order with image paths, plus `true` labels when answers.csv exists."""
    data_dir = Path(data_dir)
    problems: list[str] = []
    layout = Layout(data_dir)
    info_path, img_root = layout.eval_info, layout.eval_images
    info = _read_csv(info_path, ("ImageID", "ans"), problems)
    if not img_root.is_dir():
        problems.append(f"{img_root}: missing folder")
    if info is None or problems:
        raise DataError(str(data_dir), problems)
    info = info[["ImageID"]].copy()
    dup = info["ImageID"][info["ImageID"].duplicated()].tolist()
    if dup:
        problems.append(f"{info_path}: ImageID(s) listed more than once {dup}")
    info["path"] = [str(img_root / i) for i in info["ImageID"]]
    missing = [p for p in info["path"] if not Path(p).is_file()]
    problems += [f"{p}: image listed in {info_path} is missing" for p in missing]

    answers_path = layout.eval_answers
    if answers_path.exists():
        ans = _read_csv(answers_path, ("ImageID", "ans"), problems)
        if ans is not None:
            lookup = dict(zip(ans["ImageID"], ans["ans"]))
            absent = [i for i in info["ImageID"] if i not in lookup]
            if absent:
                problems.append(f"{answers_path}: no answer for {len(absent)} ImageID(s), e.g. {absent[:5]}")
            bad = [v for v in lookup.values() if not (v.isdigit() and int(v) < classes.N_CLASSES)]
            if bad:
                problems.append(f"{answers_path}: answers must be 0..17, found {sorted(set(bad))[:5]}")
            if not absent and not bad:
                info["true"] = [int(lookup[i]) for i in info["ImageID"]]
    persons_path = layout.eval_persons
    if persons_path.exists():
        persons = _read_csv(persons_path, ("ImageID", "person"), problems)
        if persons is not None:
            lookup = dict(zip(persons["ImageID"], persons["person"]))
            absent = [i for i in info["ImageID"] if not lookup.get(i)]
            if absent:
                problems.append(f"{persons_path}: no person for {len(absent)} ImageID(s), e.g. {absent[:5]}")
            else:
                info["person"] = [lookup[i] for i in info["ImageID"]]
    if check_pixels and not missing:
        problems += check_images([Path(p) for p in info["path"]], "checking eval images")
    if problems:
        raise DataError(str(data_dir), problems)
    return info.reset_index(drop=True)
