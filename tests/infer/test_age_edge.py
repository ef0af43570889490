"""age_head=ordinal: P(age >= t) from the exact ages, band probabilities from it, the >=60 edge fitted
on the OOF; the pipeline, predict and the ONNX export agree."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from src.core import classes
from src.core.config import load_config
from src.core.run_dir import RunDir
from src.infer import predict
from src.infer.age_edge import EDGES, decide_edge, edge_f1, fit_edge, oof_probs_as_eval, probs_at_edge
from src.model.backbones import OrdinalAge, band_log_probs, build_model
from src.model.losses import OrdinalAgeLoss, build_loss, pack_targets
from tests.helpers import FAST, stage

TINY_MODEL = ["model=test_efficientnet", "pretrained=false"]


@pytest.mark.parametrize("head", ["single", "multi"])
def test_band_probabilities_sum_to_one_and_follow_the_edge(head):
    torch.manual_seed(0)
    model, _, _ = build_model(load_config("seed", [*TINY_MODEL, "age_head=ordinal", f"head={head}"]))
    assert isinstance(model, OrdinalAge) and model.edge == 55  # the seed recipe's training edge
    model.eval()
    with torch.no_grad():
        model.first.data += 3 * torch.randn(())  # any cutpoints: the probabilities stay proper
        model.steps.data += torch.randn(model.steps.shape)
        x = torch.randn(5, 3, 32, 24)
        probs = torch.softmax(model(x), 1)
        np.testing.assert_allclose(probs.sum(1).numpy(), 1, atol=1e-5)
        assert (probs >= 0).all()
        mask_gender, ordinal = model.parts(x)
        curve = torch.sigmoid(ordinal)
        assert (curve[:, 1:] <= curve[:, :-1] + 1e-7).all()  # P(age >= t) never rises with t
        old = probs.view(-1, 3, 2, 3).sum((1, 2))[:, 2]
        np.testing.assert_allclose(old.numpy(), curve[:, classes.AGE_THRESHOLDS.index(55)].numpy(), atol=1e-5)
        model.edge = 60
        old60 = torch.softmax(model(x), 1).view(-1, 3, 2, 3).sum((1, 2))[:, 2]
        np.testing.assert_allclose(old60.numpy(), curve[:, -1].numpy(), atol=1e-5)
        assert (old60 <= old + 1e-7).all()  # a later edge: fewer old


def test_band_log_probs_are_the_differences_of_the_curve():
    ordinal = torch.tensor([[4.0 - 0.2 * i for i in range(len(classes.AGE_THRESHOLDS))]])
    got = band_log_probs(ordinal, 58).exp()[0]
    s = torch.sigmoid(ordinal[0])
    at = classes.AGE_THRESHOLDS.index
    want = [1 - s[at(30)], s[at(30)] - s[at(58)], s[at(58)]]
    np.testing.assert_allclose(got.numpy(), torch.stack(want).numpy(), rtol=1e-5)


def test_ordinal_loss_is_the_mask_gender_loss_plus_the_age_cross_entropies():
    cfg = load_config("seed", [*TINY_MODEL, "age_head=ordinal", "loss=ce"])
    labels = np.array([classes.encode(0, 1, 1), classes.encode(2, 0, 2)])
    ages = np.array([41, 73])  # 73: an outside person, counted as 60
    target = torch.tensor(pack_targets(labels, ages))
    loss = build_loss(cfg, labels)
    assert isinstance(loss, OrdinalAgeLoss)
    torch.manual_seed(1)
    mg = torch.log_softmax(torch.randn(2, 6), 1)
    ordinal = torch.randn(2, len(classes.AGE_THRESHOLDS))
    joint = (mg[:, :, None] + band_log_probs(ordinal, 55)[:, None, :]).reshape(2, 18)
    got = loss(torch.cat([joint, ordinal], 1), target)
    mg_part = torch.nn.functional.cross_entropy(mg, torch.tensor(labels // 3))
    older = torch.tensor([[41 >= t for t in classes.AGE_THRESHOLDS], [60 >= t for t in classes.AGE_THRESHOLDS]]).float()
    age_part = torch.nn.functional.binary_cross_entropy_with_logits(ordinal, older, reduction="sum") / 2 / 10
    np.testing.assert_allclose(got.item(), (mg_part + age_part).item(), rtol=1e-5)


def synthetic_oof(n_persons=300, seed=0):
    """OOF-like probabilities whose age curves are noisy around each person's age."""
    rng = np.random.default_rng(seed)
    ages = np.minimum(rng.integers(18, 76, n_persons), 60)  # capped at 60, a quarter of them old
    rows, probs, curves = [], [], []
    for p, age in enumerate(ages):
        g = rng.integers(2)
        for mask in (0, 0, 0, 0, 0, 1, 2):
            guess = age + rng.normal(-5, 3)  # biased low: the fit should move the edge below 60
            curve = 1 / (1 + np.exp(-(guess - np.array(classes.AGE_THRESHOLDS)) / 3))
            mg = np.full(6, 0.02)
            mg[mask * 2 + g] = 0.9
            at_30 = curve[classes.AGE_THRESHOLDS.index(30)]
            band = [1 - at_30, at_30 - curve[-1], curve[-1]]
            probs.append((mg[:, None] * np.array(band)[None, :]).ravel())
            curves.append(curve)
            rows.append(dict(fold=0, person=f"p{p}", label=int(classes.encode(mask, g, classes.age_band(age)))))
    oof = pd.DataFrame(rows)
    oof[classes.PROB_COLS] = np.array(probs)
    oof[classes.CURVE_COLS] = np.array(curves)
    return oof


