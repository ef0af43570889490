"""The fold ensemble (+ flip TTA) as one ONNX file, RUN/ensemble.onnx, for `predict --engine onnx`.

    bash run.sh export --run RUN
"""
from __future__ import annotations

import sys

from ..core.run_dir import find_run
from ..infer.predict import export_onnx
from . import parser, run_stage, void


def main(argv=None) -> int:
    ap = parser("run.sh export", __doc__)
    ap.add_argument("--run", required=True, help="run name under output/, or its folder")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: void(export_onnx(find_run(a.run))))


if __name__ == "__main__":
    sys.exit(main())
