"""Two CPU processes (gloo) under torchrun train one fold like one process does."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd

from src.core.paths import ROOT
from src.data.batches import batch_positions

# GroupNorm model: nothing couples samples inside a batch, so 2 ranks x 7 images must reproduce 1 process x 14
# images up to float summation order; each photo's augmentation is seeded by its draw's slot in the global order,
# so the ranks augment as the one process does
CFG = ["model=test_efficientnet_gn", "pretrained=false", "img_size=32,24", "crop_frac=1.0", "epochs=2", "batch_size=14",
       "n_folds=2", "folds=0", "num_workers=0", "lr=1e-3", "threads=1",
       "augment=[HorizontalFlip: {p: 0.5}, Affine: {rotate: [-10, 10], p: 0.5}]"]


def test_global_batches_are_the_same_for_any_number_of_ranks():
    order = np.random.default_rng(0).permutation(30)
    one = batch_positions(30, 8, order)
    two = [batch_positions(30, 8, order, r, 2) for r in range(2)]
    assert len(two[0]) == len(two[1]) == len(one)
    for k, batch in enumerate(one):
        joined = np.concatenate([two[0][k], two[1][k]])
        assert set(batch) <= set(joined) and len(joined) == 8  # the last batch is padded by wrapping


def test_two_gloo_processes_match_one(tiny_data, tmp_path):
    base = ["--data", str(tiny_data), "--config", "seed", "--output", str(tmp_path)]
    subprocess.run([sys.executable, "-m", "src.stages.train", *base, "--name", "single", *CFG],
                   cwd=ROOT, check=True, capture_output=True)
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                          "-m", "src.stages.train", *base, "--name", "ddp", *CFG],
                         cwd=ROOT, capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert not (tmp_path / "ddp-2").exists()  # one run folder, written by rank 0
    a = pd.read_csv(tmp_path / "single" / "fold0_oof.csv")
    b = pd.read_csv(tmp_path / "ddp" / "fold0_oof.csv")
    assert a["path"].tolist() == b["path"].tolist()
    cols = [f"p{i}" for i in range(18)]
    np.testing.assert_allclose(a[cols].to_numpy(), b[cols].to_numpy(), atol=2e-4)
    la = pd.read_csv(tmp_path / "single" / "fold0_log.csv")
    lb = pd.read_csv(tmp_path / "ddp" / "fold0_log.csv")
    np.testing.assert_allclose(la["train_loss"], lb["train_loss"], rtol=1e-4)
    ma = json.loads((tmp_path / "single" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert abs(ma["eval"]["f1"] - mb["eval"]["f1"]) < 0.02


def test_prediction_order_matches_what_each_rank_yields():
    from src.data.batches import BatchPlan, CachedBatches
    arr = np.arange(7, dtype=np.uint8).reshape(7, 1, 1, 1).repeat(3, axis=3)
    index = np.array([6, 2, 4, 0, 5, 1, 3])  # not sorted: batches get rearranged for file order
    for rank in range(2):
        b = CachedBatches(arr, index, np.arange(7), BatchPlan(3, False, rank=rank, world=2))
        yielded = np.concatenate([y.numpy() for _, y in b])
        assert yielded.tolist() == b.order().tolist()  # labels are positions here
        assert [int(x[0, 0, 0]) for xb, _ in b for x in xb] == index[b.order()].tolist()
