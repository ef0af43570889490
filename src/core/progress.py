"""Progress a person can follow: a live bar on a terminal, a line every 30 s in a log; and thread pools with it
that stop when asked."""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm


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
