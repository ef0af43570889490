"""Batch sources for training and prediction.

Both yield (x, y) batches and reseed per epoch, so an epoch is a pure function of
(seed, fold, epoch) — what makes resumed runs end exactly like uninterrupted ones.
- `LoaderBatches`: a torch DataLoader decoding each photo (albumentations on CPU workers);
  x is already normalised.
- `CachedBatches`: slices of the decoded uint8 cache; x is uint8 and `DeviceAugment`
  finishes it on the training device.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from .datasets import FaceDataset, reseed_worker


class LoaderBatches:
    normalised = True

    def __init__(self, paths, labels, transform, batch_size, shuffle, num_workers, pin):
        self.dataset = FaceDataset(paths, labels, transform)
        self.transform = transform
        self.loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                                 pin_memory=pin, generator=torch.Generator(), worker_init_fn=reseed_worker)

    def seed(self, s: int) -> None:
        self.loader.generator.manual_seed(s)
        self.transform.set_random_seed(s)  # used directly when num_workers=0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return iter(self.loader)


class CachedBatches:
    normalised = False

    def __init__(self, array: np.ndarray, index, labels, batch_size, shuffle, pin):
        self.array = array
        self.index = np.asarray(index)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.batch_size, self.shuffle, self.pin = batch_size, shuffle, pin
        self.generator = torch.Generator()

    def seed(self, s: int) -> None:
        self.generator.manual_seed(s)

    def __len__(self):
        return (len(self.index) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = torch.randperm(len(self.index), generator=self.generator).numpy() if self.shuffle \
            else np.arange(len(self.index))
        for start in range(0, len(order), self.batch_size):
            pos = order[start:start + self.batch_size]
            rows = self.index[pos]
            sorted_rows = np.sort(rows)  # memmap reads in file order are faster
            block = self.array[sorted_rows]
            block = block[np.searchsorted(sorted_rows, rows)]
            x = torch.from_numpy(np.ascontiguousarray(block)).permute(0, 3, 1, 2)
            y = torch.from_numpy(self.labels[pos]) if self.labels is not None else torch.full((len(pos),), -1)
            yield (x.pin_memory() if self.pin else x), y
