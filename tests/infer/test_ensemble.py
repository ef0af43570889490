import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from src.core import classes
from src.core.config import load_config
from src.core.files import atomic_save
from src.core.run_dir import RunDir
from src.data.batches import DecodedPhotos
from src.data.transforms import Geometry, normaliser
from src.infer.ensemble import Inference, PhotoReading, predict_photos, predict_probs
from src.infer.submission import write_submission
from src.model.backbones import build_model


class LeftRight(torch.nn.Module):
    """Logits depend on which side of the image is bright, so a flip changes them."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))
        right = x[..., x.shape[-1] // 2:].mean(dim=(1, 2, 3))
        out = torch.zeros(x.shape[0], classes.N_CLASSES)
        out[:, 0] = 3 * left
        out[:, 1] = 3 * right
        return out


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def test_flip_tta_equals_hand_computation():
    x = torch.zeros(2, 3, 4, 4)
    x[0, :, :, :2] = 1.0  # image 0 bright on the left
    loader = DataLoader(TensorDataset(x, torch.zeros(2)), batch_size=2)
    probs = predict_probs(LeftRight(), loader, Inference(torch.device("cpu"), tta="flip"))
    z = np.zeros(18)
    z_orig, z_flip = z.copy(), z.copy()
    z_orig[0] = 3.0   # left mean 1, right mean 0
    z_flip[1] = 3.0
    hand = (_softmax(z_orig) + _softmax(z_flip)) / 2
    np.testing.assert_allclose(probs[0], hand, atol=1e-6)
    np.testing.assert_allclose(probs[1], _softmax(np.zeros(18)), atol=1e-6)
    plain = predict_probs(LeftRight(), loader, Inference(torch.device("cpu"), tta="none"))
    np.testing.assert_allclose(plain[0], _softmax(z_orig), atol=1e-6)


@pytest.mark.parametrize("cache", ["false", "true"])
def test_fold_ensemble_equals_hand_average(tiny_data, tmp_path, cache):
    cfg = load_config("seed", ["pretrained=false", "model=test_efficientnet", "img_size=32,24", "num_workers=0", "batch_size=5",
                               f"cache={cache}", f"cache_dir={tmp_path / 'cache'}"])
    paths = pd.read_csv(tiny_data / "eval" / "info.csv")["ImageID"].map(
        lambda i: str(tiny_data / "eval" / "images" / i)).tolist()[:7]
    ckpts, hand = [], []
    for k in range(2):
        torch.manual_seed(k)
        model, mean, std = build_model(cfg)
        for p in model.parameters():  # make the two folds clearly different
            p.data.add_(torch.randn_like(p) * 0.5)
        ck = tmp_path / f"fold{k}_best.pt"
        atomic_save({"model": model.state_dict(), "config": cfg.saved(), "mean": mean, "std": std}, ck)
        ckpts.append(ck)
        ds, norm = DecodedPhotos(paths, Geometry(cfg)), normaliser(mean, std)
        x = torch.stack([torch.from_numpy(norm(image=ds[i])["image"].transpose(2, 0, 1))
                         for i in range(len(ds))])
        model.eval()
        with torch.no_grad():
            views = [torch.softmax(model(v), 1) for v in (x, torch.flip(x, dims=[3]))]
        hand.append(((views[0] + views[1]) / 2).numpy())
    got = predict_photos(ckpts, paths, PhotoReading(cfg, torch.device("cpu"), tmp_path / "cache"))
    assert not np.allclose(hand[0], hand[1], atol=1e-3)
    np.testing.assert_allclose(got, (hand[0] + hand[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)


def test_submission_order_and_eval_metrics(tmp_path):
    table = pd.DataFrame({"ImageID": ["c.jpg", "a.jpg", "b.jpg"], "true": [5, 0, 17]})
    probs = np.full((3, 18), 0.01)
    probs[0, 5] = probs[1, 0] = probs[2, 3] = 0.9
    m = write_submission(RunDir(tmp_path), table, probs)
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert sub["ImageID"].tolist() == ["c.jpg", "a.jpg", "b.jpg"]
    assert sub["ans"].tolist() == [5, 0, 3]
    assert abs(m["acc"] - 2 / 3) < 1e-9
    assert pd.read_csv(tmp_path / "eval_probs.csv").shape == (3, 19)
