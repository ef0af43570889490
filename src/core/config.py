"""Run configuration: defaults, overlaid by a recipe file, overlaid by `key=value` overrides.

Parsed once, here: `load_config` turns the text of every key into its real type (image size as
an (H, W) pair, folds as a tuple of fold numbers, task weights as floats, ...), checks it against
the table KEYS and returns a frozen `Config`. Nothing else parses config text. Every key must
exist in KEYS, so a typo fails loudly instead of being silently ignored. `Config.saved()` is the
text form written to `config.yaml`; loading that file gives the same Config back.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

import yaml

from . import augment_list
from .errors import UserError, closest_names

ROOT = Path(__file__).resolve().parents[2]  # src/core/config.py -> the repository
CONFIG_DIR = ROOT / "configs"


class ConfigError(UserError, ValueError):
    """A recipe file or override that cannot be applied."""


# ---- parsers: text (or a YAML scalar) -> typed value; each also accepts its own output ----------

def boolean(raw) -> bool:
    if isinstance(raw, bool):
        return raw
    low = str(raw).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def integer(lo: int | None = None, hi: int | None = None) -> Callable:
    def parse(raw) -> int:
        if isinstance(raw, bool):
            raise ValueError("expected an integer")
        try:
            v = int(str(raw))
        except ValueError:
            raise ValueError("expected an integer") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError(f"must be in {lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}")
        return v
    return parse


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
           ) -> Callable:
    def parse(raw) -> float:
        if isinstance(raw, bool):
            raise ValueError("expected a number")
        try:
            v = float(str(raw))
        except ValueError:
            raise ValueError("expected a number") from None
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise ValueError(f"must be {'>' if lo_open else '>='} {lo:g}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise ValueError(f"must be {'<' if hi_open else '<='} {hi:g}")
        return v
    return parse


def choice(*options: str) -> Callable:
    def parse(raw) -> str:
        v = str(raw)
        if v not in options:
            raise ValueError(f"choose one of {', '.join(options)}")
        return v
    return parse


def text(raw) -> str:
    return "" if raw is None else str(raw)


def comma_items(raw) -> list[str]:
    """`A,B`: the items, stripped; an empty one (`A,,B`, `A,`, `,`) is a mistake, not a thing to skip."""
    if not text(raw).strip():
        raise ValueError("names nothing; give A or A,B")
    parts = [p.strip() for p in text(raw).split(",")]
    if not all(parts):
        raise ValueError("an empty item between commas (a stray comma?); give A or A,B")
    return parts


def option_items(option: str) -> Callable:
    """A command-line option holding a comma-separated list (blend --runs, bench --recipes, extra --from)."""
    def parse(raw):
        try:
            return comma_items(raw)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{raw!r}: {e}") from None
    parse.__name__ = option
    return parse


def path_text(raw) -> str:
    """A file or folder the user typed, resolved from where the user stands ('' = none): config.yaml holds
    it absolute, so a run continued from another folder reads the same files."""
    s = text(raw).strip()
    return str(user_path(s)) if s else ""


def folder_list(raw) -> str:
    """`A,B`: folders, each resolved as `path_text`, joined by commas ('' = none)."""
    return ",".join(path_text(p) for p in comma_items(raw)) if text(raw).strip() else ""


OUTSIDE_AUTO = "auto"  # extra=auto: the data folder's extra/ when there is one (settled with the data folder)
OUTSIDE_SUBFOLDER = "extra"


def outside_folders(raw) -> str:
    """extra=: folders as `folder_list`; `none` (or '') off; `auto` kept until the data folder is known
    (`settle_outside`)."""
    s = text(raw).strip()
    if s.lower() in ("none", OUTSIDE_AUTO):
        return "" if s.lower() == "none" else OUTSIDE_AUTO
    return folder_list(s)


def corrections_file(raw) -> str:
    """'' | a name of configs/corrections/ (kept as the name) | a CSV file (resolved as `path_text`)."""
    s = text(raw).strip()
    return s if not s or (CONFIG_DIR / "corrections" / f"{s}.csv").is_file() else path_text(s)


AUGMENT_DIR = CONFIG_DIR / "augment"  # named augment lists: augment=kaggle is configs/augment/kaggle.yaml


def augment_file(raw) -> Path | None:
    """The list file `augment=` names (configs/augment/NAME.yaml, or a .yaml path from where the user stands),
    whether it is there or not; None when the value is a list itself."""
    text_form = raw.strip() if isinstance(raw, str) else ""
    named = AUGMENT_DIR / f"{text_form}.yaml"
    if named.is_file():
        return named
    return user_path(text_form) if text_form.endswith((".yaml", ".yml")) else None


def named_augment_lists() -> str:
    return ", ".join(sorted(p.stem for p in AUGMENT_DIR.glob("*.yaml")))


def augment_steps(raw) -> tuple:
    """The augment list: YAML's list (a recipe's), its one-line text, none, or a list file (`augment_file`)
    read here: config.yaml then holds the list itself (`_build` makes its errors name the file)."""
    path = augment_file(raw)
    if path is None:
        try:
            return augment_list.steps(raw)
        except augment_list.StepError as e:
            if not (isinstance(raw, str) and raw.strip().isidentifier()):
                raise
            raise augment_list.StepError(e.index, f"{e}, nor a list of configs/augment/ ({named_augment_lists()})"
                                         ) from None
    if not path.is_file():
        raise ValueError(f"no augment list file {path} (named lists: {named_augment_lists()})")
    try:
        return augment_list.steps(yaml.safe_load(path.read_text()))
    except yaml.YAMLError as e:
        raise ValueError(f"not valid YAML: {e}") from None


LOOKAHEAD = "lookahead_"  # timm's prefix: any optimiser wrapped in Lookahead (lookahead_adam)
# what timm's optimisers need beyond timm and torch: the package they import, and what it is for
OPTIMISER_PACKAGES = {"apex": "NVIDIA apex (built from source against your CUDA; its fused optimisers run on a CUDA "
                              "GPU only)",
                      "bitsandbytes": "bitsandbytes (pip install bitsandbytes; its 8-bit optimisers are for CUDA GPUs)"}
# kron without opt_einsum: timm's own note says its einsums blow up memory (measured: 23 GB on 12 tiny persons)
NEEDS_OPT_EINSUM = ("kron", "kronc", "kronw")


def optimizer_name(raw) -> str:
    """Any optimiser timm's `create_optimizer_v2` knows, by its own name (timm.optim.list_optimizers()), or
    `lookahead_` + one; one whose package is not installed here is refused, saying what it needs."""
    from timm.optim import get_optimizer_info, list_optimizers

    name, known = text(raw).strip().lower(), list_optimizers()
    base = name.removeprefix(LOOKAHEAD)
    if base not in known:
        prefix = LOOKAHEAD if base != name else ""
        close = " or ".join(prefix + c for c in closest_names(base, known))
        raise ValueError(f"not an optimiser timm knows{f' (did you mean {close}?)' if close else ''}; "
                         f"timm's names: {', '.join(known)} (each also as {LOOKAHEAD}NAME)")
    made_by = get_optimizer_info(base).opt_class
    package = made_by.split(".")[0] if isinstance(made_by, str) else ""  # timm names the ones it imports lazily
    if package and importlib.util.find_spec(package) is None:
        raise ValueError(f"{base} is {made_by}, which needs {OPTIMISER_PACKAGES.get(package, package)}; {package} is "
                         f"not installed here")
    if base in NEEDS_OPT_EINSUM and importlib.util.find_spec("opt_einsum") is None:
        raise ValueError(f"{base} needs opt_einsum (pip install opt_einsum): without it timm's Kron blows up memory "
                         f"(23 GB on 12 persons at 32x24 here); with it, expect minutes of torch.compile on its "
                         f"first step")
    return name


def image_size(raw) -> tuple[int, int]:
    """(H, W) from "H,W", or H alone with W = 3/4 H like the 512x384 photos."""
    parts = raw if isinstance(raw, (tuple, list)) else str(raw).split(",")
    try:
        sizes = [int(x) for x in parts]
    except ValueError:
        raise ValueError("expected H or H,W") from None
    if len(sizes) == 1:
        sizes = [sizes[0], max(8, int(round(sizes[0] * 0.75 / 8)) * 8)]
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError("expected H or H,W (positive)")
    return sizes[0], sizes[1]


def fold_list(raw) -> tuple[int, ...] | str:
    """'all' or sorted fold numbers; checked against n_folds in `_cross_checks`."""
    if isinstance(raw, (tuple, list)):
        return tuple(sorted({int(x) for x in raw}))
    if str(raw).strip() == "all":
        return "all"
    try:
        return tuple(sorted({int(x) for x in comma_items(raw)}))
    except ValueError:
        raise ValueError("expected 'all' or fold numbers like 0,2") from None


def task_weights(raw) -> tuple[float, float, float]:
    parts = raw if isinstance(raw, (tuple, list)) else str(raw).split(",")
    try:
        w = tuple(float(x) for x in parts)
    except ValueError:
        w = ()
    if len(w) != 3 or min(w) < 0:
        raise ValueError("expected three non-negative numbers mask,gender,age")
    return w


def age_range(raw) -> tuple[int, int] | None:
    """`57-59`: an inclusive range of ages (drop_ages: left out of training; extra_ages: outside persons kept)."""
    if raw is None or isinstance(raw, (tuple, list)):
        return None if not raw else (int(raw[0]), int(raw[1]))
    s = str(raw).strip()
    if not s:
        return None
    if s.isdigit():
        raise ValueError(f"expected a range like 57-59 (one age: {s}-{s}; from {s} up: {s}-120)")
    try:
        lo, hi = (int(x) for x in s.split("-"))
    except ValueError:
        raise ValueError("expected a range like 57-59") from None
    if lo > hi:
        raise ValueError("the range is empty")
    return lo, hi


OUTSIDE_AGES_AUTO = "auto"  # extra_ages=auto: from the competition's youngest person up (settled with the data)


def outside_ages(raw) -> tuple[int, int] | None | str:
    """extra_ages=: auto (the default: outside persons as old as the competition's youngest or older) | all ('')
    | a range like 55-120."""
    s = "" if raw is None or isinstance(raw, (tuple, list)) else str(raw).strip().lower()
    if s == OUTSIDE_AGES_AUTO:
        return OUTSIDE_AGES_AUTO
    return None if s == "all" else age_range(raw)


def outside_ages_text(value) -> str:
    return value if value == OUTSIDE_AGES_AUTO else "all" if value is None else f"{value[0]}-{value[1]}"


@dataclass(frozen=True)
class Pretrained:
    """Where a run's initial weights come from (model/weights.py finds them):
    none | imagenet (the offline package, else the hub cache, else a download) | package | hub | file."""
    source: str
    path: str = ""  # source=file: the file, resolved from where the user stood when it was typed

    def __str__(self) -> str:
        """What config.yaml holds: false | true | package | hub | the path."""
        return {"none": "false", "imagenet": "true", "file": self.path}.get(self.source, self.source)


def pretrained(raw) -> Pretrained:
    """false | true | package | hub | a path; yes/no/1/0 mean true/false."""
    if isinstance(raw, Pretrained):
        return raw
    low = ("true" if raw else "false") if isinstance(raw, bool) else str(raw).strip().lower()
    if low in ("true", "1", "yes"):
        return Pretrained("imagenet")
    if low in ("false", "0", "no", ""):
        return Pretrained("none")
    if low in ("package", "hub"):
        return Pretrained(low)
    return Pretrained("file", path_text(raw))  # resolved like every path key


def worker_count(raw) -> int | str:
    """auto (what the machine affords: core/machine.loader_workers) or a number of loader processes."""
    return "auto" if str(raw).strip() == "auto" else integer(0)(raw)


def device_name(raw) -> str:
    """auto | cpu | cuda | cuda:N (whether that GPU exists is checked when the run starts)."""
    v = str(raw).strip()
    if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return v
    raise ValueError("expected auto, cpu, cuda or cuda:N")


def group_size(raw) -> int:
    """0 (off) or the number of photos per person to group eval photos into (the competition: 7)."""
    v = integer(0, 100)(raw)
    if v == 1:
        raise ValueError("0 (off) or a group size of at least 2")
    return v


def _joined(values, fmt="{}") -> str:
    return ",".join(fmt.format(v) for v in values)


@dataclass(frozen=True)
class Key:
    default: Any                                   # as a recipe file writes it
    parse: Callable                                # text -> typed value; ValueError says what is wrong
    dump: Callable = lambda v: v                   # typed value -> what config.yaml holds
    doc: str = ""


LOSSES = ("focal", "ce", "weighted_ce", "smooth", "f1", "focal_f1")
# timm's names (none: its "constant"). Not plateau: timm deprecates it, and its state is not in its checkpoints, so
# a resumed run would not end like an uninterrupted one
SCHEDULES = ("none", "cosine", "tanh", "poly", "step")
# decision=auto with outside persons: bias (fitted on the OOF for macro-F1) beat prior (the competition's class
# prior put back) in two of three runs and on average, +0.005 against -0.006 (docs/results.md, issue 26); the
# prior moves predictions away from the >=60 classes the outside faces are there for. But 18 biases fitted on one
# fold's persons overfit (-0.008 on unseen persons, issue 33): auto stays auto, and applies the biases only where
# their nested score beats plain argmax (infer/decision.decide_for_run)
DECISION_WITH_EXTRA = "auto"

KEYS: dict[str, Key] = {
    # data
    "data_dir": Key("input/data", text, doc="competition-layout data (--data wins)"),
    "corrections": Key("", corrections_file, doc="'' (none), a CSV path, or a name of a file in configs/corrections/"),
    # folds
    "n_folds": Key(5, integer(2)),
    "folds": Key("all", fold_list, _joined, doc="which folds to train: all or e.g. 0 / 0,2 (held as fold numbers)"),
    "split": Key("stratified", choice("stratified", "iterative"),
                 doc="stratified: StratifiedKFold over gender x age band | iterative: also balance the ages "
                     "next to the training-time boundary (iterative-stratification)"),
    "seed": Key(42, integer()),
    "age_boundary": Key(60, integer(31, 60), doc="training-time boundary of the >=60 band; reports always use 60"),
    "drop_ages": Key("", age_range, lambda v: "" if v is None else f"{v[0]}-{v[1]}",
                     doc="e.g. 57-59: persons of these ages are left out of training"),
    "sampler": Key("random", choice("random", "balanced"),
                   doc="balanced: each class drawn equally often, with replacement"),
    "cutmix": Key(0.0, number(0, 1), doc="probability that a batch is made of left+right halves of two faces"),
    "extra": Key("", outside_folders,
                 doc="outside face photos without masks, masks drawn on, training-only persons: folders "
                     "(comma-separated) in any layout of extra_format | auto: <data>/extra/ when it is there | "
                     "none ('' too): off"),
    "extra_ages": Key("auto", outside_ages, outside_ages_text,
                      doc="extra: only outside persons of these ages, e.g. 55-120 | auto: from the competition "
                          "data's youngest person up (the competition's persons are adults; a download's children "
                          "are left out and counted) | all"),
    "extra_format": Key("auto", choice("auto", "labels", "utkface", "aaf", "afad", "fairface"),
                        doc="extra: the folders' layout — auto (found from their contents) | labels (labels.csv) | "
                            "utkface | aaf (All-Age-Faces) | afad (AFAD-Full/Lite) | fairface"),
    "extra_race": Key("", text, doc="extra: only outside photos of this race, where the layout names one "
                                    "(FairFace: e.g. 'East Asian'); '' = all"),
    "extra_conflicts": Key("drop", choice("error", "drop"),
                           doc="extra: one photo listed with two labels (the same file, or the same bytes under "
                               "two names, as public sets have them) — drop: left out, counted in the first lines "
                               "and the report, listed in RUN/outside_conflicts.txt | error: refused, naming both "
                               "lines"),
    "pseudo_from": Key("", text, doc="a finished run whose confident eval photos join every fold's training data"),
    "pseudo_threshold": Key(0.9, number(0, 1), doc="pseudo_from: the least probability of the predicted class"),
    # model
    "model": Key("resnet18", text),
    "pretrained": Key("false", pretrained, str,
                      doc="false | true (ImageNet: the offline package, else the hub cache, else a download) | "
                          "package | hub (only that source) | path to a state_dict file"),
    "drop_rate": Key(0.0, number(0, 1, hi_open=True),
                     doc="dropout before the classifier (timm's drop_rate; below 1: at 1 every feature is zeroed)"),
    "ema": Key(0.0, number(0, 1, hi_open=True),
               doc="decay of an exponential moving average of the weights after every step (timm's ModelEmaV3; "
                   "0 = off): validation, the OOF, the eval, predict and export use the averaged weights"),
    "ema_warmup": Key(True, boolean,
                      doc="ramp the average's decay up as timm's use_warmup does: at update k it is "
                          "min(ema, 1 - k^(-2/3)), so a short run's average is not mostly its initial weights"),
    "drop_path": Key(0.0, number(0, 1, hi_open=True),
                     doc="stochastic depth (timm's drop_path_rate; 0 = off, below 1), where the model has it"),
    "head_init": Key("torch", choice("torch", "timm"),
                     doc="torch: PyTorch's default Linear init of the classifier | timm: the model's own"),
    "head": Key("single", choice("single", "multi"),
                doc="single: one 18-way head | multi: mask/gender/age heads, product of probabilities"),
    "age_head": Key("band", choice("band", "ordinal"),
                    doc="band: the age as three bands | ordinal: P(age >= t) for every t from the exact ages, "
                        "bands from it, the >=60 edge fitted on the OOF for macro-F1"),
    "task_weights": Key("1,1,1", task_weights, lambda v: _joined(v, "{:g}"),
                        doc="multi head: loss weights of mask, gender, age"),
    # input
    "img_size": Key("320,240", image_size, _joined, doc="network input H,W (an int means H with W = 3/4 H)"),
    "crop_frac": Key(0.75, number(0, 1, lo_open=True), doc="centre crop keeps this fraction of each side"),
    "resize": Key("antialias", choice("antialias", "plain"),
                  doc="antialias: bilinear over the whole footprint (PIL) | plain: OpenCV bilinear"),
    "crop": Key("center", choice("center", "face"),
                doc="center | face (MTCNN box + face_margin; centre crop where no face is found)"),
    "face_margin": Key(0.3, number(0)),
    "augment": Key([{"HorizontalFlip": {"p": 0.5}}], augment_steps, augment_list.entries,
                   doc="training augmentation: a list of albumentations transforms by their own names, run per "
                       "photo in the loader's workers on the cached crops, e.g. [HorizontalFlip: {p: 0.5}, Affine: "
                       "{rotate: [-10, 10], p: 0.5}], or a list file: a name of configs/augment/ (e.g. kaggle) or a "
                       ".yaml path (none: no augmentation)"),
    # optimisation
    "epochs": Key(10, integer(1)),
    "batch_size": Key(64, integer(2), doc="photos per step (per process: batch_size / torchrun's processes >= 2; "
                                          "BatchNorm cannot train on one photo)"),
    "optimizer": Key("adam", optimizer_name,
                     doc="any timm optimiser by its name (timm.optim.create_optimizer_v2): adam | adamw | sgd "
                         "(momentum 0.9, Nesterov) | lamb | ...; weight_decay skips biases and norm weights"),
    "layer_decay": Key(0.0, number(0, 1), doc="timm's layer-wise learning-rate decay (0 = off): each block "
                                              "earlier trains at this factor of the next one's rate"),
    "lr": Key(8e-5, number(0, lo_open=True)),
    "scheduler": Key("none", choice(*SCHEDULES),
                     doc="timm's schedules by their names (timm.scheduler.create_scheduler_v2): none (lr constant) | "
                         "cosine | tanh | poly (towards min_lr over the epochs) | step (x decay_rate every "
                         "decay_epochs)"),
    "sched_step": Key("update", choice("update", "epoch"),
                      doc="update: the schedule moves after every optimiser step (timm's train.py; warm-up inside the "
                          "first epoch) | epoch: once per epoch (what runs made before this key did)"),
    "warmup_epochs": Key(0.0, number(0), doc="linear warm-up from warmup_lr to lr over this many epochs (0.5: half "
                                             "an epoch), inside the schedule"),
    "warmup_lr": Key(1e-5, number(0), doc="warmup_epochs: the rate it starts from"),
    "min_lr": Key(0.0, number(0), doc="cosine, tanh, poly: the lowest rate"),
    "decay_epochs": Key(3.0, number(0, lo_open=True), doc="step: epochs between decays"),
    "decay_rate": Key(0.1, number(0, lo_open=True), doc="step: the factor of each decay (poly: its power)"),
    "weight_decay": Key(0.0, number(0)),
    "loss": Key("focal", choice(*LOSSES)),
    "focal_gamma": Key(2.0, number(0)),
    "label_smoothing": Key(0.1, number(0, 1)),
    # inference
    "tta": Key("flip", choice("none", "flip")),
    "group_eval": Key(0, group_size, doc="7: eval photos grouped into persons by image features, gender and age "
                                         "shared in a group (uses the eval set's structure; off by default)"),
    "decision": Key("auto", choice("auto", "none", "bias", "prior"),
                    doc="bias: eval classes from per-class log-prob biases fitted on the OOF for macro-F1 | prior: "
                        "the competition's class prior put back where outside persons or pseudo-labels shifted it "
                        "(log of competition / trained class frequencies added to the log-probabilities) | auto: "
                        "with extra=, the biases where their nested score (fitted without each fold, or each of 5 "
                        "groups of persons) beats plain argmax, else none; without extra=, none (held as none)"),
    # data path
    "cache": Key(True, boolean, doc="decode+resize+crop once into a memory-mapped uint8 cache"),
    "cache_dir": Key("", path_text, doc="'' = <output>/cache, shared by all runs"),
    # machine
    "device": Key("auto", device_name, doc="auto | cpu | cuda | cuda:N"),
    "amp": Key(True, boolean, doc="mixed precision on CUDA (ignored on CPU)"),
    "amp_dtype": Key("auto", choice("auto", "bf16", "fp16")),
    "channels_last": Key(True, boolean),
    "num_workers": Key("auto", worker_count,
                       doc="loader processes, where the augment list runs: auto = on a GPU the cores this process "
                           "may use less one (shared by the processes training on the machine; at most 16), on "
                           "the CPU one (the model needs the cores)"),
    "parallel_folds": Key(0, integer(0)),
    "threads": Key(0, integer(0)),
    "max_images": Key(0, integer(0)),
    # where people look
    "tracker": Key("none", choice("none", "tensorboard", "mlflow", "wandb"),
                   doc="also log each epoch and the final scores to TensorBoard (RUN/tensorboard), MLflow or "
                       "W&B (offline); the package must be installed"),
}

DEFAULTS: dict = {k: key.default for k, key in KEYS.items()}
EXTRA_CHOICES = ("extra_ages", "extra_conflicts", "extra_format", "extra_race")  # act only with extra=

# What a run saved before a key existed actually did, where that differs from today's default:
# such a run must not count as made with the new default (bench reuse, resume).
LEGACY = {"head_init": "timm", "resize": "plain", "sched_step": "epoch", "ema_warmup": False}

# Keys a saved run config holds besides settings: what the run was made from, written by the pipeline.
RECORDS = ("recipe", "weights", "data")  # the recipe's name; initial weights (tag, sha256, source); data folder


class Config(Mapping):
    """Typed, frozen settings of a run (cfg.lr == cfg['lr']) plus its records; `replace` makes a new one."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping):
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key, value):
        raise AttributeError(f"a Config is frozen: use cfg.replace({key}=...)")

    def __getitem__(self, key):
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return f"Config({dict(self._values)})"

    def replace(self, **changes) -> Config:
        return _build({**self._values, **changes}, {k: "replace" for k in changes})

    def saved(self) -> dict:
        """The text form config.yaml holds (records included when set)."""
        out = {k: KEYS[k].dump(self._values[k]) for k in KEYS}
        out.update({k: self._values[k] for k in RECORDS if self._values.get(k) is not None})
        return out


