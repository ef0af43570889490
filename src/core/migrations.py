"""The history of run folders: what a run saved by an older version did, read as today's keys.

Every config.yaml (and checkpoint) is written with `run_format: RUN_FORMAT`. A saved config of an older format
(none written: 0) goes through the steps above its format, in order, so a run saved before a key existed counts
as made with what the code then did, not with today's default: bench reuse, resume, predict and the gallery read
it as it was made. A run of a newer format than this code knows is refused, not guessed at.

A change that alters what a saved run means adds a step here (and bumps RUN_FORMAT); the key table
(core/keys.py) holds only today's keys.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable

from .errors import UserError
from .keys import DEFAULTS, EXTRA_CHOICES

RUN_FORMAT = 1   # what config.yaml's run_format says; runs saved before it was written are format 0
FORMAT_KEY = "run_format"

# Keys that became entries of `augment` (`legacy_augment` translates them)
MOVED_TO_AUGMENT = ("hflip", "shift_px", "color_jitter")
# What a run saved before a key existed actually did, where that differs from today's default
KEYS_ADDED_SINCE = {"head_init": "timm", "resize": "plain", "sched_step": "epoch", "ema_warmup": False}


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


def _keys_added(saved: Mapping, raw: dict) -> None:
    """head_init, resize, sched_step, ema_warmup: a run saved before each did what KEYS_ADDED_SINCE says (an
    ema_warmup without an average ramps nothing: today's default)."""
    raw.update({k: v for k, v in KEYS_ADDED_SINCE.items() if k not in saved})
    if "ema_warmup" not in saved and not raw["ema"]:
        raw["ema_warmup"] = DEFAULTS["ema_warmup"]


def _augment_list(saved: Mapping, raw: dict) -> None:
    """hflip / shift_px / color_jitter became the `augment` list."""
    if "augment" not in saved:
        raw["augment"] = legacy_augment(saved)
    for k in MOVED_TO_AUGMENT:
        raw.pop(k, None)


def _outside_choices(saved: Mapping, raw: dict) -> None:
    """The extra_* keys choose among outside photos: without any (extra off), what they held did nothing, and
    defaults changed since (extra_conflicts error -> drop, extra_ages '' -> auto)."""
    if not raw["extra"]:
        raw.update({k: DEFAULTS[k] for k in EXTRA_CHOICES})


def _data_record(saved: Mapping, raw: dict) -> None:
    """Runs before the `data` record wrote the data folder they used into data_dir."""
    if not raw.get("data"):
        raw["data"] = saved.get("data_dir")


# (the format a step lifts a run to, the step): applied in order to a run saved below that format
STEPS: list[tuple[int, Callable[[Mapping, dict], None]]] = [
    (1, _keys_added), (1, _augment_list), (1, _outside_choices), (1, _data_record),
]


class NewerRun(UserError, ValueError):
    """A run saved by a newer version of the pipeline."""


def saved_format(saved: Mapping, where: str = "saved config") -> int:
    """The run format a saved config says (0: saved before it was written); a newer one than this code's refused."""
    value = saved.get(FORMAT_KEY, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise NewerRun(f"{where}: {FORMAT_KEY}={value!r} is not a run format (a whole number)")
    if value > RUN_FORMAT:
        raise NewerRun(f"{where}: {FORMAT_KEY}={value}: saved by a newer version of this pipeline (this one reads "
                       f"formats up to {RUN_FORMAT}); update the code (git pull) to read it")
    return value


def upgraded(saved: Mapping, where: str = "saved config") -> dict:
    """A saved config's raw values as today's keys: every step above its format applied, the keys added since
    (that did what their default does) at their default. The run_format entry itself is not a setting."""
    since = saved_format(saved, where)
    saved = {k: v for k, v in saved.items() if k != FORMAT_KEY}
    raw = {**DEFAULTS, **saved}
    for lifts_to, step in STEPS:
        if lifts_to > since:
            step(saved, raw)
    return raw


def moved_hint(given: Mapping, short: Callable[[object, int], str]) -> str:
    """For a user who typed an old key: the augment list that does what it did, with their values."""
    moved = [k for k in MOVED_TO_AUGMENT if k in given]
    if not moved:
        return ""
    names, entries = ", ".join(moved), "is an entry" if len(moved) == 1 else "are entries"
    try:
        steps = legacy_augment({"hflip": 0, **{k: given[k] for k in moved}})
    except (TypeError, ValueError):
        return f" {names} {entries} of augment now (docs/usage.md#augmentation-an-albumentations-list)."
    listed = short(steps, 300) if steps else "none"
    return f" {names} {entries} of augment now: augment: {listed} does what {names} did."

