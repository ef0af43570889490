import shutil

import pytest

from src.core.run_dir import RunDir
from src.data.demo import generate
from src.model import weights
from tests.helpers import train_fast

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


@pytest.fixture(scope="session")
def tiny_run(tiny_data_master, tmp_path_factory) -> RunDir:
    """One finished tiny run (seed recipe, FAST: 2 folds) on tiny_data_master, trained once for the whole
    session and only read; a test that changes a run works on `copy_run(tiny_run, ...)`. Continuing a
    copy with `train_fast(tiny_data_master, out, name=...)` is the same command: it only finishes."""
    out = tmp_path_factory.mktemp("tiny_run")
    assert train_fast(tiny_data_master, out, name="tiny") == 0
    return RunDir(out / "tiny")


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """No test reaches the network: the hub counts as unreachable (tests that need it say otherwise)."""
    monkeypatch.setattr(weights, "hub_reachable", lambda timeout=5.0: False)


@pytest.fixture(autouse=True)
def caller_is_the_working_folder(monkeypatch):
    """run.sh exports the folder the user stood in; tests stand where they chdir to."""
    monkeypatch.delenv("MASK_CALLER_DIR", raising=False)
