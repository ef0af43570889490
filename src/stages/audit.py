"""Label audit: persons whose labels the out-of-fold predictions contradict.

    bash run.sh audit --run RUN [--noise-log FILE] [--top N]

For every person with out-of-fold predictions (all 7 shots), three checks:
  gender  mean probability of the other gender over the 7 shots (> 0.5: most shots disagree)
  swap    the photo labelled 'not worn' looks incorrect AND the one labelled 'incorrect' looks
          not worn (geometric mean of the two probabilities)
  age     1 - mean probability of the labelled age band (suggests the predicted band's age)
Candidates (score > 0.5) are written most confident first to RUN/audit.csv in the
corrections format (id,gender,age,mask_fix,note + kind,score), ready for a human to review
and pass back with corrections=FILE. With --noise-log (build_standin.py's record of injected
noise) it also prints precision and recall.
"""
from __future__ import annotations

import sys

from ..core.paths import user_path
from ..core.run_dir import find_run
from ..report.audit import read_noise_log, score_against_noise, write_audit
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("run.sh audit", __doc__)
    ap.add_argument("--run", required=True)
    ap.add_argument("--noise-log", type=user_path, help="CSV id,noise of injected label noise (stand-in builder)")
    ap.add_argument("--top", type=int, default=50, help="candidates per kind counted as 'top' for recall")
    ap.add_argument("--threshold", type=float, default=0.5)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: audit(a))


def audit(a) -> None:
    noise = read_noise_log(a.noise_log) if a.noise_log else None  # checked before anything is written
    run = find_run(a.run)
    oof = run.load_oof()
    scores, cands, out = write_audit(run, oof, a.threshold)
    print(f"audited {len(scores)} persons from {oof['fold'].nunique()} fold(s): {len(cands)} candidate(s) "
          f"({', '.join(f'{k} {n}' for k, n in cands['kind'].value_counts().items()) or 'none'}) -> {out}")
    if noise is not None:
        table = score_against_noise(cands, set(scores["id"]), noise, a.top)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        table.to_csv(out.with_name(out.stem + "_vs_noise.csv"), index=False, float_format="%.4f")


if __name__ == "__main__":
    sys.exit(main())
