"""Where things are: the repository, its recipes, and the paths a user types.

A path the user types is taken from the folder the user typed the command in (run.sh exports it as
MASK_CALLER_DIR before it moves to the repository), made absolute and normalised: `tools/../data` is
`data`, so first lines, config.yaml and comparisons of runs read the same folder the same way.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # src/core/paths.py -> the repository
CONFIG_DIR = ROOT / "configs"               # recipes: seed.yaml, recommended.yaml, demo.yaml
AUGMENT_DIR = CONFIG_DIR / "augment"        # named augment lists: augment=kaggle is configs/augment/kaggle.yaml
CORRECTIONS_DIR = CONFIG_DIR / "corrections"  # named label corrections: corrections=competition
CALLER_DIR = "MASK_CALLER_DIR"              # run.sh exports the folder the user typed the command in, then moves


def user_path(p: str | Path) -> Path:
    """A path the user typed, taken from where the user stands (not from the repository), absolute and without
    `.` or `..` parts (lexically, as the shell reads them: a link is kept, not followed)."""
    p = Path(p).expanduser()
    if not p.is_absolute():
        p = Path(os.environ.get(CALLER_DIR) or os.getcwd()) / p
    return Path(os.path.normpath(p))
