import shutil

import pytest

from src.data.demo import generate
from src.model import weights

# tiny and fast: a few persons, small pictures
TINY = dict(n_train=12, n_eval=4, size=(48, 64))


@pytest.fixture(scope="session")
def tiny_data_master(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tiny") / "data", seed=1, **TINY)


@pytest.fixture
def tiny_data(tiny_data_master, tmp_path):
    """A private copy each test may damage."""
    dst = tmp_path / "data"
    shutil.copytree(tiny_data_master, dst)
    return dst


# config for runs that must finish in seconds
FAST = ["model=test_efficientnet", "pretrained=false", "img_size=32,24", "crop_frac=1.0", "epochs=1", "batch_size=16",
        "n_folds=2", "num_workers=0", "lr=1e-3", "threads=2"]


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """No test reaches the network: the hub counts as unreachable (tests that need it say otherwise)."""
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=5.0: False)


@pytest.fixture(autouse=True)
def caller_is_the_working_folder(monkeypatch):
    """run.sh exports the folder the user stood in; tests stand where they chdir to."""
    monkeypatch.delenv("MASK_CALLER_DIR", raising=False)
