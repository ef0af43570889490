"""The eval set's answer: submission.csv in info.csv order, the probabilities behind it, and its
scores when the answers are known."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..core.classes import PROB_COLS
from ..core.metrics import summarize
from ..core.run_dir import RunDir


def write_submission(run: RunDir, eval_table: pd.DataFrame, probs: np.ndarray) -> dict | None:
    """submission.csv, eval_probs.csv, and eval metrics when eval/answers.csv exists."""
    sub = pd.DataFrame({"ImageID": eval_table["ImageID"], "ans": probs.argmax(1)})
    sub.to_csv(run.submission, index=False)
    write_eval_probs(run, eval_table["ImageID"].values, probs)
    if "true" not in eval_table:
        return None
    metrics = summarize(eval_table["true"].to_numpy(), probs)
    run.eval_metrics.write_text(json.dumps(metrics, indent=2))
    return metrics


def write_eval_probs(run: RunDir, image_ids, probs: np.ndarray) -> None:
    table = pd.DataFrame(probs, columns=PROB_COLS)
    table.insert(0, "ImageID", image_ids)
    table.to_csv(run.eval_probs, index=False, float_format="%.6f")
