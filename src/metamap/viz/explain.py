"""Interpretability plots (PNG): embeddings of an episode, adaptation profile, per-task losses."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from metamap.features.explain import AdaptationProfile, Projection

__all__ = ["adaptation_profile_plot", "embedding_plot", "task_scores_plot"]


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
