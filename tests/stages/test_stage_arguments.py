"""Hardening, round three: paths from where the user stands, failed starts that leave nothing,
Ctrl-C, full disks, and every stage's arguments (exit 2 with one line naming the culprit, 130 for
Ctrl-C, never a traceback)."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from src.core.paths import ROOT
from src.core.run_dir import RunDir
from src.stages import STAGES
from tests.helpers import FAST, copy_run, refused, stage, train_fast


@pytest.fixture(scope="module")
def run2(tiny_run, tmp_path_factory):
    """A finished 2-fold run, and a copy of it stopped after fold 0 (fold 1 and the run unfinished)."""
    out = tmp_path_factory.mktemp("paths_runs")
    copy_run(tiny_run, out / "h")
    shutil.copytree(out / "h", out / "half")
    for f in [*(out / "half").glob("fold1*"), out / "half" / "run.finished"]:
        f.unlink()
    return RunDir(out / "h"), RunDir(out / "half"), out


# ---- paths are the caller's -----------------------------------------------------------------

def test_paths_typed_by_the_user_are_taken_from_where_the_user_stands(run2, tiny_data, tmp_path, monkeypatch, capsys):
    run, _, out = run2
    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(next((tiny_data / "eval" / "images").iterdir()), work / "one.jpg")
    shutil.copytree(tiny_data, work / "base")
    monkeypatch.chdir(work)
    assert stage("predict", ["--run", str(run.path), "--out", "pred.csv", "one.jpg"]) == 0
    assert "wrote 1 row(s) to " + str(work / "pred.csv") in capsys.readouterr().err
    assert pd.read_csv(work / "pred.csv")["error"].isna().all() and not (ROOT / "pred.csv").exists()
    # --data, --output and a corrections file, all relative to here; the folder named absolutely
    ids = pd.read_csv(work / "base" / "train" / "train.csv", dtype=str)["id"]
    (work / "fix.csv").write_text(f"id,gender\n{ids[0]},female\n")
    assert stage("train", ["--data", "base", "--config", "seed", "--name", "r", "--output", "runs", *FAST,
                          "folds=0", "corrections=fix.csv", "cache_dir=c"]) == 0
    assert (work / "runs" / "r" / "run.finished").exists() and (work / "c").is_dir()
    assert f"applied 1 correction(s) from {work / 'fix.csv'}" in capsys.readouterr().out
    # the same through run.sh from another folder (it moves to the repository; the caller's folder travels)
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("MASK_CALLER_DIR", None)
    done = subprocess.run(["bash", str(ROOT / "run.sh"), "predict", "--run", str(run.path), "--out", "p2.csv",
                           "one.jpg"], cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (work / "p2.csv").exists() and not (ROOT / "p2.csv").exists()


def test_a_missing_data_folder_is_named_absolutely(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = stage("train", ["--data", "nowhere", "--config", "seed", "--output", "out", *FAST])
    refused(code, capsys, f"{tmp_path / 'nowhere'}: no such folder")
    assert not (tmp_path / "out").exists()


# ---- failed starts leave no run folder ------------------------------------------------------

def _state_file(tmp_path, name, state):
    path = tmp_path / name
    torch.save(state, path)
    return path


@pytest.mark.parametrize("case", ["model", "other_model", "one_tensor", "text", "list", "readonly_cache"])
def test_a_failed_start_leaves_no_run_folder(tiny_data, tmp_path, capsys, case):
    import timm

    out = tmp_path / "out"
    if case == "model":
        more, words = ["model=no_such_model"], ["no_such_model"]
    elif case == "other_model":  # resnet34's weights for resnet18: names fit, shapes and counts do not
        path = _state_file(tmp_path, "r34.pth", timm.create_model("resnet34", pretrained=False).state_dict())
        more, words = ["model=resnet18", f"pretrained={path}"], [str(path), "another model"]
    elif case == "one_tensor":
        path = _state_file(tmp_path, "one.pth", {"conv1.weight": torch.zeros(64, 3, 7, 7)})
        more, words = ["model=resnet18", f"pretrained={path}"], [str(path)]
    elif case == "text":
        path = tmp_path / "weights.txt"
        path.write_text("these are not weights\n")
        more, words = [f"pretrained={path}"], [str(path), "not a PyTorch state_dict"]
    elif case == "list":
        path = _state_file(tmp_path, "list.pth", [torch.zeros(3)])
        more, words = [f"pretrained={path}"], [str(path), "list"]
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes through read-only permissions; the mount test below covers it")
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(0o500)
        more, words = [f"cache_dir={cache}"], [str(cache), "cannot write"]
    refused(train_fast(tiny_data, out, *more), capsys, *words)
    assert not (out / "h").exists()
    assert train_fast(tiny_data, out, "folds=0") == 0 and (out / "h" / "run.finished").exists()  # the name is free


def mounted_tmpfs(where: Path, size: str) -> bool:
    """A small tmpfs at `where` (root only); False where it cannot be mounted."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def test_a_read_only_cache_and_a_full_disk_are_said_before_any_folder(tiny_data, tmp_path, capsys):
    small = tmp_path / "small"
    if not mounted_tmpfs(small, "2m"):
        pytest.skip("needs root and tmpfs (mount -t tmpfs) to make a small or read-only disk")
    try:
        out = tmp_path / "out"
        # full: the decoded cache at 320x240 needs ~28 MiB for 112 photos; 2 MiB are there
        err = refused(train_fast(tiny_data, out, "img_size=320,240", f"cache_dir={small}"), capsys, "MiB free",
                       str(small))
        assert "cache=false" in err and not (out / "h").exists() and not list(small.glob("*.npy*"))
        subprocess.run(["mount", "-o", "remount,ro", str(small)], check=True)
        refused(train_fast(tiny_data, out, f"cache_dir={small}"), capsys, str(small), "cannot write")
        assert not (out / "h").exists()
        assert stage("predict", ["--run", "x", "--out", str(small / "p.csv"), "a.jpg"]) == 2  # checked first
        refused(2, capsys, str(small))
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_a_cache_that_finds_the_disk_full_while_building_is_a_clear_error(tmp_path):
    """The memory-mapped cache claims its blocks first: a full disk is an OSError, not SIGBUS."""
    from src.data.cache import reserve

    small = tmp_path / "small"
    if not mounted_tmpfs(small, "1m"):
        pytest.skip("needs root and tmpfs (mount -t tmpfs) for a small disk")
    try:
        import numpy as np

        path = small / "x.part.npy"
        np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(8, 512, 512, 3))  # 6 MiB, sparse
        with pytest.raises(OSError, match="MiB free"):
            reserve(path)
        assert not path.exists()
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_too_few_persons_per_cell_is_a_data_error_with_the_others(tiny_data, tmp_path, capsys):
    train = pd.read_csv(tiny_data / "train" / "train.csv", dtype=str)
    keep = train.drop_duplicates("gender").head(2)  # two persons, in two different cells
    for folder in set(train["path"]) - set(keep["path"]):
        shutil.rmtree(tiny_data / "train" / "images" / folder)
    keep.to_csv(tiny_data / "train" / "train.csv", index=False)
    (tiny_data / "eval" / "info.csv").write_text("ImageID,ans\nmissing.jpg,0\n")
    err = refused(train_fast(tiny_data, tmp_path / "out"), capsys, "fewer persons than n_folds=2", "missing.jpg")
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "h").exists()