def _build(raw: Mapping, sources: Mapping[str, str]) -> Config:
    """Parse every key once; errors name where the bad value came from."""
    listed = augment_file(raw["augment"])
    if listed is not None and listed.is_file():  # a list file: its steps' errors name it and their line
        sources = {**sources, "augment": str(listed)}
    values = {}
    for k, key in KEYS.items():
        try:
            values[k] = key.parse(raw[k])
        except augment_list.StepError as e:
            raise ConfigError(f"{entry_place(sources.get(k, 'defaults'), k, e.index)}: {k}: {e}") from None
        except ValueError as e:
            where = sources.get(k, "defaults")
            raise ConfigError(f"{where}: {k}={raw[k]}: {e}") from None
    for k in RECORDS:
        values[k] = raw.get(k)
    _cross_checks(values, sources)
    return Config(values)


def _cross_checks(values: dict, sources: Mapping[str, str]) -> None:
    """Checks of one key against another: the folds against n_folds, the extra_* keys against extra, the
    augment list and warm-up against what they act on; and decision=auto settled by extra."""
    # these choose among outside photos: without extra= they would do nothing
    for k in EXTRA_CHOICES:
        if KEYS[k].dump(values[k]) != KEYS[k].default and not values["extra"]:
            raise ConfigError(f"{sources.get(k, 'defaults')}: {k}={KEYS[k].dump(values[k])} without extra=: it "
                              f"chooses among outside photos; set extra=DIR too (or leave {k} out)")
    _training_checks(values, sources)
    if values["extra"] != OUTSIDE_AUTO:  # else settled with the data folder (settle_outside)
        values["decision"] = settled_decision(values["decision"], values["extra"])
    n = values["n_folds"]
    if values["folds"] == "all":
        values["folds"] = tuple(range(n))
    elif any(not 0 <= f < n for f in values["folds"]):
        raise ConfigError(f"{sources.get('folds', 'defaults')}: folds={_joined(values['folds'])}: fold numbers "
                          f"must be in 0..{n - 1} (n_folds={n})")


