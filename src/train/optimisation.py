"""The optimisation of a fold, in timm's words: the optimiser of `optimizer=` (timm's create_optimizer_v2, its own
arguments from `optimizer_args=`), the loss scaler mixed precision needs, the schedule of `scheduler=`
(create_scheduler_v2, `scheduler_args=`), and the one step on a tiny model that checks the optimiser can run here
before any work."""
from __future__ import annotations

import warnings

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

from ..core.errors import ConfigError


def optimiser(cfg, model, amp: torch.dtype | None):
    """timm's optimiser of the config's name (adam: torch's Adam), and the loss
    scaler AMP needs; optimizer_args pass to the optimiser as they are (timm's opt-kwargs)."""
    opt = create_optimizer_v2(model, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                              layer_decay=cfg.layer_decay or None, **cfg.optimizer_args)
    # bf16 needs no loss scaling; fp16 does (its small gradients would underflow)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    return opt, scaler


# a second-order step's graph of the gradients holds a cycle until the next zero_grad(set_to_none=True), which every
# step does first: torch's warning about it would be said once per run for nothing
warnings.filterwarnings("ignore", message=r"Using backward\(\) with create_graph=True", category=UserWarning)


def check_optimiser(cfg, device: torch.device, processes: int = 1) -> None:
    """One step of the config's optimiser on a tiny model on the run's device, before any work: what it needs
    that this machine lacks (CUDA, a kernel, a second-order backward) is refused now, not in the first batch."""
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the run's draws untouched
            model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 3)).to(device)
            opt, _ = optimiser(cfg, model, None)
            second_order = getattr(opt, "is_second_order", False)
            model(torch.randn(2, 8, device=device)).square().mean().backward(create_graph=second_order)
            opt.step()
    except Exception as e:  # whatever the optimiser needs that is not here
        raise ConfigError(f"optimizer={cfg.optimizer} cannot train on {device} here: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    if second_order and processes > 1:
        raise ConfigError(f"optimizer={cfg.optimizer} needs a second-order backward (create_graph), which "
                          f"DistributedDataParallel does not support: train it in one process")


def lr_schedule(cfg, opt: torch.optim.Optimizer, updates_per_epoch: int):
    """timm's schedule of the config's name over the run's epochs, moved per optimiser step (sched_step=update)
    or per epoch (sched_step=epoch); `none` is timm's constant schedule, so warm-up and layer_decay's shares
    apply to it too. A pure function of the step count: a resumed run replays it."""
    schedule, _ = create_scheduler_v2(
        opt, "constant" if cfg.scheduler == "none" else cfg.scheduler, num_epochs=cfg.epochs,
        decay_epochs=cfg.decay_epochs, decay_rate=cfg.decay_rate, min_lr=cfg.min_lr, warmup_lr=cfg.warmup_lr,
        warmup_epochs=cfg.warmup_epochs, step_on_epochs=cfg.sched_step == "epoch", updates_per_epoch=updates_per_epoch,
        **cfg.scheduler_args)
    return schedule
