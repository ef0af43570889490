"""A run killed mid-fold and started again with the same command ends with the same numbers."""
import json
import signal
import subprocess
import sys
import time

import torch

from src.core.paths import ROOT
from tests.helpers import FAST


def _cmd(data, out):
    return [sys.executable, "-m", "src.stages.train", "--data", str(data), "--config", "seed", "--name", "r",
            "--output", str(out), *[a for a in FAST if not a.startswith("epochs")], "epochs=2", "folds=0,1",
            "scheduler=cosine", "warmup_epochs=0.5", "ema=0.9"]  # a rate that moves every step, and an average
    # of the weights: both resumed where they were


def _last_epoch(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=False)["epoch"]
    except Exception:
        return 0


def test_killed_run_resumes_to_the_same_result(tiny_data, tmp_path):
    ref_out, out = tmp_path / "ref", tmp_path / "out"
    subprocess.run(_cmd(tiny_data, ref_out), cwd=ROOT, check=True, capture_output=True)

    proc = subprocess.Popen(_cmd(tiny_data, out), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "r" / "fold1_last.pt"
    deadline = time.time() + 120
    while _last_epoch(last) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # like an OOM kill: no clean-up code runs
    proc.wait()
    assert not (out / "r" / "metrics.json").exists(), "the run finished before it could be killed"
    assert (out / "r" / "fold0_result.json").exists() and not (out / "r" / "fold1_result.json").exists()

    again = subprocess.run(_cmd(tiny_data, out), cwd=ROOT, check=True, capture_output=True, text=True)
    assert "fold 0: already finished" in again.stdout
    assert "fold 1: resuming after epoch" in again.stdout
    assert not (out / "r-2").exists()  # continued in place, not a new run
    ref = json.loads((ref_out / "r" / "metrics.json").read_text())
    got = json.loads((out / "r" / "metrics.json").read_text())
    assert got["oof"] == ref["oof"] and got["eval"] == ref["eval"]
    assert (out / "r" / "submission.csv").read_text() == (ref_out / "r" / "submission.csv").read_text()
