"""What the model will see with `background` set, before any training: a contact sheet of photos under each method,
and how much of the photos each method filled, by class.

The command and its manual: src/stages/background.py (`bash run.sh background --help`).

A fill that takes more of one class's photos than another's would itself tell the class (a shortcut the removal
was meant to take away): the table gives the mean share of the model's view filled, overall and per mask state,
gender and age band, and the largest gap between two groups of one task.
"""
from __future__ import annotations

import os

import cv2
import numpy as np
import pandas as pd

from ..core import classes
from ..core.progress import parallel_map
from ..data.transforms import Geometry

TILE_H = 192  # the sheet's tiles are this high (the model's view scaled, nearest pixels: what it sees)
GROUPS = (classes.MASK_NAMES, classes.GENDER_NAMES, classes.AGE_NAMES)  # in the order classes.decode gives them


def spread_sample(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """n photos spread over the 18 classes in turn (random within each, by `seed`), one photo per person."""
    rng = np.random.default_rng(seed)
    by_class = {label: rows.sample(frac=1, random_state=int(rng.integers(2**31))).drop_duplicates("person")
                for label, rows in table.groupby("label")}
    picked, rank = [], 0
    while len(picked) < n and any(len(rows) > rank for rows in by_class.values()):
        picked += [rows.iloc[rank] for rows in by_class.values() if len(rows) > rank]
        rank += 1
    return pd.DataFrame(picked[:n]).reset_index(drop=True)


def views(cfg, paths: list[str], methods: list[str], boxes: dict | None) -> dict[str, list]:
    """method -> [(the model's view, its filled share)] for each photo; keep's share is 0."""
    out = {}
    for method in ["keep", *methods]:
        geometry = Geometry(cfg.replace(background=method), boxes)

        def one(path, geometry=geometry):
            view, alpha = geometry.view(path)
            return view, 0.0 if alpha is None else float(1 - alpha.mean())

        out[method] = parallel_map(one, paths, os.cpu_count() or 1, f"background={method}")  # as the cache builds
    return out


def fill_table(sample: pd.DataFrame, shares: dict[str, list[float]]) -> list[str]:
    """Markdown: each method's mean filled share, overall and per group, and its largest gap within a task."""
    head = ["method", "all"] + [name for names in GROUPS for name in names] + ["largest gap"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    tasks = np.array([classes.decode(int(label)) for label in sample["label"]])  # (n, 3): mask, gender, band
    for method, values in shares.items():
        share = np.asarray(values, dtype=float)
        cells, gap = [f"{share.mean():.3f}"], 0.0
        for task, names in enumerate(GROUPS):
            means = [share[tasks[:, task] == i].mean() if (tasks[:, task] == i).any() else np.nan
                     for i in range(len(names))]
            cells += ["–" if np.isnan(m) else f"{m:.3f}" for m in means]
            seen = [m for m in means if not np.isnan(m)]
            gap = max(gap, max(seen) - min(seen)) if seen else gap
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {gap:.3f} |")
    return lines


def contact_sheet(sample: pd.DataFrame, seen: dict[str, list], n: int) -> np.ndarray:
    """n rows (photos), a column per method: the model's view, its method and filled share under it, the
    photo's class at the row's start."""
    methods = list(seen)
    h, w = seen[methods[0]][0][0].shape[:2]
    tw, label = round(w * TILE_H / h), 16
    sheet = np.full((n * (TILE_H + label), len(methods) * tw, 3), 255, np.uint8)
    for i in range(n):
        top = i * (TILE_H + label)
        for j, method in enumerate(methods):
            view, share = seen[method][i]
            sheet[top:top + TILE_H, j * tw:(j + 1) * tw] = cv2.resize(view, (tw, TILE_H),
                                                                       interpolation=cv2.INTER_NEAREST)
            text = method if method == "keep" else f"{method} {share:.0%}"
            if j == 0:
                text = classes.class_name(int(sample["label"].iloc[i]))
            cv2.putText(sheet, text, (j * tw + 3, top + TILE_H + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1,
                        cv2.LINE_AA)
    return sheet