def _training_checks(values: dict, sources: Mapping[str, str]) -> None:
    """The augment list keeps photos of img_size (each step made to act once); a warm-up stepped once an epoch
    ends at a whole epoch."""
    try:
        augment_list.check_output(values["augment"], values["img_size"])
    except augment_list.StepError as e:
        where = entry_place(sources.get("augment", "defaults"), "augment", e.index)
        raise ConfigError(f"{where}: augment: {e}") from None
    _schedule_checks(values, sources)
    if values["sched_step"] == "epoch" and values["warmup_epochs"] % 1:
        where = sources.get("warmup_epochs", "defaults")
        raise ConfigError(f"{where}: warmup_epochs={values['warmup_epochs']:g} with sched_step=epoch: the rate moves "
                          f"once an epoch there, so its warm-up would hold warmup_lr for whole epochs; use "
                          f"sched_step=update (warm-up inside the epoch) or a whole number of epochs")


def _schedule_checks(values: dict, sources: Mapping[str, str]) -> None:
    """A schedule that would train at another rate than the one asked for is refused (docs/usage.md says why each):
    a floor above lr, a warm-up from above lr or as long as the run, a step decay that grows the rate."""
    lr, warm, sched = values["lr"], values["warmup_epochs"], values["scheduler"]
    cases = [("min_lr", sched in ("cosine", "tanh", "poly") and values["min_lr"] > lr,
              f"min_lr={values['min_lr']:g} is above lr={lr:g}: the {sched} schedule would climb from lr up to min_lr; "
              f"min_lr is the floor it decays to, below lr"),
             ("warmup_lr", warm > 0 and values["warmup_lr"] > lr,
              f"warmup_lr={values['warmup_lr']:g} is above lr={lr:g}: a warm-up climbs from warmup_lr to lr; give "
              f"warmup_lr below lr"),
             ("warmup_epochs", warm >= values["epochs"],
              f"warmup_epochs={warm:g} with epochs={values['epochs']}: the warm-up would last the whole run and "
              f"lr={lr:g} would never be reached; a warm-up shorter than the run"),
             ("decay_epochs", sched == "step" and values["decay_epochs"] >= values["epochs"],
              f"decay_epochs={values['decay_epochs']:g} with scheduler=step and epochs={values['epochs']}: the rate "
              f"would never decay (scheduler=none says so); decay_epochs below epochs"),
             ("decay_rate", sched == "step" and values["decay_rate"] > 1,
              f"decay_rate={values['decay_rate']:g} with scheduler=step: the rate would grow x{values['decay_rate']:g} "
              f"every {values['decay_epochs']:g} epochs; a decay is a factor below 1 (e.g. 0.1)")]
    for key, wrong, why in cases:
        if wrong:
            raise ConfigError(f"{sources.get(key, 'defaults')}: {why}")


