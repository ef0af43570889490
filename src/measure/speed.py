"""Speed benchmark: where does training time go?

The command and its manual: src/stages/speed.py (`bash run.sh speed --help`).
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..core.config import load_config
from ..core.files import writable_folder
from ..core.keys import BACKGROUNDS
from ..core.machine import loader_workers, peak_memory_gib, pick_device, set_threads
from ..core.paths import ROOT
from ..core.run_dir import OUTPUT
from ..data.background import BackgroundError, check_background
from ..data.batches import BatchPlan, CachedBatches, CachedPhotos, DecodedPhotos, LoaderBatches
from ..data.cache import cache_root, load_or_build
from ..data.tables import Layout, find_data, load_train
from ..data.transforms import DeviceNormalise, Geometry, PhotoAugment
from ..model.backbones import build_model
from ..train.trainer import FoldTrainer


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loader(batches, device, normalise=None) -> float:
    """images/s of producing ready-to-use batches on the device."""
    n, t0 = 0, time.perf_counter()
    for x, _ in batches:
        x = x.to(device, non_blocking=True)
        if normalise is not None:
            x = normalise(x)
        n += len(x)
    _sync(device)
    return n / (time.perf_counter() - t0)


def first_batch_s(batches) -> float:
    """Seconds from an epoch's start to its first batch (the epoch then run to its end)."""
    t0 = time.perf_counter()
    epoch = iter(batches)
    next(epoch)
    seconds = time.perf_counter() - t0
    for _ in epoch:
        pass
    return seconds


def epoch_starts(photos, labels, plan: BatchPlan, workers: int, augment) -> dict:
    """An epoch's first batch with new workers (what forking them again each epoch cost) and with the
    persistent ones of the epoch before."""
    batches = LoaderBatches(photos, labels, plan, workers, augment)
    return {"epoch_start_new_s": first_batch_s(batches), "epoch_start_persistent_s": first_batch_s(batches)}


