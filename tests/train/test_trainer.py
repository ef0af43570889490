import math

import numpy as np
import pandas as pd
import pytest
import torch

from src.core import classes
from src.core.config import load_config
from src.data.batches import BatchPlan, CachedBatches, balanced_weights
from src.data.transforms import HalfCutMix
from src.model.losses import unpack
from src.train.trainer import split_masks, training_labels, training_targets


def test_half_cutmix_joins_left_and_right_halves_and_mixes_labels():
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 3, 2, 6).clone()
    y = torch.tensor([10, 11, 12, 13])
    mix = HalfCutMix(1.0)
    mix.seed(0)
    out, y_left, y_right, lam = mix(x, y)
    assert lam == 0.5 and torch.equal(y_left, y)
    for i in range(4):
        left, right = out[i, 0, 0, 0].item(), out[i, 0, 0, 5].item()
        assert left == i  # the left half is the image's own
        assert y_right[i] == 10 + int(right)  # the right label belongs to the right half's face
    assert (out[:, :, :, :3] == x[:, :, :, :3]).all()
    assert HalfCutMix(0.0)(x, y)[2] is None


def test_cutmix_loss_is_the_area_weighted_mean():
    loss_fn = torch.nn.CrossEntropyLoss()
    logits = torch.randn(4, 18)
    ya, yb = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    mixed = 0.5 * loss_fn(logits, ya) + 0.5 * loss_fn(logits, yb)
    soft = -(torch.log_softmax(logits, 1) * (0.5 * torch.nn.functional.one_hot(ya, 18)
                                              + 0.5 * torch.nn.functional.one_hot(yb, 18))).sum(1).mean()
    torch.testing.assert_close(mixed, soft)  # the same as training on the half-half soft label


def test_balanced_sampler_draws_classes_equally():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    b = CachedBatches(np.zeros((100, 1, 1, 3), np.uint8), np.arange(100), labels,
                      BatchPlan(50, True, weights=balanced_weights(labels)))
    b.seed(0)
    drawn = np.concatenate([y.numpy() for _ in range(20) for _, y in b])
    share = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(share, 1 / 3, atol=0.05)


def test_drop_ages_thins_training_but_not_validation():
    t = pd.DataFrame({"age": [20, 56, 57, 58, 59, 60, 57, 40], "fold": [0, 0, 0, 0, 1, 1, 1, 1]})
    cfg = load_config("seed", ["drop_ages=57-59"])
    train, val = split_masks(cfg, t, fold=1)
    assert t[train]["age"].tolist() == [20, 56]
    assert t[val]["age"].tolist() == [59, 60, 57, 40]


def test_training_labels_use_the_training_boundary():
    t = pd.DataFrame({"mask": [0, 0], "gender": [1, 1], "age": [56, 60]})
    assert training_labels(t, 55).tolist() == [int(classes.encode(0, 1, 2))] * 2
    assert training_labels(t, 60).tolist() == [int(classes.encode(0, 1, 1)), int(classes.encode(0, 1, 2))]


def test_a_band_head_carries_age_ranges_only_when_one_spans_two_bands():
    """Outside rows with an age range: a band head's batches carry the range (packed) when some range spans the
    training edge or 30, so the loss can leave that row's age out; else plain classes, as before."""
    table = pd.DataFrame({"mask": [0, 2, 1], "gender": [1, 0, 0], "age": [25, 50, 61],
                          "age_lo": [np.nan, 50, 60], "age_hi": [np.nan, 59, 69]})
    cfg = load_config("seed", ["age_boundary=55"])
    labels, targets = training_targets(cfg, table)
    assert [t.tolist() for t in unpack(torch.tensor(targets))] == [labels.tolist(), [25, 50, 60], [25, 59, 60]]
    plain = training_targets(cfg.replace(age_boundary=60), table)  # 50-59 lies inside 30-59
    assert plain[1] is plain[0] and plain[0].tolist() == classes.encode([0, 2, 1], [1, 0, 0], [0, 1, 2]).tolist()


