"""Batch sources for training and prediction.

Both yield (x, y) batches of uint8 photos, (N, 3, H, W) in NHWC memory, `Geometry`'s output after the
recipe's per-photo augmentation (training only): `DeviceNormalise` (and CutMix) then finish them on the
training device.
- `LoaderBatches`: a torch DataLoader over `PhotoSet`, in worker processes: each photo read from its source
  (`CachedPhotos`, a row of the decoded uint8 cache, or `DecodedPhotos`, decoded from its file) and, when
  training, augmented (`PhotoAugment`) with the seed of its draw. Both sources give the same photos, the
  same sample order inside every batch and the same draws: training with and without the cache gives the
  same numbers.
- `CachedBatches`: slices of the decoded uint8 cache in one gather (prediction: nothing random to do).
Both reseed per epoch, so an epoch is a pure function of (seed, fold, epoch) — what makes resumed
runs end exactly like uninterrupted ones. Under DDP each rank takes its shard of every global batch
(see `batch_positions`), and a draw's seed is its slot in the global order, so N ranks augment as one.
"""
from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class DecodedPhotos:
    """photo i -> `Geometry`'s uint8 (H, W, 3): decoded, cropped and resized from its file. `worker_start`: how
    the loader's worker processes must start to decode (None: forked, the default)."""

    def __init__(self, paths, geometry):
        self.paths, self.geometry = list(paths), geometry

    @property
    def worker_start(self) -> str | None:
        return self.geometry.worker_start

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i) -> np.ndarray:
        return self.geometry(self.paths[i])


class CachedPhotos:
    """photo i -> row index[i] of the decoded uint8 cache (the memmap is opened again, not copied, where a
    worker process is started by pickling)."""

    def __init__(self, array: np.ndarray, index):
        self.array, self.index = array, np.asarray(index)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i) -> np.ndarray:
        return self.array[self.index[i]]

    def __getstate__(self):
        path = getattr(self.array, "filename", None)
        return {"index": self.index, "path": path, "array": None if path else self.array}

    def __setstate__(self, state):
        self.index = state["index"]
        self.array = np.load(state["path"], mmap_mode="r") if state["path"] else state["array"]


class PhotoSet(Dataset):
    """(photo, the seed of its draw or None) -> a uint8 (H, W, 3) tensor, augmented when a seed is given, and
    its label (-1: none)."""

    def __init__(self, photos, labels, augment=None):
        self.photos, self.augment = photos, augment
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return len(self.photos)

    def __getitem__(self, item):
        i, draw = item
        photo = self.photos[i]
        if draw is not None and self.augment is not None:
            photo = self.augment(photo, draw)
        x = torch.from_numpy(np.array(photo, order="C"))  # a writable, contiguous copy
        y = -1 if self.labels is None else int(self.labels[i])
        return x, y


def batch_positions(n: int, batch_size: int, order: np.ndarray, rank: int = 0, world: int = 1) -> list[np.ndarray]:
    """This rank's batches as positions into the sample list.

    Global batch k is order[k*B:(k+1)*B] whatever the number of ranks, so N ranks together see
    what one process sees. With N > 1 it is cut into N equal shards; the order is padded by
    wrapping around so that every rank runs the same number of steps (DDP needs that).
    """
    if world == 1:
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    per_rank = max(1, math.ceil(batch_size / world))
    step = per_rank * world
    total = math.ceil(n / step) * step
    padded = np.resize(order, total)  # repeats from the start
    return [padded[i + rank * per_rank: i + (rank + 1) * per_rank] for i in range(0, total, step)]


def no_batch_of_one(batches: list[np.ndarray], training: bool) -> list[np.ndarray]:
    """Training batches never hold one photo: BatchNorm cannot normalise a single sample where the
    feature map is 1x1, and anywhere it skews the running statistics. A last batch of one (n % B == 1)
    joins the batch before it (B + 1 photos), so every photo is still seen once per epoch. The one rule
    for every batch source (the cache, the loader, CutMix on either); DDP shards never end short (the
    order wraps), and a shard of one is refused with the config (batch_size >= 2 per process).
    Prediction batches are left as they are (BatchNorm then uses its running statistics)."""
    if training and len(batches) > 1 and len(batches[-1]) == 1:
        return batches[:-2] + [np.concatenate(batches[-2:])]
    return batches


def balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Sampling weight 1/count(class): every class is drawn equally often."""
    counts = np.bincount(labels)
    return torch.tensor(1.0 / counts[labels], dtype=torch.double)


@dataclass(frozen=True)
class BatchPlan:
    """How a source cuts its samples into batches, whichever source it is."""
    size: int
    shuffle: bool
    pin: bool = False                    # pinned host memory (for a CUDA device)
    rank: int = 0                        # this process's shard of every batch (DDP) ...
    world: int = 1                       # ... of this many
    weights: torch.Tensor | None = None  # shuffle: draw with replacement in proportion (balanced sampler)


class _Positions:
    """Re-iterable batch sampler drawing a new order per epoch from its own generator.

    With the plan's `weights`, an epoch draws n samples with replacement in proportion to them
    (the class-balanced sampler); otherwise it is a permutation.
    """

    def __init__(self, n: int, plan: BatchPlan):
        self.n, self.batch_size, self.shuffle, self.rank, self.world = n, plan.size, plan.shuffle, plan.rank, plan.world
        self.weights = plan.weights
        self.generator = torch.Generator()

    def draws(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """This epoch's batches: (positions, slots) — a slot is the draw's place in the epoch's global order,
        which seeds its augmentation (the same for every source, arrangement and number of ranks)."""
        order = self._order()
        slots = no_batch_of_one(batch_positions(self.n, self.batch_size, np.arange(self.n), self.rank, self.world),
                                self.shuffle)
        return [(order[s], s) for s in slots]

    def batches(self) -> list[np.ndarray]:
        return [positions for positions, _ in self.draws()]

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.n, replacement=True, generator=self.generator).numpy()
        return torch.randperm(self.n, generator=self.generator).numpy()

    def __len__(self):
        return len(no_batch_of_one(batch_positions(self.n, self.batch_size, np.arange(self.n), self.rank, self.world),
                                   self.shuffle))


class _Batches:
    """What both sources share: per-epoch seeding, length, and the sample order of predictions."""

    positions: _Positions
    draw_seed: int = 0

    def seed(self, s: int) -> None:
        """The epoch's seed: its order, and the first half of each draw's augmentation seed."""
        self.positions.generator.manual_seed(s)
        self.draw_seed = s

    def _within(self, pos: np.ndarray) -> np.ndarray:
        """The order of samples inside one batch (a permutation of it): ascending positions (both sources
        alike)."""
        return np.argsort(pos, kind="stable")

    def order(self) -> np.ndarray:
        """Positions in the order this rank yields them (prediction batches only: no shuffling)."""
        assert not self.positions.shuffle, "the order of shuffled batches is drawn per epoch"
        batches = [p[self._within(p)] for p in self.positions.batches()]
        return np.concatenate(batches) if batches else np.zeros(0, int)

    def __len__(self):
        return len(self.positions)


class LoaderBatches(_Batches):
    """Photos from `photos` (CachedPhotos or DecodedPhotos), `augment`ed per draw when training, in
    `num_workers` worker processes."""

    def __init__(self, photos, labels, plan: BatchPlan, num_workers: int = 0, augment=None):
        self.dataset = PhotoSet(photos, labels, augment if plan.shuffle else None)
        self.positions = _Positions(len(self.dataset), plan)
        self.num_workers, self.pin = num_workers, plan.pin
        self.epoch = _EpochItems(self.positions)
        self.loader: DataLoader | None = None

    def _items(self) -> list[list]:
        """The epoch's batches as the dataset's items: (position, (epoch seed, slot) when augmenting)."""
        out = []
        for pos, slots in self.positions.draws():
            within = self._within(pos)
            seeds = [(self.draw_seed, int(k)) for k in slots[within]] if self.dataset.augment else [None] * len(pos)
            out.append(list(zip(pos[within].tolist(), seeds)))
        return out

    def __iter__(self):
        # the epoch's batches drawn once, here: a DataLoader may iterate its batch sampler more than once
        self.epoch.items = self._items()
        if self.loader is None:
            # one loader for every epoch: its workers persist (bash run.sh speed times what forking them again
            # costs), each epoch's batches reach them through _EpochItems. A generator of the loader's own keeps
            # it from drawing its workers' base seed from torch's global one, which the model's dropout uses; the
            # workers' randomness is the draws' own seeds.
            start = getattr(self.dataset.photos, "worker_start", None) if self.num_workers else None  # any source
            self.loader = DataLoader(self.dataset, batch_sampler=self.epoch, num_workers=self.num_workers,
                                     pin_memory=self.pin, generator=torch.Generator(),
                                     persistent_workers=self.num_workers > 0, multiprocessing_context=start)
        for x, y in self.loader:
            yield x.permute(0, 3, 1, 2), y  # NHWC memory, like the cache's batches


class _EpochItems:
    """The batch sampler of a LoaderBatches' one DataLoader: the current epoch's batches, read when an epoch
    starts (in the main process: persistent workers only receive the items). It holds no LoaderBatches, so
    none is kept alive by a cycle, and its workers end with it."""

    def __init__(self, positions: _Positions):
        self.positions, self.items = positions, []

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.positions)


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def prefetched(items: Iterator, depth: int = 3) -> Iterator:
    """What `items` yields, in order, made up to `depth` ahead in a thread of its own.

    For the cache on a GPU: the next batches' gather from the memmap and copy into pinned memory
    (numpy and pin_memory release the GIL) overlap the step the main thread is launching."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop, done = threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False  # the consumer is gone

    def work():
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # raised again in the consumer, where it belongs
            put(_Failed(e))

    threading.Thread(target=work, daemon=True, name="prefetch").start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()  # also when the consumer stops early (max_batches, an error)


class CachedBatches(_Batches):
    def __init__(self, array: np.ndarray, index, labels, plan: BatchPlan, prefetch: bool | None = None):
        self.array = array
        self.index = np.asarray(index)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.pin = plan.pin
        # on the CPU the thread would compete with torch's own threads for the cores
        self.prefetch = plan.pin if prefetch is None else prefetch
        self.positions = _Positions(len(self.index), plan)

    def _within(self, pos: np.ndarray) -> np.ndarray:
        # within a batch the order is free: read the memmap in file order, in one gather
        return np.argsort(self.index[pos], kind="stable")

    def __iter__(self):
        return prefetched(self._slices()) if self.prefetch else self._slices()

    def _slices(self):
        for pos in self.positions.batches():
            pos = pos[self._within(pos)]
            x = torch.from_numpy(self.array[self.index[pos]]).permute(0, 3, 1, 2)  # NHWC memory = channels_last
            y = torch.from_numpy(self.labels[pos]) if self.labels is not None else torch.full((len(pos),), -1)
            yield (x.pin_memory() if self.pin else x), y