def test_the_fitted_edge_never_lowers_the_f1_it_was_fitted_on():
    for seed in range(5):
        oof = synthetic_oof(seed=seed)
        probs, curves = oof[classes.PROB_COLS].to_numpy(), oof[classes.CURVE_COLS].to_numpy()
        y = oof["label"].to_numpy()
        for start in (55, 60):
            edge, f1 = fit_edge(probs, curves, y, start)
            assert f1 >= edge_f1(probs, curves, y, start) - 1e-12
            assert f1 == max(edge_f1(probs, curves, y, e) for e in (*EDGES, start))
            assert f1 == pytest.approx(edge_f1(probs, curves, y, edge))
        assert edge < 60  # the curves run low: an earlier edge pays
        edge, report = decide_edge(oof, 60)
        assert report["nested_by"] == "5 groups of persons" and report["oof_f1_nested"] is not None
        assert report["oof_f1_nested"] <= report["oof_f1_fitted"] + 1e-12


def test_probabilities_at_the_training_edge_are_the_ones_the_model_gives():
    oof = synthetic_oof(50)
    probs, curves = oof[classes.PROB_COLS].to_numpy(), oof[classes.CURVE_COLS].to_numpy()
    np.testing.assert_allclose(probs_at_edge(probs, curves, 60), probs, atol=1e-9)
    np.testing.assert_allclose(probs_at_edge(probs, curves, 52).sum(1), 1, atol=1e-9)


@pytest.fixture(scope="module", params=["single", "multi"])
def ordinal_run(request, tiny_data_master, tmp_path_factory):
    out = tmp_path_factory.mktemp("ordinal")
    assert stage("train", ["--data", str(tiny_data_master), "--config", "seed", "--name", "o", "--output", str(out),
                          *FAST, "age_head=ordinal", f"head={request.param}"]) == 0
    return RunDir(out / "o")


def test_an_ordinal_run_fits_its_edge_and_predict_and_onnx_agree(ordinal_run, tiny_data_master):
    edge = json.loads(ordinal_run.age_edge.read_text())
    assert edge["edge"] == ordinal_run.fitted_age_edge() and edge["oof_f1_fitted"] >= edge["oof_f1_training_edge"]
    oof = ordinal_run.load_oof()
    assert set(classes.CURVE_COLS) <= set(oof.columns) and len(oof) == 84
    # what the decision, grouping and a blend fit on: the OOF at the eval's edge
    at_edge = probs_at_edge(oof[classes.PROB_COLS].to_numpy(), oof[classes.CURVE_COLS].to_numpy(), edge["edge"])
    np.testing.assert_allclose(oof_probs_as_eval(ordinal_run, oof), at_edge)
    assert "## The >=60 edge" in ordinal_run.report.read_text()
    info = pd.read_csv(tiny_data_master / "eval" / "info.csv")
    photos = [tiny_data_master / "eval" / "images" / i for i in info["ImageID"]]
    saved = pd.read_csv(ordinal_run.eval_probs)[classes.PROB_COLS].to_numpy(float)
    torch_probs = predict.predict(ordinal_run, photos, "torch")[classes.PROB_COLS].to_numpy(float)
    np.testing.assert_allclose(torch_probs, saved, atol=2e-5)
    predict.export_onnx(ordinal_run)
    onnx_probs = predict.predict(ordinal_run, photos, "onnx")[classes.PROB_COLS].to_numpy(float)
    np.testing.assert_allclose(onnx_probs, saved, atol=1e-4)
    # the edge matters: the same models at the training edge give other eval probabilities
    if edge["edge"] != edge["training_edge"]:
        ordinal_run.age_edge.rename(ordinal_run.path / "moved.json")
        try:
            other = predict.predict(ordinal_run, photos, "torch")[classes.PROB_COLS].to_numpy(float)
        finally:
            (ordinal_run.path / "moved.json").rename(ordinal_run.age_edge)
        assert np.abs(other - saved).max() > 1e-4
