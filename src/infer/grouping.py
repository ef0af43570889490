"""Persons grouped at test time (opt-in, `group_eval=7`).

The competition's eval photos come 7 per person under anonymous IDs, taken in one sitting (same
background, clothes, light). Photos are grouped from image features (the fold models' pooled
penultimate features, averaged over folds and L2-normalised): a group is accepted only when it is
a clique of mutual nearest neighbours of exactly the group size — each member's `size - 1` nearest
photos are exactly the other members. Everything else is left alone. Every photo of an accepted
group then gets the group's mean gender and age probabilities; the mask state stays per photo
(it differs by design between a person's 7 shots).

This uses the eval set's structure (7 photos per person), which a real deployment does not have;
it is off by default, and `grouping_quality` measures it blind on out-of-fold persons, where the
truth is known.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core import classes
from ..core.metrics import fast_macro_f1


def nearest(features: np.ndarray, k: int, block: int = 2048) -> np.ndarray:
    """Indices of each row's k nearest other rows by cosine similarity (features L2-normalised)."""
    n = len(features)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        sim = features[start:start + block] @ features.T
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf  # not oneself
        part = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, part, 1), axis=1)
        out[start:start + block] = np.take_along_axis(part, order, 1)
    return out


def group_photos(features: np.ndarray, size: int = 7) -> np.ndarray:
    """A group id per photo, -1 where no sure group was found."""
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    nn = nearest(f, size - 1)
    groups = np.full(len(f), -1)
    neighbours = [frozenset(row) for row in nn]
    next_id = 0
    for i in range(len(f)):
        if groups[i] >= 0:
            continue
        members = neighbours[i] | {i}
        if all(neighbours[j] | {j} == members for j in neighbours[i]):  # a clique of mutual neighbours
            groups[list(members)] = next_id
            next_id += 1
    return groups


def grouping_quality(groups: np.ndarray, persons: np.ndarray) -> dict:
    """How well groups match the true persons: coverage, purity, pairwise precision and recall."""
    grouped = groups >= 0
    same_group_pairs = same_person_pairs_grouped = pure = 0
    for g in np.unique(groups[grouped]):
        members = persons[groups == g]
        _, counts = np.unique(members, return_counts=True)
        same_group_pairs += len(members) * (len(members) - 1) // 2
        same_person_pairs_grouped += int((counts * (counts - 1) // 2).sum())
        pure += counts.max()
    _, per_person = np.unique(persons, return_counts=True)
    all_same_person_pairs = int((per_person * (per_person - 1) // 2).sum())
    return {"photos": int(len(groups)), "coverage": float(grouped.mean()),
            "purity": float(pure / max(grouped.sum(), 1)),
            "pair_precision": float(same_person_pairs_grouped / max(same_group_pairs, 1)),
            "pair_recall": float(same_person_pairs_grouped / max(all_same_person_pairs, 1))}


def smooth_by_group(probs: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each grouped photo: its own mask probabilities x its group's mean gender and age probabilities."""
    p_mask, p_gender, p_age = classes.subtask_probs(probs)
    out = probs.copy()
    for g in np.unique(groups[groups >= 0]):
        idx = np.flatnonzero(groups == g)
        gender, age = p_gender[idx].mean(0), p_age[idx].mean(0)
        joint = p_mask[idx][:, :, None, None] * gender[None, None, :, None] * age[None, None, None, :]
        out[idx] = joint.reshape(len(idx), classes.N_CLASSES)
    return out


TOP = 0.45  # features of the top of each photo: eyes, hair, background; a person's 7 shots differ below


def apply_grouping(oof: pd.DataFrame, oof_probs: list[np.ndarray], oof_features: np.ndarray,
                   eval_probs: list[np.ndarray], eval_features: np.ndarray, size: int
                   ) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """Group OOF photos (within each fold: one model's feature space) and eval photos; smooth every
    given probability table by its groups; report the OOF grouping against the true persons.
    `oof`: the OOF rows' fold, person and label."""
    oof_folds, oof_persons, oof_labels = (oof[c].to_numpy() for c in ("fold", "person", "label"))
    oof_groups = np.full(len(oof_folds), -1)
    offset = 0
    for k in np.unique(oof_folds):
        sel = oof_folds == k
        g = group_photos(oof_features[sel], size)
        oof_groups[sel] = np.where(g >= 0, g + offset, -1)
        offset += max(g.max() + 1, 0)
    eval_groups = group_photos(eval_features, size)
    oof_out = [smooth_by_group(p, oof_groups) for p in oof_probs]
    report = {"size": size, "oof": grouping_quality(oof_groups, oof_persons),
              "eval_coverage": float((eval_groups >= 0).mean()),
              "oof_f1_before": [fast_macro_f1(oof_labels, p.argmax(1)) for p in oof_probs],
              "oof_f1_after": [fast_macro_f1(oof_labels, p.argmax(1)) for p in oof_out]}
    return oof_out, [smooth_by_group(p, eval_groups) for p in eval_probs], report
