"""A search space for `bash run.sh tune`: config keys with distributions, read from YAML and checked like a recipe.

    lr: {log_float: [1.0e-4, 2.0e-3]}                  # log-uniform between the two
    cutmix: {float: [0.0, 0.5], step: 0.1}             # uniform (step: on a grid)
    age_boundary: {int: [55, 60]}                      # whole numbers, both ends included
    loss: {choice: [focal, ce, focal_f1]}              # one of these (as key=value would say it)
    focal_gamma: {float: [1.0, 3.0], when: {loss: [focal, focal_f1]}}   # searched only where loss is one of those

Every key is a config key (core/keys.py); both ends of a range and every choice must be a value the key takes;
a `when` names a key of the space sampled before it (the file's order) and values among its choices. What is
wrong exits 2 naming the file, the line and the closest name. A space file is a name of configs/tune/ or a path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ..core.errors import ConfigError, closest_names
from ..core.keys import KEYS
from ..core.paths import CONFIG_DIR, user_path
from ..model.losses import check_loss

SPACE_DIR = CONFIG_DIR / "tune"
KINDS = ("float", "log_float", "int", "log_int", "choice")
RANGES = {"float": float, "log_float": float, "int": int, "log_int": int}
OPTIONS = {"step", "when"}  # besides the kind


@dataclass(frozen=True)
class Dimension:
    key: str                        # the config key it sets
    kind: str                       # one of KINDS
    values: tuple                   # (low, high) for a range, the choices for `choice`
    step: float | int | None = None
    when: tuple[tuple[str, tuple], ...] = ()   # ((key, allowed values), ...): searched only where all hold
    where: str = ""                 # the file and line it came from, for messages

    def applies(self, chosen: dict) -> bool:
        return all(key in chosen and chosen[key] in allowed for key, allowed in self.when)

    def suggest(self, trial):
        """The value an Optuna trial draws for this key."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.values))
        low, high = self.values
        log = self.kind.startswith("log_")
        if self.kind.endswith("int"):
            return trial.suggest_int(self.key, low, high, step=self.step or 1, log=log)
        return trial.suggest_float(self.key, low, high, step=self.step, log=log)


def space_file(name_or_path: str) -> Path:
    """`default` -> configs/tune/default.yaml; a file (from where the user stands) as it is."""
    path = user_path(name_or_path)
    if path.is_file():
        return path
    named = SPACE_DIR / f"{name_or_path}.yaml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in SPACE_DIR.glob("*.yaml")))
    raise ConfigError(f"--space {name_or_path}: not a file, and not a space of configs/tune/ ({known})")


