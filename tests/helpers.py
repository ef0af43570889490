"""What many test files share: running a stage as `bash run.sh STAGE ...` would."""
from __future__ import annotations

import importlib


def stage(name: str, argv: list[str]) -> int:
    """`bash run.sh NAME ARGS...` in this process: src/stages/NAME.py's main, its exit code."""
    return importlib.import_module(f"src.stages.{name}").main(argv)
