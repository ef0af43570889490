"""The fold ensemble (+ flip TTA) as one ONNX file, RUN/ensemble.onnx, for `predict --engine onnx`.

    bash run.sh export --run RUN
"""
from __future__ import annotations

import argparse
import sys

from ..core.run_dir import find_run
from ..infer.predict import export_onnx


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="run.sh export", description=__doc__, allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="run name under output/, or its folder")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        export_onnx(find_run(a.run))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
