"""Run configuration: defaults, overlaid by a recipe file, overlaid by `key=value` overrides.

The merged config is a plain dict (saved as `config.yaml` in the run directory) wrapped in
`Config` for attribute access. Every key must exist in DEFAULTS, so a typo fails loudly
instead of being silently ignored.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "configs"

DEFAULTS: dict = {
    # data
    "data_dir": "input/data",
    "corrections": "",          # "" (none), a CSV path, or a name of a file in configs/corrections/
    # folds
    "n_folds": 5,
    "folds": "all",             # which folds to train: "all" or e.g. "0" / "0,2"
    "seed": 42,
    "age_boundary": 60,         # training-time boundary of the >=60 band; reports always use 60
    "drop_ages": "",            # e.g. "57-59": persons of these ages are left out of training
    "sampler": "random",        # random | balanced (each class drawn equally often, with replacement)
    "cutmix": 0.0,              # probability that a batch is made of left+right halves of two faces
    # model
    "model": "resnet18",
    "pretrained": "false",      # false | true | path to a state_dict file
    "drop_rate": 0.0,
    "head_init": "torch",       # torch: PyTorch's default Linear init of the classifier | timm: the model's own
    "head": "single",           # single: one 18-way head | multi: mask/gender/age heads, product of probabilities
    "task_weights": "1,1,1",    # multi head: loss weights of mask, gender, age
    # input
    "img_size": "320,240",      # network input H,W (an int means H with W = 3/4 H)
    "crop_frac": 0.75,          # centre crop keeps this fraction of each side of the photo
    "resize": "antialias",      # antialias: bilinear over the whole footprint (PIL) | plain: OpenCV bilinear
    "crop": "center",           # center | face (MTCNN box + face_margin; centre crop where no face is found)
    "face_margin": 0.3,         # face crop: grow the box by this fraction of its size on every side
    "hflip": 0.5,               # training-time horizontal flip probability
    "shift_px": 0,              # training-time random shift of up to this many pixels (crop jitter)
    "color_jitter": 0.0,        # training-time brightness and contrast factors in 1 +- this
    # optimisation
    "epochs": 10,
    "batch_size": 64,
    "lr": 8e-5,
    "scheduler": "none",        # none | cosine (per-epoch cosine decay from lr towards 0)
    "weight_decay": 0.0,
    "loss": "focal",            # focal | ce | weighted_ce | smooth | f1 (soft macro-F1) | focal_f1 (their sum)
    "focal_gamma": 2.0,
    "label_smoothing": 0.1,     # used by loss=smooth
    # inference
    "tta": "flip",              # none | flip
    # data path
    "cache": True,              # decode+resize+crop once into a memory-mapped uint8 cache
    "cache_dir": "",            # "" = <output>/cache, shared by all runs
    # machine
    "device": "auto",           # auto | cpu | cuda | cuda:N
    "amp": True,                # mixed precision on CUDA (ignored on CPU)
    "amp_dtype": "auto",        # auto (bf16 where the GPU has it, else fp16 + loss scaling) | bf16 | fp16
    "channels_last": True,      # NHWC memory layout (faster on GPUs and on oneDNN CPUs)
    "num_workers": 2,
    "parallel_folds": 0,        # >1: train that many folds at once, one per visible GPU (or CPU process)
    "threads": 0,               # torch CPU threads; 0 = torch's default
    "max_images": 0,            # >0: train on about this many photos (whole persons, random; quick checks)
}


# What a run saved before a key existed actually did, where that differs from today's default:
# such a run must not count as made with the new default (bench reuse, resume).
LEGACY = {"head_init": "timm", "resize": "plain"}


# Keys a saved run config holds besides settings: what the run was made from, written by the pipeline.
RECORDS = {"recipe", "weights"}  # the recipe's name; the initial weights (tag, sha256, source)


class ConfigError(ValueError):
    """A recipe file or override that cannot be applied."""


class Config(dict):
    """A dict whose keys are also attributes (cfg.lr == cfg['lr'])."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError as e:
            raise AttributeError(key) from e

    def __setattr__(self, key, value):
        self[key] = value


