"""report.md with its confusion-matrix and training-curve PNGs, and the metrics of one run."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from . import labels as L  # noqa: E402
from .labels import PROB_COLS  # noqa: E402
from .extra import summary_lines  # noqa: E402
from .metrics import confusion, summarize  # noqa: E402
from .run_dir import RunDir  # noqa: E402


def plot_confusion(y_true, y_pred, title: str, path: Path) -> None:
    cm = confusion(y_true, y_pred)
    row = cm.sum(1, keepdims=True)
    frac = np.divide(cm, row, out=np.zeros_like(cm, dtype=float), where=row > 0)
    names = [L.class_name(i) for i in range(L.N_CLASSES)]
    fig, ax = plt.subplots(figsize=(12, 10.5))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(L.N_CLASSES):
        for j in range(L.N_CLASSES):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(L.N_CLASSES), [f"{i} {n}" for i, n in enumerate(names)], rotation=90, fontsize=8)
    ax.set_yticks(range(L.N_CLASSES), [f"{i} {n}" for i, n in enumerate(names)], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (colour: share of the true row)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(logs: dict[int, pd.DataFrame], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for fold, log in logs.items():
        axes[0].plot(log["epoch"], log["train_loss"], marker="o", label=f"fold {fold}")
        axes[1].plot(log["epoch"], log["val_f1"], marker="o", label=f"fold {fold}")
    axes[0].set_title("training loss")
    axes[1].set_title("validation macro-F1 (true age boundary)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)



def build_report(run: RunDir, cfg, folds: list[int], fold_results: list[dict] | None = None,
                 eval_metrics: dict | None = None, face_stats: dict | None = None,
                 decision: dict | None = None, grouping: dict | None = None, pseudo: dict | None = None,
                 extra: dict | None = None, age_edge: dict | None = None) -> dict:
    """report.md and its figures; returns the metrics (the caller adds the wall time and saves them)."""
    oof = run.load_oof(folds)
    y = oof["label"].to_numpy()
    probs = oof[PROB_COLS].to_numpy()
    overall = summarize(y, probs)
    per_fold = {int(f): summarize(g["label"].to_numpy(), g[PROB_COLS].to_numpy())
                for f, g in oof.groupby("fold")}
    logs = {f: pd.read_csv(run.fold(f).log) for f in folds if run.fold(f).log.exists()}

    plot_confusion(y, probs.argmax(1), f"out-of-fold confusion ({len(y)} images, folds {folds})", run.confusion_oof)
    if logs:
        plot_curves(logs, run.curves)

    metrics = {"run": run.name, "oof": overall, "oof_per_fold": per_fold,
               "folds": fold_results or [], "eval": eval_metrics, "face_crops": face_stats, "decision": decision,
               "grouping": grouping, "pseudo": pseudo, "extra": extra, "age_edge": age_edge}

    lines = [f"# Run `{run.name}`", "", f"Model `{cfg['model']}`, initial weights: "
             f"{cfg.get('weights') or 'not recorded'}; data `{cfg.get('data') or 'not recorded'}`", ""]
    lines += ["## Scores", "", "| split | images | macro-F1 | accuracy | mask F1 | gender F1 | age F1 |",
              "|---|---|---|---|---|---|---|"]

    def score_row(name, m):
        return (f"| {name} | {m['n']} | {m['f1']:.4f} | {m['acc']:.4f} | {m['mask_f1']:.4f} | "
                f"{m['gender_f1']:.4f} | {m['age_f1']:.4f} |")

    lines.append(score_row("out-of-fold (all trained folds)", overall))
    for f, m in per_fold.items():
        lines.append(score_row(f"fold {f}", m))
    if eval_metrics:
        lines.append(score_row("eval (fold ensemble + TTA)", eval_metrics))
    lines += ["", "Sub-task F1 is macro-F1 of the sub-task read off the 18-class prediction. "
              "Ages are banded at 60 in every score, whatever `age_boundary` training used.", ""]
    if pseudo:
        lines += [f"## Pseudo-labels (`pseudo_from={cfg['pseudo_from']}`, p >= {cfg['pseudo_threshold']})", "",
                  f"{pseudo['photos']} eval photos joined every fold's training data (never validation), per class:", "",
                  "| " + " | ".join(str(i) for i in range(L.N_CLASSES)) + " |", "|---" * L.N_CLASSES + "|",
                  "| " + " | ".join(str(c) for c in pseudo["per_class"]) + " |", "",
                  "The eval score of this run is transductive: it trained on the eval photos' predicted labels.", ""]
    if extra:
        lines += [f"## Outside persons (`extra={cfg['extra']}`" +
                  (f", `extra_ages={cfg.saved()['extra_ages']}`" if cfg["extra_ages"] else "") + ")", "",
                  *summary_lines(extra), "", "They joined every fold's training data and no validation fold: every "
                  "score above is on the competition's persons alone.", ""]
    if age_edge:
        nested = age_edge["oof_f1_nested"]
        lines += ["## The >=60 edge (`age_head=ordinal`)", "",
                  f"The model learns P(age >= t) for every age t; the eval's >=60 band starts at age "
                  f"**{age_edge['edge']}**, fitted on the OOF for macro-F1 (training used {age_edge['training_edge']}; "
                  f"OOF scores above are at the training edge).", "",
                  f"- OOF macro-F1 at the training edge {age_edge['oof_f1_training_edge']:.4f}; at the fitted edge "
                  f"(optimistic, fitted on the same OOF) {age_edge['oof_f1_fitted']:.4f}; nested (fitted without each "
                  f"of {age_edge['nested_by']}) " + (f"{nested:.4f}" if nested is not None else "not possible"),
                  "- per edge: " + ", ".join(f"{e}: {f:.4f}" for e, f in age_edge["per_edge"].items()), ""]
    if grouping:
        q = grouping["oof"]
        lines += [f"## Persons grouped at test time (`group_eval={grouping['size']}`)", "",
                  "Photos grouped by the fold models' features of the top of each photo; a group is a clique of "
                  "mutual nearest neighbours of exactly that size, others are left alone. This uses the eval set's "
                  "structure (7 photos per person). Measured blind on the OOF persons:", "",
                  f"- coverage {q['coverage']:.3f}, purity {q['purity']:.3f}, pair precision {q['pair_precision']:.3f}, "
                  f"pair recall {q['pair_recall']:.3f}; eval photos grouped: {grouping['eval_coverage']:.3f}",
                  f"- OOF macro-F1 {grouping['oof_f1_before'][0]:.4f} -> {grouping['oof_f1_after'][0]:.4f} with gender "
                  f"and age shared in each group (eval uses the grouped probabilities; OOF scores above do not)", ""]
    if decision:
        nested = decision["oof_f1_nested"]
        lines += ["## Decision (`decision=bias`)", "",
                  "Eval classes are argmax(log p + bias), the biases fitted on this run's OOF for macro-F1. "
                  "OOF scores above are plain argmax.", "",
                  f"- OOF macro-F1: argmax {decision['oof_f1_argmax']:.4f}; with the biases, fitted on the same OOF "
                  f"(optimistic) {decision['oof_f1_in_sample']:.4f}; nested (fitted on the other folds) " +
                  (f"{nested:.4f}" if nested is not None else "not possible (one fold trained)"),
                  f"- biases: {[round(b, 2) for b in decision['biases']]}", ""]
    if face_stats:
        lines += ["## Face crops", "",
                  f"No face found (centre crop used instead) in {face_stats['train_fallbacks']} of "
                  f"{face_stats['train_photos']} training photos and {face_stats['eval_fallbacks']} of "
                  f"{face_stats['eval_photos']} eval photos.", ""]
    if fold_results:
        lines += ["## Training", "", "| fold | best epoch | best val F1 | train images/s | train seconds | "
                  "peak host RAM | peak GPU memory |", "|---|---|---|---|---|---|---|"]

        def gib(v):
            return "–" if v is None else f"{v:.2f} GiB"

        for r in fold_results:
            lines.append(f"| {r['fold']} | {r['best_epoch']} | {r['best_f1']:.4f} | {r['train_img_s']:.1f} | "
                         f"{r['train_seconds']:.0f} | {gib(r.get('peak_host_gib'))} | {gib(r.get('peak_gpu_gib'))} |")
        lines += ["", f"![training curves]({run.curves.name})", ""]
    lines += ["## Per class (out-of-fold)", "", "| class | name | F1 | support |", "|---|---|---|---|"]
    for i in range(L.N_CLASSES):
        lines.append(f"| {i} | {L.class_name(i)} | {overall['per_class_f1'][i]:.4f} | {overall['support'][i]} |")
    lines += ["", f"![out-of-fold confusion matrix]({run.confusion_oof.name})", "",
              f"The photos behind every cell, persons whose shots disagree and the audit's candidates: "
              f"[{run.gallery.name}]({run.gallery.name}) (open it in a browser).", ""]
    if run.confusion_eval.exists():
        lines += [f"![eval confusion matrix]({run.confusion_eval.name})", ""]
    lines += ["## Config", "", "```yaml", yaml.safe_dump(cfg.saved(), sort_keys=True).rstrip(), "```", ""]
    run.report.write_text("\n".join(lines))
    return metrics
