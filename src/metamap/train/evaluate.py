"""Evaluation on a fixed, seeded set of tasks: mean and 95% confidence interval.

The interval is the normal approximation ``1.96 · s / √n`` over per-task scores (n ≥ 600 in our
protocols), as reported by MAML, ProtoNets and their successors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from metamap.learners import MetaLearner
from metamap.learners.checks import check_step_counts
from metamap.learners.functional import metric_function
from metamap.tasks import Task, TaskBatch

__all__ = ["Summary", "evaluate", "evaluate_scores", "summarize"]


@dataclass(frozen=True)
class Summary:
    """Mean, 95% CI half-width and the per-task values they summarise.

    ``nonfinite`` counts tasks whose score is NaN or infinite (an adaptation that diverged); when
    it is non-zero the mean and interval are not finite either, and reports should say so.
    """

    mean: float
    ci95: float
    n: int
    values: tuple[float, ...] = field(repr=False)
    nonfinite: int = 0

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f} (n={self.n})"

    def to_dict(self, digits: int = 6) -> dict[str, Any]:
        """``{"mean", "ci95", "n", "nonfinite", "values"}`` for a JSON report: the per-task
        ``values`` (rounded to ``digits`` significant digits) let a reader recompute the mean and
        interval, or any other statistic."""
        return {
            "mean": self.mean,
            "ci95": self.ci95,
            "n": self.n,
            "nonfinite": self.nonfinite,
            "values": [float(f"{v:.{digits}g}") for v in self.values],
        }


def summarize(values: Sequence[float]) -> Summary:
    t = torch.tensor(list(values), dtype=torch.float64)
    n = t.numel()
    if n == 0:
        raise ValueError("cannot summarise an empty list of scores")
    sd = float(t.std(unbiased=True)) if n > 1 else 0.0
    bad = int((~torch.isfinite(t)).sum())
    return Summary(float(t.mean()), 1.96 * sd / math.sqrt(n), n, tuple(float(v) for v in t), bad)


def evaluate(
    learner: MetaLearner, tasks: TaskBatch | Sequence[Task], steps: Sequence[int]
) -> dict[int, Summary]:
    """Per-step-count query metric (MSE or accuracy) after adapting to each task's support set.

    ``tasks``: a :class:`TaskBatch`, or a sequence of :class:`Task` that may differ in shape
    (Meta-Dataset episodes). Returns ``{steps: Summary}``; a learner without inner steps reports
    its one mapping under every requested count.
    """
    return {k: summarize(v) for k, v in evaluate_scores(learner, tasks, steps).items()}


def evaluate_scores(
    learner: MetaLearner,
    tasks: TaskBatch | Sequence[Task],
    steps: Sequence[int],
    on_task: Callable[[], object] | None = None,
) -> dict[int, list[float]]:
    """The per-task scores behind :func:`evaluate` (to accumulate over chunks of tasks).

    ``on_task()`` is called after each task is scored (a progress bar's ``update``)."""
    if not isinstance(steps, Sequence) or isinstance(steps, str):
        raise TypeError(
            f"steps must be a list of step counts, e.g. steps=[{steps!r}], "
            f"got {type(steps).__name__}"
        )
    check_step_counts(steps)
    if len(steps) == 0:
        raise ValueError("steps is empty: give at least one step count, e.g. steps=[0, 1, 5]")
    if len(tasks) == 0:
        raise ValueError("no tasks to evaluate on: give at least one task")
    p = next(learner.parameters())
    if isinstance(tasks, TaskBatch):
        tasks = tasks.to(p.device, p.dtype)
    else:
        tasks = [t.to(p.device, p.dtype) for t in tasks]
    metric = metric_function(learner.loss_name)
    per_step: dict[int, list[float]] = {k: [] for k in steps}
    was_training = learner.training
    learner.eval()
    try:
        for task in tasks:
            states = learner.adapt_trace(task.support_x, task.support_y, steps)
            with torch.no_grad():
                for k in steps:
                    pred = learner.predict(states[k], task.query_x)
                    per_step[k].append(float(metric(pred, task.query_y)))
            if on_task is not None:
                on_task()
    finally:
        learner.train(was_training)
    return per_step