def entry_place(where: str, key: str, index: int) -> str:
    """Where entry `index` of the list `key` came from: the recipe file and its line, else the source and the
    entry's number."""
    line = yaml_item_line(Path(where), key, index) if where.endswith((".yaml", ".yml")) else None
    return f"{where}, line {line}" if line else f"{where}, {key} entry {index + 1}"


def yaml_item_line(path: Path, key: str, index: int) -> int | None:
    """The line (1-based) of item `index` of the list under the top-level `key` of a YAML file (the key's own
    line when it holds no list that long), or of the file's own list."""
    try:
        root = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if isinstance(root, yaml.SequenceNode):  # a file that is the list itself (configs/augment/)
        return root.value[index].start_mark.line + 1 if index < len(root.value) else None
    for key_node, value in getattr(root, "value", []) if isinstance(root, yaml.MappingNode) else []:
        if key_node.value == key:
            items = value.value if isinstance(value, yaml.SequenceNode) else []
            return (items[index] if index < len(items) else key_node).start_mark.line + 1
    return None


def settled_decision(decision: str, extra: str) -> str:
    """decision=auto settled by extra=: DECISION_WITH_EXTRA when outside persons join, else none; any other kept."""
    if decision != "auto":
        return decision
    return DECISION_WITH_EXTRA if extra else "none"