def time_model(cfg, device, n_images: int) -> float:
    trainer = FoldTrainer(cfg, device, np.arange(18))
    h, w = cfg.img_size
    x = torch.randn(cfg.batch_size, 3, h, w, device=device)
    y = torch.randint(0, 18, (cfg.batch_size,), device=device)
    n_batches = max(2, n_images // cfg.batch_size)

    class Repeat:  # the same batch over and over: no data path at all
        def __len__(self):
            return n_batches

        def __iter__(self):
            return iter([(x, y)] * n_batches)

    trainer.train_epoch(Repeat(), None, desc="warm-up", max_batches=2)
    ep = trainer.train_epoch(Repeat(), None, desc="model only")
    return ep["images"] / ep["seconds"]


def time_training(cfg, device, array, labels, plan: BatchPlan) -> float:
    """images/s of the real training loop on cached photos (the recipe's augment list in the loader)."""
    trainer = FoldTrainer(cfg, device, labels)
    normalise = DeviceNormalise(trainer.mean, trainer.std, device)
    batches = LoaderBatches(CachedPhotos(array, np.arange(len(labels))), labels, plan, cfg.num_workers,
                            PhotoAugment.of(cfg.augment))  # its own draws, not the loader test's
    trainer.train_epoch(batches, normalise, desc="warm-up", max_batches=2)
    ep = trainer.train_epoch(batches, normalise, desc="training")
    return ep["images"] / ep["seconds"]


@contextlib.contextmanager
def one_thread():
    """torch on one thread, as torch's DataLoader sets it in each worker (the batch's stack on several threads
    would measure their contention, not the worker)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


GPU_IMG_S = 6000  # what one GPU trains a small backbone at (docs/results.md): the loader must keep up
COMPETITION_PHOTOS = 18_900  # the competition's training photos: what a background method costs once
BACKGROUND_PHOTOS = 64  # photos each background method is timed on
BIG_MACHINE_CORES = 16


def background_rates(cfg, paths: list[str]) -> dict:
    """Per background method (those this machine can run): photos per second per core of the whole decode
    (read, removal, crop, resize) over CPU time, so a method's own threads count, and the competition's
    photos once on a 16-core machine."""
    sample, rates = paths[:BACKGROUND_PHOTOS], {}
    for method in BACKGROUNDS:
        try:
            check_background(method)
        except BackgroundError as e:
            print(f"background={method} not timed: {e}", flush=True)
            continue
        geometry = Geometry(cfg.replace(background=method))
        geometry(sample[0])  # a segmenter's start is not a photo's cost
        cpu = time.process_time()
        for path in sample:
            geometry(path)
        per_core = len(sample) / max(time.process_time() - cpu, 1e-9)
        rates[method] = {"photos_per_s_per_core": per_core,
                         "competition_on_16_cores_s": COMPETITION_PHOTOS / (per_core * BIG_MACHINE_CORES)}
    return rates


def loader_rates(cfg, device, paths, labels, plan: BatchPlan) -> tuple[dict, np.ndarray]:
    """The data path's images/s: decoded per photo; the cache's gather; the cache with the recipe's augment list
    (num_workers workers, then normalised on the device; and in one process without the device: what one worker
    does); the cache's build time."""
    _, mean, std = build_model(cfg)
    normalise, augment = DeviceNormalise(mean, std, device), PhotoAugment.of(cfg.augment)
    r = {}
    naive = LoaderBatches(DecodedPhotos(paths, Geometry(cfg)), labels, plan, cfg.num_workers, augment)
    naive.seed(0)
    r["loader_naive"] = time_loader(naive, device, normalise)
    t0 = time.perf_counter()
    array = load_or_build(paths, cfg, cache_root(cfg.cache_dir, OUTPUT), desc="building the cache")
    r["cache_build_s"] = time.perf_counter() - t0
    cached = CachedBatches(array, np.arange(len(paths)), labels, plan)
    time_loader(cached, device)  # page the memmap in
    r["loader_cached"] = time_loader(cached, device)
    photos = CachedPhotos(array, np.arange(len(paths)))  # what the loader's workers read, as in training
    for key, workers in (("loader_cached_augmented", cfg.num_workers), ("augment_per_worker", 0)):
        batches = LoaderBatches(photos, labels, plan, workers, augment)
        batches.seed(1)
        if workers:
            r[key] = time_loader(batches, device, normalise)
        else:  # what one worker process does (read, augment, collate; one torch thread, as in a worker)
            with one_thread():
                r[key] = time_loader(batches, torch.device("cpu"))
    r["workers_for_gpu"] = math.ceil(GPU_IMG_S / r["augment_per_worker"])
    if cfg.num_workers:
        r.update(epoch_starts(photos, labels, plan, cfg.num_workers, augment))
    return r, array


def default_data(configured: str) -> Path:
    """The data every stage finds by default (data.find_data); without any, a full-resolution
    (384x512) synthetic set made once: speed needs photos of the competition's size."""
    found = find_data(None, configured)
    if found is not None:
        return found
    full = ROOT / "input" / "demo_full"
    if not Layout(full).has_train():
        from ..data.demo import generate
        print(f"generating full-size synthetic photos in {full}")
        generate(full, n_train=150, n_eval=5, size=(384, 512))
    return full


def measure(recipe: str, overrides: list[str], device_setting: str, data: Path | None, images: int,
            out: Path) -> int:
    """The speed table for `images` photos of `data` (default: the config's data, else the demo's) under
    the recipe + overrides, printed and written to `out` (.md and .json)."""
    # the weights' values don't change the speed: random ones spare an offline machine the download
    cfg = load_config(recipe, ["pretrained=false", *overrides, f"device={device_setting}"])
    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    cfg = cfg.replace(num_workers=loader_workers(cfg, device))  # auto: what this machine gives
    writable_folder(out, "--out")
    data = data or default_data(cfg.data_dir)
    table = load_train(data, check_pixels=False)
    table = table.sample(n=min(images, len(table)), random_state=0).reset_index(drop=True)
    paths, labels = table["path"].tolist(), table["label"].to_numpy()
    h, w = cfg.img_size
    print(f"speed: {cfg.model} at {h}x{w}, batch {cfg.batch_size}, {len(paths)} photos from {data}, "
          f"device {device}, {torch.get_num_threads()} CPU threads, {cfg.num_workers} loader workers", flush=True)

    plan = BatchPlan(cfg.batch_size, True, pin=device.type == "cuda")
    r, array = loader_rates(cfg, device, paths, labels, plan)
    r["model_only"] = time_model(cfg, device, len(paths))
    r["training"] = time_training(cfg, device, array, labels, plan)
    r["background"] = background_rates(cfg, paths)
    r.update(peak_memory_gib(device))
    r["cached_over_naive"] = r["loader_cached"] / r["loader_naive"]
    r["training_over_model"] = r["training"] / r["model_only"]

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    augment = ", ".join(step.name for step in cfg.augment) or "none"
    lines = ["| measurement | images/s |", "|---|---|",
             f"| loader, naive (decode + augment per photo, {cfg.num_workers} workers) | {r['loader_naive']:.1f} |",
             f"| loader, cached (uint8 batches gathered from the cache, on the device) | {r['loader_cached']:.1f} |",
             f"| loader, cached + the augment list ({augment}), {cfg.num_workers} workers | "
             f"{r['loader_cached_augmented']:.1f} |",
             f"| **the augment list per worker** (cached photos, one process) | **{r['augment_per_worker']:.1f}** |",
             f"| model only (fwd+bwd+step, random tensors) | {r['model_only']:.1f} |",
             f"| training (real loop, cached photos + the augment list) | {r['training']:.1f} |",
             f"| **cached ÷ naive loader** (data path) | **{r['cached_over_naive']:.1f}×** |",
             f"| **training ÷ model-only** | **{r['training_over_model']:.2f}** |",
             f"| **workers a GPU's {GPU_IMG_S:,} img/s needs** (num_workers) | **{r['workers_for_gpu']}** |"]
    lines += ["", f"| background= (decode, removal, crop, resize; {min(len(paths), BACKGROUND_PHOTOS)} photos) | "
              f"photos/s per core | the competition's {COMPETITION_PHOTOS:,} photos once, {BIG_MACHINE_CORES} cores |",
              "|---|---|---|"] + [f"| {m} | {v['photos_per_s_per_core']:.1f} | {v['competition_on_16_cores_s']:.0f} s |"
                                  for m, v in r["background"].items()]
    gpu = "" if r["peak_gpu_gib"] is None else f", peak GPU memory {r['peak_gpu_gib']:.2f} GiB"
    starts = "" if "epoch_start_new_s" not in r else (
        f"; an epoch's first batch after {r['epoch_start_new_s']:.2f} s with {cfg.num_workers} new workers, "
        f"{r['epoch_start_persistent_s']:.2f} s with the persistent ones")
    header = (f"{cfg.model} {h}x{w}, batch {cfg.batch_size}, {len(paths)} photos, {device_name}; "
              f"cache built in {r['cache_build_s']:.1f} s; peak host RAM {r['peak_host_gib']:.2f} GiB{gpu}{starts}")
    print("\n" + header + "\n\n" + "\n".join(lines))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"speed-{device.type}-{time.strftime('%Y%m%d-%H%M%S')}"
    (out / f"{stem}.md").write_text(header + "\n\n" + "\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps({**r, "device": device_name, "model": cfg.model,
                                                        "img_size": [h, w], "batch_size": cfg.batch_size,
                                                        "images": len(paths), "data": str(data)}, indent=2))
    print(f"\nwrote {out / stem}.md/.json")
    return 0
