"""Are two runs the same numbers? Every file of run A against the same file of run B: byte for byte,
else the same values apart from what measures the machine rather than the model (wall-clock
seconds, images per second, memory, when the page was built). Checkpoints: every tensor exactly.

What it is for: a change that must not change results (a refactor, a faster data path) is checked
by training the same command before and after and comparing the two runs.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from ..core.run_dir import RunDir

# keys and columns whose values measure the machine: any name holding one of these
MACHINE = ("seconds", "img_s", "gib", "built")
# files that only repeat the numbers above for people (with the machine's times in their tables),
# or name the process that held the run
SKIPPED = {"report.md", "gallery.html", "run.lock", "curves.png", "confusion_oof.png", "confusion_eval.png"}


def machine(name: str) -> bool:
    return any(m in name for m in MACHINE)


def csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def same(a, b, own: tuple[str, str] = ("", "")) -> bool:
    """Nested dicts/lists of tensors, arrays and plain values (a checkpoint, a JSON file, CSV rows):
    equal, tensors and arrays exactly; keys and columns that measure the machine left out; `own`: the two runs'
    own names or folders, which name the run and no number (the same command twice makes RUN and RUN-2)."""
    if isinstance(a, str) and isinstance(b, str) and all(own):
        return a == b or a.replace(own[0], "\0") == b.replace(own[1], "\0")
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape \
            and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype \
            and np.array_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        ka = {k for k in a if not machine(str(k))}
        return ka == {k for k in b if not machine(str(k))} and all(same(a[k], b[k], own) for k in ka)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, own) for x, y in zip(a, b))
    return a == b


def same_values(a: Path, b: Path) -> bool:
    """The two files hold the same values apart from the machine's measurements and their runs' own names."""
    own = (a.parent.name, b.parent.name) if a.parent.name != b.parent.name else ("", "")
    paths = (str(a.parent), str(b.parent))
    if a.suffix == ".json":  # a run's folder is named whole: first its path, then its name alone
        return same(json.loads(a.read_text().replace(json.dumps(paths[0])[1:-1], "\u0000")),
                    json.loads(b.read_text().replace(json.dumps(paths[1])[1:-1], "\u0000")), own)
    if a.suffix == ".csv":
        return same(csv_rows(a), csv_rows(b), own)
    if a.suffix == ".pt":
        load = dict(map_location="cpu", weights_only=False)
        return same(torch.load(a, **load), torch.load(b, **load))
    return False


def compare_runs(a: RunDir, b: RunDir) -> list[tuple[str, str]]:
    """(file, verdict) for every file of either run folder: identical | same numbers | DIFFERENT |
    only in A | only in B | not compared (SKIPPED)."""
    names = sorted({p.name for run in (a, b) for p in run.path.iterdir() if p.is_file()})
    verdicts = []
    for name in names:
        fa, fb = a.path / name, b.path / name
        if name in SKIPPED:
            verdict = "not compared"
        elif not fb.exists():
            verdict = "only in A"
        elif not fa.exists():
            verdict = "only in B"
        elif fa.read_bytes() == fb.read_bytes():
            verdict = "identical"
        else:
            verdict = "same numbers" if same_values(fa, fb) else "DIFFERENT"
        verdicts.append((name, verdict))
    return verdicts
