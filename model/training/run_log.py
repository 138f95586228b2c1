"""The record of a training run: each step's metrics (``metrics.jsonl``) and their plot
(``metrics.png``), and the reward figures a step logs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PLOTTED", "plot_metrics", "reward_metrics", "truncate_metrics"]


def reward_metrics(samples: Sequence[Any]) -> dict[str, float]:
    """Mean and spread of the rewards of scored ``samples``, and how many compiled, passed,
    and were measurably faster."""
    scored = [s.score for s in samples if s.score is not None]
    rewards = [s.reward for s in scored]
    inputs = [s.inputs for s in scored]
    # The paper's speed-up per problem: failures count 1.0; and how many are measurably faster.
    speedups = [
        r.speedup if r.all_passed and r.speedup is not None and not r.identical_to_baseline
        else 1.0
        for r in inputs
    ]  # fmt: skip
    return {
        "reward_mean": float(np.mean(rewards)),
        "reward_std": float(np.std(rewards)),
        "compile_rate": float(np.mean([r.compiled for r in inputs])),
        "pass_rate": float(np.mean([r.all_passed for r in inputs])),
        "faster_rate": float(np.mean([_faster(r) for r in inputs])),
        "speedup_mean": float(np.mean(speedups)),
    }


def _faster(r: Any) -> bool:
    return r.all_passed and (r.ci_low or 0.0) > 1.0 and not r.identical_to_baseline


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines of steps after ``step``: they were logged by a run interrupted
    before their checkpoint was written, and will be run again."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by the interruption
        if record.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(k + "\n" for k in kept))


PLOTTED = (
    ("reward_mean", "mean reward"),
    ("pass_rate", "pass rate"),
    ("speedup_mean", "speed-up (failures = 1.0)"),
    ("kl", "KL"),
    ("policy_loss", "policy loss"),
    ("value_loss", "value loss"),
    ("entropy", "entropy"),
)


def plot_metrics(metrics_path: Path, png: Path) -> Path | None:
    """A PNG with one panel per metric against the step; None when there is nothing yet."""
    if not metrics_path.exists():
        return None
    records = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = math.ceil(len(PLOTTED) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, (key, title) in zip(axes.flat, PLOTTED, strict=False):
        ax.plot(steps, [r.get(key, float("nan")) for r in records], marker=".")
        ax.set_title(title)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(PLOTTED) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png
