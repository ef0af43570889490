import json
import math

from tests.helpers import stage


def test_speed_benchmark_writes_its_table(tiny_data, tmp_path):
    out = tmp_path / "speed"
    assert stage("speed", ["--data", str(tiny_data), "--images", "40", "--out", str(out), "model=test_efficientnet",
                       "img_size=32,24", "batch_size=8", "num_workers=0", f"cache_dir={tmp_path / 'c'}"]) == 0
    (res,) = out.glob("speed-cpu-*.json")
    r = json.loads(res.read_text())
    for k in ("loader_naive", "loader_cached", "model_only", "training"):
        assert r[k] > 0
    assert abs(r["cached_over_naive"] - r["loader_cached"] / r["loader_naive"]) < 1e-9
    assert r["augment_per_worker"] > 0 and r["workers_for_gpu"] == math.ceil(6000 / r["augment_per_worker"])
    assert r["images"] == 40
    table = next(out.glob("speed-cpu-*.md")).read_text()
    assert "training ÷ model-only" in table and "the augment list (HorizontalFlip)" in table
    assert f"workers a GPU's 6,000 img/s needs** (num_workers) | **{r['workers_for_gpu']}**" in table
    assert r["peak_host_gib"] > 0.1 and r["peak_gpu_gib"] is None  # a CPU run: no GPU figure
    assert "peak host RAM" in table and "epoch_start_new_s" not in r  # no workers, nothing to start
    for method, rate in r["background"].items():  # each method this machine can run, per core and for the
        cost = 18_900 / (rate["photos_per_s_per_core"] * 16)  # competition's photos on 16 cores
        assert rate["photos_per_s_per_core"] > 0 and abs(rate["competition_on_16_cores_s"] - cost) < 1e-6
        assert f"| {method} | {rate['photos_per_s_per_core']:.1f} | {cost:.0f} s |" in table
    assert {"keep", "grabcut"} <= set(r["background"])
    assert r["background"]["keep"]["photos_per_s_per_core"] > r["background"]["grabcut"]["photos_per_s_per_core"]


def test_speed_times_an_epochs_first_batch_with_new_and_persistent_workers(tiny_data, tmp_path):
    out = tmp_path / "speed"
    assert stage("speed", ["--data", str(tiny_data), "--images", "24", "--out", str(out), "model=test_efficientnet",
                       "img_size=32,24", "batch_size=8", "num_workers=2", f"cache_dir={tmp_path / 'c'}"]) == 0
    r = json.loads(next(out.glob("speed-cpu-*.json")).read_text())
    assert 0 < r["epoch_start_persistent_s"] < r["epoch_start_new_s"]  # forking two workers is not free
    assert f"after {r['epoch_start_new_s']:.2f} s with 2 new workers" in next(out.glob("speed-cpu-*.md")).read_text()
