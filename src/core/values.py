"""The value types of the config: each parser turns the text of a key (or a YAML scalar, or its own output)
into its typed value, and raises ValueError saying what is wrong; `core/keys.py` names each key's parser.

Paths are resolved from where the user stands (`paths.user_path`); `extra=` is held as its folders; the
optimiser and augment list are checked against timm and albumentations here, when the config is read.
"""
from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import yaml

from . import augment_list
from .errors import closest_names
from .paths import AUGMENT_DIR, CORRECTIONS_DIR, user_path


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


OUTSIDE_AUTO = "auto"  # extra=auto: the data folder's extra/ when there is one (config.settle_outside)
OUTSIDE_SUBFOLDER = "extra"
Folders = tuple[Path, ...]


def outside_folders(raw) -> Folders | str:
    """extra=: `A,B` (or a YAML list) -> the folders, each resolved from where the user stands (normalised);
    `none` (or '') -> (); `auto` kept as auto until the data folder is known (config.settle_outside)."""
    if isinstance(raw, (list, tuple)):  # a recipe's YAML list, or the value itself
        return tuple(user_path(str(p)) for p in raw)
    s = text(raw).strip()
    if s.lower() in ("none", OUTSIDE_AUTO):
        return () if s.lower() == "none" else OUTSIDE_AUTO
    return tuple(user_path(p) for p in comma_items(s)) if s else ()


def folders_text(value: Folders | str) -> str:
    """extra= as config.yaml and messages hold it: auto, '' (none) or the folders joined by commas."""
    return value if isinstance(value, str) else ",".join(map(str, value))


def corrections_file(raw) -> str:
    """'' | a name of configs/corrections/ (kept as the name) | a CSV file (resolved as `path_text`)."""
    s = text(raw).strip()
    return s if not s or (CORRECTIONS_DIR / f"{s}.csv").is_file() else path_text(s)


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
# kron without opt_einsum: timm's own note says its einsums blow up memory (what it measured: docs/results.md)
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
                         f"(docs/results.md, issue 33); with it, expect minutes of torch.compile on its "
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



def library_args(raw) -> MappingProxyType:
    """optimizer_args= / scheduler_args=: a mapping of a library's own argument names to values (a recipe's YAML
    mapping, or its one-line text `{momentum: 0.95}`; '' or none: {}), passed through as they are. A value is a
    number, text, true/false or a list of those (held as a tuple)."""
    if raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "{}")):
        return MappingProxyType({})
    if isinstance(raw, str):
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ValueError(f"not a YAML mapping like {{momentum: 0.95}}: {e}") from None
    if not isinstance(raw, Mapping):
        raise ValueError("expected a mapping of argument names to values, like {momentum: 0.95}")
    args = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{name!r} is not an argument name")
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(v, (bool, int, float, str)) for v in items):
            raise ValueError(f"{name}: {value!r}: a number, text, true/false or a list of those")
        args[name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return MappingProxyType(dict(sorted(args.items())))


def library_args_text(value: Mapping) -> dict:
    """What config.yaml holds: the mapping, lists as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
