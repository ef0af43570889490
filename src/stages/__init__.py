"""The stages `bash run.sh STAGE ...` runs, each in a line: what --help lists and what an unknown
stage is checked against (run.sh's case statement maps each name to its module)."""
from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import signal
import sys
from pathlib import Path
from typing import Callable


def interrupted(kind, value, tb) -> None:
    """Ctrl-C at any moment of any stage (torch still loading, photos being checked, ...): one line and
    exit 130, never a traceback. Stages that can say more (where a run stopped) catch it themselves first;
    the files they write are written whole or not at all (core/files.py: atomic_*), so nothing is left half-made."""
    if issubclass(kind, KeyboardInterrupt):
        with contextlib.suppress(Exception):  # a closed pipe must not turn this into a traceback
            print(f"\n{stopped_line()}", file=sys.stderr, flush=True)
            sys.stdout.flush()
        os._exit(130)
    sys.__excepthook__(kind, value, tb)


def stopped_line() -> str:
    """The documented line of a Ctrl-C that has nothing more to say: `interrupted (Ctrl-C): bash run.sh STAGE
    stopped`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    stage = spec.name.rsplit(".", 1)[-1] if spec else os.path.basename(sys.argv[0])
    return f"interrupted (Ctrl-C): bash run.sh {stage} stopped"


def ctrl_c_while_loading(signum, frame) -> None:
    """SIGINT until the stage's work starts: the line and exit 130 at once. Raised as KeyboardInterrupt there, it
    could land in a library's import inside a bare `except:` (OpenCV's loader has one) and be swallowed: the
    stage would then run on as if Ctrl-C had not been pressed."""
    interrupted(KeyboardInterrupt, KeyboardInterrupt(), None)


# set before the stage module itself runs (python -m src.stages.X imports this package first; "-m" is argv[0]
# while it does), so Ctrl-C while torch and the rest load is one line too; run_stage hands Ctrl-C back to Python
sys.excepthook = interrupted
if sys.argv[:1] == ["-m"]:
    signal.signal(signal.SIGINT, ctrl_c_while_loading)

STAGES = {
    "(none)": "the whole job: data check, folds, training, fold ensemble on eval, report  [key=value ...]",
    "train": "the same whole job, named  [--data DIR] [--config NAME|FILE] [--name RUN] [key=value ...]",
    "test": "the test suite  [pytest args]",
    "predict": "classify any photos with a run's fold ensemble  --run RUN [--out FILE] PATH...",
    "export": "the fold ensemble (+ flip TTA) as one ONNX file  --run RUN",
    "audit": "persons whose labels the OOF predictions contradict  --run RUN [--noise-log FILE]",
    "gallery": "the error-analysis page RUN/gallery.html  --run RUN",
    "compare": "are two runs the same numbers (apart from the machine's times)?  RUN_A RUN_B",
    "extra": "outside photos with drawn masks, as a contact sheet  --from DIR [--preview 24] [--out FILE.png]",
    "background": "the photos as the model sees them with backgrounds removed, and the fill by class  [--preview 12]",
    "blend": "blend runs, group persons, decide for macro-F1  --runs A[,B...] [--decision bias] [--group-eval 7]",
    "bench": "recipes trained under one protocol, one table  [--protocol cpu|gpu] [--recipes seed,recommended]",
    "tune": "search for the best recipe on your data (Optuna), checked on unseen folds  [--space NAME] [--trials N]",
    "speed": "where training time goes  [--device cpu|cuda] [--images N] [key=value ...]",
    "weights": "fetch + verify ImageNet weights, save them as files  MODEL... [--out DIR]",
    "gpucheck": "the whole GPU path, checked on the demo data  [--out DIR] [--only CHECKS]",
}


def listing() -> str:
    width = max(len(s) for s in STAGES)
    return "stages (bash run.sh STAGE --help for each one's options):\n" + "\n".join(
        f"  {name:<{width}}  {what}" for name, what in STAGES.items())


def unknown_stage(word: str) -> str:
    """What to say when a word that is neither a stage nor key=value starts the command."""
    close = difflib.get_close_matches(word, [s for s in STAGES if s != "(none)"], n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"'{word}' is not a stage, nor a key=value override.{hint}\n{listing()}"


def run_stage(work: Callable[[], int | None], interrupted: str = "", then: str = "") -> int:
    """Every stage's work, answered one way: a UserError (bad data, config, weights or paths, a run busy or
    missing, a full disk: core/errors.py) -> `error: <its message>` and exit 2, no traceback; Ctrl-C -> where
    it stopped (the interrupt's own message, else `interrupted`, else `stopped_line`), `then` (how to continue) and
    exit 130.
    Returns the work's own exit code (None: 0)."""
    from ..core.errors import UserError
    from ..core.files import writing_errors

    if signal.getsignal(signal.SIGINT) is ctrl_c_while_loading:  # from here stages say where Ctrl-C stopped them
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with writing_errors():
            return work() or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"\n{str(e) or interrupted or stopped_line()}{then}", file=sys.stderr)  # a bare Ctrl-C's text is ""
        return 130


def void(_result) -> None:
    """A stage whose work returns something (a path, a table) and reports it itself: exit code 0."""


def parser(prog: str, manual: str | None, **kw) -> argparse.ArgumentParser:
    """A stage's argument parser: its module docstring as the --help manual (line breaks kept), and no
    option guessed from an abbreviation."""
    return argparse.ArgumentParser(prog=prog, description=manual, allow_abbrev=False,
                                   formatter_class=argparse.RawDescriptionHelpFormatter, **kw)


def picture_file(raw: str | None, folder: Path, stem: str) -> Path:
    """A stage's --out picture, checked before any work: a new .png or .jpg in a folder that can be written
    (default: <folder>/<stem>.png, or -2, -3, ... beside it; never over a file)."""
    from ..core.errors import ConfigError, Exists
    from ..core.files import first_free, writable_folder
    from ..core.paths import user_path

    if not raw:  # the documented default, in the output folder a fresh clone does not have yet
        folder.mkdir(parents=True, exist_ok=True)
    out = user_path(raw) if raw else first_free(folder, stem, ".png")
    if out.exists():
        raise Exists(f"--out {out}: already exists; this stage never writes over a file")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {out}: its folder {out.parent} does not exist")
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError(f"--out {out}: write a .png or .jpg")
    writable_folder(out.parent, "--out")  # said now, not after the drawing
    return out
