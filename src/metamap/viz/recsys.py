"""Plots of cold-start recommendation: error against support size, and one user's ratings.

* :func:`support_curve_plot` — for every method of a MovieLens benchmark result
  (``benchmarks/movielens.py``), the mean test-user MAE (or another metric) ± 95% CI at each
  support size: how fast each method personalises.
* :func:`user_adaptation_plot` — one test user's true query ratings against the model's
  predictions before adaptation (the meta-learned start) and after it: what the mapping from a
  few ratings to a personalised model changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from metamap.core import Task
from metamap.learners import MetaLearner
from metamap.viz.plots import _save

__all__ = ["support_curve_plot", "user_adaptation_plot"]


def support_curve_plot(
    result: Mapping[str, Any], path: str | Path, metric: str = "mae", title: str | None = None
) -> Path:
    """Mean ``metric`` ± 95% CI over test users against support size, one line per method
    (from a ``benchmarks/movielens.py`` result: ``supports`` and
    ``methods[name]["cells"][support][metric]`` with ``mean`` and ``ci95``)."""
    supports: list[str] = list(result["supports"])
    fig, ax = plt.subplots(figsize=(7.0, 4.4), dpi=120)
    xs = range(len(supports))
    for i, (name, method) in enumerate(result["methods"].items()):
        nan = float("nan")  # a support size no test user has: no point
        stats = [
            (method["cells"][s][metric]["mean"] or nan, method["cells"][s][metric]["ci95"] or nan)
            for s in supports
        ]
        ax.errorbar(
            [x + 0.03 * (i - 4) for x in xs],
            [m for m, _ in stats],
            yerr=[c for _, c in stats],
            marker="o",
            ms=4,
            capsize=2,
            label=name,
            ls="-" if name.startswith("MeLU") else "--",
        )
    ax.set_xticks(list(xs), [s.replace("support ", "") for s in supports])
    ax.set_xlabel("support ratings per test user")
    ax.set_ylabel(f"{metric.upper() if metric in ('mae', 'rmse') else metric} (mean ± 95% CI)")
    ax.set_title(title or f"{result.get('dataset', 'MovieLens')} {result.get('scenario', '')}")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def user_adaptation_plot(
    learner: MetaLearner,
    task: Task,
    path: str | Path,
    steps: Sequence[int] = (0, 5),
    scale: tuple[float, float] = (1.0, 5.0),
    title: str | None = None,
) -> Path:
    """One user's query items: true stars (x) against predicted stars (y) after each count of
    ``steps`` inner steps on their ``task.shots`` support ratings; the diagonal is perfect. A
    learner without inner steps (``ridge``: a closed-form fit) has one adapted prediction, for
    every count, drawn once."""
    p = next(learner.parameters())
    states = learner.adapt_trace(task.support_x.to(p.device), task.support_y.to(p), steps)
    true = task.query_y.flatten().cpu()
    fig, ax = plt.subplots(figsize=(4.8, 4.4), dpi=120)
    jitter = torch.linspace(-0.12, 0.12, len(true))
    stepped = learner.inner_steps > 0  # else one closed-form adaptation, whatever the count
    for i, k in enumerate(steps if stepped else list(steps)[:1]):
        with torch.no_grad():
            pred = learner.predict(states[k], task.query_x.to(p.device)).flatten().cpu()
        pred = pred.clamp(*scale)
        mae = float((pred - true).abs().mean())
        if not stepped:
            label = "adapted to the support ratings"
        else:
            label = "before adaptation" if k == 0 else f"after {k} step{'s' * (k > 1)}"
        label += f" (MAE {mae:.2f})"
        ax.scatter(true + jitter, pred, s=28, color=f"C{i}", label=label, alpha=0.8)
    ax.plot(scale, scale, color="grey", lw=1, ls=":")
    ax.set_xlim(scale[0] - 0.4, scale[1] + 0.4)
    ax.set_ylim(scale[0] - 0.4, scale[1] + 0.4)
    ax.set_xlabel("true stars (query ratings)")
    ax.set_ylabel("predicted stars")
    ax.set_title(title or f"one user, {task.shots} support ratings", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _save(fig, path)
