"""A search for the best recipe on the user's own data: an Optuna study whose trials are ordinary runs.

The command and its manual: src/stages/tune.py (`bash run.sh tune --help`). A trial draws key=value changes from
the space (tune_space.py) on top of the recipe and the user's overrides, trains them as a run in
output/tune/NAME/trials/ (a folder named by its changes, so a trial cut short and drawn again continues its run),
reports each epoch's validation macro-F1 to the pruner, and scores the OOF macro-F1 of the folds it trains. The
study lives in an Optuna storage (SQLite in the study's folder by default): the same command continues it, and
several processes (--jobs, or several machines on one --storage URL) share it.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.errors import ConfigError, UserError
from ..core.paths import ROOT
from ..core.run_dir import RunDir
from ..core.values import OUTSIDE_SUBFOLDER
from ..pipeline.job import finish, prepare, train_folds
from .tune_space import Dimension, read_space, sample, without_outside

PRUNERS = ("median", "hyperband", "none")
COUNTED = ("COMPLETE", "PRUNED")  # trial states that count towards --trials (a failed one is drawn again)
# what must agree for a command to join a study (paths may differ from machine to machine)
SAME_STUDY = ("recipe", "space_sha1", "overrides", "pruner", "seed")


@dataclass(frozen=True)
class StudySettings:
    """What makes a study the same study: kept in its storage, compared when the command runs again."""
    name: str
    data: str
    recipe: str
    space: str                  # the space file's path
    space_sha1: str             # its content: a space edited mid-study is another study
    overrides: tuple[str, ...]  # the user's key=value, with the folds searched
    pruner: str
    seed: int
    output: str                 # where tune/NAME/ goes (the run folders' output/ by default)

    @property
    def folder(self) -> Path:
        return Path(self.output) / "tune" / self.name

    def dimensions(self) -> tuple[Dimension, ...]:
        """The space's dimensions; its outside-face keys (extra, extra_*) only where the data has an extra/ folder."""
        dims = read_space(Path(self.space))
        return dims if (Path(self.data) / OUTSIDE_SUBFOLDER).is_dir() else without_outside(dims)[0]


def default_storage(folder: Path) -> str:
    return f"sqlite:///{folder / 'study.db'}"


def make_pruner(name: str, steps: int):
    import optuna

    if name == "median":  # a trial below the median of earlier trials at the same epoch stops there
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(steps, 2))
    return optuna.pruners.NopPruner()


def open_study(settings: StudySettings, storage: str, steps: int, worker: int = 0):
    """The study of these settings in `storage`: made, or loaded when they match (else ConfigError: another
    --name); heartbeats let a study fail and redraw the trial of a worker that was killed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: said once here
    try:
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
        rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=60, grace_period=180,
                                         heartbeat_stale_trial_callback=retry)
        study = optuna.create_study(study_name=settings.name, storage=rdb, direction="maximize", load_if_exists=True,
                                    pruner=make_pruner(settings.pruner, steps))
        # seeded by what the study holds and the worker: a study continued (or joined) draws on, never the same
        # first draws again
        study.sampler = optuna.samplers.TPESampler(seed=settings.seed + 7919 * len(study.get_trials()) + worker)
    except Exception as e:  # sqlalchemy's or optuna's: an unwritable file, a server not there, a bad URL
        raise ConfigError(f"--storage {storage}: cannot open the study there: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    mine, saved = json.loads(json.dumps(asdict(settings))), study.user_attrs.get("settings")
    if saved is None:
        study.set_user_attr("settings", mine)
    elif changed := [k for k in SAME_STUDY if saved.get(k) != mine[k]]:
        raise ConfigError(f"study {settings.name} in {storage} was made with other settings ("
                          f"{'; '.join(f'{k} {saved.get(k)} there, {mine[k]} here' for k in changed)}); use another "
                          f"--name")
    return study


def counted(study) -> int:
    return sum(t.state.name in COUNTED for t in study.get_trials(deepcopy=False))


def running(study, before: int | None = None) -> int:
    """Trials in flight (in any worker), or only those numbered below `before`."""
    return sum(t.state.name == "RUNNING" and (before is None or t.number < before)
               for t in study.get_trials(deepcopy=False))


class Surplus(Exception):
    """A trial drawn when the study's trials are all finished or in flight (another worker took the last one)."""


def trial_name(changes: list[str]) -> str:
    """A trial's run folder, named by its changes: the same changes drawn again continue the same run."""
    return "trial-" + hashlib.sha1("\n".join(changes).encode()).hexdigest()[:10]


def reporter(trial, epochs: int, folds: list[int]):
    """After each saved epoch: its validation macro-F1 to the pruner, which may stop the trial there."""
    import optuna

    def report(fold: int, epoch: int, f1: float) -> None:
        step = folds.index(fold) * epochs + epoch
        trial.report(f1, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"fold {fold} epoch {epoch + 1}: validation macro-F1 {f1:.4f} below the "
                                     f"pruner's bar")
    return report


