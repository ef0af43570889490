"""No training batch of one photo, from any batch source (src/data/batches.py)."""
import numpy as np
import pandas as pd

from src.core.config import load_config
from src.data.batches import BatchPlan, CachedBatches, DecodedPhotos, LoaderBatches, no_batch_of_one
from src.data.folds import attach_folds, make_folds
from src.data.tables import training_table
from tests.helpers import FAST, refused, train_fast


def test_a_last_batch_of_one_joins_the_batch_before_it_in_both_sources():
    labels = np.arange(9) % 3
    cached = CachedBatches(np.zeros((9, 2, 2, 3), np.uint8), np.arange(9), labels, BatchPlan(4, True))
    loader = LoaderBatches(DecodedPhotos([f"p{i}" for i in range(9)], None), labels, BatchPlan(4, True))
    for source in (cached, loader):
        source.seed(0)
        sizes = [len(b) for b in source.positions.batches()]
        assert sizes == [4, 5] and len(source) == 2
        assert sorted(np.concatenate(source.positions.batches())) == list(range(9))  # every photo once
    predicting = CachedBatches(np.zeros((9, 2, 2, 3), np.uint8), np.arange(9), labels, BatchPlan(4, False))
    assert [len(b) for b in predicting.positions.batches()] == [4, 4, 1]  # eval mode: BatchNorm's running stats
    assert [len(b) for b in no_batch_of_one([np.arange(1)], True)] == [1]  # nothing to join


def test_training_whose_last_batch_would_hold_one_photo_finishes_and_resumes(tiny_data, tmp_path, capsys):
    """FAST's 32x24 input ends test_efficientnet in a 1x1 feature map: a batch of one made BatchNorm raise."""
    cfg = load_config("seed", FAST)
    table = training_table(cfg, tiny_data)
    table = attach_folds(table, make_folds(table, cfg.n_folds, cfg.seed, cfg.split, cfg.age_boundary))
    n_train = int((table["fold"] != 0).sum())
    for cache in ("true", "false"):
        assert train_fast(tiny_data, tmp_path, f"batch_size={n_train - 1}", "folds=0", "epochs=2", f"cache={cache}",
                          name=f"one-{cache}") == 0, capsys.readouterr().err
        log = pd.read_csv(tmp_path / f"one-{cache}" / "fold0_log.csv")
        assert len(log) == 2


def test_batch_size_one_is_refused_before_any_folder(tiny_data, tmp_path, capsys):
    refused(train_fast(tiny_data, tmp_path, "batch_size=1", name="b1"), capsys, "batch_size=1")
    assert not (tmp_path / "b1").exists()


class _WhoRead:
    """Photos whose pixels say which process read them (the pid in three bytes)."""

    def __len__(self):
        return 12

    def __getitem__(self, i):
        import os
        pid = os.getpid()
        return np.full((2, 2, 3), [pid >> 16 & 255, pid >> 8 & 255, pid & 255], dtype=np.uint8)


def _readers(batches) -> set[int]:
    return {int(x[0, 0, 0, 0]) << 16 | int(x[0, 1, 0, 0]) << 8 | int(x[0, 2, 0, 0]) for x, _ in batches}


def test_loader_workers_persist_from_epoch_to_epoch_and_each_epoch_gets_its_own_batches():
    """Forking the workers again every epoch costs ~0.5 s with 15 of them: one set serves every epoch, each
    epoch's order still drawn by its seed (an epoch cut short leaves nothing behind for the next)."""
    import os
    batches = LoaderBatches(_WhoRead(), np.arange(12), BatchPlan(3, True), num_workers=2)
    batches.seed(1)
    first = _readers(batches)
    assert len(first) == 2 and os.getpid() not in first
    batches.seed(2)
    next(iter(batches))  # an epoch stopped after one batch, as max_batches does
    batches.seed(3)
    assert _readers(batches) == first
    ordered = LoaderBatches(np.arange(12)[:, None, None, None].repeat(3, 3).astype(np.uint8), np.arange(12),
                            BatchPlan(3, True), num_workers=2)
    alone = LoaderBatches(ordered.dataset.photos, np.arange(12), BatchPlan(3, True), num_workers=0)
    for seed in (4, 5):
        ordered.seed(seed)
        alone.seed(seed)
        assert [y.tolist() for _, y in ordered] == [y.tolist() for _, y in alone]