# ---- Ctrl-C ---------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 2])
def test_ctrl_c_says_where_the_run_stopped_and_the_same_command_continues(tiny_data, tmp_path, workers):
    """Ctrl-C as a terminal sends it: to the whole process group, the loader's (persistent) workers too."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "src.stages.train", "--data", str(tiny_data), "--config", "seed", "--name", "c",
           "--output", str(out), *[o for o in FAST if not o.startswith(("epochs", "num_workers"))], "epochs=30",
           "folds=0", f"num_workers={workers}"]
    # a job started in the background (nohup ... &) inherits SIGINT ignored: a terminal's job has it
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), start_new_session=True)
    log = out / "c" / "fold0_log.csv"
    deadline = time.time() + 120
    while not (log.exists() and len(pd.read_csv(log)) >= 1) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted after fold 0 epoch" in err and "run the same command to continue" in err
    done = len(pd.read_csv(log))
    assert f"epoch {done};" in err or f"epoch {done - 1};" in err  # the epoch saved when the signal came
    deadline = time.time() + 10
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _group_alive(proc.pid)  # no loader worker left behind


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("stage_name,args", [("train", ["--config", "seed"]), ("predict", ["--run", "r", "x.jpg"]),
                                             ("extra", ["--from", "."]), ("bench", []), ("compare", ["a", "b"])])
def test_ctrl_c_while_the_libraries_load_is_one_line_and_130(stage_name, args, tmp_path):
    """Before any stage code runs (torch and timm take seconds to import): no KeyboardInterrupt traceback."""
    for delay in (0.3, 1.2):
        proc = subprocess.Popen([sys.executable, "-m", f"src.stages.{stage_name}", *args], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and err.strip() == f"interrupted (Ctrl-C): bash run.sh {stage_name} stopped"


def test_ctrl_c_inside_a_librarys_bare_except_while_loading_still_stops_the_stage(tmp_path):
    """OpenCV's loader runs part of its import under a bare `except:`: a KeyboardInterrupt raised there is
    swallowed and the stage ran on. Until the stage's work starts, Ctrl-C ends it at once."""
    swallowing = ("import sys; sys.argv = ['-m']; import os, signal, time, src.stages\n"
                  "try:\n    os.kill(os.getpid(), signal.SIGINT); time.sleep(2)\nexcept:\n    pass\n"
                  "print('ran on')")
    done = subprocess.run([sys.executable, "-c", swallowing], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 130 and "ran on" not in done.stdout
    assert done.stderr.strip().startswith("interrupted (Ctrl-C): bash run.sh") and "Traceback" not in done.stderr


# ---- every stage's arguments ----------------------------------------------------------------

def test_blend_options_take_the_config_keys_parsers(capsys):
    for args, words in ((["--runs", "a", "--group-eval", "1"], ["group size of at least 2"]),
                        (["--runs", "a", "--group-eval", "-1"], ["--group-eval"]),
                        (["--runs", ""], ["--runs", "names nothing"]),
                        (["--runs", "a", "--decision", "maybe"], ["--decision"])):
        with pytest.raises(SystemExit) as e:
            stage("blend", args)
        refused(e.value.code, capsys, *words)


def test_audit_checks_the_noise_log_before_writing_anything(run2, capsys):
    run = run2[0]
    before = sorted(run.path.glob("audit*.csv"))
    refused(stage("audit", ["--run", str(run.path), "--noise-log", "/missing.csv"]), capsys, "/missing.csv")
    assert sorted(run.path.glob("audit*.csv")) == before


@pytest.mark.parametrize("args,words", [(["--device", "cuda"], ["device=cuda"]), (["epoch=3"], ["epochs"]),
                                        (["--data", "/missing"], ["/missing/train/train.csv"])])
def test_speed_says_what_is_wrong(args, words, capsys, tmp_path):
    refused(stage("speed", [*args, "--out", str(tmp_path / "s")]), capsys, *words)


def test_an_unknown_stage_is_named_with_the_closest_and_the_list(capsys):
    refused(stage("train", ["trian"]), capsys, "'trian' is not a stage", "Did you mean 'train'?", "gallery",
             "extra", "bench")


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit):
        stage("train", ["--help"])
    text = capsys.readouterr().out
    for name in ("train", "test", "predict", "export", "audit", "gallery", "extra", "blend", "bench", "speed",
                 "weights", "gpucheck"):
        assert f"\n  {name} " in text


