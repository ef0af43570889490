"""Name the persons of the stand-in's eval photos, so the bench's intervals resample whole persons.

    .venv/bin/python -m src.stages.standin_persons --data input/standin --manifest ../shared/standin/persons.csv

The stand-in's builder names an eval photo sha1("<seed>-<AAF id>-<shot>").jpg; its manifest lists
the eval persons' AAF ids, so each photo's person follows. Writes DATA/eval/persons.csv
(ImageID,person), which `data.tables.load_eval` reads; refuses when a photo of info.csv matches no person.
"""
from __future__ import annotations

import sys

import pandas as pd

from ..core.errors import NotFound, UserError
from ..core.paths import user_path
from ..data.standin_persons import eval_persons
from ..data.tables import Layout
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("python -m src.stages.standin_persons", __doc__)
    ap.add_argument("--data", required=True, help="the built stand-in (e.g. input/standin)")
    ap.add_argument("--manifest", required=True, help="the manifest it was built from (persons.csv)")
    ap.add_argument("--seed", type=int, default=0, help="the builder's --seed")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: write_persons(user_path(a.data), user_path(a.manifest), a.seed))


def write_persons(data, manifest, seed: int) -> None:
    layout = Layout(data)
    for path in (layout.eval_info, manifest):
        if not path.is_file():
            raise NotFound(f"{path}: missing")
    out = eval_persons(pd.read_csv(layout.eval_info, dtype=str), pd.read_csv(manifest), seed)
    unknown = out["person"].isna().sum()
    if unknown:
        raise UserError(f"{unknown} eval photo(s) of {data} match no eval person of {manifest} (seed {seed}); "
                        f"was it built from this manifest?")
    out.to_csv(layout.eval_persons, index=False)
    print(f"wrote {layout.eval_persons}: {len(out)} photos of {out['person'].nunique()} persons")


if __name__ == "__main__":
    sys.exit(main())
