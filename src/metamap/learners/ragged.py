"""Meta-gradients over tasks of different shapes (Meta-Dataset's variable-way, variable-shot
episodes).

Meta-Dataset (Triantafillou et al., ICLR 2020, §3.2) draws every episode with its own number of
ways and its own, class-imbalanced, support size, so a meta-batch of such tasks cannot be stacked
into one :class:`~metamap.tasks.TaskBatch`. Because the meta-loss is a mean over tasks,

    ∇φ (1/B) Σ_T L_T(φ) = (1/B) Σ_T ∇φ L_T(φ),

its gradient is the mean of the per-task gradients, each computed by the learner's own
``meta_gradients`` on a batch of one task. That is the same number, up to rounding, as the
learner's batched path on tasks that do stack (tested), so every learner that can take a task's
ways (the metric and closed-form heads; not a fixed N-way head) trains on ragged batches unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from metamap.core.task import Task, stack_tasks
from metamap.errors import TaskShapeError
from metamap.learners.base import MetaLearner, MetaStep

__all__ = ["ragged_meta_gradients"]


def ragged_meta_gradients(
    learner: MetaLearner,
    tasks: Sequence[Task],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> MetaStep:
    """∇φ of the mean meta-loss over ``tasks``, which may differ in ways, shots and queries.

    Each task (``support_x: (S_T, *feature)``, ``support_y: (S_T,)``, ``query_x: (Q_T, ...)``)
    is moved to ``device``/``dtype`` (default: the learner's), passed to
    ``learner.meta_gradients`` as a batch of one, and the gradients, losses and metrics are
    averaged with weight ``1/B``.
    """
    if not tasks:
        raise TaskShapeError("ragged_meta_gradients needs at least one task")
    p = next(learner.parameters())
    device = p.device if device is None else device
    dtype = p.dtype if dtype is None else dtype
    total: MetaStep | None = None
    for task in tasks:
        step = learner.meta_gradients(stack_tasks([task.to(device, dtype)]))
        if total is None:
            total = MetaStep(step.loss.clone(), step.metric.clone(), dict(step.grads))
            continue
        total.loss += step.loss
        total.metric += step.metric
        for k, g in step.grads.items():
            total.grads[k] = total.grads[k] + g
    assert total is not None
    n = len(tasks)
    return MetaStep(total.loss / n, total.metric / n, {k: g / n for k, g in total.grads.items()})
