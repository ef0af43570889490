"""report.md with its confusion-matrix and training-curve PNGs, and the metrics of one run."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from ..core import classes  # noqa: E402
from ..core.classes import PROB_COLS  # noqa: E402
from ..core.metrics import confusion, summarize  # noqa: E402
from ..core.run_dir import RunDir  # noqa: E402
from ..persons.outside_persons import summary_lines  # noqa: E402


def plot_confusion(y_true, y_pred, title: str, path: Path) -> None:
    cm = confusion(y_true, y_pred)
    row = cm.sum(1, keepdims=True)
    frac = np.divide(cm, row, out=np.zeros_like(cm, dtype=float), where=row > 0)
    names = [classes.class_name(i) for i in range(classes.N_CLASSES)]
    fig, ax = plt.subplots(figsize=(12, 10.5))
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(classes.N_CLASSES):
        for j in range(classes.N_CLASSES):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(classes.N_CLASSES), [f"{i} {n}" for i, n in enumerate(names)], rotation=90, fontsize=8)
    ax.set_yticks(range(classes.N_CLASSES), [f"{i} {n}" for i, n in enumerate(names)], fontsize=8)
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



@dataclass
class Outcome:
    """What a run produced besides its OOF: each part, when used, is a section of report.md and a key of
    metrics.json (the key names are the fields'; None: not used)."""
    folds: list[dict] = field(default_factory=list)  # each trained fold's summary
    eval: dict | None = None                          # eval scores (with eval/answers.csv)
    face_crops: dict | None = None                    # crop=face: fallbacks
    decision: dict | None = None                      # decision=bias
    grouping: dict | None = None                      # group_eval
    pseudo: dict | None = None                        # pseudo_from
    extra: dict | None = None                         # extra=: outside persons (metrics.json says it as the key)
    age_edge: dict | None = None                      # age_head=ordinal: the fitted edge

    def metrics(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def score_row(name: str, m: dict) -> str:
    return (f"| {name} | {m['n']} | {m['f1']:.4f} | {m['acc']:.4f} | {m['mask_f1']:.4f} | "
            f"{m['gender_f1']:.4f} | {m['age_f1']:.4f} |")


def scores_section(overall: dict, per_fold: dict, eval_metrics: dict | None) -> list[str]:
    lines = ["## Scores", "", "| split | images | macro-F1 | accuracy | mask F1 | gender F1 | age F1 |",
             "|---|---|---|---|---|---|---|", score_row("out-of-fold (all trained folds)", overall)]
    lines += [score_row(f"fold {f}", m) for f, m in per_fold.items()]
    if eval_metrics:
        lines.append(score_row("eval (fold ensemble + TTA)", eval_metrics))
    return lines + ["", "Sub-task F1 is macro-F1 of the sub-task read off the 18-class prediction. "
                    "Ages are banded at 60 in every score, whatever `age_boundary` training used.", ""]


def pseudo_section(cfg, pseudo: dict) -> list[str]:
    return [f"## Pseudo-labels (`pseudo_from={cfg['pseudo_from']}`, p >= {cfg['pseudo_threshold']})", "",
            f"{pseudo['photos']} eval photos joined every fold's training data (never validation), per class:", "",
            "| " + " | ".join(str(i) for i in range(classes.N_CLASSES)) + " |", "|---" * classes.N_CLASSES + "|",
            "| " + " | ".join(str(c) for c in pseudo["per_class"]) + " |", "",
            "The eval score of this run is transductive: it trained on the eval photos' predicted labels.", ""]


def outside_section(cfg, extra: dict) -> list[str]:
    ages = f"`extra_ages={cfg.saved()['extra_ages']}`" + (f": {extra['ages_kept']}" if "ages_kept" in extra else "")
    torn = [f"{extra['conflicting_labels']} photos listed with two labels (the same file, or the same bytes under two "
            f"names) were left out (`extra_conflicts=drop`); `outside_conflicts.txt` lists each with its two "
            f"listings.", ""] if extra.get("conflicting_labels") else []  # counted only when dropped
    return [f"## Outside persons (`extra={cfg.saved()['extra']}`, {ages})", "", *summary_lines(extra), "", *torn,
            "They joined every fold's training data and no validation fold: every score above is on the "
            "competition's persons alone.", ""]


def age_edge_section(cfg, edge: dict) -> list[str]:
    nested = edge["oof_f1_nested"]
    return ["## The >=60 edge (`age_head=ordinal`)", "",
            f"The model learns P(age >= t) for every age t; the eval's >=60 band starts at age **{edge['edge']}**, "
            f"fitted on the OOF for macro-F1 (training used {edge['training_edge']}; OOF scores above are at the "
            f"training edge).", "",
            f"- OOF macro-F1 at the training edge {edge['oof_f1_training_edge']:.4f}; at the fitted edge (optimistic, "
            f"fitted on the same OOF) {edge['oof_f1_fitted']:.4f}; nested (fitted without each of "
            f"{edge['nested_by']}) " + (f"{nested:.4f}" if nested is not None else "not possible"),
            "- per edge: " + ", ".join(f"{e}: {f:.4f}" for e, f in edge["per_edge"].items()), ""]


def grouping_section(cfg, grouping: dict) -> list[str]:
    q = grouping["oof"]
    return [f"## Persons grouped at test time (`group_eval={grouping['size']}`)", "",
            "Photos grouped by the fold models' features of the top of each photo; a group is a clique of "
            "mutual nearest neighbours of exactly that size, others are left alone. This uses the eval set's "
            "structure (7 photos per person). Measured blind on the OOF persons:", "",
            f"- coverage {q['coverage']:.3f}, purity {q['purity']:.3f}, pair precision {q['pair_precision']:.3f}, "
            f"pair recall {q['pair_recall']:.3f}; eval photos grouped: {grouping['eval_coverage']:.3f}",
            f"- OOF macro-F1 {grouping['oof_f1_before'][0]:.4f} -> {grouping['oof_f1_after'][0]:.4f} with gender "
            f"and age shared in each group (eval uses the grouped probabilities; OOF scores above do not)", ""]


def decision_section(cfg, decision: dict) -> list[str]:
    shares = lambda p: ", ".join(f"{classes.class_name(k)} {100 * v:.1f}" for k, v in enumerate(p))  # noqa: E731
    priors = [f"- competition's training rows: {shares(decision['competition_prior'])}",
              f"- every row trained on (outside persons, pseudo-labels): {shares(decision['trained_prior'])}"] \
        if "trained_prior" in decision else []
    if decision.get("prior"):
        return ["## Decision (`decision=prior`): the competition's class prior put back", "",
                "Eval log-probabilities + log(competition prior / trained prior), per class (%):", "", *priors,
                f"- biases: {[round(b, 2) for b in decision['biases']]}", ""]
    nested, applied = decision["oof_f1_nested"], decision.get("applied", True)
    by = decision.get("nested_by", "folds")
    what = ("Eval classes are argmax(log p + bias), the biases fitted on this run's OOF for macro-F1." if applied else
            "Eval classes are plain argmax: the biases fitted on this run's OOF did not beat it on persons held out "
            "of their fit.")
    return [f"## Decision (`decision={cfg['decision']}`): {'biases applied' if applied else 'no biases'}", "",
            f"{what} {decision.get('why', 'decision=bias')}. OOF scores above are plain argmax.", "",
            f"- OOF macro-F1: argmax {decision['oof_f1_argmax']:.4f}; with the biases, fitted on the same OOF "
            f"(optimistic) {decision['oof_f1_in_sample']:.4f}; nested (fitted without each of the {by}) " +
            (f"{nested:.4f}" if nested is not None else "not possible"),
            f"- biases: {[round(b, 2) for b in decision['biases']]}",
            *(["- the class prior the run trained on differs from the competition's (%):", *priors] if priors else []),
            ""]


def face_crops_section(cfg, face_stats: dict) -> list[str]:
    return ["## Face crops", "",
            f"No face found (centre crop used instead) in {face_stats['train_fallbacks']} of "
            f"{face_stats['train_photos']} training photos and {face_stats['eval_fallbacks']} of "
            f"{face_stats['eval_photos']} eval photos. The training photos include "
            f"{face_stats.get('outside_photos', 0)} shots of outside persons (extra=), cropped by the face their "
            f"mask was drawn on.", ""]


def training_section(run: RunDir, fold_results: list[dict]) -> list[str]:
    def gib(v):
        return "–" if v is None else f"{v:.2f} GiB"

    lines = ["## Training", "", "| fold | best epoch | best val F1 | train images/s | train seconds | "
             "peak host RAM | peak GPU memory |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['fold']} | {r['best_epoch']} | {r['best_f1']:.4f} | {r['train_img_s']:.1f} | "
              f"{r['train_seconds']:.0f} | {gib(r.get('peak_host_gib'))} | {gib(r.get('peak_gpu_gib'))} |"
              for r in fold_results]
    return lines + ["", f"![training curves]({run.curves.name})", ""]


def per_class_section(run: RunDir, overall: dict) -> list[str]:
    lines = ["## Per class (out-of-fold)", "", "| class | name | F1 | support |", "|---|---|---|---|"]
    lines += [f"| {i} | {classes.class_name(i)} | {overall['per_class_f1'][i]:.4f} | {overall['support'][i]} |"
              for i in range(classes.N_CLASSES)]
    lines += ["", f"![out-of-fold confusion matrix]({run.confusion_oof.name})", "",
              f"The photos behind every cell, persons whose shots disagree and the audit's candidates: "
              f"[{run.gallery.name}]({run.gallery.name}) (open it in a browser).", ""]
    if run.confusion_eval.exists():
        lines += [f"![eval confusion matrix]({run.confusion_eval.name})", ""]
    return lines


# the optional sections, in report order: the Outcome field each reports, and how
OPTIONAL_SECTIONS = (("pseudo", pseudo_section), ("extra", outside_section), ("age_edge", age_edge_section),
                     ("grouping", grouping_section), ("decision", decision_section),
                     ("face_crops", face_crops_section))


def build_report(run: RunDir, cfg, folds: list[int], outcome: Outcome) -> dict:
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

    lines = [f"# Run `{run.name}`", "", f"Model `{cfg['model']}`, initial weights: "
             f"{cfg.get('weights') or 'not recorded'}; data `{cfg.get('data') or 'not recorded'}`", ""]
    lines += scores_section(overall, per_fold, outcome.eval)
    for key, section in OPTIONAL_SECTIONS:
        if getattr(outcome, key):
            lines += section(cfg, getattr(outcome, key))
    if outcome.folds:
        lines += training_section(run, outcome.folds)
    lines += per_class_section(run, overall)
    lines += ["## Config", "", "```yaml", yaml.safe_dump(cfg.saved(), sort_keys=True).rstrip(), "```", ""]
    run.report.write_text("\n".join(lines))
    return {"run": run.name, "oof": overall, "oof_per_fold": per_fold, **outcome.metrics()}
