"""The error-analysis page of a run: RUN/gallery.html, opened from the file system.

    bash run.sh gallery --run RUN

Built from what the run saved (out-of-fold and eval probabilities, the data's tables); no model
is loaded. Thumbnails are small JPEGs in RUN/gallery/, named by the photo's path, size and
modification time, so a rebuild makes only the missing ones. The page (src/report/gallery_page.html with
the run's data as JSON inside) needs no server and no internet: the confusion matrices of the
18 classes and of each sub-task (a click on a cell shows its photos, most confident first), the
persons whose shots disagree, the audit's candidates with buttons that mark corrections, and a
download of those corrections in the format `corrections=FILE` reads.
"""
from __future__ import annotations

import sys
import time

from ..core.run_dir import find_run
from ..report.gallery import write_gallery
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("run.sh gallery", __doc__)
    ap.add_argument("--run", required=True, help="run name under output/, or its folder")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: gallery(a.run))


def gallery(name: str) -> None:
    t0 = time.perf_counter()
    path = write_gallery(find_run(name))
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MB, thumbnails in {path.parent / 'gallery'}) in {time.perf_counter() - t0:.0f} s;"
          f" open it in a browser: file://{path.resolve()}")


if __name__ == "__main__":
    sys.exit(main())
