import os
import threading
import time

import numpy as np
import pytest
import torch

from src.core.config import load_config
from src.data import cache
from src.data.batches import BatchPlan, CachedBatches, CachedPhotos, DecodedPhotos, LoaderBatches
from src.data.tables import load_train
from src.data.transforms import Geometry, PhotoAugment


@pytest.fixture
def cfg(tmp_path):
    return load_config("seed", ["img_size=32,24", "crop_frac=0.8", f"cache_dir={tmp_path / 'c'}"])


def _root(cfg):
    return cache.cache_root(cfg.cache_dir, "unused: cache_dir is set")


def test_cache_root_is_the_setting_or_the_output_folder(tmp_path, monkeypatch):
    assert cache.cache_root("", tmp_path / "out") == tmp_path / "out" / "cache"
    assert cache.cache_root(str(tmp_path / "c"), tmp_path / "out") == tmp_path / "c"
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    assert cache.cache_root("rel/c", tmp_path) == tmp_path / "here" / "rel" / "c"  # from where the user stands


def _paths(data, n=10):
    return load_train(data, check_pixels=False)["path"].tolist()[:n]


def test_cache_holds_the_geometry_output_and_is_reused(tiny_data, cfg, monkeypatch):
    paths = _paths(tiny_data)
    arr = cache.load_or_build(paths, cfg, _root(cfg))
    assert arr.shape == (10, 32, 24, 3) and arr.dtype == np.uint8
    geo = Geometry(cfg)
    for i in (0, 9):
        np.testing.assert_array_equal(arr[i], geo(paths[i]))

    def no_build(*a, **k):
        raise AssertionError("a valid cache must not be rebuilt")

    monkeypatch.setattr(cache, "build", no_build)
    again = cache.load_or_build(paths, cfg, _root(cfg))
    np.testing.assert_array_equal(again, arr)


def test_changed_image_makes_the_cache_stale(tiny_data, cfg, capsys):
    paths = _paths(tiny_data)
    cache.load_or_build(paths, cfg, _root(cfg))
    with open(paths[3], "rb") as f:
        other = f.read()
    with open(paths[0], "wb") as f:  # image 0 now shows another photo
        f.write(other)
    arr = cache.load_or_build(paths, cfg, _root(cfg))
    assert "stale" in capsys.readouterr().out
    np.testing.assert_array_equal(arr[0], arr[3])


def test_a_photo_rewritten_with_the_same_size_and_time_is_not_served_stale(tiny_data, cfg, capsys):
    import os

    from PIL import Image

    paths = _paths(tiny_data)
    before = cache.load_or_build(paths, cfg, _root(cfg))[0].copy()
    st = os.stat(paths[0])
    data = bytearray(open(paths[0], "rb").read())
    Image.fromarray(255 - np.asarray(Image.open(paths[0]).convert("RGB"))).save(paths[0])  # other pixels ...
    new = open(paths[0], "rb").read()
    with open(paths[0], "r+b") as f:  # ... in a file of exactly the old size and modification time
        f.write(new[:len(data)].ljust(len(data), b"\0"))
        f.truncate(len(data))
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(paths[0]).st_size == st.st_size and os.stat(paths[0]).st_mtime_ns == st.st_mtime_ns
    after = cache.load_or_build(paths, cfg, _root(cfg))[0]
    assert "stale" in capsys.readouterr().out and not np.array_equal(before, after)


def test_other_settings_get_another_cache(tiny_data, cfg, tmp_path):
    paths = _paths(tiny_data)
    a = cache.load_or_build(paths, cfg, _root(cfg))
    b = cache.load_or_build(paths, load_config("seed", ["img_size=16,12"]), _root(cfg))
    assert a.shape[1:3] == (32, 24) and b.shape[1:3] == (16, 12)
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2


def test_interrupted_build_leaves_no_usable_cache(tiny_data, cfg, monkeypatch):
    paths = _paths(tiny_data)
    from src.data import transforms
    real_read = transforms.read_image

    def dies(p):
        if str(p) == str(paths[5]):
            raise KeyboardInterrupt
        return real_read(p)

    monkeypatch.setattr(transforms, "read_image", dies)
    with pytest.raises(KeyboardInterrupt):
        cache.load_or_build(paths, cfg, _root(cfg))
    assert not list(_root(cfg).glob("*[0-9a-f].npy"))  # only a .part file, if anything
    monkeypatch.setattr(transforms, "read_image", real_read)
    assert cache.load_or_build(paths, cfg, _root(cfg)).shape[0] == 10


def test_two_builders_of_one_cache_at_once_both_finish_and_a_killed_ones_part_is_cleared(tiny_data, cfg):
    """tune's workers build the same cache together: each writes its own half-built file and moves it into place
    (one shared name let the second's rename find the first's file gone); a half-built file older than an hour
    is a killed process's and goes."""
    paths, built, errors = _paths(tiny_data), [], []
    slow = threading.Barrier(2)

    def build():
        try:
            slow.wait()
            built.append(np.asarray(cache.load_or_build(paths, cfg, _root(cfg))).copy())
        except Exception as e:  # what the test reports
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(built) == 2 and np.array_equal(built[0], built[1])
    array = next(p for p in _root(cfg).glob("*.npy") if ".part" not in p.name)
    stale, fresh = array.with_name(array.name + ".dead.part.npy"), array.with_name(array.name + ".busy.part.npy")
    for part in (stale, fresh):
        part.write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    cache.clear_stale_parts(array)
    assert not stale.exists() and fresh.exists()


