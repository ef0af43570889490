"""Machine-level helpers: device choice, mixed precision, seeding, memory, atomic file writes."""
from __future__ import annotations

import contextlib
import errno
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import ConfigError
from .errors import UserError


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


class CannotWrite(UserError, RuntimeError):
    """A file the run must write could not be written (disk full, read-only, not a folder, ...)."""


WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR}


@contextlib.contextmanager
def writing_errors():
    """An OSError of writing (full disk, read-only folder, ...) becomes CannotWrite naming the path."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise CannotWrite(f"cannot write {e.filename or 'a file'}: {e.strerror}") from None


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


def set_threads(n: int) -> None:
    if n > 0:
        torch.set_num_threads(n)


def nearest_existing(path: Path) -> Path:
    """`path`, or its closest ancestor that exists (where a folder to be made would live)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_mib(path: Path) -> float:
    """Free space, in MiB, on the disk that holds (or will hold) `path`."""
    return shutil.disk_usage(nearest_existing(path)).free / 2**20


def writable_folder(folder: Path, what: str) -> Path:
    """Can `folder` be written (or made, where it does not exist yet)? Asked before any work that would
    end by writing there, and without making anything; CannotWrite names the folder and why."""
    folder = Path(folder)
    probe = nearest_existing(folder)
    if not probe.is_dir():
        raise CannotWrite(f"{what} {folder}: cannot write there ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):  # a read-only mount says so even to root
        raise CannotWrite(f"{what} {folder}: cannot write there ({probe} is read-only or not ours)")
    return folder


def first_free(folder: Path, stem: str, suffix: str = "") -> Path:
    """folder/stem+suffix, or the first of folder/stem-2+suffix, -3, ... that does not exist."""
    candidate, n = folder / f"{stem}{suffix}", 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem}-{n}{suffix}"
    return candidate


def atomic_save(obj, path: Path) -> None:
    """torch.save via a temp file + rename, so a kill never leaves a half-written checkpoint."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's zip writer reports a failed write as "unexpected pos ..."
            free = shutil.disk_usage(path.parent).free
            raise OSError(errno.ENOSPC, f"{e} ({free / 2**20:.0f} MiB free there)", str(path)) from None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(text: str, path: Path) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class LineProgress:
    """`progress` off a terminal (a log file, a pipe): no bar and no carriage returns. A line at least
    every `every` seconds while the loop runs (done/total, rate, time left) and one when it ends: what it
    did, how many, how long, and the last figures the loop reported."""

    every = 30.0  # seconds between lines: `nohup bash run.sh > log` is never silent for longer

    def __init__(self, iterable, desc: str | None = None, unit: str = "it", total: int | None = None, **_):
        self.iterable, self.desc, self.unit = iterable, desc or "done", unit
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.postfix, self.started, self.closed = 0, {}, time.perf_counter(), False
        self.said = self.started

    def __iter__(self):
        for item in self.iterable:
            self.n += 1
            yield item
            if time.perf_counter() - self.said >= self.every:
                self.tell()
        self.close()

    def tell(self) -> None:
        """One line of where the loop is: done/total, rate, time left."""
        self.said = now = time.perf_counter()
        rate = self.n / max(now - self.started, 1e-9)
        done = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        left = f", about {(self.total - self.n) / rate:.0f} s left" if self.total and rate > 0 else ""
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {done} in {now - self.started:.0f} s ({rate:.1f} {self.unit}/s{left}){extra}",
              file=sys.stderr, flush=True)

    def set_postfix(self, **kw) -> None:
        self.postfix = kw

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {self.n} {self.unit} in {time.perf_counter() - self.started:.0f} s{extra}",
              file=sys.stderr, flush=True)


def progress(iterable, **kw):
    """A live tqdm bar on a terminal; elsewhere a line every LineProgress.every seconds and at the end."""
    if not sys.stderr.isatty():
        return LineProgress(iterable, **kw)
    return tqdm(iterable, leave=False, mininterval=1.0, **kw)


def parallel_map(fn, items, workers: int, desc: str, unit: str = "img") -> list:
    """fn over items in a pool of threads, results in order, with progress. Ctrl-C (or an error) cancels
    the work not begun instead of waiting for all of it (a pool's own exit would finish the queue)."""
    items = list(items)
    pool = ThreadPoolExecutor(max(1, workers))
    try:
        return list(progress(pool.map(fn, items), total=len(items), desc=desc, unit=unit))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
