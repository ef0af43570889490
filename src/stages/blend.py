"""Blend finished runs, and decide for macro-F1: post-hoc, from what the runs saved (seconds).

    bash run.sh blend --runs A[,B,...] [--decision none|bias|prior|auto] [--group-eval 7] [--name NAME]

The runs must share the data, the folds (folds.csv) and the trained folds, and their eval photos.
Weights (non-negative, summing to 1) minimise the log-loss of the blended out-of-fold
probabilities; with `--decision bias` per-class biases on the blend's log-probabilities are then
fitted on the same OOF for macro-F1 (src/infer/decision.py); `--decision auto` keeps them only where the
nested estimate with them beats the one without. Every decision is the blend's own, made on the runs'
probabilities: the biases a run trained with decision=bias/auto/prior put on its eval are taken off first.
One run alone is fine: only the decision applies. The estimate reported is honest: weights and biases
fitted without each fold (with one trained fold, each of five groups of its persons) and scored on it.
Writes a run folder like the pipeline's: submission.csv, eval_probs.csv (softmax of the blend's
log-probabilities plus the biases: its argmax is the submission), metrics.json, report.md.
"""
from __future__ import annotations

import sys

from ..core.config import config_parser
from ..core.paths import user_path
from ..core.run_dir import OUTPUT
from ..core.values import option_items
from ..infer.blend import blend
from . import parser, run_stage, void


def main(argv=None) -> int:
    ap = parser("run.sh blend", __doc__)
    ap.add_argument("--runs", required=True, type=option_items("--runs"), help="comma-separated run names or folders")
    ap.add_argument("--decision", type=config_parser("decision"), default="none",
                    help="none | bias | prior | auto (the biases only where their nested score beats the blend's "
                         "plain argmax), each on the runs' own probabilities (a run's decision is taken off first)")
    ap.add_argument("--group-eval", type=config_parser("group_eval"), default=0, metavar="N",
                    help="group eval photos into persons of N photos (the competition: 7); 0 = off")
    ap.add_argument("--name", help="the blend's folder under --output (default: blend-A+B)")
    ap.add_argument("--output", type=user_path, default=OUTPUT)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: void(blend(a.runs, a.decision, a.name, a.output, a.group_eval)))


if __name__ == "__main__":
    sys.exit(main())
