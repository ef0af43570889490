"""Image datasets: decode (EXIF-aware) -> albumentations -> CHW float tensor."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .data import read_image


class FaceDataset(Dataset):
    def __init__(self, paths, labels=None, transform=None):
        self.paths = list(paths)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = self.transform(image=read_image(self.paths[i]))["image"]
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        y = -1 if self.labels is None else int(self.labels[i])
        return x, y


def reseed_worker(worker_id: int) -> None:
    """Each loader worker gets its own, reproducible augmentation stream.

    torch derives a worker's initial seed from the loader's generator, so seeding that
    generator per epoch makes every worker's flips a function of (seed, fold, epoch).
    """
    info = torch.utils.data.get_worker_info()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    ds = info.dataset
    if getattr(ds, "transform", None) is not None:
        ds.transform.set_random_seed(seed)