def settle_outside(cfg: Config, data_dir: str | Path) -> Config:
    """extra=auto settled by the data folder: its extra/ subfolder when it is a folder, else none; then
    decision=auto as for any extra=. The run's config.yaml holds what was chosen."""
    if cfg.extra != OUTSIDE_AUTO:
        return cfg
    found = Path(data_dir) / OUTSIDE_SUBFOLDER
    extra = str(found.resolve()) if found.is_dir() else ""
    return cfg.replace(extra=extra, decision=settled_decision(cfg.decision, extra))


def config_parser(key: str) -> Callable:
    """A command-line option that sets what a config key does takes that key's own parser (argparse
    reports its ValueError as the option's error)."""
    def parse(raw):
        try:
            return KEYS[key].parse(raw)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{raw!r}: {e} (as the config key {key})") from None
    parse.__name__ = key
    return parse


CALLER_DIR = "MASK_CALLER_DIR"  # run.sh exports the folder the user typed the command in, then moves


def user_path(p: str | Path) -> Path:
    """A path the user typed, taken from where the user stands (not from the repository)."""
    p = Path(p).expanduser()
    return p if p.is_absolute() else Path(os.environ.get(CALLER_DIR) or os.getcwd()) / p


def resolve_recipe(name_or_path: str) -> Path:
    """`seed` -> configs/seed.yaml; an existing file (from where the user stands) is used as is."""
    p = user_path(name_or_path)
    if p.is_file():
        return p
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config '{name_or_path}' not found: not a file, and not one of {known}")