def key_lines(path: Path, text: str) -> dict[str, int]:
    """The line (1-based) of each top-level key of a YAML mapping."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in root.value} if isinstance(root, yaml.MappingNode) else {}


def read_space(path: Path) -> tuple[Dimension, ...]:
    """The dimensions of a space file, each checked; ConfigError names the file and line of the first wrong one."""
    text = path.read_text()
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict) or not loaded:
        raise ConfigError(f"{path}: a search space is a mapping of config keys to distributions, like "
                          f"lr: {{log_float: [1.0e-4, 2.0e-3]}}")
    lines, dims = key_lines(path, text), []
    for key, spec in loaded.items():
        where = f"{path}, line {lines.get(key, '?')}"
        try:
            dims.append(dimension(str(key), spec, {d.key: d for d in dims}, where))
        except ValueError as e:
            raise ConfigError(f"{where}: {key}: {e}") from None
    return tuple(dims)


def dimension(key: str, spec, earlier: dict[str, Dimension], where: str = "") -> Dimension:
    """One entry of the space: a config key, one kind, its values the key takes; ValueError says what is wrong."""
    if key not in KEYS:
        close = " or ".join(closest_names(key, KEYS))
        raise ValueError(f"not a config key{f' (did you mean {close}?)' if close else ''}")
    if not isinstance(spec, dict):
        raise ValueError(f"expected a distribution like {{choice: [a, b]}} or {{float: [0.0, 1.0]}}, not {spec!r}")
    kinds = [k for k in spec if k not in OPTIONS]
    for word in kinds:
        if word not in KINDS:
            close = " or ".join(closest_names(str(word), KINDS + tuple(OPTIONS)))
            raise ValueError(f"{word} is not a distribution{f' (did you mean {close}?)' if close else ''}; "
                             f"the distributions: {', '.join(KINDS)}")
    if len(kinds) != 1:
        raise ValueError(f"one distribution of {', '.join(KINDS)}, not {len(kinds)}")
    kind = kinds[0]
    values = choices(key, spec[kind]) if kind == "choice" else value_range(key, kind, spec[kind])
    step = spec.get("step")
    if step is not None and (kind == "choice" or kind.startswith("log_") or not isinstance(step, (int, float))
                             or isinstance(step, bool) or step <= 0):
        raise ValueError(f"step={step!r}: a positive number, for float and int ranges only")
    return Dimension(key, kind, values, step, conditions(spec.get("when"), earlier), where)


def taken(key: str, value) -> None:
    """A value the key takes, as key=value would give it (its parser's complaint otherwise; a loss: the loss
    table's)."""
    try:
        KEYS[key].parse(value if not isinstance(value, bool) else str(value).lower())
        if key == "loss":
            check_loss(str(value))
    except ValueError as e:
        raise ValueError(f"{value!r}: {e}") from None


def choices(key: str, raw) -> tuple:
    if not isinstance(raw, list) or not raw:
        raise ValueError("choice: a list of the values to try, like [focal, ce]")
    for v in raw:
        if not isinstance(v, (str, int, float, bool)):
            raise ValueError(f"choice: {v!r}: each choice a number, a word or true/false (an augment list: its file "
                             f"name of configs/augment/, or its one-line text)")
        taken(key, v)
    if len(set(map(str, raw))) != len(raw):
        raise ValueError("choice: a value listed twice")
    return tuple(raw)


def value_range(key: str, kind: str, raw) -> tuple:
    cast = RANGES[kind]
    if not (isinstance(raw, list) and len(raw) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            for v in raw)):
        raise ValueError(f"{kind}: [low, high], two numbers")
    low, high = (cast(v) for v in raw)
    if cast is int and any(v != int(v) for v in raw):
        raise ValueError(f"{kind}: {raw}: whole numbers")
    if not low < high:
        raise ValueError(f"{kind}: [{low}, {high}]: low must be below high")
    if kind.startswith("log_") and low <= 0:
        raise ValueError(f"{kind}: [{low}, {high}]: a log range starts above 0")
    for v in (low, high):
        taken(key, v)
    return low, high


def conditions(raw, earlier: dict[str, Dimension]) -> tuple[tuple[str, tuple], ...]:
    """`when: {loss: [focal, focal_f1]}`: keys sampled before this one (choices), and values among theirs."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ValueError("when: a mapping of an earlier choice to its values, like {loss: [focal, focal_f1]}")
    out = []
    for key, allowed in raw.items():
        dim = earlier.get(key)
        if dim is None or dim.kind != "choice":
            raise ValueError(f"when: {key} is not a choice of this space listed before it")
        allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        wrong = [v for v in allowed if v not in dim.values]
        if wrong:
            raise ValueError(f"when: {key}: {wrong} not among its choices {list(dim.values)}")
        out.append((key, allowed))
    return tuple(out)


def sample(dims: tuple[Dimension, ...], trial) -> list[str]:
    """The key=value overrides one trial draws (a conditional key only where its condition holds)."""
    chosen: dict = {}
    for dim in dims:
        if dim.applies(chosen):
            chosen[dim.key] = dim.suggest(trial)
    return [f"{k}={as_text(v)}" for k, v in chosen.items()]


def as_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def check_with_recipe(dims: tuple[Dimension, ...], recipe: str, overrides: list[str]) -> None:
    """Each end of a range and each choice, with the values its `when` needs, read as a config of `recipe` with
    `overrides` (the checks of one key against another: a warm-up as long as the run, a min_lr above lr ...)."""
    from ..core.config import load_config

    for dim in dims:
        needs = [f"{k}={as_text(allowed[0])}" for k, allowed in dim.when]
        for value in dim.values:
            try:
                load_config(recipe, [*overrides, *needs, f"{dim.key}={as_text(value)}"])
            except ConfigError as e:
                raise ConfigError(f"{dim.where}: {dim.key}={as_text(value)} with --config {recipe}: {e}") from None


def without_outside(dims: tuple[Dimension, ...]) -> tuple[tuple[Dimension, ...], list[str]]:
    """The space without its extra* keys (where the data folder has no extra/ folder), and the keys left out."""
    kept = tuple(d for d in dims if not d.key.startswith("extra") and not any(k.startswith("extra") for k, _ in d.when))
    return kept, [d.key for d in dims if d not in kept]
