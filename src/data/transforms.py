"""Preprocessing in two parts.

`Geometry` (deterministic): decode the photo, cut a window of it (around its face for crop=face,
else the centre `crop_frac` of each side, also the fallback when no face was found) and resize
that once with `resize` (antialiased by default). Its uint8 output is what the cache stores.
Random + normalise: `DeviceAugment`, on whole uint8 batches on the training device, for both
batch sources (the cache and the plain loader), so cache on and off give the same numbers;
`normaliser` (albumentations) normalises single photos for `predict`.
Batch mixing: `HalfCutMix` (left and right halves of two faces, after the augment).
"""
from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .faces import face_window
from .tables import read_image


def resize(img: np.ndarray, h: int, w: int, how: str = "antialias") -> np.ndarray:
    """The one resize of the project: every photo (training, eval, predict, face crops) is made
    (h, w) here.

    `antialias`: PIL's bilinear filter, whose footprint grows with the downscale factor, so every
    source pixel counts (what the reference implementation and torchvision do). `plain`: OpenCV
    bilinear, which samples 2x2 pixels per output pixel and aliases hair and skin texture on the
    2.7-4x downscales used here (what the pipeline did before; LEGACY for older runs).
    """
    if img.shape[:2] == (h, w):
        return img
    if how == "plain":
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))


def centre_window(img_h: int, img_w: int, crop_frac: float) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the centre crop keeping `crop_frac` of each side (400x300 of 512x384 at 0.78125)."""
    ch, cw = max(1, round(img_h * crop_frac)), max(1, round(img_w * crop_frac))
    y1, x1 = (img_h - ch) // 2, (img_w - cw) // 2
    return x1, y1, x1 + cw, y1 + ch


class Geometry:
    """path -> uint8 (H, W, 3): a window of the photo (the face crop when a box is known for it, else
    the centre crop), cut in the photo's own pixels and then resized once."""

    def __init__(self, cfg, boxes: dict | None = None):
        self.h, self.w = cfg.img_size
        self.how = cfg.resize
        self.crop_frac = cfg.crop_frac
        self.boxes = boxes if cfg.crop == "face" else None
        self.margin = cfg.face_margin

    def __call__(self, path) -> np.ndarray:
        img = read_image(path)
        box = self.boxes.get(str(path)) if self.boxes is not None else None
        if box is None:
            x1, y1, x2, y2 = centre_window(img.shape[0], img.shape[1], self.crop_frac)
        else:
            x1, y1, x2, y2 = face_window(box, img.shape[0], img.shape[1], self.h, self.w, self.margin)
        return resize(np.ascontiguousarray(img[y1:y2, x1:x2]), self.h, self.w, self.how)


def normaliser(mean, std) -> A.Compose:
    """Normalise one photo (HWC uint8 -> float) on the CPU: `predict`'s per-photo path (no randomness)."""
    return A.Compose([A.Normalize(mean=mean, std=std, max_pixel_value=255.0)])


class DeviceAugment:
    """uint8 NCHW batch -> normalised float batch, with random flip / shift / colour when training.

    Runs wherever the batch is (the GPU when one is used); the random draws come from a CPU
    generator so they are reproducible for a given seed on any device.
    """

    def __init__(self, mean, std, hflip: float, device, shift_px: int = 0, color_jitter: float = 0.0):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255
        self.hflip, self.shift_px, self.color_jitter = hflip, shift_px, color_jitter
        self.generator = torch.Generator()

    @classmethod
    def from_config(cls, cfg, mean, std, device):
        """Training's: the config's flip, shift and colour."""
        return cls(mean, std, cfg.hflip, device, cfg.shift_px, cfg.color_jitter)

    @classmethod
    def normalise_only(cls, mean, std, device):
        """Inference's: the model's normalisation and nothing random (TTA views are made afterwards)."""
        return cls(mean, std, 0.0, device)

    def _uniform(self, n: int, lo: float, hi: float, device) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(n, generator=self.generator)).to(device)

    def _shift(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        j = self.shift_px
        dx = torch.randint(-j, j + 1, (n,), generator=self.generator).float()
        dy = torch.randint(-j, j + 1, (n,), generator=self.generator).float()
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1
        theta[:, 0, 2], theta[:, 1, 2] = -2 * dx / w, -2 * dy / h
        grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)

    def _colour(self, x: torch.Tensor) -> torch.Tensor:
        c = self.color_jitter
        n = x.shape[0]
        bright = self._uniform(n, 1 - c, 1 + c, x.device).view(-1, 1, 1, 1)
        contrast = self._uniform(n, 1 - c, 1 + c, x.device).view(-1, 1, 1, 1)
        x = x * bright
        grey = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - grey) * contrast + grey).clamp(0, 255)

    def seed(self, s: int) -> None:
        self.generator.manual_seed(s)

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        if train and self.hflip > 0:  # on uint8: a quarter of the bytes of floats
            flip = (torch.rand(x.shape[0], generator=self.generator) < self.hflip).to(x.device)
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        if train and (self.shift_px > 0 or self.color_jitter > 0):
            x = x.float()
            if self.shift_px > 0:
                x = self._shift(x)
            if self.color_jitter > 0:
                x = self._colour(x)
        # uint8 - float makes a new float tensor in one pass; the cache is never written
        return (x - self.mean).div_(self.std)


class HalfCutMix:
    """With probability p a batch becomes left half of each face + right half of another's.

    Each image then carries half of each face, so the loss is the mean of the losses against
    both labels (lambda = 0.5, the area share).
    """

    def __init__(self, p: float):
        self.p = p
        self.generator = torch.Generator()

    def seed(self, s: int) -> None:
        self.generator.manual_seed(s)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        """(x, y_left, y_right, lam); y_right is None when the batch is left as it is."""
        if self.p <= 0 or torch.rand(1, generator=self.generator).item() >= self.p:
            return x, y, None, 1.0
        perm = torch.randperm(x.shape[0], generator=self.generator).to(x.device)
        half = x.shape[3] // 2
        mixed = torch.cat([x[..., :half], x[perm][..., half:]], dim=3)
        return mixed, y, y[perm], half / x.shape[3]
