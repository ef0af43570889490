"""Name the persons of the stand-in's eval photos, so the bench's intervals resample whole persons.

The command and its manual: src/stages/standin_persons.py (`python -m src.stages.standin_persons --help`).
"""
from __future__ import annotations

import hashlib

import pandas as pd

from ..core import classes


def eval_persons(info: pd.DataFrame, manifest: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """ImageID -> person for the stand-in's eval photos (person = the AAF id)."""
    ids = manifest.loc[manifest["split"] == "eval", "aaf_id"].astype(int)
    names = {hashlib.sha1(f"{seed}-{aaf}-{shot}".encode()).hexdigest() + ".jpg": f"{aaf:06d}"
             for aaf in ids for shot in classes.SHOTS}
    return pd.DataFrame({"ImageID": info["ImageID"], "person": info["ImageID"].map(names)})
