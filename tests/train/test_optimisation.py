"""The optimiser and schedule of a config, in timm's words, and the one step that checks them before any work."""
import math

import pytest
import torch

from src.core.config import load_config
from src.model.backbones import build_model
from src.train.optimisation import lr_schedule, optimiser

TINY_MODEL = ["model=test_efficientnet", "pretrained=false", "lr=1.0", "epochs=4"]


def test_the_default_optimiser_is_torchs_adam_step_for_step_and_others_come_from_timm():
    """optimizer=adam (every run before the key) makes the same updates as torch.optim.Adam on all
    parameters; the others are timm's (sgd: momentum 0.9, Nesterov); weight decay skips biases and norms."""
    cfg = load_config("seed", ["model=test_efficientnet", "pretrained=false", "lr=1e-3"])
    torch.manual_seed(0)
    ours, theirs = build_model(cfg)[0], build_model(cfg)[0]
    theirs.load_state_dict(ours.state_dict())
    x, y = torch.randn(4, 3, 32, 24), torch.randint(0, 18, (4,))
    for model, opt in ((ours, optimiser(cfg, ours, None)[0]), (theirs, torch.optim.Adam(theirs.parameters(), lr=1e-3))):
        for _ in range(3):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    sgd = optimiser(cfg.replace(optimizer="sgd", weight_decay=0.01), ours, None)[0]
    assert type(sgd) is torch.optim.SGD and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert sorted(g["weight_decay"] for g in sgd.param_groups) == [0.0, 0.01]  # biases and norms: none


def test_optimizer_args_and_scheduler_args_reach_the_optimiser_and_the_schedule():
    """The libraries' own arguments pass through as they are: sgd's momentum and Nesterov, adamw's betas; a
    cosine with k_decay=2 follows lr (1 + cos(pi e^2 / E^2)) / 2 (timm's k-decay)."""
    cfg = load_config("seed", ["model=test_efficientnet", "pretrained=false", "optimizer=sgd",
                               "optimizer_args={momentum: 0.8, nesterov: false}"])
    sgd = optimiser(cfg, build_model(cfg)[0], None)[0]
    assert (sgd.defaults["momentum"], sgd.defaults["nesterov"]) == (0.8, False)
    adamw = optimiser(cfg.replace(optimizer="adamw", optimizer_args="{betas: [0.8, 0.9]}"), build_model(cfg)[0], None)[0]
    assert tuple(adamw.defaults["betas"]) == (0.8, 0.9)
    k2 = load_config("seed", [*TINY_MODEL, "scheduler=cosine", "sched_step=epoch", "scheduler_args={k_decay: 2}"])
    opt = optimiser(k2, build_model(k2)[0], None)[0]
    schedule, got = lr_schedule(k2, opt, 1), []
    for epoch in range(4):
        schedule.step(epoch)
        got.append(opt.param_groups[0]["lr"])
    assert got == pytest.approx([0.5 * (1 + math.cos(math.pi * e**2 / 16)) for e in range(4)])


def test_an_optimiser_this_machine_cannot_run_is_refused_before_any_folder(tiny_data, tmp_path, capsys, monkeypatch):
    import importlib.util

    from src.train import optimisation
    from tests.helpers import refused, train_fast

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in ("apex", "opt_einsum") else real(n, *a))
    for name, words in {"fusedadam": "fusedadam is apex.optimizers.FusedAdam, which needs NVIDIA apex",
                        "kron": "kron needs opt_einsum (pip install opt_einsum)"}.items():
        refused(train_fast(tiny_data, tmp_path / "out", f"optimizer={name}"), capsys, words)

    class CudaOnly(torch.optim.SGD):  # what an optimiser with a CUDA kernel does on a CPU
        def step(self, closure=None):
            raise AssertionError("CUDA device required")

    monkeypatch.setattr(optimisation, "create_optimizer_v2", lambda model, *a, **k: CudaOnly(model.parameters(), lr=0.1))
    refused(train_fast(tiny_data, tmp_path / "out"), capsys,
            "optimizer=adam cannot train on cpu here: AssertionError: CUDA device required")
    assert not (tmp_path / "out").exists()
