"""The 18-class label table: class = mask*6 + gender*3 + age_band."""
from __future__ import annotations

import numpy as np

N_CLASSES = 18
MASK_NAMES = ("wear", "incorrect", "not_worn")
GENDER_NAMES = ("male", "female")
AGE_NAMES = ("<30", "30-59", ">=60")
TRUE_AGE_BOUNDARY = 60
# age_head=ordinal learns P(age >= t) for these t from the exact ages; the competition caps ages at 60,
# so t = 60 means "60 or over" (outside persons' ages above 60 count as 60)
AGE_THRESHOLDS = tuple(range(19, 61))
YOUNG_EDGE = 30  # the <30 | 30-59 edge is fixed; the >=60 edge is where the model (or the OOF fit) puts it

# photo file stem -> mask index
SHOT_MASK = {
    "mask1": 0, "mask2": 0, "mask3": 0, "mask4": 0, "mask5": 0,
    "incorrect_mask": 1,
    "normal": 2,
}
SHOTS = tuple(SHOT_MASK)

# the columns of the 18 class probabilities in every probabilities CSV (OOF, eval, predict)
PROB_COLS = [f"p{i}" for i in range(N_CLASSES)]
# age_head=ordinal: the OOF also holds P(age >= t) per threshold (what the >=60 edge is fitted on)
CURVE_COLS = [f"age_ge_{t}" for t in AGE_THRESHOLDS]


def age_band(age, boundary: int = TRUE_AGE_BOUNDARY):
    """0: <30, 1: 30..boundary-1, 2: >=boundary. Works on scalars and arrays."""
    age = np.asarray(age)
    band = (age >= 30).astype(int) + (age >= boundary).astype(int)
    return band if band.ndim else int(band)


def across_bands(lo, hi, boundary: int = TRUE_AGE_BOUNDARY):
    """Does an age known to lie in lo..hi span two bands (an edge at 30 or `boundary` inside it)? Works on
    scalars, numpy arrays and torch tensors alike."""
    return ((lo >= 30) != (hi >= 30)) | ((lo >= boundary) != (hi >= boundary))


def encode(mask, gender, age_band_):
    return np.asarray(mask) * 6 + np.asarray(gender) * 3 + np.asarray(age_band_)


def decode(label):
    """label(s) -> (mask, gender, age_band)."""
    label = np.asarray(label)
    return label // 6, (label // 3) % 2, label % 3


def class_name(label: int) -> str:
    m, g, a = decode(label)
    return f"{MASK_NAMES[int(m)]}/{GENDER_NAMES[int(g)][0].upper()}/{AGE_NAMES[int(a)]}"


def subtask_probs(probs: np.ndarray):
    """Marginal probabilities of each sub-task from 18-class probabilities (N, 18)."""
    p = probs.reshape(-1, 3, 2, 3)
    return p.sum(axis=(2, 3)), p.sum(axis=(1, 3)), p.sum(axis=(1, 2))