def stage_help() -> dict[str, str]:
    """What `bash run.sh STAGE --help` prints, for every module in src/stages, run in one process the
    way `python -m` runs it: main() with no arguments, the command line in sys.argv."""
    script = ("import importlib, sys\n"
              "for m in sys.argv[1:]:\n"
              "    sys.argv = ['run.sh', '--help']\n"
              "    try:\n"
              "        importlib.import_module('src.stages.' + m).main()\n"
              "    except SystemExit as e:\n"
              "        assert e.code in (0, None), m\n"
              "    print('--- ' + m)\n")
    modules = sorted(p.stem for p in (ROOT / "src" / "stages").glob("*.py") if p.stem != "__init__")
    done = subprocess.run([sys.executable, "-c", script, *modules], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    texts = dict(zip(modules, re.split(r"^--- \w+$", done.stdout, flags=re.M)))
    assert all("usage:" in t for t in texts.values()) and len(texts) == len(modules)
    return texts


def readme_stages() -> dict[str, list[str]]:
    """The README's table of stages: each stage's name and the options its row shows."""
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## The stages"):].split("\n## ")[0]
    rows = re.findall(r"^\| `([a-z]+)([^`]*)`", table, re.M)
    return {name: re.findall(r"--[a-z-]+", rest) for name, rest in rows}


def test_every_stage_answers_help_and_knows_the_options_the_readme_shows():
    """`bash run.sh STAGE --help` for every stage module; run.sh sends every listed stage to its
    module; every stage and option in the README's table is one that exists."""
    texts = stage_help()
    assert {"train", "predict", "export", "gpucheck", "weights", "compare"} <= set(texts)
    routed = re.search(r"^\s*([a-z|]+)\)\n\s*# each stage is one thin module", (ROOT / "run.sh").read_text(), re.M)
    assert set(routed.group(1).split("|")) == set(STAGES) - {"(none)", "test"} <= set(texts)
    shown = readme_stages()
    assert len(shown) >= 12 and set(shown) - {"test"} <= set(routed.group(1).split("|"))
    for name, options in shown.items():
        for option in options:
            assert option in texts.get(name, ""), f"README: {name} {option} is not an option of that stage"


def test_run_sh_reaches_a_stage():
    """The real path once: bash run.sh -> .venv's python -> src/stages/export.py."""
    done = subprocess.run(["bash", str(ROOT / "run.sh"), "export", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: run.sh export" in done.stdout, done.stderr


def test_weights_out_on_a_place_that_cannot_be_written_is_said_first(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused(stage("weights", ["resnet18", "--out", str(blocker / "sub")]), capsys, str(blocker / "sub"),
             "cannot write")


def test_predict_says_how_many_folds_made_its_rows(run2, tiny_data_master, tmp_path, capsys):
    _, half, _ = run2
    photo = next((tiny_data_master / "eval" / "images").iterdir())
    out = tmp_path / "p.csv"
    assert stage("predict", ["--run", str(half.path), "--out", str(out), str(photo)]) == 0
    err = capsys.readouterr().err
    assert "1 of 2 fold model(s)" in err and "only 1 of the run's 2 folds are finished" in err
    side = json.loads((tmp_path / "p.csv.folds.json").read_text())
    assert side["folds_used"] == [0] and side["folds_planned"] == [0, 1]


def test_folder_scans_count_what_they_skip(run2, tiny_data_master, tmp_path, capsys):
    run = run2[0]
    d = tmp_path / "photos"
    d.mkdir()
    src = next((tiny_data_master / "eval" / "images").iterdir())
    shutil.copy(src, d / "a.jpg")
    Image.open(src).save(d / "b.gif")
    (d / "gone.jpg").symlink_to(d / "nothing-here.jpg")
    assert stage("predict", ["--run", str(run.path), str(d)]) == 0
    err = capsys.readouterr().err
    assert "1 broken link" in err and "1 .gif" in err
    assert stage("predict", ["--run", str(run.path), str(d / "b.gif")]) == 0  # named: predicted


def test_a_corrections_files_unknown_id_is_listed_with_the_datas_other_problems(tiny_data, tmp_path, capsys):
    ids = pd.read_csv(tiny_data / "train" / "train.csv", dtype=str)["id"]
    fix = tmp_path / "fix.csv"
    fix.write_text(f"id,gender\n# from the audit\n{ids[0]},robot\nno_such_person,male\n")
    (tiny_data / "eval" / "info.csv").write_text("ImageID,ans\nmissing.jpg,0\n")
    err = refused(train_fast(tiny_data, tmp_path / "out", f"corrections={fix}"), capsys,
                   f"{fix} line 3 (id {ids[0]}): gender 'robot'", f"{fix} line 4 (id no_such_person)",
                   "missing.jpg")
    assert "not a person in train.csv" in err


def test_progress_off_a_terminal_is_one_line_per_loop(tiny_data, tmp_path, capsys):
    assert train_fast(tiny_data, tmp_path / "out", "folds=0") == 0
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out
    assert "fold 0 epoch 1/1: " in captured.err  # the epoch's line: batches, seconds, loss



def test_a_bare_ctrl_c_inside_a_stage_is_one_line_with_words(tmp_path, tiny_data, capsys, monkeypatch):
    """Ctrl-C while `extra --prepare` or a training draws masks was exit 130 with two blank lines: a bare
    KeyboardInterrupt's text is ""."""
    from src.data.demo import generate_outside
    from src.pipeline import training_table
    from src.stages import extra

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    faces = generate_outside(tmp_path / "faces", n=2, seed=1)
    monkeypatch.setattr(extra, "outside_persons", ctrl_c)
    assert stage("extra", ["--from", str(faces), "--prepare", "--cache-dir", str(tmp_path / "c")]) == 130
    err = capsys.readouterr().err  # the progress lines of the checks before it, then a blank line and its own
    assert re.search(r"\n\ninterrupted \(Ctrl-C\): bash run\.sh \S+ stopped\n$", err), err
    monkeypatch.setattr(training_table, "outside_rows", ctrl_c)
    assert stage("train", ["--data", str(tiny_data), "--output", str(tmp_path / "out"), *FAST, f"extra={faces}"]) == 130
    assert capsys.readouterr().err.endswith("\n\ninterrupted before training began; nothing to continue\n")


def test_a_run_whose_checkpoint_is_gone_is_refused_by_every_stage_that_needs_it(tiny_run, tiny_data_master, tmp_path,
                                                                                 capsys):
    """A regression: export / predict / blend --group-eval of such a run printed torch.load's FileNotFoundError."""
    run = copy_run(tiny_run, tmp_path / "gone")
    run.fold(0).best.unlink()
    photo = sorted((tiny_data_master / "eval" / "images").iterdir())[0]
    for name, argv in {"export": ["--run", str(run.path)],
                       "predict": ["--run", str(run.path), "--out", str(tmp_path / "p.csv"), str(photo)],
                       "blend": ["--runs", str(run.path), "--group-eval", "7", "--output", str(tmp_path / "b")],
                       }.items():
        refused(stage(name, argv), capsys, f"{run.fold(0).best}: missing (fold 0 of this run has no checkpoint")
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "b" / "blend-gone").exists()
