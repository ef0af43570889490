"""The recipe's `augment:` list: albumentations transforms by their own names and parameters.

    augment:
      - HorizontalFlip: {p: 0.5}
      - Affine: {translate_percent: 0.03, rotate: [-10, 10], p: 0.5}
      - OneOf: {transforms: [CLAHE: {}, RandomGamma: {}], p: 0.3}

`steps` reads such a list (or its text on the command line: `augment=none`, `augment="[HorizontalFlip:
{p: 0.5}]"`) and checks every entry the way albumentations itself would, by building it: an unknown
transform or parameter, or a value albumentations' own validation refuses, is a `StepError` naming the
entry (config.py adds the recipe file's line and the closest valid name). `check_output` makes each step
act on a photo of the run's size, so one that changes the photo's size or type fails when the config is
read, not in a loader worker. `compose` builds the pipeline the loader runs per photo (data/transforms.py).

A step is held as (name, its parameters as canonical JSON): hashable, comparable and written back to
config.yaml as it was typed (`entries`).
"""
from __future__ import annotations

import functools
import inspect
import json
import warnings
from typing import NamedTuple

import numpy as np
import yaml

from .errors import closest_names

# albumentations' containers of other steps (`transforms:` a list like augment's own)
CONTAINERS = ("OneOf", "SomeOf", "Sequential", "RandomOrder")


class Step(NamedTuple):
    name: str
    params_json: str  # json.dumps(params, sort_keys=True)

    @property
    def params(self) -> dict:
        return json.loads(self.params_json)


class StepError(ValueError):
    """Entry `index` (0-based) of the list cannot be used."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index = index


@functools.cache
def transform_names() -> tuple[str, ...]:
    """Every albumentations transform (and container) a recipe may name (found once per process)."""
    import albumentations as A
    from albumentations.core.transforms_interface import BasicTransform

    return tuple(sorted(n for n in dir(A) if n in CONTAINERS or (
        isinstance(getattr(A, n), type) and issubclass(getattr(A, n), BasicTransform)
        and not inspect.isabstract(getattr(A, n)) and not n.endswith("Transform"))))


def steps(raw) -> tuple[Step, ...]:
    """A list of entries (YAML's, or the text of one; '' or none: no augmentation) -> checked steps."""
    if isinstance(raw, str):
        if raw.strip().lower() in ("", "none"):
            return ()
        try:
            raw = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ValueError(f"not a YAML list of transforms: {e}") from None
    if raw is None:
        return ()
    if not isinstance(raw, (list, tuple)):
        raw = [raw]  # one entry written without the list around it
    return tuple(step(i, entry) for i, entry in enumerate(raw))


def step(index: int, entry) -> Step:
    """One entry: `Name`, `{Name: {param: value}}` or a Step -> a Step, checked by building it."""
    name, params = entry_parts(index, entry)
    cls = transform_class(index, name)
    known = parameter_names(cls)
    for key in params:
        if key not in known:
            close = " or ".join(closest_names(key, known))
            raise StepError(index, f"{name} has no parameter {key!r}{f' (did you mean {close}?)' if close else ''}; "
                                   f"its parameters: {', '.join(sorted(known))}")
    if name in CONTAINERS:
        inner = params.get("transforms")
        if not isinstance(inner, list) or not inner:
            raise StepError(index, f"{name} needs transforms: a list of transforms like augment's own")
        try:
            params["transforms"] = entries(steps(inner))
        except StepError as e:
            raise StepError(index, f"{name}, its transform {e.index + 1}: {e}") from None
    built = Step(name, json.dumps(params, sort_keys=True))
    build(built, index)
    return built


def entry_parts(index: int, entry) -> tuple[str, dict]:
    if isinstance(entry, Step):
        return entry.name, entry.params
    if isinstance(entry, str):
        return entry.strip(), {}
    if isinstance(entry, dict) and len(entry) == 1:
        (name, params), = entry.items()
        if params is None:
            params = {}
        if isinstance(params, dict) and all(isinstance(k, str) for k in params):
            return str(name), dict(params)
        raise StepError(index, f"{name}: its parameters must be a mapping like {{p: 0.5}}, not {params!r}")
    raise StepError(index, f"expected one transform like `HorizontalFlip: {{p: 0.5}}`, not {entry!r}")


def transform_class(index: int, name: str) -> type:
    import albumentations as A

    known = transform_names()
    if name not in known:
        close = " or ".join(closest_names(name, known))
        raise StepError(index, f"{name} is not an albumentations transform"
                               f"{f' (did you mean {close}?)' if close else ''}")
    return getattr(A, name)


def parameter_names(cls: type) -> set[str]:
    """The keyword parameters the transform's constructor names (its own and its bases' named ones)."""
    named = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in named if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def build(s: Step, index: int = 0, **forced):
    """The albumentations object of a step (`forced`: parameters put over the recipe's, e.g. p=1)."""
    import albumentations as A

    params = {**s.params, **forced}
    if s.name in CONTAINERS:
        params["transforms"] = [build(inner, index) for inner in steps(params["transforms"])]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*are not valid for transform.*")
            return getattr(A, s.name)(**params)
    except (TypeError, ValueError, UserWarning) as e:
        raise StepError(index, f"{s.name}: {validation_text(e)}") from None


def validation_text(e: Exception) -> str:
    """albumentations' (pydantic's) refusal in one line: which parameter, and what it wanted."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if len(lines) > 1 and "validation error" in lines[0]:  # pydantic's: a heading, then field / message pairs
        pairs = [f"{field}: {msg.split(' [type=')[0]}" for field, msg in zip(lines[1::3], lines[2::3])]
        return "; ".join(pairs[:3])
    return lines[0] if lines else type(e).__name__


def compose(recipe_steps: tuple[Step, ...]):
    """The pipeline the loader runs on each photo (None when the list is empty)."""
    import albumentations as A

    return A.Compose([build(s, i) for i, s in enumerate(recipe_steps)]) if recipe_steps else None


def check_output(recipe_steps: tuple[Step, ...], size: tuple[int, int]) -> None:
    """Each step, made to act (p=1), keeps a uint8 photo of the run's size (H, W): the loader batches them."""
    h, w = size
    photo = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for i, s in enumerate(recipe_steps):
        inners = steps(s.params["transforms"]) if s.name in CONTAINERS else (s,)
        for inner in inners:
            forced = {"p": 1.0} if "p" in parameter_names(transform_class(i, inner.name)) else {}
            try:
                out = build(inner, i, **forced)(image=photo.copy())["image"]
            except Exception as e:  # what the transform does with a photo: any failure is the recipe's
                raise StepError(i, f"{inner.name} fails on a {h}x{w} photo: {type(e).__name__}: {e}") from None
            if out.shape != photo.shape or out.dtype != np.uint8:
                raise StepError(i, f"{inner.name} turns the {h}x{w} uint8 photo into {out.dtype} "
                                   f"{'x'.join(map(str, out.shape[:2]))}: the steps must keep the photo's size and "
                                   f"type (the model's normalisation is done after them; resize with img_size)")


def entries(recipe_steps: tuple[Step, ...]) -> list:
    """The YAML form: [{Name: {param: value}}, ...]."""
    return [{s.name: s.params} for s in recipe_steps]
