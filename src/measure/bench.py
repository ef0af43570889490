"""Quality benchmark: train each recipe under the same protocol, on the same folds, one table.

The command and its manual: src/stages/bench.py (`bash run.sh bench --help`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from ..core.classes import PROB_COLS
from ..core.config import load_config, saved_differences, settle_outside
from ..core.errors import ConfigError, UserError
from ..core.keys import KEYS
from ..core.metrics import paired_bootstrap
from ..core.paths import ROOT, user_path
from ..core.run_dir import OUTPUT, RESUME_FREE_KEYS, RunDir, read_eval_probs
from ..data.tables import load_eval
from ..infer import blend
from ..pipeline.job import run_job
from . import reference

PROTOCOLS = {
    "cpu": ["model=tf_efficientnet_lite0", "pretrained=true", "img_size=149,112", "crop_frac=0.78125", "epochs=3",
            "folds=0", "batch_size=32"],
    "gpu": ["folds=all", "n_folds=5"],
}


def recipe_parts(spec: str) -> tuple[str, list[str]]:
    """'recommended+crop=face+lr=1e-3' -> ('recommended', ['crop=face', 'lr=1e-3'])."""
    base, *changes = spec.split("+")
    return base, changes


def folder(recipe: str) -> str:
    """The run folder of a recipe: its text, with '/' (e.g. in pseudo_from=bench/x/run) made safe."""
    return quote(recipe, safe="+=,.-_:@")


def config_changes(run: RunDir, recipe: str, overrides: list[str], data: str) -> list[str]:
    """Where this recipe, run now on `data`, differs from the config the finished run used (extra=auto settled
    by it): none, and the run is reused."""
    return saved_differences(run.config, settle_outside(load_config(recipe, overrides), user_path(data)),
                             RESUME_FREE_KEYS | {"data_dir", "data", "recipe", "weights"})


BAND_KEYS = ("young_f1", "middle_f1", "old_f1")  # results.json: the mean F1 of each age band's six classes


def band_f1s(per_class: list[float] | None) -> list[float | None]:
    """The mean F1 of the six classes of each age band (<30, 30-59, >=60): macro-F1 is their mean, and the
    >=60 third its weakest part."""
    return [None if not per_class else float(np.mean([f for c, f in enumerate(per_class) if c % 3 == band]))
            for band in range(3)]


def row_for(run: RunDir, recipe: str) -> dict:
    m = run.read_metrics()
    run_dir = run.path
    wall = m.get("wall_seconds", 0.0)
    ev = m.get("eval") or {}
    folds = m.get("folds") or []
    return {"recipe": recipe, "run": str(run_dir.relative_to(ROOT)) if run_dir.is_relative_to(ROOT) else str(run_dir),
            "oof_f1": m["oof"]["f1"], "eval_f1": ev.get("f1"), "eval_acc": ev.get("acc"),
            "mask_f1": ev.get("mask_f1", m["oof"]["mask_f1"]), "gender_f1": ev.get("gender_f1", m["oof"]["gender_f1"]),
            "age_f1": ev.get("age_f1", m["oof"]["age_f1"]),
            **dict(zip(BAND_KEYS, band_f1s(ev.get("per_class_f1") or m["oof"].get("per_class_f1")))),
            "train_img_s": sum(f["train_img_s"] for f in folds) / max(len(folds), 1), "wall_s": wall}


def eval_predictions(run: RunDir, truth: pd.DataFrame) -> np.ndarray | None:
    """The run's predicted class per eval photo, in `truth`'s order; None if it has no eval probabilities."""
    probs = read_eval_probs(run)
    if probs is None:
        return None
    both = truth[["ImageID"]].merge(probs, on="ImageID", how="left", validate="one_to_one")
    return both[PROB_COLS].to_numpy().argmax(1)


def add_intervals(rows: list[dict], out: Path, data: str, baseline: str) -> str | None:
    """95 % intervals of each row's eval-F1 difference from the baseline and from its base recipe;
    returns what was resampled ("persons" or "photos"; None without eval answers).

    A paired bootstrap: both recipes are scored on the same resamples, so the interval shows whether a
    difference is larger than the luck of which persons were drawn. Whole persons (all 7 photos together)
    where eval/persons.csv names them; else photos, which understates the uncertainty (a person's
    photos are right or wrong together). Both are kept in results.json (`ci_*` and `ci_*_photos`).
    """
    truth = load_eval(data, check_pixels=False).sort_values("ImageID")  # a fixed order: reproducible resamples
    if "true" not in truth:  # no eval/answers.csv: no eval scores to compare
        return None
    persons = truth["person"].to_numpy() if "person" in truth else None
    preds = {r["recipe"]: eval_predictions(RunDir(out / folder(r["recipe"])), truth) for r in rows}
    y = truth["true"].to_numpy()
    for r in rows:
        for key, ref in (("ci_vs_baseline", baseline), ("ci_vs_base", recipe_parts(r["recipe"])[0])):
            if ref != r["recipe"] and preds.get(ref) is not None and preds[r["recipe"]] is not None:
                r[f"{key}_photos"] = list(paired_bootstrap(y, preds[ref], preds[r["recipe"]])[1:])
                r[key] = list(paired_bootstrap(y, preds[ref], preds[r["recipe"]], groups=persons)[1:]) \
                    if persons is not None else r[f"{key}_photos"]
    return "persons" if persons is not None else "photos"


def table(rows: list[dict], baseline: str) -> str:
    """Markdown table; each one-line ablation is also compared with the recipe it changes."""
    by_name = {r["recipe"]: r for r in rows}
    base = by_name.get(baseline, rows[0])

    def fmt(v):
        return "–" if v is None else f"{v:.4f}"

    def delta(r, ref, ci_key):
        if ref is None or r is ref or r["eval_f1"] is None or ref["eval_f1"] is None:
            return "–"
        ci = r.get(ci_key)
        return f"{r['eval_f1'] - ref['eval_f1']:+.4f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")

    lines = ["| recipe | OOF macro-F1 | eval macro-F1 | Δ eval vs " + base["recipe"] + " [95 % CI] | Δ eval vs its base"
             " [95 % CI] | mask F1 | gender F1 | age F1 | <30 F1 | 30–59 F1 | ≥60 F1 | train img/s"
             " | wall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        parent = by_name.get(recipe_parts(r["recipe"])[0])
        trained = r["train_img_s"] > 0  # post-hoc rows (blends) train nothing
        speed = f"{r['train_img_s']:.1f} | {r['wall_s'] / 60:.1f} min" if trained else "post-hoc | –"
        name = r["recipe"].replace("|", "\\|")  # a blend's '|' would split the markdown row
        lines.append(f"| {name} | {fmt(r['oof_f1'])} | {fmt(r['eval_f1'])} | {delta(r, base, 'ci_vs_baseline')} | "
                     f"{delta(r, parent, 'ci_vs_base')} | {fmt(r['mask_f1'])} | {fmt(r['gender_f1'])} | "
                     f"{fmt(r['age_f1'])} | {' | '.join(fmt(r.get(k)) for k in BAND_KEYS)} | {speed} |")
    return "\n".join(lines)


def plot(rows: list[dict], baseline: str, path: Path) -> None:
    """Bar chart of each recipe's macro-F1 (eval where answers exist, else OOF) and its three tasks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_eval = all(r["eval_f1"] is not None for r in rows)
    scores = [r["eval_f1"] if use_eval else r["oof_f1"] for r in rows]
    names = [r["recipe"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(rows) + 1.6), sharey=True,
                             gridspec_kw={"width_ratios": [2, 3]})
    y = range(len(rows))
    axes[0].barh(y, scores, color=["tab:grey" if n == baseline else "tab:blue" for n in names])
    base = next((s for n, s in zip(names, scores) if n == baseline), None)
    if base is not None:
        axes[0].axvline(base, color="k", lw=0.8, ls="--")
    for i, s in enumerate(scores):
        axes[0].text(s, i, f" {s:.3f}", va="center", fontsize=8)
    axes[0].set_xlabel(("eval" if use_eval else "OOF") + " macro-F1 (18 classes)")
    axes[0].set_xlim(0, min(1.0, max(max(scores) * 1.2, 0.05)))  # every score 0 (a tiny bench): still a range
    for k, (key, label) in enumerate([("mask_f1", "mask"), ("gender_f1", "gender"), ("age_f1", "age")]):
        axes[1].barh([i + (k - 1) * 0.27 for i in y], [r[key] for r in rows], height=0.27, label=label)
    axes[1].set_xlabel("task macro-F1")
    lowest = min(r[k] for r in rows for k in ("mask_f1", "gender_f1", "age_f1"))
    axes[1].set_xlim(min(0.4, int(lowest * 10) / 10), 1.0)  # zoomed in, but every bar visible
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    axes[0].set_yticks(list(y), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(out: Path, name: str, protocol: str, overrides: list[str], data: str, rows: list[dict],
                  baseline: str) -> str:
    """results.md + results.png, rewritten after every recipe so a long bench shows its progress."""
    unit = add_intervals(rows, out, data, baseline)
    text = table(rows, baseline)
    plot(rows, baseline, out / "results.png")
    notes = ("\n\n`reference`: the independent implementation of the seed recipe (src/measure/reference.py); its OOF "
             "column is its last epoch's validation macro-F1 on its own 4:1 person split, its task F1s are on eval."
             if any(recipe_parts(r["recipe"])[0] == reference.NAME for r in rows) else "")
    (out / "results.md").write_text(
        f"# bench {name}\n\nprotocol `{protocol}` ({' '.join(PROTOCOLS[protocol] + overrides)}), "
        f"data `{data}`\n\n{text}\n\n[95 % CI]: {INTERVALS.get(unit, '')} <30 / 30–59 / ≥60 F1: "
        f"the mean F1 of the six classes of that age band (eval, else OOF); macro-F1 is the mean of the three.{notes}"
        f"\n\n![results](results.png)\n")
    return text


INTERVALS = {
    "persons": "paired bootstrap over eval persons, each drawn with all of their photos (1,000 resamples; "
               "eval/persons.csv names them).",
    "photos": "paired bootstrap over eval photos (1,000 resamples). The 7 photos of a person are not independent, "
              "so read it as the least uncertainty there is; eval/persons.csv (ImageID,person) makes the bench "
              "resample whole persons.",
}

TRAINED, REUSED = 0, -1  # what run_recipe / run_reference did; any other value is an exit code


def run_recipe(out: Path, name: str, recipe: str, protocol: str, overrides: list[str], data: str) -> int:
    """Train one recipe into out/<recipe>, or reuse it when it finished earlier with the same config."""
    base, changes = recipe_parts(recipe)
    run = RunDir(out / folder(recipe))
    if run.finished():  # finished earlier under this bench: reuse it
        if differences := config_changes(run, base, [*overrides, *changes], data):
            print(f"error: recipe {recipe} has changed since bench {name} ran it ({run}): {'; '.join(differences)}; "
                  f"use another --name", file=sys.stderr)
            return 2
        print(f"bench {name}: recipe {recipe} already finished in {run}, reusing it", flush=True)
        return REUSED
    print(f"\n=== bench {name}: recipe {recipe} ({protocol} protocol) ===", flush=True)
    try:  # same name and output: an interrupted bench continues its unfinished runs
        run_job(data, base, [*overrides, *changes], folder(recipe), out)
    except UserError as e:  # said; the table so far stays
        print(f"error: {e}", file=sys.stderr)
        return 2
    return TRAINED


def run_reference(script: Path, out: Path, name: str, recipe: str, protocol: str, overrides: list[str],
                  data: str) -> int:
    """The parity row: the yardstick script at the protocol's settings (see src/measure/reference.py);
    `reference+seed=1` changes what the script can change (seed, epochs, lr, ...)."""
    reused = RunDir(out / folder(recipe)).finished()  # reference.run checks its settings are the same
    if not reused:
        print(f"\n=== bench {name}: the reference {script} as {recipe} ({protocol} protocol) ===", flush=True)
    code = reference.run(script, out / folder(recipe), [*overrides, *recipe_parts(recipe)[1]], data)
    return code or (REUSED if reused else TRAINED)


BLEND = "blend:"  # blend:A|B[+decision=bias][+group_eval=7]: a post-hoc row over this bench's finished rows


BLEND_OPTIONS = ("decision", "group_eval")


def blend_parts(recipe: str) -> tuple[list[str], str, int]:
    """(the blended recipes, decision, group size) of a blend row: the trailing +decision=/+group_eval=
    parts are its options, the rest its recipes (which may hold '+' themselves)."""
    parts = recipe[len(BLEND):].split("+")
    opts = {}
    while parts and "=" in parts[-1] and parts[-1].split("=", 1)[0] in set(BLEND_OPTIONS) - set(opts):
        k, v = parts.pop().split("=", 1)  # the last of each: a blended recipe may end in decision=none itself
        opts[k] = v
    names = [n for n in "+".join(parts).split("|") if n]
    try:  # the options mean what the config keys of the same names mean
        decision = KEYS["decision"].parse(opts.get("decision", "none"))
        group = KEYS["group_eval"].parse(opts.get("group_eval", 0))
    except ValueError as e:
        raise ConfigError(f"a blend row is blend:A|B[+decision=bias][+group_eval=7]: {e}") from None
    if not names:
        raise ConfigError("a blend row is blend:A|B[+decision=bias][+group_eval=7]: no recipe to blend")
    return names, decision, group


def run_blend(out: Path, name: str, recipe: str) -> int:
    """A post-hoc row: src/infer/blend.py over finished rows of this bench (seconds; grouping: minutes)."""
    names, decision, group = blend_parts(recipe)
    if RunDir(out / folder(recipe)).finished():
        print(f"bench {name}: {recipe} already made in {out / folder(recipe)}, reusing it", flush=True)
        return REUSED
    print(f"\n=== bench {name}: {recipe} (post-hoc) ===", flush=True)
    try:
        blend.blend([str(out / folder(n)) for n in names], decision, folder(recipe), out, group)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return TRAINED


def check_recipes(recipes: list[str], overrides: list[str], data: str, script: Path) -> None:
    """Each recipe's config (or the reference's arguments) as it would run; ConfigError names the recipe."""
    if not recipes:
        raise ConfigError("--recipes: no recipe given")
    for r in recipes:
        base, changes = recipe_parts(r)
        try:
            if r.startswith(BLEND):
                missing = [n for n in blend_parts(r)[0] if n not in recipes[:recipes.index(r)]]
                if missing:
                    raise ConfigError(f"blends {missing}, which must be recipes listed before it")
            elif base == reference.NAME:
                if not script.is_file():
                    raise ConfigError(f"the yardstick script is not at {script} (--reference PATH)")
                reference.script_args([*overrides, *changes], data)
            else:
                load_config(base, [*overrides, *changes])
        except (ConfigError, FileNotFoundError) as e:
            raise ConfigError(f"recipe {r}: {e}") from None



def bench_folder(name: str, protocol: str, overrides: list[str], data: str) -> Path:
    """<output>/bench/NAME, made; a bench of that name run under another protocol is refused (ConfigError)."""
    out = OUTPUT / "bench" / name
    if (out / "results.json").exists():
        earlier = json.loads((out / "results.json").read_text())
        if (earlier["protocol"], earlier["overrides"], earlier["data"]) != (protocol, overrides, data):
            raise ConfigError(f"bench {out} was run with protocol {earlier['protocol']} {earlier['overrides']} on "
                              f"{earlier['data']}; use another --name for a different protocol")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_bench(protocol: str, overrides: list[str], script: Path, recipes: list[str], name: str, out: Path,
              data: str) -> int:
    """Each recipe trained (or reused) in turn, the table rewritten after every trained one."""
    rows, text, written = [], "", 0
    on_top = [*PROTOCOLS[protocol], *overrides]  # the protocol, then the user's overrides, on every recipe
    for recipe in recipes:
        if recipe_parts(recipe)[0] == reference.NAME:
            code = run_reference(script, out, name, recipe, protocol, on_top, data)
        elif recipe.startswith(BLEND):
            code = run_blend(out, name, recipe)
        else:
            code = run_recipe(out, name, recipe, protocol, on_top, data)
        if code not in (TRAINED, REUSED):
            return code
        rows.append(row_for(RunDir(out / folder(recipe)), recipe))
        if code == TRAINED:
            text, written = write_results(out, name, protocol, overrides, data, rows, recipes[0]), len(rows)
    if written < len(rows):  # reused recipes after the last trained one (or only reused ones)
        text = write_results(out, name, protocol, overrides, data, rows, recipes[0])
    (out / "results.json").write_text(json.dumps({"protocol": protocol, "data": data, "overrides": overrides,
                                                  "rows": rows}, indent=2))
    print(f"\n{text}\n\nwrote {out / 'results.md'}")
    return 0
