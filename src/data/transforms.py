"""Preprocessing in two parts.

`Geometry` (deterministic): decode the photo, remove its background (`background`, data/background.py), cut a
window of it (around its face for crop=face, else the centre `crop_frac` of each side, also the fallback when no
face was found) and resize that once with `resize` (antialiased by default). Its uint8 output is what the cache
stores.
Random: `PhotoAugment`, the recipe's albumentations list on each uint8 photo in the loader's workers,
seeded per draw, for both photo sources (the cache and the decoder), so cache on and off give the same
numbers. On whole batches on the training device: `HalfCutMix` (left and right halves of two faces) and
`DeviceNormalise`; `normaliser` (albumentations) normalises single photos for `predict`.
"""
from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image

from ..core import augment_list
from .background import Background, composite
from .faces import face_window
from .tables import read_image


def resize(img: np.ndarray, h: int, w: int, how: str = "antialias") -> np.ndarray:
    """The one resize of the project: every photo (training, eval, predict, face crops) is made
    (h, w) here.

    `antialias`: PIL's bilinear filter, whose footprint grows with the downscale factor, so every
    source pixel counts (what the reference implementation and torchvision do). `plain`: OpenCV
    bilinear, which samples 2x2 pixels per output pixel and aliases hair and skin texture on the
    2.7-4x downscales used here (what the pipeline did before; core/migrations.py reads older runs so).
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
    """path -> uint8 (H, W, 3): the photo with its background removed (`background`, where set), then a window
    of it (the face crop when crop=face and a box is known for it, else the centre crop), cut in the photo's own
    pixels and resized once. A known face box also seeds GrabCut (background=grabcut)."""

    def __init__(self, cfg, boxes: dict | None = None):
        self.h, self.w = cfg.img_size
        self.how = cfg.resize
        self.crop_frac = cfg.crop_frac
        self.crop_face = cfg.crop == "face"
        self.boxes = boxes or {}
        self.margin = cfg.face_margin
        self.background = Background.of(cfg)

    @property
    def worker_start(self) -> str | None:
        """How a loader's worker processes must start to run this (None: forked; background.worker_start)."""
        return None if self.background is None else self.background.worker_start

    def __call__(self, path) -> np.ndarray:
        return self.view(path)[0]

    def view(self, path) -> tuple[np.ndarray, np.ndarray | None]:
        """(the photo as the model sees it, the window's alpha: 1 kept, 0 filled; None with background=keep)."""
        img = read_image(path)
        box = self.boxes.get(str(path))
        alpha = None
        if self.background is not None:
            alpha = self.background.alpha(img, box)
            img = composite(img, alpha, self.background.fill)
        if box is None or not self.crop_face:
            x1, y1, x2, y2 = centre_window(img.shape[0], img.shape[1], self.crop_frac)
        else:
            x1, y1, x2, y2 = face_window(box, img.shape[0], img.shape[1], self.h, self.w, self.margin)
        view = resize(np.ascontiguousarray(img[y1:y2, x1:x2]), self.h, self.w, self.how)
        return view, None if alpha is None else alpha[y1:y2, x1:x2]


def normaliser(mean, std) -> A.Compose:
    """Normalise one photo (HWC uint8 -> float) on the CPU: `predict`'s per-photo path (no randomness)."""
    return A.Compose([A.Normalize(mean=mean, std=std, max_pixel_value=255.0)])


class PhotoAugment:
    """The recipe's `augment` list (core/augment_list.py: albumentations transforms) on one uint8 photo, in the
    loader's worker processes, on the cached crop or the freshly decoded one alike.

    Every draw of a photo in an epoch has its own seed, (the epoch's seed, its slot in the epoch's order): the
    transforms share one generator seeded from it, so an epoch is a pure function of (seed, fold, epoch)
    whichever worker does the photo, with the cache on or off, resumed or not. (albumentations' own
    `set_random_seed` gives every transform the same seed: a flip and a dropout of equal p would then always
    come together.)"""

    def __init__(self, steps):
        self.pipeline = augment_list.compose(steps)

    @classmethod
    def of(cls, steps) -> PhotoAugment | None:
        return cls(steps) if steps else None

    def __call__(self, photo: np.ndarray, draw: tuple[int, int]) -> np.ndarray:
        self.pipeline.set_random_state(np.random.default_rng(draw), random.Random(draw[0] * 2**32 + draw[1]))
        return self.pipeline(image=photo)["image"]


class DeviceNormalise:
    """uint8 NCHW batch -> the model's normalised float batch, wherever the batch is (the GPU when one is
    used): all that is left to do on whole batches after the photo's own augmentation (and CutMix)."""

    def __init__(self, mean, std, device):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1) * 255

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
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
