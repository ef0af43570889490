"""The gpu bench prepared for a lent GPU machine, dry-run on the CPU at tiny settings."""
import json

from src.data.demo import generate_outside
from src.measure import bench
from tools import device_bench
from tools.device_bench import DEVICE_OVERRIDES, ROWS, STANDIN_PARTS, carry_sets, copy_sources

TINY = ["model=test_efficientnet", "pretrained=false", "img_size=32,24", "crop_frac=1.0", "epochs=1",
        "batch_size=16", "n_folds=2", "num_workers=0", "lr=1e-3", "threads=2"]


def test_the_device_run_trains_every_row_and_copies_the_table_out_after_each(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    faces = generate_outside(tmp_path / "faces", n=4, seed=2)
    rows = ["seed", f"seed+extra={faces}+extra_conflicts=drop+age_head=ordinal"]  # the shape of ROWS, tiny
    out = tmp_path / "OUT"
    assert device_bench.main(["run", "--out", str(out), "--data", str(tiny_data), "--rows", ",".join(rows),
                                  *TINY]) == 0
    table = (out / "device_results.md").read_text()
    assert all(f"| {r} |" in table for r in rows) and "protocol `gpu`" in table
    times = json.loads((out / "device_times.json").read_text())
    assert times["device"] == "cpu" and [times["rows"][r]["exit"] for r in rows] == [0, 0]
    results = json.loads((out / "device_results.json").read_text())
    assert results["overrides"][:len(DEVICE_OVERRIDES)] == list(DEVICE_OVERRIDES)
    # the same command again on the same machine: every row reused, nothing trained
    assert device_bench.main(["run", "--out", str(out), "--data", str(tiny_data), "--rows", ",".join(rows),
                                  *TINY]) == 0
    assert all(v["seconds"] < 30 for v in json.loads((out / "device_times.json").read_text())["rows"].values())


def test_a_refused_row_stops_the_run_with_2_and_keeps_what_finished(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "OUTPUT", tmp_path / "output")
    out = tmp_path / "OUT"
    assert device_bench.main(["run", "--out", str(out), "--data", str(tiny_data), "--rows", "seed,sede",
                                  *TINY]) == 2
    assert "sede" in capsys.readouterr().err
    times = json.loads((out / "device_times.json").read_text())
    assert times["rows"]["seed"]["exit"] == 0 and times["rows"]["sede"]["exit"] == 2


def test_prepare_copies_what_the_device_lacks_in_two_carries_under_the_limit(tmp_path):
    shared = tmp_path / "shared"
    for part in STANDIN_PARTS:  # a small tree in the shared folder's shape
        p = shared / "standin" / part
        if "." in p.name:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x" * 1000)
        else:
            p.mkdir(parents=True)
            (p / "a.jpg").write_bytes(b"y" * 2**20)
    (shared / "external" / "aaf-extra" / "images").mkdir(parents=True)
    (shared / "external" / "aaf-extra" / "labels.csv").write_text("file,age,gender\n")
    dest = tmp_path / ".device"
    copy_sources(shared, dest)
    copy_sources(shared, dest)  # again: what is there is kept
    sets = carry_sets(dest)
    assert [s["carry"] for s in sets] == [[".device/wheels", ".device/aaf-extra"], [".device/standin-src"]]
    assert sets[1]["MiB"] == 3.0 and all(s["MiB"] < 64 for s in sets)
    assert ROWS[0] == "seed" and "extra=.device/aaf-extra" in ROWS[2]