def rates(cfg, updates_per_epoch: int) -> list[list[float]]:
    """The rate of every optimiser step of every epoch, as FoldTrainer sets them (no training)."""
    from src.train.trainer import FoldTrainer
    trainer = FoldTrainer(cfg, torch.device("cpu"), np.arange(18))
    trainer.plan(updates_per_epoch)
    out = []
    for epoch in range(cfg.epochs):
        trainer.start_epoch(epoch, 0)
        steps = []
        for _ in range(updates_per_epoch):
            if cfg.sched_step == "update":
                trainer.schedule.step_update(trainer.update)
            trainer.update += 1
            steps.append(trainer.lr())
        out.append(steps)
    return out


TINY_MODEL = ["model=test_efficientnet", "pretrained=false", "lr=1.0", "epochs=4"]


def test_cosine_per_epoch_is_the_schedule_every_run_before_timms_had():
    """sched_step=epoch (what a run saved before the key did): lr * (1 + cos(pi e / E)) / 2, the same floats."""
    got = rates(load_config("seed", [*TINY_MODEL, "scheduler=cosine", "sched_step=epoch"]), 3)
    assert [steps[0] for steps in got] == [1.0 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]
    assert all(len(set(steps)) == 1 for steps in got)
    assert rates(load_config("seed", [*TINY_MODEL, "lr=0.3"]), 2)[3] == [0.3, 0.3]  # none: constant


def test_the_rate_moves_every_step_and_warms_up_inside_the_first_epoch():
    cosine = rates(load_config("seed", [*TINY_MODEL, "scheduler=cosine"]), 10)
    flat = [r for steps in cosine for r in steps]
    assert flat == pytest.approx([0.5 * (1 + math.cos(math.pi * u / 40)) for u in range(40)])
    warm = rates(load_config("seed", [*TINY_MODEL, "scheduler=cosine", "warmup_epochs=0.5", "warmup_lr=0.1"]), 10)[0]
    assert warm[:5] == pytest.approx([0.1 + 0.9 * u / 5 for u in range(5)])  # half an epoch: 5 of its 10 steps
    assert warm[5] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 40)))  # then the cosine, where it is by then
    step = rates(load_config("seed", [*TINY_MODEL, "scheduler=step", "decay_epochs=2", "decay_rate=0.5"]), 2)
    assert [steps[0] for steps in step] == [1.0, 1.0, 0.5, 0.5]


def test_each_step_sets_every_groups_rate_times_its_layer_decay_share():
    cfg = load_config("seed", [*TINY_MODEL, "layer_decay=0.5", "scheduler=cosine", "lr=1e-3"])
    from src.train.trainer import FoldTrainer
    trainer = FoldTrainer(cfg, torch.device("cpu"), np.arange(18))
    trainer.plan(10)
    trainer.schedule.step_update(25)
    whole = 1e-3 * 0.5 * (1 + math.cos(math.pi * 25 / 40))
    assert all(g["lr"] == pytest.approx(whole * g["lr_scale"]) for g in trainer.opt.param_groups)
    assert trainer.lr() == pytest.approx(whole) and min(g["lr_scale"] for g in trainer.opt.param_groups) < 0.1


def test_ema_averages_the_weights_after_every_step_and_is_what_validates_and_is_saved(tmp_path):
    """ema=d: after a step the average moves (1 - d) of the way to the trained weights; validation and best.pt
    use the average, last.pt holds both, and resuming restores both."""
    from src.core.run_dir import RunDir
    from src.train.trainer import FoldProgress, FoldTrainer
    cfg = load_config("seed", [*TINY_MODEL, "lr=1e-2", "ema=0.75", "ema_warmup=false"])
    trainer = FoldTrainer(cfg, torch.device("cpu"), np.arange(18))
    trainer.plan(2)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    torch.manual_seed(0)
    batch = (torch.randn(4, 3, 32, 24), torch.randint(0, 18, (4,)))
    trainer.start_epoch(0, 0)
    trainer.train_epoch([batch], None)
    after = trainer.model.state_dict()
    averaged = trainer.predicting.state_dict()
    name = "conv_stem.weight"
    assert not torch.equal(after[name], before[name])
    assert torch.allclose(averaged[name], 0.75 * before[name] + 0.25 * after[name], atol=1e-6)
    run = RunDir(tmp_path / "r")
    files = run.fold(0)
    run.path.mkdir()
    trainer.save(run, files, 0, FoldProgress(epoch=1), 0.5, improved=True)
    assert torch.equal(torch.load(files.best, weights_only=False)["model"][name], averaged[name])
    last = torch.load(files.last, weights_only=False)
    assert torch.equal(last["model"][name], averaged[name]) and torch.equal(last["trained"][name], after[name])
    again = FoldTrainer(cfg, torch.device("cpu"), np.arange(18))
    again.plan(2)
    again.resume(files.last)
    assert torch.equal(again.model.state_dict()[name], after[name])
    assert torch.equal(again.predicting.state_dict()[name], averaged[name])


