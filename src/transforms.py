"""Preprocessing: resize so a centre crop keeps `crop_frac` of the photo, then flip + normalise.

Two equivalent routes: `build_transform` (albumentations per image, the plain loader) and
`geometry` + `DeviceAugment` (decode/resize/crop once into the cache, then flip and normalise
whole uint8 batches on the training device).
"""
from __future__ import annotations

import albumentations as A
import torch

from .config import image_size


def geometry_steps(cfg) -> list:
    h, w = image_size(cfg)
    # resizing first makes the crop a fraction of the photo, whatever its resolution
    return [A.Resize(round(h / cfg.crop_frac), round(w / cfg.crop_frac)), A.CenterCrop(h, w)]


def geometry(cfg) -> A.Compose:
    return A.Compose(geometry_steps(cfg))


def build_transform(cfg, mean, std, train: bool) -> A.Compose:
    steps = geometry_steps(cfg)
    if train and cfg.hflip > 0:
        steps.append(A.HorizontalFlip(p=cfg.hflip))
    steps.append(A.Normalize(mean=mean, std=std, max_pixel_value=255.0))
    return A.Compose(steps)


class DeviceAugment:
    """uint8 NCHW batch -> normalised float batch, with random flips when training.

    Runs wherever the batch is (the GPU when one is used); flips are drawn from a CPU
    generator so they are reproducible for a given seed on any device.
    """

    def __init__(self, mean, std, hflip: float, device):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
        self.hflip = hflip
        self.generator = torch.Generator()

    def seed(self, s: int) -> None:
        self.generator.manual_seed(s)

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        x = x.float()
        if train and self.hflip > 0:
            flip = (torch.rand(x.shape[0], generator=self.generator) < self.hflip).to(x.device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        return (x - self.mean) / self.std
