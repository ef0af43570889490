"""gpucheck's own logic on the CPU, and the CUDA pieces in miniature (skipped, visibly, without a GPU)."""
import json

import pytest
import torch

from src.core.config import load_config
from src.core.machine import amp_dtype
from src.measure import gpucheck
from tests.helpers import FAST, stage


def test_refuses_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert stage("gpucheck", ["--out", str(tmp_path / "g")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err and not (tmp_path / "g").exists()


def test_unknown_check_is_refused(tmp_path, capsys):
    assert stage("gpucheck", ["--out", str(tmp_path / "g"), "--only", "bf16,warp"]) == 2
    assert "warp" in capsys.readouterr().err


def test_summary_names_the_gpu_the_peak_and_every_check(tmp_path):
    results = {"fp32": {"ok": True, "detail": "eval F1 0.700", "img_s": 900.0, "peak_gpu_gib": 1.5},
               "fp16": {"ok": False, "detail": "eval F1 0.2 vs fp32 0.7", "img_s": 1500.0, "peak_gpu_gib": 1.1},
               "onnx": {"ok": True, "detail": "max |diff| 1e-6"}}
    summary = gpucheck.write_summary(tmp_path, "NVIDIA H100", results)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved == summary and saved["gpu"] == "NVIDIA H100" and saved["ok"] is False
    assert saved["peak_gpu_gib"] == 1.5 and set(saved["checks"]) == {"fp32", "fp16", "onnx"}
    md = (tmp_path / "summary.md").read_text()
    assert "| fp16 | FAILED |" in md and "| onnx | ok | max |diff| 1e-6 | – | – |" in md


def test_an_earlier_gpucheck_is_not_written_over(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    (tmp_path / "summary.json").write_text("{}")
    assert stage("gpucheck", ["--out", str(tmp_path)]) == 2
    assert "earlier gpucheck" in capsys.readouterr().err and (tmp_path / "summary.json").read_text() == "{}"


def test_amp_dtype_by_setting_and_gpu(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    cfg = load_config("seed", ["amp=true"])
    assert amp_dtype(cfg, cpu) is None and amp_dtype(load_config("seed", ["amp=false"]), cuda) is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype(cfg, cuda) == torch.bfloat16
    assert amp_dtype(load_config("seed", ["amp_dtype=fp16"]), cuda) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)  # e.g. a V100 or T4
    assert amp_dtype(cfg, cuda) == torch.float16


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_cuda_mixed_precision_run_in_miniature(tiny_data, tmp_path, dtype):
    assert stage("train", ["--data", str(tiny_data), "--output", str(tmp_path), "--name", dtype, *FAST,
                          "device=cuda", "amp=true", f"amp_dtype={dtype}", "folds=0"]) == 0
    m = json.loads((tmp_path / dtype / "metrics.json").read_text())
    assert m["folds"][0]["peak_gpu_gib"] > 0 and 0 <= m["eval"]["f1"] <= 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_normalise_matches_the_cpu():
    from src.data.transforms import DeviceNormalise
    x = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    outs = [DeviceNormalise((0.5, 0.4, 0.3), (0.2, 0.2, 0.2), device)(x.to(device)).cpu() for device in ("cpu", "cuda")]
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)
