"""Write the synthetic demo dataset (src/data/demo.py) to a folder.

    python -m src.stages.demo OUT_DIR [--train N] [--eval N] [--seed S]
"""
from __future__ import annotations

import sys

from ..core.config import user_path
from ..data.demo import generate
from . import parser


def main(argv=None) -> int:
    ap = parser("python -m src.stages.demo", __doc__)
    ap.add_argument("out", type=user_path)
    ap.add_argument("--train", type=int, default=90, help="training persons")
    ap.add_argument("--eval", type=int, default=30, help="eval persons")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    try:
        generate(a.out, a.train, a.eval, a.seed)
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote a demo dataset to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
