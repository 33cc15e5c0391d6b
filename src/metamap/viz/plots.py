"""Plots for interpretability: the MAML-paper adaptation plot and the learning curve.

Written with matplotlib's non-interactive Agg backend straight to PNG files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from metamap.learners import MetaLearner
from metamap.tasks import RegressionTasks, Task

__all__ = ["adaptation_plot", "learning_curve_figure", "learning_curve_plot"]


def adaptation_plot(
    learner: MetaLearner,
    family: RegressionTasks,
    task: Task,
    path: str | Path,
    steps: Sequence[int] = (0, 1, 10),
    title: str | None = None,
) -> Path:
    """True function, support points and the model's predictions after each step count.

    As in Figure 2 of Finn et al. 2017: ``steps=0`` is the meta-learned initialisation
    ("pre-update"), then the model after 1 and 10 gradient steps on the support set.
    """
    p = next(learner.parameters())
    x, y = family.curve(dict(task.params))
    states = learner.adapt_trace(task.support_x.to(p), task.support_y.to(p), steps)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(x[:, 0], y[:, 0], color="red", lw=2, label="ground truth")
    styles = [":", "--", "-", "-."]
    with torch.no_grad():
        for i, k in enumerate(steps):
            pred = learner.predict(states[k], x.to(p)).cpu()
            label = "pre-update" if k == 0 else f"after {k} step{'s' if k > 1 else ''}"
            ax.plot(x[:, 0], pred[:, 0], ls=styles[i % len(styles)], color=f"C{i}", label=label)
    ax.scatter(
        task.support_x[:, 0].cpu(),
        task.support_y[:, 0].cpu(),
        marker="^",
        s=60,
        color="purple",
        zorder=5,
        label=f"{task.shots} support points",
    )
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or f"{type(learner).__name__}: {task.shots}-shot adaptation")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at ``path`` (its folder made) and close it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def learning_curve_plot(
    records: Sequence[dict[str, Any]],
    path: str | Path,
    title: str = "",
    metric: str | None = None,
) -> Path:
    """Training meta-loss and the validation metric against meta-iterations, as a PNG.

    ``metric`` is what the run validates on (its problem's ``metric``: ``"mse"`` for
    regression, ``"accuracy"`` for classification), logged as ``val_<metric>``; by default the
    one the records hold. See :func:`learning_curve_figure`.
    """
    return _save(learning_curve_figure(records, title, metric), path)


def learning_curve_figure(
    records: Sequence[dict[str, Any]], title: str = "", metric: str | None = None
) -> Figure:
    """The learning-curve figure: for MSE, the training meta-loss (query MSE) and the
    validation MSE on one log-scale axis; for any other metric (accuracy, return), the
    training meta-loss on a left axis and the validation metric on a linear right axis
    (accuracy as a percentage), labelled with its name. The left axis is logarithmic unless
    a training loss is zero or negative (meta-RL's loss is minus the mean return, negative
    wherever rewards are positive), which a log axis would silently leave out."""
    metric = metric or _logged_metric(records)
    key = f"val_{metric}"
    train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    val = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    if not train and not val:
        raise ValueError("no metrics to plot: the metrics file holds no records yet")
    name = METRIC_NAMES.get(metric, metric)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.set_xlabel("meta-iteration")
    ax.set_title(title or "learning curve")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    left = [loss for _, loss in train] + ([v for _, v in val] if metric == "mse" else [])
    if all(v > 0 for v in left):
        ax.set_yscale("log")
    if metric == "mse":  # the training loss is a query MSE too: one axis
        if train:
            ax.plot(*zip(*train, strict=True), lw=1, alpha=0.7, label="train meta-loss (query MSE)")
        if val:
            ax.plot(*zip(*val, strict=True), marker="o", ms=3, label="validation MSE (fixed tasks)")
        ax.set_ylabel("MSE")
        ax.legend()
    else:
        if train:
            ax.plot(*zip(*train, strict=True), lw=1, alpha=0.7, color="C0", label="train meta-loss")
        ax.set_ylabel("train meta-loss")
        right = ax.twinx()
        if val:
            right.plot(
                *zip(*val, strict=True),
                marker="o",
                ms=3,
                color="C1",
                label=f"validation {name} (fixed tasks)",
            )
        if metric == "accuracy":
            right.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        right.set_ylabel(f"validation {name}")
        lines = ax.get_legend_handles_labels()
        more = right.get_legend_handles_labels()
        right.legend(lines[0] + more[0], lines[1] + more[1])
    fig.tight_layout()
    return fig


METRIC_NAMES = {"mse": "MSE", "mae": "MAE", "accuracy": "accuracy"}
"""How :func:`learning_curve_figure` names a metric on its axis (others: as logged)."""


def _logged_metric(records: Sequence[dict[str, Any]]) -> str:
    """The metric of the first ``val_<metric>`` key in the records (``"mse"`` if none)."""
    for r in records:
        for k in r:
            if k.startswith("val_") and len(k) > 4:
                return k[4:]
    return "mse"
