"""Run configuration: defaults, overlaid by a recipe file (and the recipes it builds on), overlaid by
`key=value` overrides.

Parsed once, here: `load_config` turns the text of every key into its real type (core/values.py: image size as
an (H, W) pair, folds as fold numbers, extra= as folders, ...), checks it against the key table (core/keys.py)
and one key against another (core/key_checks.py), and returns a frozen `Config`. Nothing else parses config text.
`Config.saved()` is the text form written to `config.yaml`; loading that file (core/migrations.py reads older
formats) gives the same Config back.

A recipe may build on another: `base: seed` (a name of configs/, or a file beside it) takes that recipe's keys,
and the recipe holds only what it changes.
"""
from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import yaml

from . import augment_list, migrations
from .errors import ConfigError
from .key_checks import cross_checks, entry_place
from .keys import DEFAULTS, KEYS, RECORDS, settled_decision
from .paths import CONFIG_DIR, user_path
from .values import OUTSIDE_AUTO, OUTSIDE_SUBFOLDER, augment_file

BASE = "base"  # a recipe's own word: the recipe it builds on


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
        """The text form of the settings (records included when set)."""
        out = {k: KEYS[k].dump(self._values[k]) for k in KEYS}
        out.update({k: self._values[k] for k in RECORDS if self._values.get(k) is not None})
        return out

    def stamped(self) -> dict:
        """What config.yaml and a checkpoint hold: `saved()` and the run format it is written in."""
        return {**self.saved(), migrations.FORMAT_KEY: migrations.RUN_FORMAT}


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
    cross_checks(values, sources)
    return Config(values)


def settle_outside(cfg: Config, data_dir: str | Path) -> Config:
    """extra=auto settled by the data folder, the one place it is: its extra/ subfolder when it is a folder, else
    none (a file there is refused); then decision=auto as for any extra=. The run's config.yaml holds the choice."""
    if cfg.extra != OUTSIDE_AUTO:
        return cfg
    found = user_path(data_dir) / OUTSIDE_SUBFOLDER
    if found.exists() and not found.is_dir():
        raise ConfigError(f"{found}: a file, not a folder; extra=auto reads outside face photos from a folder "
                          f"{OUTSIDE_SUBFOLDER}/ in the data folder (unpack it there, or extra=none)")
    extra = (found,) if found.is_dir() else ()
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


def resolve_recipe(name_or_path: str, beside: Path | None = None) -> Path:
    """`seed` -> configs/seed.yaml; an existing file (from where the user stands, or for a `base:` beside the
    recipe naming it) is used as is."""
    p = user_path(beside / name_or_path if beside is not None else name_or_path)  # normalised: a circle is seen
    if p.is_file():
        return p
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config '{name_or_path}' not found: not a file, and not one of {known}")


def _check_keys(source: str, given: Mapping, records: bool = False) -> None:
    unknown = sorted(set(given) - set(KEYS) - ({*RECORDS, migrations.FORMAT_KEY} if records else set()))
    if unknown:
        close = {u: difflib.get_close_matches(u, KEYS, n=1) for u in unknown if u not in migrations.MOVED_TO_AUGMENT}
        hints = migrations.moved_hint(given, _short) + "".join(f" Did you mean {c[0]} (for {u})?"
                                                              for u, c in close.items() if c)
        raise ConfigError(f"{source}: unknown config key(s) {unknown}.{hints} Known keys: {sorted(KEYS)}")


def read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value")
    return loaded


def read_recipe(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, dict]:
    """(the recipe's keys over those of the recipes it builds on, which file each key came from)."""
    if path in chain:
        raise ConfigError(f"{path}: {BASE}: builds on itself ({' -> '.join(str(p) for p in (*chain, path))})")
    loaded = read_yaml(path)
    base = loaded.pop(BASE, None)
    _check_keys(str(path), loaded, records=True)  # a saved run config holds its records too
    raw, sources = {}, {}
    if base is not None:
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"{path}: {BASE}: {base!r}: name the recipe this one builds on (e.g. {BASE}: seed)")
        raw, sources = read_recipe(resolve_recipe(base.strip(), beside=path.parent), (*chain, path))
    raw.update(loaded)
    sources.update({k: str(path) for k in loaded})
    return raw, sources


def load_config(recipe: str | None = "seed", overrides: list[str] | None = None) -> Config:
    raw, sources = dict(DEFAULTS), {}
    if recipe:
        path = resolve_recipe(recipe)
        loaded, sources = read_recipe(path)
        raw.update({k: v for k, v in loaded.items() if k != migrations.FORMAT_KEY})
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
    path.write_text(yaml.safe_dump(cfg.stamped(), sort_keys=True))


def saved_config(saved: Mapping, where: str = "saved config") -> Config:
    """The Config a saved config.yaml (or a checkpoint's config) holds, read as it was made: an older run format
    goes through core/migrations.py first."""
    return _build(migrations.upgraded(saved, where), {k: where for k in saved})


def load_saved(path: Path) -> Config:
    return saved_config(read_yaml(path), str(path))


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