def test_ema_warmup_copies_the_weights_first_then_ramps_the_decay_up_to_ema():
    """ema_warmup: update k averages with decay min(ema, 1 - k^(-2/3)): the first update copies the trained
    weights, the second keeps 1 - 2^(-2/3) of the average; the ramp never passes ema."""
    from src.train.trainer import FoldTrainer
    name = "conv_stem.weight"
    for ema, second in ((0.999, 1 - 2 ** (-2 / 3)), (0.2, 0.2)):
        cfg = load_config("seed", [*TINY_MODEL, "lr=1e-2", f"ema={ema}"])
        trainer = FoldTrainer(cfg, torch.device("cpu"), np.arange(18))
        trainer.plan(2)
        torch.manual_seed(0)
        batches = [(torch.randn(4, 3, 32, 24), torch.randint(0, 18, (4,))) for _ in range(2)]
        trainer.start_epoch(0, 0)
        trainer.train_epoch(batches[:1], None)
        first = trainer.model.state_dict()[name].clone()
        assert torch.equal(trainer.predicting.state_dict()[name], first)
        trainer.train_epoch(batches[1:], None)
        after = trainer.model.state_dict()[name]
        assert not torch.equal(after, first)
        assert torch.allclose(trainer.predicting.state_dict()[name], second * first + (1 - second) * after, atol=1e-6)


def test_the_issue_27_recipe_keys_train_a_run_to_its_submission(tiny_data, tmp_path):
    from tests.helpers import FAST, stage
    assert stage("train", ["--data", str(tiny_data), "--config", "demo", "--name", "k", "--output", str(tmp_path),
                           *FAST, "folds=0", "optimizer=adamw", "scheduler=cosine", "warmup_epochs=0.5", "ema=0.99",
                           "drop_path=0.1"]) == 0
    assert (tmp_path / "k" / "submission.csv").exists()
    recipe = tmp_path / "mine.yaml"  # a recipe file with its own augment list, as a user writes one
    recipe.write_text("model: resnet18\nimg_size: 64,48\nepochs: 2\nbatch_size: 16\noptimizer: adamw\n"
                      "augment:\n  - HorizontalFlip: {p: 0.5}\n"
                      "  - Affine: {translate_percent: 0.03, rotate: [-10, 10], p: 0.5}\n"
                      "  - RandomBrightnessContrast: {p: 0.3}\n  - CoarseDropout: {num_holes_range: [1, 4], p: 0.3}\n")
    assert stage("train", ["--data", str(tiny_data), "--config", str(recipe), "--name", "a", "--output",
                           str(tmp_path), *FAST, "folds=0"]) == 0
    assert (tmp_path / "a" / "submission.csv").exists()
    assert "- Affine:" in (tmp_path / "a" / "config.yaml").read_text()
    recipe.write_text("augment:\n  - HorizontalFlp: {p: 0.5}\n")
    assert stage("train", ["--data", str(tiny_data), "--config", str(recipe), "--name", "b", "--output",
                           str(tmp_path)]) == 2
    assert not (tmp_path / "b").exists()  # refused before any work


@pytest.mark.parametrize("name", ["adahessian", "lookahead_adam"])
def test_a_second_order_or_lookahead_optimiser_trains_as_timms_train_script_does(tiny_data, tmp_path, name):
    """adahessian needs the gradients' graph (a RuntimeError mid-training before); lookahead_ is timm's prefix."""
    from src.core.run_dir import RunDir
    from tests.helpers import train_fast

    assert train_fast(tiny_data, tmp_path, "folds=0", f"optimizer={name}", name="o") == 0
    log = pd.read_csv(RunDir(tmp_path / "o").fold(0).log)
    assert np.isfinite(log["train_loss"]).all() and (tmp_path / "o" / "submission.csv").exists()
