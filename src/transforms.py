"""albumentations pipelines: resize so a centre crop keeps `crop_frac` of the photo, flip, normalise."""
from __future__ import annotations

import albumentations as A

from .config import image_size


def build_transform(cfg, mean, std, train: bool) -> A.Compose:
    h, w = image_size(cfg)
    steps = [
        # resizing first makes the crop a fraction of the photo, whatever its resolution
        A.Resize(round(h / cfg.crop_frac), round(w / cfg.crop_frac)),
        A.CenterCrop(h, w),
    ]
    if train and cfg.hflip > 0:
        steps.append(A.HorizontalFlip(p=cfg.hflip))
    steps.append(A.Normalize(mean=mean, std=std, max_pixel_value=255.0))
    return A.Compose(steps)
