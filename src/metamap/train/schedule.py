"""The learning-rate schedule of a run, as a multiplier of ``train.lr`` per step.

A resume is checked on these multipliers rather than on the schedule's settings: a checkpoint at
step ``s`` resumes under any schedule that gave the same rate at every step ``0 … s-1``, since the
run so far is then exactly what the new schedule would have trained. This is how a finished
constant-rate run is annealed (``schedule: piecewise`` with a milestone at or after ``s``), or a
step-decay run extended by raising ``train.steps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from metamap.train.config import TrainConfig

__all__ = ["lr_factor", "schedule_mismatch"]


def lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    """``step ↦`` the factor on ``cfg.lr`` for that step (0-based): linear warm-up, then the
    constant, step (``decay_factor`` every ``decay_every``), piecewise (``factors[i]`` from
    ``milestones[i]`` on), cosine or linear (both to 0 at ``cfg.steps``) schedule."""
    schedule, warmup, total = cfg.schedule, cfg.warmup_steps, cfg.steps

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "step":
            return float(cfg.decay_factor ** (step // cfg.decay_every))
        if schedule == "piecewise":
            passed = [f for m, f in zip(cfg.milestones, cfg.factors, strict=True) if step >= m]
            return passed[-1] if passed else 1.0
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        if schedule == "linear":
            return 1.0 - t
        return 1.0

    return f


def schedule_mismatch(
    before: TrainConfig, after: TrainConfig, steps: int
) -> tuple[int, float, float] | None:
    """The first of the ``steps`` steps taken where the two schedules' rates differ, as
    ``(step, rate before, rate after)``, or ``None`` when they agree on all of them."""
    a, b = lr_factor(before), lr_factor(after)
    for step in range(steps):
        ra, rb = before.lr * a(step), after.lr * b(step)
        if not math.isclose(ra, rb, rel_tol=1e-12, abs_tol=0.0):
            return step, ra, rb
    return None
