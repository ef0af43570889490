"""Checks of one config key against another, when the config is read: the folds against n_folds, the extra_*
keys against extra, the augment list and the schedule against what they act on, the library arguments against
the library's own names. Each error names where the value came from (a recipe file and its line, the command
line, a saved config)."""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path

import yaml

from . import augment_list
from .errors import ConfigError, closest_names
from .keys import EXTRA_CHOICES, KEYS, joined, settled_decision
from .values import LOOKAHEAD, OUTSIDE_AUTO


def cross_checks(values: dict, sources: Mapping[str, str]) -> None:
    """Checks of one key against another: the folds against n_folds, the extra_* keys against extra, the
    augment list and warm-up against what they act on; and decision=auto settled by extra."""
    # these choose among outside photos: without extra= they would do nothing
    for k in EXTRA_CHOICES:
        if KEYS[k].dump(values[k]) != KEYS[k].default and not values["extra"]:
            raise ConfigError(f"{sources.get(k, 'defaults')}: {k}={KEYS[k].dump(values[k])} without extra=: it "
                              f"chooses among outside photos; set extra=DIR too (or leave {k} out)")
    _training_checks(values, sources)
    _library_args_checks(values, sources)
    if values["extra"] != OUTSIDE_AUTO:  # else settled with the data folder (settle_outside)
        values["decision"] = settled_decision(values["decision"], values["extra"])
    n = values["n_folds"]
    if values["folds"] == "all":
        values["folds"] = tuple(range(n))
    elif any(not 0 <= f < n for f in values["folds"]):
        raise ConfigError(f"{sources.get('folds', 'defaults')}: folds={joined(values['folds'])}: fold numbers "
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


# the arguments the pipeline sets from keys of its own: a library argument of the same name is refused, naming the key
OWN_OPTIMISER_ARGS = {"lr": "lr", "weight_decay": "weight_decay", "layer_decay": "layer_decay", "params": None,
                      "model_or_params": None, "opt": "optimizer", "param_group_fn": None}
OWN_SCHEDULE_ARGS = {"optimizer": None, "sched": "scheduler", "num_epochs": "epochs", "decay_epochs": "decay_epochs",
                     "decay_rate": "decay_rate", "min_lr": "min_lr", "warmup_lr": "warmup_lr",
                     "warmup_epochs": "warmup_epochs", "step_on_epochs": "sched_step", "updates_per_epoch": None}


def parameter_names(*functions) -> set[str] | None:
    """The named parameters of the functions; None when the last takes any keyword (any name may be right; the
    earlier ones pass their **kwargs on to it)."""
    signatures = [inspect.signature(fn).parameters.values() for fn in functions]
    if any(p.kind is p.VAR_KEYWORD for p in signatures[-1]):
        return None
    return {p.name for params in signatures for p in params if p.kind is not p.VAR_KEYWORD and p.name != "self"}


def optimiser_parameters(name: str) -> set[str] | None:
    """What optimizer_args may name for timm's optimiser `name`: its class's parameters and those
    create_optimizer_v2 takes itself (None when timm names the class by text: a package imported lazily)."""
    from timm.optim import create_optimizer_v2, get_optimizer_info

    made_by = get_optimizer_info(name.removeprefix(LOOKAHEAD)).opt_class
    return None if isinstance(made_by, str) else parameter_names(create_optimizer_v2, made_by.__init__)


def _library_args_checks(values: dict, sources: Mapping[str, str]) -> None:
    """optimizer_args / scheduler_args name arguments the library takes, and none the pipeline sets from a key."""
    from timm.scheduler import create_scheduler_v2

    for key, own, known, whose in (
            ("optimizer_args", OWN_OPTIMISER_ARGS, optimiser_parameters(values["optimizer"]),
             f"optimizer={values['optimizer']}"),
            ("scheduler_args", OWN_SCHEDULE_ARGS, parameter_names(create_scheduler_v2),
             "timm's create_scheduler_v2")):
        for name in values[key]:
            where = sources.get(key, "defaults")
            if name in own:
                instead = f"; set {own[name]}= instead" if own[name] else ""
                raise ConfigError(f"{where}: {key}: {name} is set by the pipeline{instead}")
            if known is not None and name not in known:
                close = " or ".join(closest_names(name, sorted(known - set(own))))
                raise ConfigError(f"{where}: {key}: {whose} takes no argument {name}"
                                  f"{f' (did you mean {close}?)' if close else ''}; its arguments: "
                                  f"{', '.join(sorted(known - set(own)))}")