# Keys that became entries of `augment` (runs saved with them: `legacy_augment`)
MOVED_TO_AUGMENT = ("hflip", "shift_px", "color_jitter")  # keys before `augment`; legacy_augment translates them


def legacy_augment(saved: Mapping) -> list:
    """What a run saved before `augment` trained with: its hflip / shift_px / color_jitter as the albumentations
    steps that do the same (nearest-pixel shifts with the border repeated; brightness x and contrast about the
    mean)."""
    flip, shift = float(saved.get("hflip", 0.5)), int(saved.get("shift_px", 0))
    colour = float(saved.get("color_jitter", 0))
    return ([{"HorizontalFlip": {"p": flip}}] if flip else []) + (
        [{"Affine": {"translate_px": [-shift, shift], "interpolation": 0, "border_mode": 1, "p": 1.0}}] if shift else []
    ) + ([{"ColorJitter": {"brightness": colour, "contrast": colour, "saturation": 0, "hue": 0, "p": 1.0}}]
         if colour else [])


def _check_keys(source: str, given: Mapping, records: bool = False) -> None:
    unknown = sorted(set(given) - set(KEYS) - (set(RECORDS) if records else set()))
    if unknown:
        close = {u: difflib.get_close_matches(u, KEYS, n=1) for u in unknown if u not in MOVED_TO_AUGMENT}
        hints = _moved_hint(given) + "".join(f" Did you mean {c[0]} (for {u})?" for u, c in close.items() if c)
        raise ConfigError(f"{source}: unknown config key(s) {unknown}.{hints} Known keys: {sorted(KEYS)}")