def resolve_recipe(name_or_path: str) -> Path:
    """`seed` -> configs/seed.yaml; an existing path is used as is."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config '{name_or_path}' not found: not a file, and not one of {known}")


def _coerce(key: str, raw: str, default):
    """Turn the text of an override into the type of its default."""
    if isinstance(default, bool):
        low = raw.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={raw}: expected true/false")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw}: expected an integer") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{key}={raw}: expected a number") from None
    return raw


def _check_keys(source: str, keys, records: bool = False) -> None:
    unknown = sorted(set(keys) - set(DEFAULTS) - (RECORDS if records else set()))
    if unknown:
        raise ConfigError(f"{source}: unknown config key(s) {unknown}; known keys: {sorted(DEFAULTS)}")


def load_config(recipe: str | None = "seed", overrides: list[str] | None = None) -> Config:
    cfg = copy.deepcopy(DEFAULTS)
    if recipe:
        path = resolve_recipe(recipe)
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of key: value")
        _check_keys(str(path), loaded, records=True)  # a saved run config holds its records too
        name = loaded.pop("recipe", None) or path.stem  # a saved run config keeps its recipe's name
        if "weights" in loaded:
            cfg["weights"] = loaded.pop("weights")
        for k, v in loaded.items():
            cfg[k] = _coerce(k, str(v), DEFAULTS[k]) if not isinstance(v, type(DEFAULTS[k])) else v
        cfg["recipe"] = name
    else:
        cfg["recipe"] = "defaults"
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        k, v = item.split("=", 1)
        _check_keys("command line", [k])
        cfg[k] = _coerce(k, v, DEFAULTS[k])
    validate(cfg)
    return Config(cfg)


def validate(cfg: dict) -> None:
    if cfg["loss"] not in LOSSES:
        raise ConfigError(f"loss={cfg['loss']}: choose one of {', '.join(LOSSES)}")
    if cfg["scheduler"] not in ("none", "cosine"):
        raise ConfigError(f"scheduler={cfg['scheduler']}: choose none or cosine")
    if cfg["crop"] not in ("center", "face"):
        raise ConfigError(f"crop={cfg['crop']}: choose center or face")
    if cfg["head_init"] not in ("torch", "timm"):
        raise ConfigError(f"head_init={cfg['head_init']}: choose torch or timm")
    if cfg["amp_dtype"] not in ("auto", "bf16", "fp16"):
        raise ConfigError(f"amp_dtype={cfg['amp_dtype']}: choose auto, bf16 or fp16")
    if cfg["resize"] not in ("antialias", "plain"):
        raise ConfigError(f"resize={cfg['resize']}: choose antialias or plain")
    if cfg["head"] not in ("single", "multi"):
        raise ConfigError(f"head={cfg['head']}: choose single or multi")
    task_weights(cfg)
    if cfg["sampler"] not in ("random", "balanced"):
        raise ConfigError(f"sampler={cfg['sampler']}: choose random or balanced")
    drop_ages(cfg)
    if not 0 <= cfg["cutmix"] <= 1:
        raise ConfigError("cutmix must be a probability in [0, 1]")
    if cfg["tta"] not in ("none", "flip"):
        raise ConfigError(f"tta={cfg['tta']}: choose none or flip")
    if not 30 < cfg["age_boundary"] <= 60:
        raise ConfigError(f"age_boundary={cfg['age_boundary']}: must be in 31..60")
    if cfg["n_folds"] < 2:
        raise ConfigError("n_folds must be at least 2")
    if not 0 < cfg["crop_frac"] <= 1:
        raise ConfigError("crop_frac must be in (0, 1]")
    image_size(cfg)
    selected_folds(cfg)


LOSSES = ("focal", "ce", "weighted_ce", "smooth", "f1", "focal_f1")


def task_weights(cfg: dict) -> tuple[float, float, float]:
    try:
        w = tuple(float(x) for x in str(cfg["task_weights"]).split(","))
    except ValueError:
        w = ()
    if len(w) != 3 or min(w) < 0:
        raise ConfigError(f"task_weights={cfg['task_weights']}: expected three non-negative numbers mask,gender,age")
    return w


def drop_ages(cfg: dict) -> tuple[int, int] | None:
    """`drop_ages=57-59`: leave persons of these ages out of training (never out of validation)."""
    raw = str(cfg["drop_ages"]).strip()
    if not raw:
        return None
    try:
        lo, hi = (int(x) for x in raw.split("-"))
    except ValueError:
        raise ConfigError(f"drop_ages={raw}: expected a range like 57-59") from None
    if lo > hi:
        raise ConfigError(f"drop_ages={raw}: the range is empty")
    return lo, hi


def image_size(cfg: dict) -> tuple[int, int]:
    """Network input (H, W) from `img_size` ("H,W" or H with W = 3/4 H like the 512x384 photos)."""
    raw = str(cfg["img_size"])
    try:
        parts = [int(x) for x in raw.split(",")]
    except ValueError:
        raise ConfigError(f"img_size={raw}: expected H or H,W") from None
    if len(parts) == 1:
        h = parts[0]
        return h, max(8, int(round(h * 0.75 / 8)) * 8)
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ConfigError(f"img_size={raw}: expected H or H,W")


def selected_folds(cfg: dict) -> list[int]:
    raw = str(cfg["folds"]).strip()
    if raw == "all":
        return list(range(cfg["n_folds"]))
    try:
        folds = sorted({int(x) for x in raw.split(",") if x.strip() != ""})
    except ValueError:
        raise ConfigError(f"folds={raw}: expected 'all' or fold numbers like 0,2") from None
    bad = [f for f in folds if not 0 <= f < cfg["n_folds"]]
    if bad or not folds:
        raise ConfigError(f"folds={raw}: fold numbers must be in 0..{cfg['n_folds'] - 1}")
    return folds


def save_config(cfg: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(dict(cfg), sort_keys=True))


def completed(saved: dict) -> Config:
    """A config saved by an older version with every key: the keys added since then take the
    value the code then used (LEGACY, else the default), so the run is reproduced as it was made."""
    return Config({**DEFAULTS, **LEGACY, **saved})


def matches_saved(path: Path, cfg: dict, ignore: set[str]) -> bool:
    """Does `cfg` equal the config saved at `path`, apart from the `ignore` keys?"""
    saved = completed(yaml.safe_load(Path(path).read_text()) or {})
    now = yaml.safe_load(yaml.safe_dump(dict(cfg)))  # the same types the file holds
    return {k: v for k, v in saved.items() if k not in ignore} == {k: v for k, v in now.items() if k not in ignore}
