"""The whole job: validate data -> folds -> train each fold -> TTA fold ensemble -> report.

    bash run.sh [train] [--data DIR] [--config NAME|FILE] [--name RUN] [--output DIR] [key=value ...]

Everything a run makes goes to output/<run>/. A finished run folder is never written over: a new
run takes the next free name (<run>-2, <run>-3, ...). An unfinished run with the same config is
continued: finished folds are skipped, the interrupted fold resumes after its last finished epoch.
"""
from __future__ import annotations

import sys

from ..core.paths import user_path
from ..core.run_dir import OUTPUT
from ..pipeline.job import run_job
from . import listing, parser, run_stage, unknown_stage, void


def parse_args(argv):
    ap = parser("run.sh", __doc__, epilog=listing())
    ap.add_argument("--data", type=user_path, help="competition-layout data dir (default: input/data, else input/standin, "
                                   "else the demo)")
    ap.add_argument("--config", help="recipe name in configs/ (seed, demo, ...) or a YAML file (from where you stand)")
    ap.add_argument("--name", help="run name: output/<name>/ (default: the recipe name)")
    ap.add_argument("--output", type=user_path, default=OUTPUT, help="where run folders go (default: output/ of the "
                                                                     "repository)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    return ap.parse_intermixed_args(argv)  # key=value before, between or after the options


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    stray = [o for o in args.overrides if "=" not in o]
    if stray:  # `bash run.sh trian`: a mistyped stage reaches the job as an override
        print(f"error: {unknown_stage(stray[0])}", file=sys.stderr)
        return 2
    # Ctrl-C: the job says where it stopped (Interrupted), else training had not begun
    return run_stage(lambda: void(run_job(args.data, args.config, args.overrides, args.name, args.output)),
                     "interrupted before training began; nothing to continue")


if __name__ == "__main__":
    sys.exit(main())