def _moved_hint(given: Mapping) -> str:
    """The augment list that does what the old keys the user gave did, with their values."""
    moved = [k for k in MOVED_TO_AUGMENT if k in given]
    if not moved:
        return ""
    names, entries = ", ".join(moved), "is an entry" if len(moved) == 1 else "are entries"
    try:
        steps = legacy_augment({"hflip": 0, **{k: given[k] for k in moved}})
    except (TypeError, ValueError):
        return f" {names} {entries} of augment now (docs/usage.md#augmentation-an-albumentations-list)."
    listed = _short(steps, 300) if steps else "none"
    return f" {names} {entries} of augment now: augment: {listed} does what {names} did."


def read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value")
    return loaded


def load_config(recipe: str | None = "seed", overrides: list[str] | None = None) -> Config:
    raw, sources = dict(DEFAULTS), {}
    if recipe:
        path = resolve_recipe(recipe)
        loaded = read_yaml(path)
        _check_keys(str(path), loaded, records=True)  # a saved run config holds its records too
        raw.update(loaded)
        sources.update({k: str(path) for k in loaded})
        raw["recipe"] = loaded.get("recipe") or path.stem  # a saved run config keeps its recipe's name
    else:
        raw["recipe"] = "defaults"
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        k, v = item.split("=", 1)
        _check_keys("command line", {k: v})
        raw[k] = v
        sources[k] = "command line"
    return _build(raw, sources)


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.saved(), sort_keys=True))


