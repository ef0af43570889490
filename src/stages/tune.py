"""Search for the best recipe on your own data: an Optuna study whose trials are ordinary runs.

    bash run.sh tune [--data DIR] [--config RECIPE] [--space NAME|FILE] [--trials 20] [--name STUDY]
                     [--storage URL] [--jobs N] [--pruner median|hyperband|none] [--confirm-folds 1] [key=value ...]

Each trial draws key=value changes from the space (configs/tune/default.yaml, or your own file: config keys with
distributions, see src/measure/tune_space.py) on top of --config and your key=value overrides, and trains them as
a run in output/tune/STUDY/trials/ (reusable by blend, compare, bench). It trains the folds of `folds=` (default:
fold 0 alone), reports each epoch's validation macro-F1 to the pruner (median: a trial below the median of the
earlier ones at the same epoch stops there) and scores the OOF macro-F1 of its folds.

The study lives in output/tune/STUDY/study.db (SQLite); the same command continues it to --trials finished trials
(Ctrl-C: the trial in flight is drawn again, its run continued; never counted twice). --jobs N runs N worker
processes on it, one GPU each; several machines share one study through --storage (any URL Optuna takes, e.g.
postgresql://user:pw@host/db), each running the same command.

When the study holds its trials: output/tune/STUDY/report.md with the trials' table (trials.csv, trials.md) and
Optuna's plots; best.yaml, the best recipe (`bash run.sh --config output/tune/STUDY/best.yaml`); and the honest
check — the best trial's score is optimistic (chosen among many), so the base recipe and the best are trained
again on a fold the search never validated on (--confirm-folds, default the first such fold) and compared with a
paired interval over whole persons. Outside faces (extra, extra_*) are searched only where DATA/extra/ is there.
"""
from __future__ import annotations

import hashlib
import sys

from ..core.config import load_config
from ..core.errors import ConfigError, NotFound
from ..core.files import writable_folder
from ..core.keys import DEFAULTS
from ..core.paths import user_path
from ..core.run_dir import OUTPUT, check_run_name
from ..data.tables import find_data
from ..measure import tune, tune_report
from ..measure.tune_space import check_with_recipe, space_file
from ..pipeline.job import run_settings
from . import parser, run_stage


def main(argv=None) -> int:
    ap = parser("run.sh tune", __doc__)
    ap.add_argument("--data", type=user_path, help="competition-layout data (default: input/data, else input/standin)")
    ap.add_argument("--config", default="recommended", help="the base recipe the trials change (default: recommended)")
    ap.add_argument("--space", default="default", help="a space of configs/tune/ or a YAML file (default: default)")
    ap.add_argument("--trials", type=int, default=20, help="finished trials the study holds when it ends")
    ap.add_argument("--name", help="the study (default: <recipe>-<space>): OUTPUT/tune/NAME/")
    ap.add_argument("--storage", help="an Optuna storage URL shared by workers or machines (default: SQLite in the "
                                      "study's folder)")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes on this machine (one GPU each)")
    ap.add_argument("--pruner", choices=tune.PRUNERS, default="median")
    ap.add_argument("--output", type=user_path, default=OUTPUT, help="where tune/STUDY/ goes (default: output/)")
    ap.add_argument("--confirm-folds", type=lambda s: [int(f) for f in s.split(",")],
                    help="the folds the best and base recipes are checked on (default: the first fold not searched)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="on every trial (folds=: the folds searched)")
    a = ap.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    return run_stage(lambda: search(a), then="; the same tune command continues the study (the trial in flight is "
                                            "drawn again and its run continued)")


def study_settings(a) -> tuple[tune.StudySettings, str]:
    """The study's settings and storage, every one checked before any trial (exit 2 naming the culprit)."""
    if a.trials < 1 or a.jobs < 1:
        raise ConfigError(f"--trials {a.trials} --jobs {a.jobs}: at least one trial and one job")
    found = find_data(a.data, DEFAULTS["data_dir"])
    if found is None:
        raise NotFound("no --data, and neither input/data nor input/standin exists")
    space = space_file(a.space)
    overrides = list(a.overrides) if any(o.startswith("folds=") for o in a.overrides) else [*a.overrides, "folds=0"]
    typed = user_path(a.config)  # a recipe file is held by its full path: the workers start in the repository
    recipe = str(typed) if typed.is_file() else a.config
    name = a.name or f"{typed.stem if typed.is_file() else a.config}-{space.stem}"
    check_run_name(name)
    cfg = load_config(recipe, overrides)
    settings = tune.StudySettings(name=name, data=str(found), recipe=recipe, space=str(space),
                                  space_sha1=hashlib.sha1(space.read_bytes()).hexdigest(),
                                  overrides=tuple(overrides), pruner=a.pruner,
                                  seed=cfg.seed, output=str(a.output))
    check_confirm_folds(a.confirm_folds, cfg)
    dims = settings.dimensions()  # the space read and checked, outside faces only where DATA/extra/ is
    check_with_recipe(dims, recipe, overrides)
    run_settings(found, recipe, overrides, name)  # the model, weights, optimiser and loss: refused now, not per trial
    writable_folder(settings.folder, "the study's folder")
    settings.folder.mkdir(parents=True, exist_ok=True)  # its runs, report and (by default) its SQLite file
    return settings, a.storage or tune.default_storage(settings.folder)


def check_confirm_folds(asked: list[int] | None, cfg) -> None:
    """--confirm-folds: folds of the run that the search does not validate on (else the check is not honest)."""
    if asked is None:
        return
    wrong = [f for f in asked if not 0 <= f < cfg.n_folds]
    searched = sorted(set(asked) & set(cfg.folds))
    if wrong or searched:
        raise ConfigError(f"--confirm-folds {','.join(map(str, asked))}: " + (
            f"fold numbers are 0..{cfg.n_folds - 1} (n_folds={cfg.n_folds})" if wrong else
            f"fold(s) {searched} are searched (folds={','.join(map(str, cfg.folds))}); the check needs folds the "
            f"search never validated on"))


def search(a) -> int:
    settings, storage = study_settings(a)
    cfg = load_config(settings.recipe, list(settings.overrides))
    steps = cfg.epochs * len(cfg.folds)
    study = tune.open_study(settings, storage, steps)
    print(f"tune {settings.name}: {tune.counted(study)} of {a.trials} trials finished in {storage}; space "
          f"{settings.space} ({', '.join(d.key for d in settings.dimensions())})", flush=True)
    if redrawn := tune.redraw_failed(study):
        print(f"tune {settings.name}: {redrawn} trial(s) cut short are drawn again (their runs continue)", flush=True)
    if a.jobs == 1:
        tune.optimise(settings, storage, a.trials, steps)
    else:
        tune.spawn_workers(settings, storage, a.trials, a.jobs, steps)
    summary = tune_report.write_report(settings, tune.open_study(settings, storage, steps), a.trials, a.confirm_folds)
    print(f"\ntune {settings.name}: {summary['trials']} trials ({summary['pruned']} pruned); report: "
          f"{settings.folder / 'report.md'}" + (f"; best {summary['best_f1']:.4f}: {settings.folder / 'best.yaml'}"
                                                if "best_f1" in summary else ""))
    if "confirm" in summary:
        c = summary["confirm"]
        print(f"on fold(s) {c['folds']}, never validated by the search: best - base {c['gain']:+.4f} "
              f"[{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]: {tune_report.verdict(c)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
