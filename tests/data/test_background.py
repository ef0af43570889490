"""Backgrounds removed where the photo is decoded: GrabCut keeps a known foreground and fills the rest, the
segmenter's weights are found before any work, the cache never mixes settings."""
import json
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from src.core.config import load_config
from src.core.errors import ConfigError
from src.data import background
from src.data.background import Background, BackgroundError, check_background, grabcut_alpha, seed_labels
from src.data.cache import load_or_build
from src.data.transforms import Geometry
from tests.helpers import refused, train_fast

H, W = 512, 384


def portrait(seed: int = 0, centre: tuple[int, int] = (192, 220)) -> tuple[np.ndarray, np.ndarray]:
    """A made-up photo of the competition's size: a warm head-and-shoulders shape (head at `centre`) on a cool,
    textured room, and its true foreground."""
    rng = np.random.default_rng(seed)
    room = np.clip(rng.normal((60, 110, 150), 18, (H, W, 3)), 0, 255)
    person = np.zeros((H, W), np.uint8)
    cx, cy = centre
    cv2.ellipse(person, (cx, cy), (80, 105), 0, 0, 360, 1, -1)  # the head
    cv2.fillPoly(person, [np.array([(cx - 40, cy + 90), (cx + 40, cy + 90), (cx + 170, H), (cx - 170, H)])], 1)
    skin = np.clip(rng.normal((205, 150, 120), 12, (H, W, 3)), 0, 255)
    img = np.where(person[..., None] == 1, skin, room).astype(np.uint8)
    return img, person.astype(bool)


def inside(mask: np.ndarray, px: int) -> np.ndarray:
    """The mask shrunk by px: pixels clear of the edge, where a cut-out must agree exactly."""
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)).astype(bool)


def test_grabcut_keeps_a_known_foreground_and_fills_the_rest():
    img, person = portrait()
    alpha = grabcut_alpha(img, None)  # no box: seeded at the centre
    kept = alpha > 0.5
    assert (kept & person).sum() / (kept | person).sum() > 0.95  # intersection over union
    out = Background("grabcut", "mean")(img)
    sure_person, sure_room = inside(person, 10), inside(~person, 10)  # beyond the soft edge (a few work pixels)
    assert np.array_equal(out[sure_person], img[sure_person])
    assert (out[sure_room] == background.MEAN_RGB).all()
    blurred = Background("grabcut", "blur")(img)
    assert np.array_equal(blurred[sure_person], img[sure_person])

    def texture(x):  # the room's detail: how much each pixel differs from its neighbours
        grey = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.abs(cv2.Laplacian(grey, cv2.CV_32F))[sure_room].mean()

    assert texture(blurred) < 0.05 * texture(img)


def test_the_blur_fill_is_the_photo_blurred_at_full_size_to_a_few_grey_levels():
    """The fill is blurred on a copy BLUR_SHRINK times smaller (1 ms instead of 100 ms a photo): what it gives is
    the full-size Gaussian blur of the same sigma."""
    img, _ = portrait(seed=4)
    full = cv2.GaussianBlur(img, (0, 0), background.BLUR_SIGMA * max(H, W)).astype(float)
    fast = background.fill_of(img, "blur").astype(float)
    diff = np.abs(fast - full)
    assert fast.shape == img.shape and diff.mean() < 0.5 and diff.max() <= 6  # the most at the photo's edge


def test_a_face_box_seeds_grabcut_where_the_centre_would_miss():
    img, person = portrait(seed=1, centre=(95, 170))  # a person standing to the left
    x1, y1, x2, y2 = 40, 95, 150, 250
    labels = seed_labels(H, W, (x1, y1, x2, y2))
    assert (labels[y1 + 40:y2 - 20, x1 + 30:x2 - 30] == cv2.GC_FGD).all()  # the face's middle is sure
    assert (labels[:, W - 3:] == cv2.GC_BGD).all()  # the frame away from the head is sure room
    with_box = grabcut_alpha(img, (x1, y1, x2, y2)) > 0.5
    iou = (with_box & person).sum() / (with_box | person).sum()
    assert iou > 0.9
    at_centre = grabcut_alpha(img, None) > 0.5
    assert (at_centre & person).sum() / (at_centre | person).sum() < iou