def completed(saved: Mapping) -> Config:
    """A config saved by an older version: the keys added since then take the value the code then
    used (LEGACY, else the default), so the run is reproduced as it was made."""
    raw = {**DEFAULTS, **LEGACY, **saved}
    if "ema_warmup" not in saved and not raw["ema"]:
        raw["ema_warmup"] = DEFAULTS["ema_warmup"]  # no average, nothing to ramp: the run is today's default
    if "augment" not in saved:
        raw["augment"] = legacy_augment(saved)
    if not raw["extra"]:  # the extra_* keys choose among outside photos: without any, what they held did nothing
        raw.update({k: DEFAULTS[k] for k in EXTRA_CHOICES})
    if not raw.get("data"):
        raw["data"] = saved.get("data_dir")  # older runs wrote the data folder they used into data_dir
    return _build(raw, {k: "saved config" for k in saved})


def load_saved(path: Path) -> Config:
    return completed(read_yaml(path))


def saved_differences(path: Path, cfg: Config, ignore: set[str]) -> list[str]:
    """Where `cfg` differs from the config saved at `path`, apart from the `ignore` keys: "key X there, Y here"
    in config.yaml's words (a new default shows as one: a run saved before the key took what the code did)."""
    saved = load_saved(path)
    there, here = saved.saved(), cfg.saved()
    return [f"{k} {_short(there.get(k))} there, {_short(here.get(k))} here" for k in (*KEYS, *RECORDS)
            if k not in ignore and saved[k] != cfg[k]]


def _short(value, width: int = 60) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()
    return text if len(text) <= width else text[:width - 1] + "…"


def matches_saved(path: Path, cfg: Config, ignore: set[str]) -> bool:
    """Does `cfg` equal the config saved at `path`, apart from the `ignore` keys?"""
    return not saved_differences(path, cfg, ignore)
