"""Are two runs the same numbers? Every file of run A against run B (src/report/compare.py).

    bash run.sh compare RUN_A RUN_B

Byte for byte, else the same values apart from what measures the machine (seconds, images/s,
memory, build times); checkpoints tensor by tensor. report.md, gallery.html and the plots only
repeat those numbers for people and are not compared. Exit code 0 when every compared file is the
same, 1 when one differs or is in one run only, 2 when a run is not there.
"""
from __future__ import annotations

import sys

from ..core.errors import UserError
from ..core.run_dir import find_run
from ..report.compare import compare_runs
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("run.sh compare", __doc__)
    ap.add_argument("run_a", metavar="RUN_A", help="a run name under output/, or its folder")
    ap.add_argument("run_b", metavar="RUN_B", help="the run to compare it with")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: compare(a.run_a, a.run_b))


def compare(run_a: str, run_b: str) -> int:
    """1 when the runs differ, else 0."""
    runs = [find_run(r, f"RUN_{ab}") for r, ab in zip((run_a, run_b), "AB")]
    if runs[0].path.resolve() == runs[1].path.resolve():
        raise UserError(f"RUN_A and RUN_B are the same folder ({runs[0].path}); name two runs")
    verdicts = compare_runs(*runs)
    width = max(len(name) for name, _ in verdicts)
    for name, verdict in verdicts:
        print(f"{name:<{width}}  {verdict}")
    differ = [name for name, v in verdicts if v in ("DIFFERENT", "only in A", "only in B")]
    print(f"{runs[0].path} vs {runs[1].path}: " + (f"{len(differ)} file(s) differ" if differ else
                                                   "the same numbers"))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
