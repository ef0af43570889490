"""The photos as the model will see them with `background` set, before training: a contact sheet and the fill.

    bash run.sh background [--data DIR] [--config recommended] [--preview 12] [--out FILE.png|.jpg]
                           [--methods grabcut,selfie] [--measure 180] [--seed 0] [key=value ...]

Photos of the data's training set, spread over the 18 classes (one per person), each in a row: the model's view
with the background kept, then under each method of --methods (background= values; the recipe and key=value give
img_size, crop, crop_frac, face_margin and background_fill, as a run would use them), its filled share beneath.
The first --preview rows make the picture (default output/background-preview.png, never over a file); all
--measure photos make the table printed after it: the mean share of the view each method filled, overall and by
mask state, gender and age band, and the largest gap between two groups of one task (a fill that differs by class
would tell the class itself). The methods (src/data/background.py):
  grabcut  OpenCV's GrabCut, seeded from the face box (crop=face: found by MTCNN, cached) else the centre
  selfie   MediaPipe Selfie Segmentation (its weights inside the mediapipe wheel that bash run.sh installs)
"""
from __future__ import annotations

import argparse
import sys

from PIL import Image

from ..core.config import config_parser, load_config
from ..core.errors import ConfigError
from ..core.run_dir import OUTPUT
from ..core.values import option_items
from ..data.background import check_background
from ..data.cache import cache_root
from ..data.faces import face_boxes
from ..data.tables import find_data, load_train
from ..report.background_preview import contact_sheet, fill_table, spread_sample, views
from . import parser, picture_file, run_stage


def parse(argv):
    ap = parser("run.sh background", __doc__)
    ap.add_argument("--data", help="the data folder (default: as a run finds it)")
    ap.add_argument("--config", default="recommended", help="the recipe whose input settings the views use")
    ap.add_argument("--preview", type=int, default=12, help="how many photos the picture shows")
    ap.add_argument("--measure", type=int, default=180, help="how many photos the fill table counts (at least "
                                                             "--preview; 10 per class at 180)")
    ap.add_argument("--methods", type=option_items("--methods"), default=["grabcut", "selfie"],
                    help="background= methods to compare with keep, comma-separated")
    ap.add_argument("--out", help="the picture to write, .png or .jpg")
    ap.add_argument("--seed", type=int, default=0, help="which photos (the same seed, the same photos)")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    return ap.parse_intermixed_args(sys.argv[1:] if argv is None else argv)


def main(argv=None) -> int:
    a = parse(argv)
    return run_stage(lambda: preview(a))


def checked_methods(raw: list[str]) -> list[str]:
    """--methods as background= values, each one this machine can run (said before any photo is read)."""
    parse = config_parser("background")
    methods = [m for m in dict.fromkeys(parse_method(parse, m) for m in raw) if m != "keep"]
    if not methods:
        raise ConfigError("--methods: name at least one of grabcut, selfie (keep is always the first column)")
    for method in methods:
        check_background(method)
    return methods


def parse_method(parse, raw: str) -> str:
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as e:  # the key's own message, outside argparse's parsing
        raise ConfigError(f"--methods {e}") from None


def preview(a) -> None:
    if a.preview < 1:
        raise ConfigError(f"--preview {a.preview}: show at least one photo")
    cfg = load_config(a.config, a.overrides)
    methods = checked_methods(a.methods)
    out = picture_file(a.out, OUTPUT, "background-preview")
    data = find_data(a.data, cfg.data_dir)
    if data is None:
        raise ConfigError("no data folder: name one with --data DIR (the competition's layout)")
    sample = spread_sample(load_train(data, check_pixels=False), max(a.preview, a.measure), a.seed)
    paths = sample["path"].tolist()
    boxes = face_boxes(paths, cache_root(cfg.cache_dir, OUTPUT)) if cfg.crop == "face" else None
    seen = views(cfg, paths, methods, boxes)
    shown = min(a.preview, len(sample))
    Image.fromarray(contact_sheet(sample, seen, shown)).save(out, quality=90)
    print(f"wrote {out}: {shown} photos x (keep, {', '.join(methods)}), background_fill={cfg.background_fill}, "
          f"{cfg.img_size[0]}x{cfg.img_size[1]} crop={cfg.crop}")
    print(f"\nshare of the model's view filled, {len(sample)} photos of {data}:\n")
    print("\n".join(fill_table(sample, {m: [share for _, share in seen[m]] for m in methods})))


if __name__ == "__main__":
    sys.exit(main())
