"""Label audit: persons whose labels the out-of-fold predictions contradict.

The command and its manual: src/stages/audit.py (`bash run.sh audit --help`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core import classes
from ..core.classes import PROB_COLS
from ..core.errors import NotFound, UserError
from ..core.run_dir import RunDir

SUGGESTED_AGE = {0: 25, 1: 45, 2: 60}  # the age a fix suggests for each band (60: as train.csv caps it)
NOISE_KIND = {"gender_flipped": "gender", "normal_incorrect_swapped": "swap"}


def person_scores(oof: pd.DataFrame) -> pd.DataFrame:
    """One row per person: gender / swap / age scores and what the predictions suggest."""
    probs = oof[PROB_COLS].to_numpy()
    p_mask, p_gender, p_age = classes.subtask_probs(probs)
    mask_t, gender_t, age_t = classes.decode(oof["label"].to_numpy())
    frame = pd.DataFrame({"person": oof["person"].astype(str), "gender_t": gender_t, "mask_t": mask_t,
                          "age_t": age_t, "p_other_gender": p_gender[np.arange(len(oof)), 1 - gender_t],
                          "p_female": p_gender[:, 1], "p_incorrect": p_mask[:, 1], "p_not_worn": p_mask[:, 2]})
    for b in range(3):
        frame[f"p_age{b}"] = p_age[:, b]
    rows = []
    for person, g in frame.groupby("person", sort=False):
        gender_t, age_t = int(g["gender_t"].iloc[0]), int(g["age_t"].iloc[0])
        labelled_not_worn = g[g["mask_t"] == 2]
        labelled_incorrect = g[g["mask_t"] == 1]
        swap = 0.0
        if len(labelled_not_worn) and len(labelled_incorrect):
            swap = float(np.sqrt(labelled_not_worn["p_incorrect"].mean() * labelled_incorrect["p_not_worn"].mean()))
        age_probs = g[[f"p_age{b}" for b in range(3)]].mean().to_numpy()
        rows.append({"id": person, "shots": len(g), "gender_label": classes.GENDER_NAMES[gender_t],
                     "gender_score": float(g["p_other_gender"].mean()),
                     "gender_votes": int((g["p_other_gender"] > 0.5).sum()),
                     "swap_score": swap, "age_band": age_t, "age_score": float(1 - age_probs[age_t]),
                     "age_pred_band": int(age_probs.argmax())})
    return pd.DataFrame(rows)


def candidates(scores: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Suspected mislabels in the corrections format, most confident first."""
    out = []
    for r in scores.itertuples(index=False):
        if r.gender_score > threshold:
            other = "female" if r.gender_label == "male" else "male"
            out.append({"id": r.id, "gender": other, "age": "", "mask_fix": "", "kind": "gender",
                        "score": r.gender_score,
                        "note": f"{r.gender_votes}/{r.shots} shots look {other} (mean p {r.gender_score:.2f})"})
        if r.swap_score > threshold:
            out.append({"id": r.id, "gender": "", "age": "", "mask_fix": "swap", "kind": "swap",
                        "score": r.swap_score,
                        "note": f"normal and incorrect_mask look swapped (p {r.swap_score:.2f})"})
        if r.age_score > threshold and r.age_pred_band != r.age_band:
            out.append({"id": r.id, "gender": "", "age": str(SUGGESTED_AGE[r.age_pred_band]), "mask_fix": "",
                        "kind": "age", "score": r.age_score,
                        "note": f"labelled {classes.AGE_NAMES[r.age_band]}, looks {classes.AGE_NAMES[r.age_pred_band]} "
                                f"(p of the label {1 - r.age_score:.2f}); check the exact age"})
    cols = ["id", "gender", "age", "mask_fix", "note", "kind", "score"]
    return pd.DataFrame(out, columns=cols).sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def as_corrections(cands: pd.DataFrame) -> pd.DataFrame:
    """One row per person (findings merged), loadable as corrections=FILE once reviewed."""
    def first(values):
        return next((v for v in values if v), "")

    merged = cands.groupby("id", sort=False).agg(
        gender=("gender", first), age=("age", first), mask_fix=("mask_fix", first),
        note=("note", "; ".join), kind=("kind", "+".join), score=("score", "max")).reset_index()
    return merged.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def score_against_noise(cands: pd.DataFrame, audited: set[str], noise: pd.DataFrame, top: int) -> pd.DataFrame:
    """Precision / recall per kind of injected noise, over the persons the audit could see."""
    noise = noise.assign(id=noise["id"].astype(str), kind=noise["noise"].map(NOISE_KIND))
    noise = noise[noise["id"].isin(audited) & noise["kind"].notna()]
    rows = []
    for kind in ("gender", "swap"):
        truth = set(noise.loc[noise["kind"] == kind, "id"])
        flagged = cands[cands["kind"] == kind]
        found = set(flagged["id"]) & truth
        found_top = set(flagged["id"].head(top)) & truth
        rows.append({"kind": kind, "injected": len(truth), "flagged": len(flagged), "found": len(found),
                     "precision": len(found) / max(len(flagged), 1), "recall": len(found) / max(len(truth), 1),
                     f"recall_top{top}": len(found_top) / max(len(truth), 1)})
    return pd.DataFrame(rows)


def read_noise_log(path: Path) -> pd.DataFrame:
    """The stand-in builder's --noise-log (id,noise); a UserError names the file and what is wrong."""
    if not path.is_file():
        raise NotFound(f"--noise-log {path}: no such file")
    try:
        log = pd.read_csv(path, dtype=str)
    except Exception as e:
        raise UserError(f"--noise-log {path}: not a readable CSV ({e})") from None
    if not {"id", "noise"} <= set(log.columns):
        raise UserError(f"--noise-log {path}: expected columns id,noise (has {list(log.columns)})")
    return log


def write_audit(run: RunDir, oof: pd.DataFrame, threshold: float = 0.5) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(every person's scores, the candidates above `threshold`, the file they were written to: a new
    RUN/audit*.csv in the corrections format, never over an earlier audit)."""
    scores = person_scores(oof)
    cands = candidates(scores, threshold)
    out = run.new_audit_file()
    as_corrections(cands).to_csv(out, index=False, float_format="%.4f")
    return scores, cands, out