def run_trial(settings: StudySettings, trial) -> float:
    """One trial: its drawn changes trained as a run (or found finished), its OOF macro-F1."""
    import optuna

    changes = sample(settings.dimensions(), trial)
    name = trial_name(changes)
    trial.set_user_attr("run", name)
    trial.set_user_attr("changes", changes)
    same = [t.number for t in trial.study.get_trials(deepcopy=False)
            if t.state.name in COUNTED and t.number != trial.number and t.params == trial.params]
    if same:  # a small space drawn twice: counted, not trained again
        trial.set_user_attr("duplicate_of", same[0])
        raise optuna.TrialPruned(f"the same changes as trial {same[0]}")
    print(f"\n=== tune {settings.name}: trial {trial.number}: {' '.join(changes) or '(the recipe as it is)'} ===",
          flush=True)
    done = RunDir(settings.folder / "trials" / name)
    if done.finished():  # trained before its result reached the study (a worker killed at the very end)
        return float(done.read_metrics()["oof"]["f1"])
    job = prepare(settings.data, settings.recipe, [*settings.overrides, *changes], name, settings.folder / "trials")
    try:
        job.on_epoch = reporter(trial, job.cfg.epochs, list(job.cfg.folds))
        return float(finish(job, train_folds(job))["oof"]["f1"])
    finally:
        job.run.unlock()


def objective(settings: StudySettings, trials: int):
    def run(trial) -> float:
        # the lowest-numbered trials in flight go first: two workers never both take the study's last trial
        if counted(trial.study) + running(trial.study, before=trial.number) >= trials:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial {trial.number}: the study's {trials} trials are finished or in flight")
        try:
            return run_trial(settings, trial)
        except UserError as e:  # a drawn combination the config refuses: this trial fails, the study goes on
            trial.set_user_attr("refused", str(e))
            print(f"trial {trial.number} refused: {e}", file=sys.stderr, flush=True)
            raise
    return run


def stop_when_full(trials: int):
    """After each trial: stop once the study's trials are finished or in flight, or once as many draws as trials
    were refused (a space whose draws the config keeps refusing)."""
    def check(study, trial) -> None:
        refused = sum("refused" in t.user_attrs for t in study.get_trials(deepcopy=False))
        if counted(study) + running(study) >= trials or refused >= trials:
            study.stop()
    return check


def redraw_failed(study) -> int:
    """Trials that failed (Ctrl-C, a crash) are drawn again with the same changes, once each: their run folder
    continues where it stopped; the failed one is never counted."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("redraw_of") for t in trials}
    failed = [t for t in trials if t.state.name == "FAIL" and t.number not in retried and t.params
              and not {"refused", "surplus"} & set(t.user_attrs)]
    for t in failed:
        study.enqueue_trial(t.params, user_attrs={"redraw_of": t.number}, skip_if_exists=False)
    return len(failed)


def optimise(settings: StudySettings, storage: str, trials: int, steps: int, worker: int = 0) -> None:
    """Trials in this process until the study holds `trials` finished ones (shared with any other worker)."""
    study = open_study(settings, storage, steps, worker)
    if counted(study) + running(study) >= trials:
        return
    study.optimize(objective(settings, trials), callbacks=[stop_when_full(trials)], catch=(UserError, Surplus),
                   gc_after_trial=True)


def spawn_workers(settings: StudySettings, storage: str, trials: int, jobs: int, steps: int) -> None:
    """`jobs` worker processes on one study: one GPU each where there are GPUs, else the cores shared."""
    import torch

    gpus = torch.cuda.device_count()
    procs = []
    for i in range(jobs):
        env = dict(os.environ)
        threads = 0 if gpus else max(1, (os.cpu_count() or 2) // jobs)
        cmd = [sys.executable, "-m", "src.measure.tune", json.dumps(asdict(settings)), storage, str(trials),
               str(steps), str(i), str(threads)]
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
    failed = [i for i, p in enumerate(procs) if p.wait() != 0]
    if failed:
        raise UserError(f"tune workers {failed} stopped with an error (their output is above); the same command "
                        f"continues the study")


def worker_main(argv: list[str]) -> int:
    """python -m src.measure.tune SETTINGS_JSON STORAGE TRIALS STEPS WORKER THREADS: one worker of a study."""
    from ..core.machine import set_threads

    raw = json.loads(argv[0])
    set_threads(int(argv[5]))
    try:
        optimise(StudySettings(**{**raw, "overrides": tuple(raw["overrides"])}), argv[1], int(argv[2]),
                 int(argv[3]), int(argv[4]))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
