"""Image dataset: Geometry (decode + crop + resize) -> albumentations augment -> CHW float tensor."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

class FaceDataset(Dataset):
    def __init__(self, paths, labels, geometry, augment):
        self.paths = list(paths)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.geometry, self.augment = geometry, augment

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        img = self.augment(image=self.geometry(self.paths[i]))["image"]
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
    ds.augment.set_random_seed(seed)
