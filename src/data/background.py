"""Backgrounds removed before training: `background=keep|grabcut|selfie`, `background_fill=mean|blur`.

The competition's 7 photos of a person share one background (a room, an office wall), so a model can learn the
background as a shortcut to the person, and through the person to gender and age. With `background` set, every
photo is cut out once, where it is decoded (`transforms.Geometry`, so the cache stores the cut-out photo, and the
cache's name holds the setting: runs with and without it never share cached pixels), for training, validation,
eval, `predict` and the ONNX path alike.

  keep     the photo as it is (the default)
  grabcut  OpenCV's GrabCut (graph cuts over colour models), seeded from the face: its box where one is known
           (crop=face boxes; outside persons' drawn boxes) else a face-sized region at the photo's centre; the face
           is sure foreground, a head-and-shoulders region around it likely foreground, the rest likely
           background. Run on a copy whose longer side is WORK_SIDE, its mask scaled back.
  selfie   MediaPipe Selfie Segmentation (Google's segmenter of a person close to the camera: the model of video
           calls' background blur), general model, 256x256 input. Its weights ship inside the mediapipe wheel
           (requirements-nodeps.txt: the last release that carries them), so it runs with no internet.

The removed part is filled (`background_fill`) with `mean`, one constant colour (ImageNet's mean, which the
network's normalisation makes about zero), or `blur`, the photo blurred beyond recognising a room; the edge
between the two is soft. `bash run.sh background --preview N` shows photos as the model will see them, and how
much of each class's photos was filled (a fill share that differs by class would itself be a shortcut).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path

import cv2
import numpy as np

from ..core.errors import UserError

BACKGROUND_VERSION = 2  # bump when a method's seeds, sizes or fill change meaning (the cache's name holds it)
WORK_SIDE = 160  # GrabCut's copy: its longer side
GRABCUT_ROUNDS = 4
MEAN_RGB = (124, 116, 104)  # ImageNet's mean colour
BLUR_SIGMA = 0.06  # of the photo's longer side
BLUR_SHRINK = 8  # the blur runs on a copy this many times smaller (the same look to 2 grey levels; 1 ms, not 100)
SELFIE_PACKAGE = "mediapipe==0.10.21"
SELFIE_MODEL = "modules/selfie_segmentation/selfie_segmentation.tflite"


class BackgroundError(UserError, RuntimeError):
    """background= names a method this machine cannot run (its package or weights missing)."""


_stderr_lock = threading.Lock()  # one redirection of file descriptor 2 at a time, or a thread could keep it silenced


@contextlib.contextmanager
def quiet_stderr():
    """mediapipe's C++ start-up writes log lines (and, with protobuf 5+, a harmless AttributeError it catches
    itself) straight to file descriptor 2: silenced while it loads, so a run's log stays the run's."""
    with _stderr_lock:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as null:
                os.dup2(null.fileno(), 2)
                yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def selfie_model_file() -> Path:
    """The segmenter's weights inside the installed mediapipe package; BackgroundError naming what is missing."""
    try:
        with quiet_stderr():
            import mediapipe
    except ImportError as e:
        raise BackgroundError(f"background=selfie needs {SELFIE_PACKAGE} (bash run.sh installs it with --no-deps; by "
                              f"hand: pip install --no-deps {SELFIE_PACKAGE} attrs): {e}") from None
    model = Path(mediapipe.__file__).parent / SELFIE_MODEL
    if not model.is_file():
        raise BackgroundError(f"background=selfie: the segmenter's weights {model} are missing (mediapipe "
                              f"{getattr(mediapipe, '__version__', '?')} is installed; releases after 0.10.21 no "
                              f"longer carry them: pip install --no-deps {SELFIE_PACKAGE})")
    return model


def check_background(method: str) -> None:
    """Before any work: the method can run here (grabcut and keep always can)."""
    if method == "selfie":
        selfie_model_file()


def seed_labels(h: int, w: int, box) -> np.ndarray:
    """GrabCut's starting labels for an (h, w) photo whose face is `box` (x1, y1, x2, y2 in its pixels; None:
    a face-sized box at the centre): the face's middle sure foreground; the head (hair above, ears beside) and
    the shoulders below likely foreground; the rest likely background, with a sure-background frame where it
    lies away from the head."""
    if box is None:
        box = (0.3 * w, 0.28 * h, 0.7 * w, 0.68 * h)
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    bw, bh = x2 - x1, y2 - y1
    labels = np.full((h, w), cv2.GC_PR_BGD, np.uint8)

    def mark(left, top, right, bottom, label):
        labels[max(0, round(top)):max(0, round(bottom)), max(0, round(left)):max(0, round(right))] = label

    mark(x1 - 0.45 * bw, y1 - 0.6 * bh, x2 + 0.45 * bw, y2 + 0.2 * bh, cv2.GC_PR_FGD)  # head and hair
    mark(x1 - 0.9 * bw, y2, x2 + 0.9 * bw, h, cv2.GC_PR_FGD)  # neck and shoulders
    mark(x1 + 0.2 * bw, y1 + 0.15 * bh, x2 - 0.2 * bw, y2 - 0.05 * bh, cv2.GC_FGD)  # the face itself
    frame = max(1, round(0.02 * max(h, w)))  # a sure-background frame, on the sides the head and shoulders keep off
    border = np.zeros((h, w), bool)
    if y1 - 0.6 * bh > frame:
        border[:frame] = True
    if x1 - 0.9 * bw > frame:
        border[:, :frame] = True
    if x2 + 0.9 * bw < w - frame:
        border[:, w - frame:] = True
    labels[border & (labels == cv2.GC_PR_BGD)] = cv2.GC_BGD
    if not np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():  # a face filling the photo: the top row may be room
        labels[0] = cv2.GC_PR_BGD
    return labels


