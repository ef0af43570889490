"""Outside face photos (no masks) as extra training persons: `extra=DIR[,DIR...]`, `extra_ages=LO-HI`.

    bash run.sh extra --from DIR[,DIR...] --preview 24 [--out FILE.png|.jpg] [--ages 55-120] [--seed 42]
    bash run.sh extra --from DIR[,DIR...] --prepare [--seed 42] [--cache-dir DIR]     # every person, ahead of a run
                      [--format auto|labels|utkface|aaf|afad|fairface] [--race 'East Asian'] [--conflicts drop]

A folder holds face photos and their labels in one of these layouts, as downloaded (found from its
contents, or named with --format / extra_format=; src/persons/outside_layouts.py):
  labels     DIR/labels.csv: file,age,gender (file relative to DIR or DIR/images; gender male/female,
             m/f or 0/1 with 0 male as in UTKFace); the other columns are ignored
  utkface    <age>_<gender>_<race>_<date>.jpg anywhere under DIR (gender 0 male, 1 female)
  aaf        All-Age-Faces: DIR/original images/ + DIR/image sets/*.txt (`<id>A<age>.jpg <0 female|1 male>`)
  afad       AFAD-Full / AFAD-Lite: DIR/<age>/<111 male|112 female>/*.jpg
  fairface   FairFace: DIR/fairface_label_*.csv (file,age,gender,race); its ages are ranges: with a band
             head a photo trains only where its range lies inside one age band (counted otherwise); the
             ordinal head learns the thresholds each range decides
Each photo becomes one person with the competition's 7 shots: the face framed like the
competition's photos, then five `mask1..5` shots with masks drawn on (src/persons/mask_draw.py),
one `incorrect_mask` (nose exposed, or the mask on the chin) and the photo itself as `normal`;
each shot slightly turned, scaled, shifted and lit like the 7 photos of one sitting.

The landmarks come from MTCNN; a photo where no face is found, or a face under MIN_FACE pixels
wide, is skipped and counted. Landmarks are cached by the photo's content
(<cache>/extra_faces.csv), the drawn shots by photo content, seed and SYNTH_VERSION
(<cache>/extra/<key>/), so a rerun draws nothing again.

Outside persons are training-only: their rows carry fold TRAIN_ONLY (like pseudo-labels), so they are in
every fold's training data and in no validation fold, the OOF and every score stay on the
competition's persons, and the competition persons' folds are made before they join.
"""
from __future__ import annotations

import sys

from PIL import Image

from ..core import classes
from ..core.config import config_parser
from ..core.errors import ConfigError
from ..core.files import writable_folder
from ..core.paths import user_path
from ..core.run_dir import OUTPUT
from ..core.values import option_items
from ..data.cache import cache_root
from ..persons.outside_persons import contact_sheet, outside_persons, summary_lines
from ..persons.outside_set import OutsideRules, checked_outside, settled_ages
from . import parser, picture_file, run_stage


def parse(argv):
    ap = parser("run.sh extra", __doc__)
    ap.add_argument("--from", dest="source", required=True, type=option_items("--from"),
                    help="folder(s) of outside photos, comma-separated")
    ap.add_argument("--preview", type=int, default=24, help="how many persons the contact sheet shows")
    ap.add_argument("--out", help="the picture to write, .png or .jpg (default: output/extra-preview.png, never "
                                  "over a file)")
    ap.add_argument("--prepare", action="store_true",
                    help="find the faces of every photo and draw every person into the cache ahead of a run "
                         "(no picture); the run then draws nothing")
    ap.add_argument("--ages", type=config_parser("extra_ages"), default="auto",
                    help="only these ages, e.g. 55-120 | all | auto: 18 and up, the competition's adults (as "
                         "extra_ages=; a run's auto starts at its data's youngest person)")
    ap.add_argument("--seed", type=int, default=42, help="the drawing seed (a run uses its seed=)")
    ap.add_argument("--format", type=config_parser("extra_format"), default="auto",
                    help="the folders' layout: auto | labels | utkface | aaf | afad | fairface (as extra_format=)")
    ap.add_argument("--race", default="", help="only photos of this race, where the layout names one (as extra_race=)")
    ap.add_argument("--conflicts", type=config_parser("extra_conflicts"), default="drop",
                    help="a photo listed with two labels: drop (left out and counted) | error (naming both lines) "
                         "(as extra_conflicts=)")
    ap.add_argument("--cache-dir", default="", help="where landmarks and drawn shots are kept (default output/cache)")
    return ap.parse_args(sys.argv[1:] if argv is None else argv)


def main(argv=None) -> int:
    a = parse(argv)
    return run_stage(lambda: extra(a))


def extra(a) -> None:
    if a.prepare and a.out:
        raise ConfigError("--out is the preview's picture; --prepare draws every person into the cache and "
                          "writes no picture")
    if a.preview < 1:
        raise ConfigError(f"--preview {a.preview}: show at least one person")
    out = None if a.prepare else picture_file(a.out, OUTPUT, "extra-preview")
    cache = writable_folder(cache_root(str(user_path(a.cache_dir)) if a.cache_dir else "", OUTPUT), "--cache-dir")
    rules = OutsideRules(ages=settled_ages(a.ages, None), drop_conflicts=a.conflicts == "drop", layout=a.format,
                         race=a.race)
    outside = checked_outside([user_path(f) for f in a.source], rules)
    if outside.conflicts:
        print(f"left out: {outside.conflicting} photos listed with two labels (--conflicts error refuses them), "
              f"e.g.\n  " + "\n  ".join(outside.conflicts[:3]))
    persons = outside_persons(outside, a.seed, cache, limit=None if a.prepare else a.preview * 2)
    print("\n".join(summary_lines(persons.stats)))
    if out is None:
        print(f"prepared {persons.stats['persons']} persons in {cache} (seed {a.seed}): a run with the same "
              f"photos, seed={a.seed} and this cache_dir draws nothing again")
        return
    Image.fromarray(contact_sheet(persons.rows, a.preview)).save(out, quality=85)
    print(f"wrote {out}: {min(a.preview, persons.stats['persons'])} persons x 7 shots ({', '.join(classes.SHOTS)})")


if __name__ == "__main__":
    sys.exit(main())
