"""bash run.sh tune on the tiny data: a study of ordinary runs, pruned, resumable after Ctrl-C, shared by workers,
its best recipe checked on a fold it never validated on."""
import json

import optuna
import pytest

from src.core.config import load_config
from src.measure import tune
from tests.helpers import refused, stage

TINY = ["model=test_efficientnet", "pretrained=false", "img_size=32,24", "crop_frac=1.0", "epochs=3",
        "batch_size=16", "n_folds=2", "num_workers=0", "threads=2"]
SPACE = "lr: {log_float: [1.0e-4, 3.0e-2]}\nloss: {choice: [focal, ce]}\nfocal_gamma: {float: [1.0, 3.0], when: " \
        "{loss: focal}}\n"


def tune_args(data, tmp_path, trials: int, *more: str) -> list[str]:
    space = tmp_path / "space.yaml"
    if not space.exists():
        space.write_text(SPACE)
    return ["--data", str(data), "--config", "seed", "--space", str(space), "--trials", str(trials), "--name", "s",
            "--output", str(tmp_path / "out"), *more, *TINY]


def study_of(tmp_path):
    return optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'out' / 'tune' / 's' / 'study.db'}")


def states(study) -> list[str]:
    return [t.state.name for t in study.get_trials(deepcopy=False) if "surplus" not in t.user_attrs]


def test_a_study_prunes_reports_writes_its_best_recipe_checks_it_unseen_and_the_same_command_adds_nothing(
        tiny_data, tmp_path, capsys):
    assert stage("tune", tune_args(tiny_data, tmp_path, 6)) == 0
    folder = tmp_path / "out" / "tune" / "s"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["trials"] == 6 and summary["pruned"] >= 1 and summary["complete"] >= 1  # the median pruner acted
    trials = (folder / "trials.csv").read_text().splitlines()
    assert len(trials) == 7 and all((folder / f).is_file() for f in ("trials.md", "history.png", "report.md"))
    best = load_config(str(folder / "best.yaml"))  # runs as is: the base recipe + overrides + the best changes
    assert best.recipe == "best" and best.model == "test_efficientnet" and 0 in best.folds and 1 in best.folds
    assert all(c.split("=")[0] in best for c in summary["best_changes"])
    confirm = summary["confirm"]
    assert confirm["folds"] == [1] and confirm["ci"][0] <= confirm["gain"] <= confirm["ci"][1]
    assert "On folds the search never saw" in (folder / "report.md").read_text()
    # a trial is an ordinary run: its folder has what any run has
    complete = [t for t in study_of(tmp_path).get_trials() if t.state.name == "COMPLETE"]
    assert (folder / "trials" / complete[0].user_attrs["run"] / "submission.csv").is_file()
    capsys.readouterr()
    assert stage("tune", tune_args(tiny_data, tmp_path, 6)) == 0  # the same command: nothing left to train
    assert "6 of 6 trials finished" in capsys.readouterr().out and len(states(study_of(tmp_path))) == 6
    # continued to 7: the new trial draws on (a process seeded as the first replayed its first draws)
    assert stage("tune", tune_args(tiny_data, tmp_path, 7)) == 0
    trials = study_of(tmp_path).trials
    assert len(trials) == 7 and all(trials[6].params != t.params for t in trials[:6])


def test_ctrl_c_in_a_trial_is_130_and_the_same_command_draws_it_again_and_continues_its_run(tiny_data, tmp_path,
                                                                                               monkeypatch, capsys):
    real, calls = tune.finish, []

    def ctrl_c_second(job, results):
        calls.append(job.run.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job, results)

    monkeypatch.setattr(tune, "finish", ctrl_c_second)
    err = refused(stage("tune", tune_args(tiny_data, tmp_path, 3, "--pruner", "none")), capsys,
                  "the same tune command continues the study", rc=130)
    assert "Traceback" not in err and states(study_of(tmp_path)) == ["COMPLETE", "FAIL"]
    cut_short = study_of(tmp_path).trials[1]
    monkeypatch.setattr(tune, "finish", real)
    assert stage("tune", tune_args(tiny_data, tmp_path, 3, "--pruner", "none")) == 0
    study = study_of(tmp_path)
    assert states(study).count("COMPLETE") == 3  # 3 counted, the failed one not among them
    again = [t for t in study.trials if t.user_attrs.get("redraw_of") == cut_short.number]
    assert len(again) == 1 and again[0].params == cut_short.params
    assert again[0].user_attrs["run"] == cut_short.user_attrs["run"]  # the same run folder, continued
    assert "continuing the unfinished run" in capsys.readouterr().out


def test_two_workers_share_one_sqlite_study_and_make_exactly_its_trials(tiny_data, tmp_path):
    assert stage("tune", tune_args(tiny_data, tmp_path, 4, "--jobs", "2", "--pruner", "none",
                                   "--confirm-folds", "1")) == 0
    study = study_of(tmp_path)
    ran = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(ran) == 4 and len({t.number for t in ran}) == 4
    assert len({t.user_attrs["run"] for t in ran}) == len({tuple(t.user_attrs["changes"]) for t in ran})


@pytest.mark.parametrize("options, keys, space, words", [
    (["--trials", "0"], [], SPACE, "--trials 0"),
    ([], [], "lrr: {float: [0.1, 0.2]}\n", "line 1: lrr: not a config key (did you mean lr"),
    ([], [], "lr: {log_float: [1.0e-4, 0.5]}\nwarmup_epochs: {float: [0.0, 5.0]}\n",
     "warmup_epochs=5.0 with --config seed"),
    (["--storage", "sqlite:////proc/no/such/study.db"], [], SPACE,
     "--storage sqlite:////proc/no/such/study.db: cannot open the study there"),
    ([], ["model=resnet_no_such"], SPACE, "resnet_no_such"),  # what a run refuses, refused before the first trial
    (["--confirm-folds", "0"], [], SPACE, "--confirm-folds 0: fold(s) [0] are searched"),
    (["--confirm-folds", "5"], [], SPACE, "--confirm-folds 5: fold numbers are 0..1"),
])
def test_bad_input_is_refused_before_any_trial(tiny_data, tmp_path, capsys, options, keys, space, words):
    (tmp_path / "space.yaml").write_text(space)
    args = tune_args(tiny_data, tmp_path, 2) + keys
    if options:  # the later of two equal options wins
        args = options + args if options[0] != "--trials" else args + options
    refused(stage("tune", args), capsys, words)
    assert not (tmp_path / "out" / "tune" / "s" / "trials").exists()


def test_a_study_is_joined_only_with_the_same_settings_wherever_its_paths_are(tmp_path):
    from dataclasses import replace

    from src.core.errors import ConfigError
    settings = tune.StudySettings(name="s", data=str(tmp_path / "data"), recipe="seed", space="space.yaml",
                                  space_sha1="abc", overrides=("folds=0",), pruner="median", seed=42,
                                  output=str(tmp_path / "out"))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    tune.open_study(settings, storage, 3)
    tune.open_study(replace(settings, data="/elsewhere/data", output="/elsewhere/out"), storage, 3)  # another machine
    with pytest.raises(ConfigError, match="pruner median there, none here.*use another --name"):
        tune.open_study(replace(settings, pruner="none"), storage, 3)
    with pytest.raises(ConfigError, match="space_sha1 abc there, def here"):
        tune.open_study(replace(settings, space_sha1="def"), storage, 3)
