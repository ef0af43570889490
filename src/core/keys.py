"""The key table: every config key, its default (as a recipe writes it), its parser (core/values.py), how
config.yaml holds it, and what it does. A key not here is refused (with the closest one named).

What a run saved before a key existed did is not here: core/migrations.py holds that history.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from . import augment_list
from .values import (
    age_range,
    augment_steps,
    boolean,
    choice,
    corrections_file,
    device_name,
    fold_list,
    folders_text,
    group_size,
    image_size,
    integer,
    library_args,
    library_args_text,
    number,
    optimizer_name,
    outside_ages,
    outside_ages_text,
    outside_folders,
    path_text,
    pretrained,
    task_weights,
    text,
    worker_count,
)

BACKGROUNDS = ("keep", "grabcut", "selfie")  # background=: src/data/background.py does each


def joined(values, fmt="{}") -> str:
    return ",".join(fmt.format(v) for v in values)


@dataclass(frozen=True)
class Key:
    default: Any                                   # as a recipe file writes it
    parse: Callable                                # text -> typed value; ValueError says what is wrong
    dump: Callable = lambda v: v                   # typed value -> what config.yaml holds
    doc: str = ""


# timm's names (none: its "constant"). Not plateau: timm deprecates it, and its state is not in its checkpoints, so
# a resumed run would not end like an uninterrupted one
SCHEDULES = ("none", "cosine", "tanh", "poly", "step")
# decision=auto with outside persons: the biases fitted on the OOF for macro-F1, applied only where their nested
# score beats plain argmax (infer/decision.decide_for_run); why not the prior, and what each measured:
# docs/results.md (issues 26 and 33)
DECISION_WITH_EXTRA = "auto"


def settled_decision(decision: str, extra) -> str:
    """decision=auto settled by extra=: DECISION_WITH_EXTRA when outside persons join, else none; any other kept."""
    if decision != "auto":
        return decision
    return DECISION_WITH_EXTRA if extra else "none"


KEYS: dict[str, Key] = {
    # data
    "data_dir": Key("input/data", text, doc="competition-layout data (--data wins)"),
    "corrections": Key("", corrections_file, doc="'' (none), a CSV path, or a name of a file in configs/corrections/"),
    # folds
    "n_folds": Key(5, integer(2)),
    "folds": Key("all", fold_list, joined, doc="which folds to train: all or e.g. 0 / 0,2 (held as fold numbers)"),
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
    "extra": Key("", outside_folders, folders_text,
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
    "task_weights": Key("1,1,1", task_weights, lambda v: joined(v, "{:g}"),
                        doc="multi head: loss weights of mask, gender, age"),
    # input
    "img_size": Key("320,240", image_size, joined, doc="network input H,W (an int means H with W = 3/4 H)"),
    "crop_frac": Key(0.75, number(0, 1, lo_open=True), doc="centre crop keeps this fraction of each side"),
    "resize": Key("antialias", choice("antialias", "plain"),
                  doc="antialias: bilinear over the whole footprint (PIL) | plain: OpenCV bilinear"),
    "crop": Key("center", choice("center", "face"),
                doc="center | face (MTCNN box + face_margin; centre crop where no face is found)"),
    "face_margin": Key(0.3, number(0)),
    "background": Key("keep", choice(*BACKGROUNDS),
                      doc="keep | grabcut (OpenCV, seeded from the face box or the centre) | selfie (MediaPipe Selfie "
                          "Segmentation): the background removed where the photo is decoded (src/data/background.py)"),
    "background_fill": Key("mean", choice("mean", "blur"),
                           doc="what replaces a removed background: mean (ImageNet's mean colour) | blur"),
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
    "optimizer_args": Key({}, library_args, library_args_text,
                          doc="the optimiser's own arguments, passed to it as they are (timm's opt-kwargs), e.g. "
                              "{momentum: 0.95, nesterov: false} or {betas: [0.9, 0.99], eps: 1.0e-6}; each name "
                              "checked against the optimiser's own (lr and weight_decay have their keys)"),
    "layer_decay": Key(0.0, number(0, 1), doc="timm's layer-wise learning-rate decay (0 = off): each block "
                                              "earlier trains at this factor of the next one's rate"),
    "lr": Key(8e-5, number(0, lo_open=True)),
    "scheduler": Key("none", choice(*SCHEDULES),
                     doc="timm's schedules by their names (timm.scheduler.create_scheduler_v2): none (lr constant) | "
                         "cosine | tanh | poly (towards min_lr over the epochs) | step (x decay_rate every "
                         "decay_epochs)"),
    "sched_step": Key("update", choice("update", "epoch"),
                      doc="update: the schedule moves after every optimiser step (timm's train.py; warm-up inside the "
                          "first epoch) | epoch: once per epoch"),
    "warmup_epochs": Key(0.0, number(0), doc="linear warm-up from warmup_lr to lr over this many epochs (0.5: half "
                                             "an epoch), inside the schedule"),
    "warmup_lr": Key(1e-5, number(0), doc="warmup_epochs: the rate it starts from"),
    "min_lr": Key(0.0, number(0), doc="cosine, tanh, poly: the lowest rate"),
    "decay_epochs": Key(3.0, number(0, lo_open=True), doc="step: epochs between decays"),
    "decay_rate": Key(0.1, number(0, lo_open=True), doc="step: the factor of each decay (poly: its power)"),
    "scheduler_args": Key({}, library_args, library_args_text,
                          doc="the schedule's own arguments, passed to timm's create_scheduler_v2 as they are, e.g. "
                              "{cycle_limit: 2, cycle_decay: 0.5} or {noise_pct: 0.67} (epochs, min_lr, warm-up and "
                              "decay have their keys)"),
    "weight_decay": Key(0.0, number(0)),
    "loss": Key("focal", text, doc="a name of the loss table (model/losses.LOSS_MAKERS): focal | ce | weighted_ce | "
                                    "smooth (label_smoothing) | f1 (soft macro-F1) | focal_f1 ...; checked before "
                                    "any work"),
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

# Keys a saved run config holds besides settings: what the run was made from, written by the pipeline.
RECORDS = ("recipe", "weights", "data")  # the recipe's name; initial weights (tag, sha256, source); data folder
