"""The gpu bench for a lent GPU machine (the team's device tool; src/measure/device_bench.py).

Here, once (network and ../shared needed; fills the git-ignored .device/, about 95 MiB):

    .venv/bin/python -m src.stages.device_bench prepare

then two calls of the device tool, the second right after the first (the machine keeps what the
first installed while it stays warm); each `carry` is what `prepare` printed:

    1. carry [.device/wheels, .device/aaf-extra]:
       python3 -m pip install -q --no-index --no-deps --target .device/site .device/wheels/*.whl
    2. carry [.device/standin-src]:
       PYTHONPATH=.device/site python3 -m src.stages.device_bench run --out $OUT

`run` builds input/standin from .device/standin-src when it is not there (every core, about a
minute on 16), then trains the rows (default: seed, recommended, and recommended with the outside
faces and the ordinal age head) under `bench --protocol gpu` plus model=tf_efficientnet_lite0
pretrained=package folds=0 (weights that need no network; one fold fits a lease; num_workers=auto),
one bench output/bench/device growing by a row at a time; after every row the table
(device_results.md / .json) and the step times (device_times.json, with the GPU's name) go to
--out. A call cut short keeps what it finished; the same command on the same warm machine goes on
from there (finished rows are reused). --rows picks rows; key=value overrides go on top.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..core.config import ROOT, option_items, user_path
from ..measure.device_bench import DEVICE_DIR, ROWS, STANDIN_SRC, prepare, run
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("python -m src.stages.device_bench", __doc__)
    sub = ap.add_subparsers(dest="step", required=True)
    prep = sub.add_parser("prepare", help="fill .device/ with what the machine lacks")
    prep.add_argument("--shared", type=user_path, default=ROOT.parent / "shared", help="the team's shared folder")
    prep.add_argument("--no-wheels", action="store_true", help="copy the data only (no pip download)")
    go = sub.add_parser("run", help="on the device: build the stand-in, train the rows")
    go.add_argument("--out", type=user_path, required=True, help="where the tables go ($OUT)")
    go.add_argument("--data", type=user_path, default=ROOT / "input" / "standin", help="the stand-in (built here when "
                                                                                      "missing)")
    go.add_argument("--sources", type=user_path, default=ROOT / DEVICE_DIR / STANDIN_SRC)
    go.add_argument("--rows", type=option_items("--rows"), default=",".join(ROWS), help="bench recipes, in order")
    go.add_argument("overrides", nargs="*", metavar="key=value", help="on top of the device's settings")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: step(a))


def step(a) -> int | None:
    if a.step == "prepare":
        for i, carry in enumerate(prepare(a.shared, ROOT / DEVICE_DIR, not a.no_wheels), 1):
            print(f"call {i}: carry {carry['carry']} ({carry['MiB']} MiB of the 64 a call takes)")
        return 0
    return run(Path(a.data), a.rows, Path(a.out), a.overrides, Path(a.sources))


if __name__ == "__main__":
    sys.exit(main())
