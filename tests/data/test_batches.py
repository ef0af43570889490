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
