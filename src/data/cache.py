"""Decode once: the deterministic part of preprocessing (decode, EXIF, resize, centre crop)
stored as one uint8 array (N, H, W, 3), memory-mapped from disk and shared by folds and runs.

A cache is named by the image list and the preprocessing settings; it records a fingerprint of
the files: path, size, modification time, inode and inode-change time (ctime). Any rewrite of a
photo changes its ctime (the kernel sets it; no tool can set it back, unlike the modification
time, which `touch -d`, `cp -p` or `rsync -t` restore), so a rewritten photo always makes the cache
stale: it is rebuilt, never silently used. Reading no content keeps the check cheap (a fraction of
hashing the photos: docs/usage.md, `cache`). A copy of the data (new inodes) also rebuilds it, which
is the safe direction. A cache is written to a temporary name and renamed when complete, so a killed
build is never mistaken for a finished one.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from ..core.files import atomic_write_text, free_mib
from ..core.paths import user_path
from ..core.progress import parallel_map
from .background import background_settings
from .faces import DETECT_SIDE, MIN_PROB
from .transforms import Geometry

CACHE_VERSION = 2  # bump when the preprocessing code changes meaning (2: crop first, then one resize)


def settings(cfg) -> dict:
    h, w = cfg.img_size
    conf = {"version": CACHE_VERSION, "h": h, "w": w, "crop_frac": cfg.crop_frac, "crop": cfg.crop,
            "resize": cfg.resize}
    if cfg.crop == "face":  # boxes follow from the file contents and these detector settings
        conf.update(face_margin=cfg.face_margin, detect_side=DETECT_SIDE, min_prob=MIN_PROB)
    conf.update(background_settings(cfg.background, cfg.background_fill))  # nothing for keep: its names stay
    return conf


def fingerprint(paths: list[str]) -> str:
    digest = hashlib.sha1()
    for p in paths:
        st = os.stat(p)
        digest.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}\n".encode())
    return digest.hexdigest()


def cache_root(setting: str, output: Path) -> Path:
    """Where caches go: the `cache_dir` setting (from where the user stands), or <output>/cache when it is empty."""
    return user_path(setting) if setting else Path(output) / "cache"


def load_or_build(paths: list[str], cfg, root: Path, desc: str = "caching images",
                  boxes: dict | None = None) -> np.ndarray:
    """The (N, H, W, 3) uint8 array for `paths` in the folder `root`, memory-mapped; built first if
    absent or stale."""
    paths = [str(Path(p).resolve()) for p in paths]
    conf = settings(cfg)
    name = hashlib.sha1(json.dumps([conf, paths]).encode()).hexdigest()[:20]
    root.mkdir(parents=True, exist_ok=True)
    array_path, meta_path = root / f"{name}.npy", root / f"{name}.json"
    current = fingerprint(paths)
    if array_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == current:
            return np.load(array_path, mmap_mode="r")
        print(f"cache {array_path.name} is stale (images changed since it was built): rebuilding", flush=True)
    build(paths, cfg, array_path, desc, boxes)
    atomic_write_text(json.dumps({**conf, "n": len(paths), "fingerprint": current, "first": paths[:1]}, indent=1),
                      meta_path)
    return np.load(array_path, mmap_mode="r")


def reserve(path: Path) -> None:
    """Claim the disk blocks of a fresh memory-mapped file before writing into it: the file is sparse,
    and a full disk would otherwise kill the process with SIGBUS on the first page that finds no
    room. A full disk becomes the OSError that `files.writing_errors` reports, the partial file gone."""
    size = path.stat().st_size
    try:
        with open(path, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, size)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise OSError(e.errno, f"{e.strerror}: the cache needs {size / 2**20:.0f} MiB, {free_mib(path.parent):.0f} "
                               f"MiB free there (free some space, point cache_dir= elsewhere, or cache=false)",
                      str(path)) from None


PART_HOURS = 1  # a half-built cache file older than this belongs to a process that was killed


def clear_stale_parts(array_path: Path) -> None:
    """Remove the half-built files of this cache left by killed processes; a younger one may be another
    process's (a tune worker, a fold worker) building the same cache now."""
    old = time.time() - PART_HOURS * 3600
    for part in array_path.parent.glob(f"{array_path.name}.*.part.npy"):
        if part.stat().st_mtime < old:
            part.unlink(missing_ok=True)


def build(paths: list[str], cfg, array_path: Path, desc: str, boxes: dict | None = None) -> None:
    """The cache file, written under a name of its own and moved into place whole: two processes (or threads)
    building the same cache at once (tune's workers) each finish, the file the same bytes either way."""
    h, w = cfg.img_size
    clear_stale_parts(array_path)
    tmp = array_path.with_name(f"{array_path.name}.{uuid.uuid4().hex[:12]}.part.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), h, w, 3))
    reserve(tmp)
    if boxes is not None:  # boxes are keyed by the paths as given; the cache uses resolved paths
        boxes = {str(Path(p).resolve()): b for p, b in boxes.items()}
    geo = Geometry(cfg, boxes)

    def work(i):
        out[i] = geo(paths[i])

    workers = max(1, (os.cpu_count() or 2))
    parallel_map(work, range(len(paths)), workers, desc)  # PIL decode and resize (and cv2) release the GIL
    out.flush()
    del out
    os.replace(tmp, array_path)
