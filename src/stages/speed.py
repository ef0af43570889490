"""Speed benchmark: where does training time go?

    bash run.sh speed [--device cpu|cuda] [--data DIR] [--images N] [key=value ...]

Measures, on the same N photos and the same config (default: the seed recipe):
  loader, naive     decode + resize/crop + the recipe's augment list per photo (DataLoader, num_workers)
  loader, cached    uint8 batches gathered from the decoded cache, moved to the device (the data path)
  ... + augment     the cache's photos through the recipe's augment list in num_workers workers, then
                    normalised on the device: what training reads
  per worker        the same in one process: the img/s one loader worker gives, and from it how many
                    workers (num_workers) a GPU's 6,000 img/s needs
  model only        forward + backward + optimiser step on random tensors already on the device
  training          the real training loop (cached photos + the augment list) over the same photos
  background=       for each method (keep, grabcut, selfie: those this machine can run), the photo's whole
                    decode (read, background removal, crop, resize) over 64 photos: photos per second per core
                    (CPU time, so a method's own threads count) and the competition's 18,900 photos once on 16
                    cores (the cache's build: once per setting, then every run reads it)
and prints images/second with the ratios cached/naive and training/model-only.
"""
from __future__ import annotations

import sys

from ..core.paths import user_path
from ..core.run_dir import OUTPUT
from ..measure.speed import measure
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("run.sh speed", __doc__)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", type=user_path)
    ap.add_argument("--config", default="seed")
    ap.add_argument("--images", type=int, default=512, help="photos per measurement")
    ap.add_argument("--out", type=user_path, default=OUTPUT / "speed", help="folder for the result files")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    if args.images < 1:
        ap.error(f"--images {args.images}: must be at least 1")
    return run_stage(lambda: measure(args.config, args.overrides, args.device, args.data, args.images, args.out))


if __name__ == "__main__":
    sys.exit(main())