def test_the_same_photo_gives_the_same_cut_whatever_came_before():
    a, _ = portrait(seed=2)
    b, _ = portrait(seed=3, centre=(230, 260))
    first = grabcut_alpha(a, None)
    grabcut_alpha(b, None)
    assert np.array_equal(first, grabcut_alpha(a, None))
    tiny = np.random.default_rng(0).integers(0, 256, (3, 3, 3), dtype=np.uint8)  # too few pixels for colour
    assert (grabcut_alpha(tiny, None) == 1).all()                                # models: kept whole, no crash


def test_the_cache_never_mixes_settings(tmp_path):
    img, person = portrait()
    path = tmp_path / "p.jpg"
    Image.fromarray(img).save(path, quality=95)
    base = load_config("seed", ["img_size=64,48", "crop_frac=1.0"])
    built = {}
    for setting in (["background=keep"], ["background=grabcut"], ["background=grabcut", "background_fill=blur"]):
        cfg = base.replace(**dict(s.split("=") for s in setting))
        built[tuple(setting)] = np.array(load_or_build([str(path)], cfg, tmp_path / "cache"))[0]
    names = sorted(p.name for p in (tmp_path / "cache").glob("*.npy"))
    assert len(names) == 3  # a cache per setting, none read for another
    metas = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("*.json")]
    assert sorted(m.get("background", "keep") + m.get("background_fill", "") for m in metas) == [
        "grabcutblur", "grabcutmean", "keep"]
    keep, mean, blur = built.values()
    corner = (slice(0, 6), slice(0, 6))
    assert (mean[corner] == background.MEAN_RGB).all() and not (keep[corner] == background.MEAN_RGB).all()
    assert not np.array_equal(mean, blur)
    again = np.array(load_or_build([str(path)], base.replace(background="grabcut"), tmp_path / "cache"))[0]
    assert np.array_equal(again, mean)  # the same setting reads its own cache
    assert np.array_equal(Geometry(base.replace(background="grabcut"))(str(path)), mean)  # = decoding afresh


def test_a_missing_segmenter_or_its_weights_is_refused_naming_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # not installed
    with pytest.raises(BackgroundError, match=r"needs mediapipe==0\.10\.21.*--no-deps"):
        check_background("selfie")
    check_background("grabcut")  # needs nothing more
    monkeypatch.undo()
    pytest.importorskip("mediapipe")
    monkeypatch.setattr(background, "SELFIE_MODEL", "modules/nowhere/selfie_segmentation.tflite")
    with pytest.raises(BackgroundError, match=r"weights .*nowhere.* are missing"):
        check_background("selfie")


def test_a_run_without_the_segmenter_stops_before_any_folder(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mediapipe", None)
    code = train_fast(tiny_data, tmp_path / "out", "background=selfie")
    refused(code, capsys, "background=selfie needs mediapipe")
    assert not (tmp_path / "out").exists()


def test_the_segmenter_gives_a_person_probability_per_pixel():
    pytest.importorskip("mediapipe")
    img, _ = portrait()
    alpha = background.selfie_alpha(img)
    assert alpha.shape == (H, W) and alpha.dtype == np.float32 and 0 <= alpha.min() <= alpha.max() <= 1
    other, _ = portrait(seed=5, centre=(150, 240))
    background.selfie_alpha(other)
    assert np.array_equal(alpha, background.selfie_alpha(img))  # no memory of the photo before


def test_an_unknown_method_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match=r"background.*keep, grabcut, selfie"):
        load_config("seed", ["background=rembg"])
    assert load_config("seed", ["background=grabcut", "background_fill=blur"]).saved()["background_fill"] == "blur"
