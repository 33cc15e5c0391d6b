"""Plots of meta-reinforcement learning: what adaptation changes in a policy's behaviour.

* :func:`navigation_plot` — 2D navigation paths of one episode per goal, before adaptation and
  after each adaptation step, with the goals marked: the meta-learned policy heads out in a
  generic direction, the adapted ones to their goal.
* :func:`return_curve_plot` — mean return ± 95% CI on the test tasks against the number of
  adaptation steps, one line per method, with the paper's figures dashed where the result holds
  them (``benchmarks/navigation.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from torch import Tensor

from metamap.rl import Rollouts
from metamap.viz.plots import _save

__all__ = ["navigation_plot", "return_curve_plot"]


def navigation_plot(
    goals: Tensor, paths: Sequence[tuple[int, Rollouts]], path: str | Path, episode: int = 0
) -> Path:
    """One panel per goal ``goals: (T, 2)``: the ``episode``-th path of each rollout of
    ``paths`` — ``(adaptation steps, rollouts (T, E, H, 2))`` pairs — from the origin."""
    tasks = goals.shape[0]
    fig, axes = plt.subplots(1, tasks, figsize=(3.2 * tasks, 3.4), dpi=120, squeeze=False)
    for t, ax in enumerate(axes[0]):
        for steps, r in paths:
            xy = r.observations[t, episode].detach().cpu()
            running = int(r.masks[t, episode].sum())
            xy = xy[: max(running, 1)]
            ax.plot([0.0, *xy[:, 0].tolist()], [0.0, *xy[:, 1].tolist()], lw=1.3,
                    label=f"{steps} step{'s' * (steps != 1)}")  # fmt: skip
        gx, gy = goals[t].tolist()
        ax.plot([gx], [gy], marker="*", ms=14, color="black", ls="none", label="goal")
        ax.set_xlim(-0.6, 0.6)
        ax.set_ylim(-0.6, 0.6)
        ax.set_aspect("equal")
        ax.set_title(f"goal ({gx:+.2f}, {gy:+.2f})", fontsize=9)
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("2D navigation: one episode before and after adaptation", fontsize=10)
    return _save(fig, path)


def return_curve_plot(result: Mapping[str, Any], path: str | Path) -> Path:
    """Mean return ± 95% CI against adaptation steps for every method of ``result``
    (``methods[name]["scores"][steps]`` with ``mean``/``ci95``, optional ``paper`` values)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, m in result["methods"].items():
        steps = sorted(int(k) for k in m["scores"])
        means = [m["scores"][str(k)]["mean"] for k in steps]
        cis = [m["scores"][str(k)]["ci95"] for k in steps]
        line = ax.errorbar(steps, means, yerr=cis, marker="o", ms=4, capsize=3, label=name)
        paper = m.get("paper")
        if paper:
            ax.plot(range(len(paper)), paper, ls="--", lw=1, color=line[0].get_color(),
                    label=f"{name} (paper)")  # fmt: skip
    ax.set_xlabel("adaptation steps")
    ax.set_ylabel("mean return on the test tasks")
    ax.set_xticks(sorted({int(k) for m in result["methods"].values() for k in m["scores"]}))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return _save(fig, path)
