"""Interpretability plots (PNG): embeddings of an episode, adaptation profile, per-task losses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from metamap.features.explain import AdaptationProfile, Projection

__all__ = [
    "adaptation_profile_plot",
    "embedding_plot",
    "per_task_plot",
    "score_curves_plot",
    "task_scores_plot",
]

Scores = Mapping[str, Mapping[str, Mapping[str, Any]]]
"""An evaluation's ``scores``: ``{label: {"<steps>": {"mean", "ci95", "values", ...}}}``."""


def _save(fig: Any, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def embedding_plot(
    proj: Projection,
    path: str | Path,
    class_names: Sequence[str] | None = None,
    title: str = "Episode embeddings (PCA)",
) -> Path:
    """Queries as dots and supports as crosses coloured by class, prototypes as stars."""
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=120)
    cmap = plt.get_cmap("tab10" if len(proj.prototypes) <= 10 else "tab20")
    for c in range(len(proj.prototypes)):
        color = cmap(c % cmap.N)
        name = class_names[c] if class_names is not None else f"class {c}"
        q = proj.query[proj.query_y == c]
        s = proj.support[proj.support_y == c]
        ax.scatter(q[:, 0], q[:, 1], s=14, color=color, alpha=0.6, label=name)
        ax.scatter(s[:, 0], s[:, 1], s=40, color=color, marker="x")
        px, py = proj.prototypes[c]
        ax.scatter([px], [py], s=260, color=color, marker="*", edgecolor="black")
    ax.set_xlabel(f"PC 1 ({100 * proj.explained[0]:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * proj.explained[1]:.0f}% of variance)")
    ax.set_title(f"{title}\n• query   × support   ★ prototype", fontsize=10)
    if len(proj.prototypes) <= 12:
        ax.legend(fontsize=7, loc="best", markerscale=1.5)
    return _save(fig, path)


def adaptation_profile_plot(
    profile: AdaptationProfile, path: str | Path, title: str = "Adaptation"
) -> Path:
    """Left: query metric (± 95% CI) against inner steps. Right: ‖θ_k − θ_0‖ per parameter."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    m = np.array([s.mean for s in profile.metric])
    ci = np.array([s.ci95 for s in profile.metric])
    a.plot(profile.steps, m, marker="o")
    a.fill_between(profile.steps, m - ci, m + ci, alpha=0.25)
    a.set_xlabel("inner steps on the support set")
    a.set_ylabel(f"query {profile.metric_name} (mean ± 95% CI)")
    a.set_title(f"{title}: {profile.metric[0].n} tasks", fontsize=10)
    a.grid(alpha=0.3)
    names = list(profile.delta_norms)
    last = [profile.delta_norms[n][-1] for n in names]
    y = np.arange(len(names))
    b.barh(y, last, color="tab:orange")
    b.set_yticks(y, names, fontsize=7)
    b.invert_yaxis()
    b.set_xlabel(f"‖θ − θ₀‖ after {profile.steps[-1]} steps (mean over tasks)")
    b.set_title("Size of the adaptation per parameter", fontsize=10)
    b.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def task_scores_plot(
    losses: npt.NDArray[np.float64],
    metrics: npt.NDArray[np.float64],
    metric_name: str,
    path: str | Path,
    title: str = "Per-task scores",
) -> Path:
    """Histograms of the per-task query loss and metric, with their means."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    for ax, v, name in ((a, losses, "query loss"), (b, metrics, f"query {metric_name}")):
        finite = v[np.isfinite(v)]
        ax.hist(finite, bins=30, color="tab:blue", alpha=0.8)
        ax.axvline(float(finite.mean()), color="black", linestyle="--", label="mean")
        ax.set_xlabel(name)
        ax.set_ylabel("tasks")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title} ({len(losses)} tasks)", fontsize=10)
    return _save(fig, path)


def _panels(count: int, height: float) -> tuple[Any, list[Any]]:
    size = (max(6.4, 4.6 * count), height)
    fig, axes = plt.subplots(1, count, figsize=size, dpi=120, squeeze=False)
    return fig, list(axes[0])


def _measure(label: str, metric: str) -> str:
    """What a label's scores measure: the evaluation's ``metric``, unless the label names its
    own after a comma (meta-RL's ``"40 test tasks, success rate"``)."""
    return label.rpartition(", ")[2] if ", " in label else metric


def _tasks_title(label: str, n: int) -> str:
    return label if label.startswith(f"{n} ") else f"{label} ({n} tasks)"


def score_curves_plot(scores: Scores, metric: str, path: str | Path, title: str) -> Path:
    """One panel per label of an evaluation's ``scores`` (a support size, a metric such as a
    success rate): the mean over the test tasks ± 95% CI against adaptation steps."""
    fig, axes = _panels(len(scores), 3.8)
    for ax, (label, by_step) in zip(axes, scores.items(), strict=True):
        steps = sorted(int(k) for k in by_step)
        means = np.array([by_step[str(k)]["mean"] for k in steps])
        cis = np.array([by_step[str(k)]["ci95"] for k in steps])
        ax.errorbar(steps, means, yerr=cis, marker="o", ms=4, capsize=3)
        ax.set_xticks(steps)
        ax.set_xlabel("adaptation steps")
        ax.set_ylabel(f"{_measure(label, metric)} (mean ± 95% CI)")
        ax.set_title(_tasks_title(label, by_step[str(steps[0])]["n"]), fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def per_task_plot(
    scores: Scores, metric: str, higher_is_better: bool, path: str | Path, title: str
) -> Path:
    """One panel per label of an evaluation's ``scores``. With a 0-step score and a later
    one: each test task's metric before adapting against after the most steps scored, with
    the diagonal (no change); the tasks adapting helped lie above it when higher is better,
    below it otherwise. With one step count (a closed-form mapping): the histogram of the
    tasks' metric, with its mean."""
    fig, axes = _panels(len(scores), 4.4)
    for ax, (label, by_step) in zip(axes, scores.items(), strict=True):
        last = max(int(k) for k in by_step)
        after = np.asarray(by_step[str(last)]["values"], dtype=np.float64)
        measure, steps = _measure(label, metric), f"{last} step{'s' * (last != 1)}"
        if "0" in by_step and last > 0:
            before = np.asarray(by_step["0"]["values"], dtype=np.float64)
            _before_after_panel(ax, before, after, higher_is_better)
            ax.set_xlabel(f"{measure} before adapting")
            ax.set_ylabel(f"{measure} after {steps}")
            better = "above" if higher_is_better else "below"
            ax.set_title(f"{label}: a dot a task, helped {better} the line", fontsize=9)
        else:
            finite = after[np.isfinite(after)]
            ax.hist(finite, bins=30, alpha=0.8)
            ax.axvline(float(finite.mean()), color="black", ls="--", label="mean")
            ax.legend(fontsize=7)
            ax.set_xlabel(f"{measure} after {steps}")
            ax.set_ylabel("tasks")
            ax.set_title(_tasks_title(label, after.size), fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _before_after_panel(
    ax: Any, before: npt.NDArray[np.float64], after: npt.NDArray[np.float64], higher: bool
) -> None:
    """A dot a task, and the diagonal of no change over the finite scores' range."""
    ax.scatter(before, after, s=12, alpha=0.6)
    both = np.concatenate([before, after])
    both = both[np.isfinite(both)]
    if both.size:
        lo, hi = float(both.min()), float(both.max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="no change")
        ax.legend(fontsize=7, loc="upper left" if higher else "lower right")
