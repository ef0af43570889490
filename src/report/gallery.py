"""The error-analysis page of a run: RUN/gallery.html, opened from the file system.

The command and its manual: src/stages/gallery.py (`bash run.sh gallery --help`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..core import classes
from ..core.classes import PROB_COLS
from ..core.errors import NotFound
from ..core.files import atomic_write_text, writing_errors
from ..core.progress import parallel_map
from ..core.run_dir import OUTPUT, RunDir, read_eval_probs
from ..data.cache import cache_root
from ..data.faces import face_boxes
from ..data.tables import DataError, Layout, load_eval
from ..data.transforms import Geometry
from .audit import as_corrections, candidates, person_scores

PAGE = Path(__file__).with_name("gallery_page.html")
THUMB = (96, 128)  # width, height: the competition's 3:4
THUMB_QUALITY = 70  # small files, faces still legible (sizes measured: docs/results.md)


def thumb_name(path: Path, view: str = "") -> str:
    """A thumbnail's file name (less its .jpg, which the page adds): changes when the photo is replaced, or
    when it shows another view of it (`view`: the background setting the model saw it with)."""
    try:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}{view}"
    except OSError:
        key = f"{path}|missing"
    return hashlib.sha1(key.encode()).hexdigest()[:14]


def opened(src: Path, view: Geometry | None) -> Image.Image:
    """The photo (decoded at 1/2..1/8 scale by the JPEG decoder itself: fast), or as the model saw it."""
    if view is not None:
        return Image.fromarray(view(str(src)))
    with Image.open(src) as im:
        im.draft("RGB", (THUMB[0] * 2, THUMB[1] * 2))
        return im.convert("RGB")


def make_thumb(src: Path, dst: Path, view: Geometry | None = None) -> bool:
    """One small JPEG; False when the photo cannot be read."""
    try:
        im = opened(src, view)
        im.thumbnail(THUMB, Image.Resampling.BILINEAR)
        tmp = dst.with_name(dst.name + ".tmp")
        im.save(tmp, "JPEG", quality=THUMB_QUALITY)
        os.replace(tmp, dst)
        return True
    except (OSError, ValueError):  # unreadable (read_image's error for a photo it cannot decode)
        return False


def model_view(cfg, paths: list[Path]) -> Geometry | None:
    """With a background removed (background= other than keep), the thumbnails show the photo as the model saw
    it: cut out, filled, cropped and resized (crop=face: by the boxes the run's cache holds)."""
    if cfg.background == "keep":
        return None
    boxes = face_boxes([str(p) for p in paths], cache_root(cfg.cache_dir, OUTPUT)) if cfg.crop == "face" else None
    return Geometry(cfg, boxes)


def make_thumbs(paths: list[Path], folder: Path, cfg) -> tuple[list[str], int]:
    """Thumbnail names for the photos (made where missing) and how many photos could not be read."""
    folder.mkdir(exist_ok=True)
    setting = "" if cfg.background == "keep" else f"|{cfg.background}|{cfg.background_fill}|{cfg.crop}"
    names = [thumb_name(p, setting) for p in paths]
    todo = [(p, folder / f"{n}.jpg") for p, n in dict(zip(paths, names)).items() if not (folder / f"{n}.jpg").exists()]
    view = model_view(cfg, [p for p, _ in todo]) if todo else None
    ok = parallel_map(lambda job: make_thumb(*job, view), todo, min(8, os.cpu_count() or 1),
                      "making the gallery's thumbnails")
    bad = {dst.stem for (_, dst), good in zip(todo, ok) if not good}
    return ["" if n in bad else n for n in names], len(bad)


def located(paths: list[Path]) -> dict:
    """The photos' shared folder once and each photo's path below it: most of the page's size otherwise."""
    root = os.path.commonpath([str(p.parent) for p in paths])
    return {"root": root, "rel": [os.path.relpath(p, root) for p in paths]}


def permille(probs: np.ndarray) -> list[int]:
    """Probabilities as whole thousandths, row after row: far shorter in the page than decimals."""
    return np.rint(probs * 1000).astype(int).ravel().tolist()


def oof_set(run: RunDir, folder: Path, cfg) -> tuple[dict, pd.DataFrame] | None:
    """The out-of-fold photos of every finished fold, and the table they came from."""
    try:
        oof = run.load_oof()
    except FileNotFoundError:
        return None
    order = oof["shot"].map({s: i for i, s in enumerate(classes.SHOTS)})  # mask1..5, incorrect, normal
    oof = oof.assign(_order=order).sort_values(["person", "_order"], kind="stable").drop(columns="_order")
    oof = oof.reset_index(drop=True)
    probs = oof[PROB_COLS].to_numpy()
    persons = list(dict.fromkeys(oof["person"]))
    index = {p: i for i, p in enumerate(persons)}
    paths = [Path(p) for p in oof["path"]]
    thumbs, unreadable = make_thumbs(paths, folder, cfg)
    data = {"n": len(oof), "true": oof["label"].astype(int).tolist(), "pred": probs.argmax(1).tolist(),
            "p": permille(probs), "fold": oof["fold"].astype(int).tolist(),
            "person": [index[p] for p in oof["person"]], "shot": [classes.SHOTS.index(s) for s in oof["shot"]],
            "thumb": thumbs, **located(paths), "unreadable": unreadable}
    return data, oof


def eval_set(run: RunDir, cfg, folder: Path) -> dict | None:
    """The eval photos with the run's probabilities, when eval/answers.csv gives their truth."""
    probs_table = read_eval_probs(run)
    data_dir = cfg.data
    if probs_table is None or not data_dir:
        return None
    try:
        table = load_eval(data_dir, check_pixels=False)
    except DataError as e:  # the data moved or changed since the run: the page shows OOF alone
        more = f" (and {len(e.problems) - 1} more)" if len(e.problems) > 1 else ""
        print(f"note: the gallery leaves out the eval photos: {e.problems[0]}{more}")
        return None
    if "true" not in table:
        return None
    table = table.merge(probs_table, on="ImageID", how="inner")
    if table.empty:
        return None
    probs = table[PROB_COLS].to_numpy()
    paths = [Path(p) for p in table["path"]]
    thumbs, unreadable = make_thumbs(paths, folder, cfg)
    return {"n": len(table), "true": table["true"].astype(int).tolist(), "pred": probs.argmax(1).tolist(),
            "p": permille(probs), "thumb": thumbs, **located(paths), "unreadable": unreadable}  # rel: the ImageID


def person_rows(oof: pd.DataFrame, data_dir: str) -> list[dict]:
    """Each OOF person's label: gender, exact age when train.csv still has it, and fold."""
    first = oof.groupby("person", sort=False).first()
    ages = {}
    csv = Layout(Path(data_dir)).train_csv if data_dir else None
    if csv is not None and csv.is_file():
        table = pd.read_csv(csv, dtype=str)
        if {"id", "age"} <= set(table.columns):
            ages = dict(zip(table["id"].str.strip(), table["age"].str.strip()))
    rows = []
    for person, r in first.iterrows():
        _, gender, band = classes.decode(int(r["label"]))
        age = int(ages[person]) if str(ages.get(person, "")).isdigit() else None
        if age is not None and classes.age_band(age) != band:
            age = None  # corrected since train.csv: the run's band is the label, the page shows it alone
        rows.append({"id": person, "gender": int(gender), "band": int(band), "fold": int(r["fold"]), "age": age})
    return rows


def audit_rows(run: RunDir, oof: pd.DataFrame) -> tuple[list[dict], str]:
    """The newest audit file's candidates, else the audit computed now from the OOF."""
    saved = run.latest_audit_file()
    if saved is not None:
        table, source = pd.read_csv(saved, dtype=str).fillna(""), saved.name
    else:
        table, source = as_corrections(candidates(person_scores(oof))).fillna(""), "computed from the OOF"
    rows = [{"id": str(r["id"]), "gender": r.get("gender", ""), "age": str(r.get("age", "")),
             "mask_fix": r.get("mask_fix", ""), "note": r.get("note", ""), "kind": r.get("kind", ""),
             "score": float(r["score"]) if str(r.get("score", "")).strip() else None}
            for r in table.to_dict("records")]
    return rows, source


def page_data(run: RunDir, folder: Path) -> dict:
    cfg = run.load_config()
    data_dir = cfg.data  # the data folder the run used (core/migrations.py fills it for older runs)
    sets, persons, audit, audit_source = {}, [], [], ""
    found = oof_set(run, folder, cfg)
    if found is not None:
        sets["oof"], oof = found
        persons = person_rows(oof, data_dir)
        audit, audit_source = audit_rows(run, oof)
    ev = eval_set(run, cfg, folder)
    if ev is not None:
        sets["eval"] = ev
    if not sets:
        raise NotFound(f"{run.path}: nothing to show: no out-of-fold predictions and no eval "
                                f"probabilities with eval/answers.csv")
    return {"run": run.name, "built": time.strftime("%Y-%m-%d %H:%M"), "recipe": cfg.recipe, "model": cfg.model,
            "classes": [classes.class_name(c) for c in range(classes.N_CLASSES)], "shots": list(classes.SHOTS),
            "tasks": {"mask": list(classes.MASK_NAMES), "gender": list(classes.GENDER_NAMES),
                      "age": list(classes.AGE_NAMES)},
            "thumbs": folder.name, "sets": sets, "persons": persons, "audit": audit, "audit_source": audit_source}


def write_gallery(run: RunDir) -> Path:
    """RUN/gallery.html and its thumbnails; the page's data is the run's as of now."""
    with writing_errors():
        data = page_data(run, run.gallery_thumbs)
        # '</' inside the JSON would end the <script> element that holds it
        blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
        page = PAGE.read_text().replace("__GALLERY_DATA__", blob)
        atomic_write_text(page, run.gallery)
        used = {f"{n}.jpg" for s in data["sets"].values() for n in s["thumb"] if n}
        for old in run.gallery_thumbs.glob("*.jpg"):
            if old.name not in used:  # photos the run no longer shows, or replaced since
                old.unlink(missing_ok=True)
    bad = sum(s.get("unreadable", 0) for s in data["sets"].values())
    if bad:
        print(f"warning: {bad} photo(s) could not be read for thumbnails; the page shows them blank")
    return run.gallery
