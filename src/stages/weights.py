"""Fetch and verify ImageNet weights, save them as plain state_dict files: run once where there is
internet, then train anywhere with pretrained=FILE.

    bash run.sh weights MODEL... [--out DIR]

Each file is checked by building the model from it; what it holds is printed with its sha256.
Where `pretrained` looks for weights: src/model/weights.py.
"""
from __future__ import annotations

import sys

from ..core.files import writable_folder
from ..core.paths import user_path
from ..core.values import Pretrained
from ..model.weights import WeightsError, file_sha256, load_resolved, resolve, save_state_file
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("run.sh weights", __doc__)
    ap.add_argument("models", nargs="+", metavar="MODEL", help="timm model names, with or without a tag")
    ap.add_argument("--out", type=user_path, default="weights", help="folder for the state_dict files "
                                                                           "(from where you stand)")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: save_weights(a.models, a.out))


def save_weights(models: list[str], out) -> int:
    """Each model's weights saved (2 when any could not be fetched: the others are still saved)."""
    writable_folder(out, "--out")  # before any download
    code = 0
    for name in models:
        try:
            w = resolve(name, Pretrained("imagenet"))
            model, _, _ = load_resolved(name, w, {})
        except WeightsError as e:  # said, and the other models still saved
            print(f"error: {name}: {e}", file=sys.stderr)
            code = 2
            continue
        state = model.state_dict()
        target = out / f"{w.tag}.pth"
        if not save_state_file(state, target):
            print(f"{target} exists; not written over", file=sys.stderr)
        print(f"{name}: {w.tag} from {w.source} ({w.path}), {len(state)} tensors, source sha256 {w.sha256}\n"
              f"  -> {target} (sha256 {file_sha256(target)}); use pretrained={target}")
    return code


if __name__ == "__main__":
    sys.exit(main())
