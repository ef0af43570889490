"""Quality benchmark: train each recipe under the same protocol, on the same folds, one table.

    bash run.sh bench [--data DIR] [--protocol cpu|gpu] [--recipes seed,recommended] [--name NAME]

A recipe is a config name, optionally with changes: `recommended+crop=face` or
`seed+loss=ce+lr=3e-4` — one-line ablations of single ingredients. `blend:A|B[+decision=bias]
[+group_eval=7]` is a post-hoc row over rows listed before it (src/infer/blend.py; no training).

`reference` is the parity row: the independent implementation of the seed recipe
(`--reference`, default ../shared/reference/seedref.py) at the protocol's settings, the yardstick
`seed` must at least match (see src/measure/reference.py); `reference+seed=1` is its run with another seed.

Protocols (overrides applied on top of every recipe, so only the recipe's ingredients differ):
  cpu   offline-pretrained tf_efficientnet_lite0, 400x300 centre crop of the photo -> 149x112,
        batch 32, fold 0 only, 3 epochs: the reference's own settings
        (the time per recipe on 2 cores: docs/results.md)
  gpu   the recipe's own model, input size and epochs, all 5 folds, fold ensemble on eval
Each recipe's run is output/bench/NAME/<recipe>/ (its own submission.csv, report.md);
the table goes to output/bench/NAME/results.md and results.json. Running a bench NAME again
(same protocol) reuses its finished recipes, continues an interrupted one, and trains recipes
added to --recipes: the table then covers them all.
"""
from __future__ import annotations

import sys
import time

from ..core.errors import NotFound
from ..core.keys import DEFAULTS
from ..core.paths import user_path
from ..core.values import option_items
from ..data.tables import find_data
from ..measure import reference
from ..measure.bench import PROTOCOLS, bench_folder, check_recipes, run_bench
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("run.sh bench", __doc__)
    ap.add_argument("--data", type=user_path, help="competition-layout data (default: input/data, else input/standin)")
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="cpu")
    ap.add_argument("--recipes", default="seed,recommended", type=option_items("--recipes"),
                    help="comma-separated; the first is the baseline")
    ap.add_argument("--name", help="bench name (default: <protocol>-<timestamp>)")
    ap.add_argument("--reference", type=user_path, default=reference.DEFAULT_SCRIPT,
                    help="the yardstick script run for the recipe 'reference' (default: %(default)s)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every recipe, after the protocol")
    a = ap.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: bench(a), then="; the same bench command continues it (finished recipes are reused)")


def bench(a) -> int:
    found = find_data(a.data, DEFAULTS["data_dir"])
    if found is None:
        raise NotFound("no --data, and neither input/data nor input/standin exists")
    data = str(found)
    # every recipe checked before the first trains: a typo in the last must not cost hours
    check_recipes(a.recipes, [*PROTOCOLS[a.protocol], *a.overrides], data, a.reference)
    name = a.name or f"{a.protocol}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = bench_folder(name, a.protocol, a.overrides, data)
    return run_bench(a.protocol, a.overrides, a.reference, a.recipes, name, out, data)


if __name__ == "__main__":
    sys.exit(main())
