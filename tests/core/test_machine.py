import pytest
import torch

from src.core.config import load_config
from src.core.errors import ConfigError
from src.core.machine import MAX_AUTO_WORKERS, loader_workers


def test_num_workers_is_a_number_or_auto_and_nothing_else():
    assert load_config("seed").num_workers == "auto"
    assert load_config("seed", ["num_workers=3"]).num_workers == 3
    for bad in ("num_workers=-1", "num_workers=many", "num_workers=2.5"):
        with pytest.raises(ConfigError, match="num_workers"):
            load_config("seed", [bad])


@pytest.mark.parametrize("cores, local_ranks, parallel, expected", [
    (16, 1, 0, 15),                  # one GPU on a 16-core machine: every core but the training process's
    (16, 4, 0, 3),                   # torchrun's four local ranks share the cores
    (16, 1, 2, 7),                   # two folds training side by side
    (128, 1, 0, MAX_AUTO_WORKERS),   # more than a GPU can use: capped
    (1, 1, 0, 1),                    # never none: the augment list runs in the workers
])
def test_auto_workers_on_a_gpu_share_the_cores_this_process_may_use(monkeypatch, cores, local_ranks, parallel,
                                                                     expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_ranks))
    cfg = load_config("seed", [f"parallel_folds={parallel}"])
    assert loader_workers(cfg, torch.device("cuda")) == expected


def test_auto_workers_on_the_cpu_are_one_and_a_number_is_taken_as_set(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert loader_workers(load_config("seed"), torch.device("cpu")) == 1
    assert loader_workers(load_config("seed", ["num_workers=0"]), torch.device("cuda")) == 0
    assert loader_workers(load_config("seed", ["num_workers=6"]), torch.device("cpu")) == 6
