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
# transforms that act only through what a YAML recipe cannot hold (built without it, they do nothing)
NEEDS_CODE = {"Lambda": "acts through Python functions (image=..., mask=...)"}
DRAWS = 8  # check_output: each step made to act this many times, each draw seeded (the same verdict every time)


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
    """One entry: `Name`, `{Name: {param: value}}` or a Step -> a Step, checked by building it (once per entry and
    process: a config read, replaced and saved again builds nothing again)."""
    name, params = entry_parts(index, entry)
    return checked_step(index, name, json.dumps(params, sort_keys=True))


@functools.lru_cache(maxsize=1024)
def checked_step(index: int, name: str, params_json: str) -> Step:
    params = json.loads(params_json)
    cls = transform_class(index, name)
    known = parameter_names(cls)
    for key in params:
        if key not in known:
            close = " or ".join(closest_names(key, known))
            raise StepError(index, f"{name} has no parameter {key!r}{f' (did you mean {close}?)' if close else ''}; "
                                   f"its parameters: {', '.join(sorted(known))}")
    if name in NEEDS_CODE:
        raise StepError(index, f"{name} {NEEDS_CODE[name]}, which a recipe cannot give; use the transforms that do "
                               f"the same by their parameters")
    check_probability(index, name, params)
    if name in CONTAINERS:
        inner = params.get("transforms")
        if not isinstance(inner, list) or not inner:
            raise StepError(index, f"{name} needs transforms: a list of transforms like augment's own")
        try:
            params["transforms"] = entries(steps(inner))
        except StepError as e:
            raise StepError(index, f"{name}, its transform {e.index + 1}: {e}") from None
        check_draws(index, name, params)
    built = Step(name, json.dumps(params, sort_keys=True))
    build(built, index)
    return built


def check_probability(index: int, name: str, params: dict) -> None:
    """p is a probability for every step: albumentations checks its transforms' own, not its containers'."""
    if "p" in params and (isinstance(params["p"], bool) or not isinstance(params["p"], (int, float))
                          or not 0 <= params["p"] <= 1):
        raise StepError(index, f"{name}: p={params['p']!r}: a probability, from 0 to 1")


def check_draws(index: int, name: str, params: dict) -> None:
    """SomeOf (and RandomOrder, one of its kind) draws n of its transforms: without replace, no more than it has
    (albumentations would warn and draw fewer than config.yaml says)."""
    if name not in ("SomeOf", "RandomOrder"):
        return
    n, count = params.get("n", 1), len(params["transforms"])
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise StepError(index, f"{name}: n={n!r}: how many of its transforms to draw, a whole number from 1")
    if n > count and not params.get("replace", False):
        raise StepError(index, f"{name}: n={n} but it has {count} transform{'s' * (count != 1)}: draw at most "
                               f"{count}, or give replace: true to draw one more than once")


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
    """Each step, made to act (p=1) in DRAWS seeded draws, keeps a 3-channel uint8 photo of the run's size (H, W)
    and changes it: the loader batches them, and a step that never acts is a mistake. The same verdict every time."""
    for i, s in enumerate(recipe_steps):
        for inner in (steps(s.params["transforms"]) if s.name in CONTAINERS else (s,)):
            check_acting(i, inner, tuple(size))


@functools.lru_cache(maxsize=256)
def check_acting(index: int, s: Step, size: tuple[int, int]) -> None:
    import albumentations as A

    h, w = size
    photo = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    forced = {"p": 1.0} if "p" in parameter_names(transform_class(index, s.name)) else {}
    outs = []
    with warnings.catch_warnings():  # what a transform says of the check's noise photo is not the recipe's
        warnings.simplefilter("ignore")
        for seed in range(DRAWS):
            try:
                outs.append(A.Compose([build(s, index, **forced)], seed=seed)(image=photo.copy())["image"])
            except StepError:
                raise
            except Exception as e:  # what the transform does with a photo: any failure is the recipe's
                raise StepError(index, f"{s.name} fails on a {h}x{w} photo: {type(e).__name__}: {e}") from None
    if not all(isinstance(o, np.ndarray) for o in outs):
        raise StepError(index, f"{s.name} turns the photo into a {type(outs[0]).__name__}: the steps must keep a "
                               f"uint8 photo (the loader makes the tensors, after the model's normalisation)")
    channels = {1 if o.ndim == 2 else o.shape[2] for o in outs}
    if channels != {3}:
        raise StepError(index, f"{s.name} turns the photo's 3 channels into {'/'.join(map(str, sorted(channels)))}: "
                               f"the model takes 3-channel (RGB) photos; keep 3 channels (ToGray: "
                               f"num_output_channels: 3)")
    sizes = sorted({o.shape[:2] for o in outs})
    if sizes != [(h, w)] or any(o.dtype != np.uint8 for o in outs):
        drawn = ", ".join(f"{a}x{b}" for a, b in sizes[:3]) + (
            " ... (its size drawn at random)" if len(sizes) > 1 else "")
        raise StepError(index, f"{s.name} turns the {h}x{w} uint8 photo into {outs[0].dtype} {drawn}: the steps must "
                               f"keep the photo's size and type (the model's normalisation is done after them; resize "
                               f"with img_size)")
    if all(np.array_equal(o, photo) for o in outs):
        raise StepError(index, f"{s.name} leaves the photo unchanged even made to act ({DRAWS} draws of p=1): with "
                               f"these parameters it does nothing (or needs what a recipe cannot give: masks, "
                               f"boxes, other images)")


def entries(recipe_steps: tuple[Step, ...]) -> list:
    """The YAML form: [{Name: {param: value}}, ...]."""
    return [{s.name: s.params} for s in recipe_steps]
