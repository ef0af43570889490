"""The GPU path end to end, on the demo data: one command for the first GPU machine.

    bash run.sh gpucheck [--out DIR] [--only NAME,...] [--epochs N]

Each check runs the real pipeline (as its own process, the way a user runs it) on the synthetic
demo data, and passes or fails on a stated condition:
  fp32      amp=false, one fold: the full-precision yardstick for the next two
  bf16      mixed precision (bf16), channels-last, the cached data path with flip/normalise on the
            GPU: finite losses, eval macro-F1 within 0.1 of fp32
  fp16      amp_dtype=fp16 with the gradient scaler: the same condition
  resume    a bf16 run (3x the epochs) killed with SIGKILL once its first epoch is saved, then the
            same command: it resumes after that epoch and ends within 0.02 eval F1 of the same run
            uninterrupted (GPU kernels are not bit-deterministic)
  torchrun  DistributedDataParallel with NCCL on every visible GPU (torchrun --nproc_per_node=N)
  parallel  parallel_folds over the visible GPUs, all folds
  onnx      the bf16 run exported to ONNX: onnxruntime and PyTorch agree within 1e-4
  speed     `bash run.sh speed --device cuda` on the demo photos
One table is printed; DIR/summary.json holds the GPU's name, peak GPU memory, images/s and every
check's result. Without CUDA it refuses at once (exit 2).
"""
from __future__ import annotations

import sys

from ..core.errors import Exists, UserError
from ..core.paths import user_path
from ..core.run_dir import OUTPUT
from ..measure.gpucheck import CHECKS, run_checks, table, write_summary
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("run.sh gpucheck", __doc__)
    ap.add_argument("--out", type=user_path, default=OUTPUT / "gpucheck")
    ap.add_argument("--only", default=",".join(CHECKS), help="comma-separated subset of the checks")
    ap.add_argument("--epochs", type=int, default=6, help="epochs of each demo run")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: rehearse the checks' plumbing without a GPU (no mixed precision there)")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: gpucheck(a))


def gpucheck(a) -> int:
    only = [c.strip() for c in a.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CHECKS))
    if unknown:
        raise UserError(f"unknown check(s) {unknown}; choose from {', '.join(CHECKS)}")
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        raise UserError("gpucheck needs a CUDA GPU, and torch sees none (torch.cuda.is_available() is False)")
    if (a.out / "summary.json").exists():
        raise Exists(f"{a.out} holds an earlier gpucheck; pass another --out")
    gpus, gpu = (torch.cuda.device_count(), torch.cuda.get_device_name(0)) if a.device == "cuda" else (2, "CPU rehearsal")
    results = run_checks(a.out, only, a.epochs, a.device, gpus)
    summary = write_summary(a.out, gpu, results)
    print(f"\ngpucheck on {gpu} ({gpus} visible)\n\n{table(results)}\n\nwrote {a.out / 'summary.json'}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
