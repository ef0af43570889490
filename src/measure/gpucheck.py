"""The GPU path end to end, on the demo data: one command for the first GPU machine.

The command and its manual: src/stages/gpucheck.py (`bash run.sh gpucheck --help`).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from ..core.paths import ROOT
from ..core.run_dir import RunDir
from ..data.demo import generate
from ..data.tables import Layout, load_eval

CHECKS = ("fp32", "bf16", "fp16", "resume", "torchrun", "parallel", "onnx", "speed")
F1_TOLERANCE = 0.1  # mixed precision against full precision, on a 6-epoch demo model
RESUME_TOLERANCE = 0.02


def pipeline_cmd(data: Path, out: Path, name: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "src.stages.train", "--data", str(data), "--config", "demo", "--output", str(out),
            "--name", name, *overrides]


def run_metrics(out: Path, name: str) -> dict:
    """What a finished run measured: eval F1, loss finiteness, img/s, peak GPU memory."""
    run = RunDir(out / name)
    m = run.read_metrics()
    logs = [pd.read_csv(run.fold(f["fold"]).log) for f in m["folds"]]
    losses = [v for log in logs for v in log["train_loss"]]
    return {"eval_f1": m["eval"]["f1"], "finite_loss": all(math.isfinite(v) for v in losses),
            "img_s": sum(f["train_img_s"] for f in m["folds"]) / len(m["folds"]),
            "peak_gpu_gib": max((f.get("peak_gpu_gib") or 0) for f in m["folds"])}


def check_precision(data, out, name, base, *overrides) -> dict:
    subprocess.run(pipeline_cmd(data, out, name, *overrides), check=True, cwd=ROOT)
    r = run_metrics(out, name)
    if base is None:
        return {**r, "ok": r["finite_loss"], "detail": f"eval F1 {r['eval_f1']:.3f}"}
    gap = abs(r["eval_f1"] - base["eval_f1"])
    return {**r, "ok": r["finite_loss"] and gap <= F1_TOLERANCE,
            "detail": f"eval F1 {r['eval_f1']:.3f} vs fp32 {base['eval_f1']:.3f} (|diff| {gap:.3f} <= {F1_TOLERANCE})"}


def check_resume(data, out, overrides) -> dict:
    """The same run twice: once uninterrupted, once SIGKILLed after its first saved epoch and rerun."""
    subprocess.run(pipeline_cmd(data, out, "resume-whole", *overrides), check=True, cwd=ROOT)
    whole = run_metrics(out, "resume-whole")
    cmd = pipeline_cmd(data, out, "resume", *overrides)
    proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True)
    last = RunDir(out / "resume").fold(0).last
    while proc.poll() is None and not last.exists():
        time.sleep(0.01)  # a demo epoch takes well under a second on a GPU
    killed = proc.poll() is None
    if killed:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    sys.stdout.write(again.stdout)
    if again.returncode != 0:
        return {"ok": False, "detail": f"the rerun failed ({again.returncode}): {again.stderr[-300:]}"}
    r = run_metrics(out, "resume")
    resumed = "resuming after epoch" in again.stdout
    gap = abs(r["eval_f1"] - whole["eval_f1"])
    return {**r, "ok": killed and resumed and gap <= RESUME_TOLERANCE,
            "detail": f"killed mid-fold: {killed}, resumed: {resumed}, eval F1 {r['eval_f1']:.3f} vs "
                      f"{whole['eval_f1']:.3f} uninterrupted"}


def check_torchrun(data, out, overrides, gpus: int) -> dict:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "-m", "src.stages.train",
           *pipeline_cmd(data, out, "torchrun", *overrides)[3:]]
    subprocess.run(cmd, check=True, cwd=ROOT)
    r = run_metrics(out, "torchrun")
    backend = "NCCL" if "device=cuda" in overrides else "gloo"
    return {**r, "ok": r["finite_loss"], "detail": f"{backend}, {gpus} ranks, eval F1 {r['eval_f1']:.3f}"}


def check_parallel(data, out, overrides, gpus: int) -> dict:
    rest = [o for o in overrides if not o.startswith("folds=")]
    subprocess.run(pipeline_cmd(data, out, "parallel", *rest, "folds=all", f"parallel_folds={max(2, gpus)}"),
                   check=True, cwd=ROOT)
    r = run_metrics(out, "parallel")
    return {**r, "ok": r["finite_loss"], "detail": f"all folds, up to {gpus} at a time, eval F1 {r['eval_f1']:.3f}"}


def check_onnx(data, out) -> dict:
    from ..infer.predict import compare_engines

    paths = [Path(p) for p in load_eval(data, check_pixels=False)["path"]]
    r = compare_engines(RunDir(out / "bf16"), paths, batch_size=32)
    return {"ok": r["max_abs_diff"] <= 1e-4, "detail": f"onnxruntime vs PyTorch: max |diff| {r['max_abs_diff']:.1e}, "
                                                        f"{r['speedup']:.1f}x on the CPU"}


def check_speed(data, out, device: str) -> dict:
    subprocess.run([sys.executable, "-m", "src.stages.speed", "--device", device, "--data", str(data), "--out",
                    str(out / "speed"), "--images", "256"], check=True, cwd=ROOT)
    r = json.loads(max((out / "speed").glob(f"speed-{device}-*.json")).read_text())
    return {"ok": r["training"] > 0, "img_s": r["training"], "peak_gpu_gib": r.get("peak_gpu_gib"),
            "detail": f"training {r['training']:.0f} img/s, model only {r['model_only']:.0f} img/s"}


def table(results: dict) -> str:
    lines = ["| check | result | detail | img/s | peak GPU memory |", "|---|---|---|---|---|"]
    for name, r in results.items():
        img_s = f"{r['img_s']:.0f}" if r.get("img_s") else "–"
        mem = f"{r['peak_gpu_gib']:.2f} GiB" if r.get("peak_gpu_gib") else "–"
        lines.append(f"| {name} | {'ok' if r['ok'] else 'FAILED'} | {r['detail']} | {img_s} | {mem} |")
    return "\n".join(lines)


def write_summary(out: Path, gpu: str, results: dict) -> dict:
    summary = {"gpu": gpu, "ok": all(r["ok"] for r in results.values()),
               "peak_gpu_gib": max([r.get("peak_gpu_gib") or 0 for r in results.values()] or [0]),
               "checks": results}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(f"# gpucheck on {gpu}\n\n{table(results)}\n")
    return summary


def run_checks(out: Path, only: list[str], epochs: int, device: str, gpus: int) -> dict:
    """The checks in `only`, in CHECKS' order, each on the demo data under `out`; one failing check
    does not hide the others. {check: its result, with ok, detail and seconds}."""
    data = out / "data"
    if not Layout(data).has_train():
        generate(data)
    runs = out / "runs"
    common = [f"device={device}", f"epochs={epochs}", "folds=0", "num_workers=4"]
    results: dict = {}

    def attempt(name, fn, *args):
        if name not in only:
            return
        t0 = time.perf_counter()
        try:
            results[name] = fn(*args)
        except Exception as e:  # one failing check must not hide the others
            results[name] = {"ok": False, "detail": f"{type(e).__name__}: {str(e)[-300:]}"}
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"gpucheck {name}: {'ok' if results[name]['ok'] else 'FAILED'} - {results[name]['detail']}", flush=True)

    attempt("fp32", check_precision, data, runs, "fp32", None, *common, "amp=false")
    base = results.get("fp32") if results.get("fp32", {}).get("eval_f1") is not None else None
    attempt("bf16", check_precision, data, runs, "bf16", base, *common, "amp=true", "amp_dtype=bf16")
    attempt("fp16", check_precision, data, runs, "fp16", base, *common, "amp=true", "amp_dtype=fp16")
    # enough epochs that the kill lands inside the fold, not after it
    resume = [o for o in common if not o.startswith("epochs=")] + [f"epochs={max(3, 3 * epochs)}"]
    attempt("resume", check_resume, data, runs, [*resume, "amp=true", "amp_dtype=bf16"])
    attempt("torchrun", check_torchrun, data, runs, [*common, "amp=true"], gpus)
    attempt("parallel", check_parallel, data, runs, [*common, "amp=true"], gpus)
    if RunDir(runs / "bf16").fold(0).finished():
        attempt("onnx", check_onnx, data, runs)
    attempt("speed", check_speed, data, runs, device)
    return results
