"""Write the synthetic demo dataset (src/data/demo.py) to a folder.

    python -m src.stages.demo OUT_DIR [--train N] [--eval N] [--seed S]
"""
from __future__ import annotations

import sys

from ..core.paths import user_path
from ..data.demo import generate
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("python -m src.stages.demo", __doc__)
    ap.add_argument("out", type=user_path)
    ap.add_argument("--train", type=int, default=90, help="training persons")
    ap.add_argument("--eval", type=int, default=30, help="eval persons")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    return run_stage(lambda: demo(a.out, a.train, a.eval, a.seed))


def demo(out, train: int, evals: int, seed: int) -> None:
    generate(out, train, evals, seed)
    print(f"wrote a demo dataset to {out}")


if __name__ == "__main__":
    sys.exit(main())