def grabcut_alpha(img: np.ndarray, box) -> np.ndarray:
    """float32 (h, w) in [0, 1]: GrabCut's foreground on a WORK_SIDE copy, feathered and scaled back."""
    h, w = img.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    sh, sw = max(8, round(h * scale)), max(8, round(w * scale))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    labels = seed_labels(sh, sw, None if box is None else [v * sw / w if i % 2 == 0 else v * sh / h
                                                           for i, v in enumerate(box[:4])])
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from this thread's generator: the same photo, the same cut
    try:
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), labels, None, np.zeros((1, 65)), np.zeros((1, 65)),
                    GRABCUT_ROUNDS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # too few pixels of a seed for its colour model (a thumbnail-sized photo): kept whole
        return np.ones((h, w), np.float32)
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
    soft = cv2.resize(cv2.GaussianBlur(fg, (0, 0), 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip((soft - 0.02) / 0.96, 0, 1)  # a soft edge, and the photo or the fill exactly beyond it


_local = threading.local()  # one segmenter per thread (a MediaPipe graph runs one photo at a time)


def selfie_alpha(img: np.ndarray, box=None) -> np.ndarray:
    """float32 (h, w) in [0, 1]: MediaPipe's person probability, sharpened around one half (the face box is not
    needed: the segmenter finds the person)."""
    segmenter = getattr(_local, "selfie", None)
    # never made in a forked process (Background.worker_start: a fork hangs on the parent's graph)
    if segmenter is None:  # made, and run once, with its start-up lines silenced
        selfie_model_file()
        with quiet_stderr():
            from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation
            segmenter = _local.selfie = SelfieSegmentation(model_selection=0)
            segmenter.process(np.zeros((64, 64, 3), np.uint8))
    prob = segmenter.process(np.ascontiguousarray(img)).segmentation_mask
    return np.clip((prob - 0.3) / 0.4, 0, 1).astype(np.float32)


ALPHA = {"grabcut": grabcut_alpha, "selfie": selfie_alpha}


def fill_of(img: np.ndarray, fill: str) -> np.ndarray:
    """What replaces the background of `img`: one constant colour, or the photo blurred past recognising."""
    if fill == "mean":
        return np.broadcast_to(np.asarray(MEAN_RGB, np.uint8), img.shape)
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // BLUR_SHRINK), max(1, h // BLUR_SHRINK)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), BLUR_SIGMA * max(h, w) / BLUR_SHRINK)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def composite(img: np.ndarray, alpha: np.ndarray, fill: str) -> np.ndarray:
    """uint8: the photo where alpha is 1, the fill where 0, blended between."""
    a = alpha[..., None].astype(np.float32)
    out = img.astype(np.float32) * a + fill_of(img, fill).astype(np.float32) * (1 - a)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def background_settings(method: str, fill: str) -> dict:
    """What the cache's name must know of the setting (nothing for keep: its caches keep their names)."""
    if method == "keep":
        return {}
    conf = {"background": method, "background_fill": fill, "background_version": BACKGROUND_VERSION}
    if method == "grabcut":
        conf.update(work_side=WORK_SIDE, rounds=GRABCUT_ROUNDS)
    else:
        conf.update(segmenter=SELFIE_PACKAGE)
    return conf


class Background:
    """(photo, face box or None) -> the photo with its background filled, at the photo's size; also its alpha
    (1 the person, 0 the fill) for what the preview measures. `keep` has none: Background.of gives None."""

    def __init__(self, method: str, fill: str):
        self.method, self.fill = method, fill

    @classmethod
    def of(cls, cfg) -> Background | None:
        return None if cfg.background == "keep" else cls(cfg.background, cfg.background_fill)

    @property
    def worker_start(self) -> str | None:
        """How a loader's worker processes must start to run this method: MediaPipe's graphs do not survive a
        fork (a forked process hangs on the parent's graph, or aborts making its own), so the segmenter's
        workers are spawned, fresh interpreters; GrabCut forks like the plain decode."""
        return "spawn" if self.method == "selfie" else None

    def alpha(self, img: np.ndarray, box=None) -> np.ndarray:
        return ALPHA[self.method](img, box)

    def __call__(self, img: np.ndarray, box=None) -> np.ndarray:
        return composite(img, self.alpha(img, box), self.fill)
