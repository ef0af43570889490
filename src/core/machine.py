"""The machine a run trains on: the device, mixed precision, seeding, threads, memory, and the run context
(where the data, the device, the cache and the outputs are)."""
from __future__ import annotations

import os
import random
import resource
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, UserError


@dataclass(frozen=True)
class RunContext:
    """What a run derives from where it runs, kept apart from its settings (the config stays as typed)."""
    data_dir: Path          # the data folder used (--data, else the config's data_dir, else the demo)
    device: torch.device    # this process's device (this rank's GPU under torchrun)
    cache_root: Path        # where decoded caches and face boxes go
    output: Path            # the folder holding run folders


def pick_device(name: str) -> torch.device:
    """The torch device for `device=`; a GPU that is not there is a ConfigError, said before any work."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={name} but torch sees no CUDA GPU; use device=cpu (or auto)")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(f"device={name} but torch sees {torch.cuda.device_count()} GPU(s)")
    return torch.device(name)


def amp_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype on CUDA (None: full precision, always on the CPU).

    amp_dtype=auto takes bf16 where the GPU has it (no loss scaling needed), else fp16."""
    if device.type != "cuda" or not cfg.amp:
        return None
    if cfg.amp_dtype == "fp16" or (cfg.amp_dtype == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is not None:
        return torch.autocast(device.type, dtype=dtype)
    return torch.autocast(device.type, enabled=False)


def peak_memory_gib(device: torch.device) -> dict:
    """Peak resident host memory of this process (Linux reports KiB) and peak GPU memory torch allocated."""
    host = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    gpu = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"peak_host_gib": round(host, 2), "peak_gpu_gib": None if gpu is None else round(gpu, 2)}


class WorkerError(UserError, RuntimeError):
    """A worker process (parallel_folds) that failed; its own output says why."""


class OutOfMemory(UserError, RuntimeError):
    """A CUDA out-of-memory error, told as what to change."""


def out_of_memory_advice(cfg, run_dir) -> OutOfMemory:
    h, w = cfg.img_size
    gpu = "the GPU"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        gpu = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
    return OutOfMemory(
        f"CUDA ran out of memory: {cfg.model} at img_size={h},{w} with batch_size={cfg.batch_size} does not fit on "
        f"{gpu}. Lower batch_size (e.g. batch_size={max(1, cfg.batch_size // 2)}) or img_size, which starts a new "
        f"run since the numbers change; or free the GPU (another process?) and rerun the same command: {run_dir} "
        f"then continues after its last finished epoch.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


MAX_AUTO_WORKERS = 16  # what a GPU's augmenting needs is measured by `bash run.sh speed` (docs/results.md, issue 27)


def loader_workers(cfg, device: torch.device) -> int:
    """How many loader processes num_workers= means here: a number as set; auto on a GPU the cores this
    process may use, shared with the others training on this machine (torchrun's local ranks, parallel
    folds), less one for the process itself (at most MAX_AUTO_WORKERS), and on the CPU one: the model trains
    on the same cores, and one worker augments far faster than it trains (docs/results.md, issue 27)."""
    if cfg.num_workers != "auto":
        return cfg.num_workers
    if device.type != "cuda":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1)) * max(cfg.parallel_folds, 1)
    return max(1, min(MAX_AUTO_WORKERS, cores // processes - 1))


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)
