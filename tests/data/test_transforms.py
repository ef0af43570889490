import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from src.core.config import load_config
from src.data.batches import BatchPlan, CachedBatches
from src.data.cache import load_or_build
from src.data.transforms import DeviceNormalise, Geometry, centre_window, resize
from src.infer.ensemble import FoldModel
from src.infer.predict import Preprocess


def _photo(path, h=512, w=384, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)
    return img


def test_centre_window_keeps_the_fraction_of_each_side():
    assert centre_window(512, 384, 0.78125) == (42, 56, 342, 456)  # the reference's 400x300 crop
    assert centre_window(512, 384, 1.0) == (0, 0, 384, 512)


def test_geometry_is_the_references_crop_then_antialiased_resize(tmp_path):
    img = _photo(tmp_path / "p.png")
    cfg = load_config("seed", ["img_size=149,112", "crop_frac=0.78125"])
    # seedref.py: PIL crop of 400x300 at ((w-cw)//2, (h-ch)//2), then BILINEAR resize (antialiased)
    expected = np.asarray(Image.fromarray(img).crop((42, 56, 342, 456)).resize((112, 149), Image.BILINEAR))
    np.testing.assert_array_equal(Geometry(cfg)(tmp_path / "p.png"), expected)
    plain = Geometry(load_config("seed", ["img_size=149,112", "crop_frac=0.78125", "resize=plain"]))
    np.testing.assert_array_equal(plain(tmp_path / "p.png"),
                                  cv2.resize(img[56:456, 42:342], (112, 149), interpolation=cv2.INTER_LINEAR))


def test_antialiased_resize_does_not_alias_fine_stripes():
    # 1-pixel black/white stripes downscaled 3x: their average is mid-grey. Sampling 2x2 pixels
    # per output pixel (plain bilinear) picks stripes and returns a pattern that is not there.
    stripes = np.zeros((300, 300, 3), np.uint8)
    stripes[:, ::2] = 255
    smooth, aliased = resize(stripes, 100, 100), resize(stripes, 100, 100, "plain")
    assert abs(smooth.mean() - 127.5) < 3 and smooth.std() < 20
    assert aliased.std() > 100  # plain bilinear returns black and white stripes again


def test_resize_leaves_the_right_size_alone_and_upscales():
    img = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    assert resize(img, 4, 3) is img
    assert resize(img, 8, 6).shape == (8, 6, 3) and resize(img, 8, 6, "plain").shape == (8, 6, 3)


@pytest.mark.parametrize("how", ["antialias", "plain"])
def test_cache_and_predict_see_the_same_pixels(tmp_path, how):
    """Training (cache + on-device normalise) and predict (per photo) feed a model the same input."""
    paths = [tmp_path / f"p{i}.png" for i in range(3)]
    for i, p in enumerate(paths):
        _photo(p, 200, 150, seed=i)
    cfg = load_config("seed", ["img_size=40,30", "crop_frac=0.9", f"resize={how}", f"cache_dir={tmp_path / 'c'}"])
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    array = load_or_build([str(p) for p in paths], cfg, tmp_path / "c")
    (xb, _), = CachedBatches(array, np.arange(3), None, BatchPlan(8, False))
    cached = DeviceNormalise(mean, std, "cpu")(xb)
    x, errors = Preprocess(FoldModel(None, mean, std, cfg, "fold0_best"))(paths)
    assert errors == [None] * 3
    torch.testing.assert_close(torch.from_numpy(x), cached, atol=1e-5, rtol=1e-5)