AUGMENT = load_config("seed", ["augment=[HorizontalFlip: {p: 0.5}, Affine: {translate_px: [-2, 2], p: 0.7}, "
                               "RandomBrightnessContrast: {p: 0.5}, CoarseDropout: {p: 0.5}]"]).augment


@pytest.mark.parametrize("workers", [0, 1])  # with workers a DataLoader iterates its batch sampler twice
def test_training_photos_from_the_cache_equal_the_decoded_ones_in_every_epoch(tiny_data, cfg, workers):
    """The same uint8 photos, augmented alike, in the same order and memory layout, for the same seed: the two
    sources are interchangeable, so cache=true and cache=false train alike (and without augmentation the
    loader over the cache gives the cache's own gather)."""
    paths = _paths(tiny_data, 10)
    labels = np.arange(10) % 3
    index = np.array([0, 2, 3, 5, 6, 7, 8, 9, 1, 4])[:8]  # a fold's rows: not all, not in a simple run
    array = cache.load_or_build(paths, cfg, _root(cfg))
    augment = PhotoAugment(AUGMENT)
    plain = LoaderBatches(DecodedPhotos([paths[i] for i in index], Geometry(cfg)), labels[index], BatchPlan(3, True),
                          workers, augment)
    cached = LoaderBatches(CachedPhotos(array, index), labels[index], BatchPlan(3, True), workers, augment)
    bare = LoaderBatches(CachedPhotos(array, index), labels[index], BatchPlan(3, True), workers)
    gather = CachedBatches(array, index, labels[index], BatchPlan(3, True))
    for epoch in range(2):
        for source in (plain, cached, bare, gather):
            source.seed(epoch)
        pairs = list(zip(plain, cached, bare, gather))
        assert len(pairs) == 3
        for (xa, ya), (xb, yb), (xc, yc), (xd, yd) in pairs:
            assert xa.dtype == torch.uint8 and xa.stride() == xb.stride() == xd.stride()
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert torch.equal(xc, xd) and torch.equal(yc, yd) and torch.equal(ya, yd)
            assert not torch.equal(xa, xd)  # the augmentation did something


def test_photo_augment_is_a_function_of_the_draw_and_its_transforms_draw_apart():
    """One seed per draw (epoch seed, slot): the same draw gives the same photo; the transforms share one
    generator, so two flips of p=0.5 come together only half the time (albumentations' set_random_seed would
    give both the same seed: always together)."""
    photo = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    flips = PhotoAugment(load_config("seed", ["augment=[HorizontalFlip: {p: 0.5}, VerticalFlip: {p: 0.5}]"]).augment)
    seen = set()
    for slot in range(64):
        out = flips(photo, (7, slot))
        assert np.array_equal(out, flips(photo, (7, slot)))
        h, v = np.array_equal(out, photo[:, ::-1]) or np.array_equal(out, photo[::-1, ::-1]), \
            np.array_equal(out, photo[::-1]) or np.array_equal(out, photo[::-1, ::-1])
        seen.add((h, v))
    assert seen == {(False, False), (True, False), (False, True), (True, True)}
    assert not all(np.array_equal(flips(photo, (8, s)), flips(photo, (7, s))) for s in range(16))  # epochs differ


def test_prefetched_batches_are_the_same_batches_in_the_same_order():
    array = np.random.default_rng(0).integers(0, 255, (50, 4, 3, 3), dtype=np.uint8)
    labels = np.arange(50) % 18
    runs = []
    for prefetch in (False, True):
        b = CachedBatches(array, np.arange(50), labels, BatchPlan(8, True), prefetch=prefetch)
        epochs = []
        for epoch in range(2):
            b.seed(epoch)
            epochs.append([(x.clone(), y.clone()) for x, y in b])
        runs.append(epochs)
    for plain, ahead in zip(*runs):
        assert len(plain) == len(ahead) == 7
        for (x0, y0), (x1, y1) in zip(plain, ahead):
            assert torch.equal(x0, x1) and torch.equal(y0, y1)


def test_prefetch_stops_with_its_consumer_and_passes_errors_on():
    from src.data.batches import prefetched

    made = []

    def endless():
        i = 0
        while True:
            made.append(i)
            yield i
            i += 1

    it = prefetched(endless(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # a consumer that stops early (max_batches) must not leave the thread behind
    deadline = time.time() + 5
    while any(t.name == "prefetch" for t in threading.enumerate()) and time.time() < deadline:
        time.sleep(0.02)
    assert not any(t.name == "prefetch" for t in threading.enumerate())
    assert len(made) <= 3 + 2 + 1  # never more than `depth` ahead

    def broken():
        yield 1
        raise OSError("disk went away")

    it = prefetched(broken())
    assert next(it) == 1
    with pytest.raises(OSError, match="disk went away"):
        next(it)
