"""Speed benchmark: where does training time go?

The command and its manual: src/stages/speed.py (`bash run.sh speed --help`).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..core.config import ROOT, load_config
from ..core.run_dir import OUTPUT
from ..core.runtime import peak_memory_gib, pick_device, set_threads, writable_folder
from ..data.batches import BatchPlan, CachedBatches, LoaderBatches
from ..data.cache import cache_root, load_or_build
from ..data.tables import Layout, find_data, load_train
from ..data.transforms import DeviceAugment, Geometry
from ..model.backbones import build_model
from ..train.trainer import FoldTrainer


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_loader(batches, device, augment=None) -> float:
    """images/s of producing ready-to-use batches on the device."""
    n, t0 = 0, time.perf_counter()
    for x, _ in batches:
        x = x.to(device, non_blocking=True)
        if augment is not None:
            x = augment(x, train=True)
        n += len(x)
    _sync(device)
    return n / (time.perf_counter() - t0)


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
    trainer = FoldTrainer(cfg, device, labels)
    augment = DeviceAugment.from_config(cfg, trainer.mean, trainer.std, device)
    batches = CachedBatches(array, np.arange(len(labels)), labels, plan)  # its own draws, not the loader test's
    trainer.train_epoch(batches, augment, desc="warm-up", max_batches=2)
    ep = trainer.train_epoch(batches, augment, desc="training")
    return ep["images"] / ep["seconds"]


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
    writable_folder(out, "--out")
    data = data or default_data(cfg.data_dir)
    table = load_train(data, check_pixels=False)
    table = table.sample(n=min(images, len(table)), random_state=0).reset_index(drop=True)
    paths, labels = table["path"].tolist(), table["label"].to_numpy()
    h, w = cfg.img_size
    print(f"speed: {cfg.model} at {h}x{w}, batch {cfg.batch_size}, {len(paths)} photos from {data}, "
          f"device {device}, {torch.get_num_threads()} CPU threads, {cfg.num_workers} loader workers", flush=True)

    _, mean, std = build_model(cfg)
    plan = BatchPlan(cfg.batch_size, True, pin=device.type == "cuda")
    naive = LoaderBatches(paths, labels, Geometry(cfg), plan, cfg.num_workers)
    naive.seed(0)
    r = {}
    r["loader_naive"] = time_loader(naive, device, DeviceAugment.from_config(cfg, mean, std, device))
    t0 = time.perf_counter()
    array = load_or_build(paths, cfg, cache_root(cfg.cache_dir, OUTPUT), desc="building the cache")
    r["cache_build_s"] = time.perf_counter() - t0
    cached = CachedBatches(array, np.arange(len(paths)), labels, plan)
    time_loader(cached, device)  # page the memmap in
    r["loader_cached"] = time_loader(cached, device)
    r["loader_cached_augmented"] = time_loader(cached, device, DeviceAugment.from_config(cfg, mean, std, device))
    r["model_only"] = time_model(cfg, device, len(paths))
    r["training"] = time_training(cfg, device, array, labels, plan)
    r.update(peak_memory_gib(device))
    r["cached_over_naive"] = r["loader_cached"] / r["loader_naive"]
    r["training_over_model"] = r["training"] / r["model_only"]

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()}"
    lines = ["| measurement | images/s |", "|---|---|",
             f"| loader, naive (decode per image, {cfg.num_workers} workers) | {r['loader_naive']:.1f} |",
             f"| loader, cached (uint8 batches from the cache, on the device) | {r['loader_cached']:.1f} |",
             f"| loader, cached + flip/normalise on the device | {r['loader_cached_augmented']:.1f} |",
             f"| model only (fwd+bwd+step, random tensors) | {r['model_only']:.1f} |",
             f"| training (real loop, cached batches) | {r['training']:.1f} |",
             f"| **cached ÷ naive loader** (data path) | **{r['cached_over_naive']:.1f}×** |",
             f"| cached + augment ÷ naive loader | {r['loader_cached_augmented'] / r['loader_naive']:.1f}× |",
             f"| **training ÷ model-only** | **{r['training_over_model']:.2f}** |"]
    gpu = "" if r["peak_gpu_gib"] is None else f", peak GPU memory {r['peak_gpu_gib']:.2f} GiB"
    header = (f"{cfg.model} {h}x{w}, batch {cfg.batch_size}, {len(paths)} photos, {device_name}; "
              f"cache built in {r['cache_build_s']:.1f} s; peak host RAM {r['peak_host_gib']:.2f} GiB{gpu}")
    print("\n" + header + "\n\n" + "\n".join(lines))
    out.mkdir(parents=True, exist_ok=True)
    stem = f"speed-{device.type}-{time.strftime('%Y%m%d-%H%M%S')}"
    (out / f"{stem}.md").write_text(header + "\n\n" + "\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps({**r, "device": device_name, "model": cfg.model,
                                                        "img_size": [h, w], "batch_size": cfg.batch_size,
                                                        "images": len(paths), "data": str(data)}, indent=2))
    print(f"\nwrote {out / stem}.md/.json")
    return 0
