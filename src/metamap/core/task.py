"""Tasks: a support set D^tr and a query set D^ts, alone or stacked into a batch.

Part of :mod:`metamap.core`: plain tensors, no data or file code.

A task ``T = (D^tr, D^ts)`` is what a meta-learner maps to a model: ``θ_T = g_φ(D^tr)``, scored
by the loss on ``D^ts``. Shapes:

* :class:`Task` — ``support_x: (S, *feature)``, ``support_y: (S, *target)``,
  ``query_x: (Q, *feature)``, ``query_y: (Q, *target)``.
* :class:`TaskBatch` — the same with a leading task dimension ``B``:
  ``support_x: (B, S, *feature)`` and so on. Every task in a batch has the same shapes:
  :func:`stack_tasks` for equal-shaped tasks, :func:`pad_tasks` for regression tasks of
  different sizes (NaN targets mark the padding, which the ``masked_mse`` loss leaves out), and
  :func:`size_groups` to pad tasks of similar sizes together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

import torch
from torch import Tensor

from metamap.errors import TaskShapeError

__all__ = ["Task", "TaskBatch", "even_ranges", "pad_tasks", "size_groups", "stack_tasks"]


def _check_pair(name: str, x: Tensor, y: Tensor, lead: int) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TaskShapeError(
            f"{name}: x and y must be torch.Tensor, got {type(x).__name__} and {type(y).__name__}"
        )
    if x.dim() < lead + 1:
        raise TaskShapeError(
            f"{name}_x must have at least {lead + 1} dimensions "
            f"({'tasks, ' if lead == 2 else ''}points, *features); got shape {tuple(x.shape)}"
        )
    if y.dim() < lead:
        raise TaskShapeError(
            f"{name}_y must have at least {lead} dimensions; got shape {tuple(y.shape)}"
        )
    if x.shape[:lead] != y.shape[:lead]:
        raise TaskShapeError(
            f"{name}_x and {name}_y disagree on the number of "
            f"{'tasks/points' if lead == 2 else 'points'}: {tuple(x.shape)} vs {tuple(y.shape)}"
        )
    if x.shape[lead - 1] == 0:
        raise TaskShapeError(f"{name} set is empty: shape {tuple(x.shape)}")


def _check_sets(prefix: str, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor, lead: int) -> None:
    _check_pair(f"{prefix}support", sx, sy, lead)
    _check_pair(f"{prefix}query", qx, qy, lead)
    if sx.shape[lead:] != qx.shape[lead:]:
        raise TaskShapeError(
            f"support and query inputs have different feature shapes: "
            f"{tuple(sx.shape[lead:])} vs {tuple(qx.shape[lead:])}"
        )
    if sy.shape[lead:] != qy.shape[lead:]:
        raise TaskShapeError(
            f"support and query targets have different shapes: "
            f"{tuple(sy.shape[lead:])} vs {tuple(qy.shape[lead:])}"
        )
    if sy.dtype != qy.dtype:
        raise TaskShapeError(f"support and query targets differ in dtype: {sy.dtype} vs {qy.dtype}")


@dataclass(frozen=True)
class Task:
    """One task: support ``(S, *feature)``/``(S, *target)`` and query ``(Q, ...)`` tensors.

    ``params`` holds the generating parameters where the family has any (for a sinusoid:
    ``amplitude`` and ``phase``), so that plots and analyses can show the true function.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_sets("", self.support_x, self.support_y, self.query_x, self.query_y, lead=1)

    @property
    def shots(self) -> int:
        """Number of support points ``S``."""
        return int(self.support_x.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Task:
        """Move to ``device``; a floating ``dtype`` applies to inputs and float targets only."""
        sx, sy, qx, qy = (_move(t, device, dtype) for t in self.tensors())
        return Task(sx, sy, qx, qy, params=dict(self.params))

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (self.support_x, self.support_y, self.query_x, self.query_y)


@dataclass(frozen=True)
class TaskBatch:
    """``B`` equal-shaped tasks stacked along a leading task dimension.

    ``support_x: (B, S, *feature)``, ``support_y: (B, S, *target)``, ``query_x: (B, Q, *feature)``,
    ``query_y: (B, Q, *target)``. ``params`` is one mapping per task.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    params: Sequence[Mapping[str, float]] = ()

    def __post_init__(self) -> None:
        _check_sets("batch ", self.support_x, self.support_y, self.query_x, self.query_y, lead=2)
        if self.support_x.shape[0] != self.query_x.shape[0]:
            raise TaskShapeError(
                f"support and query hold different numbers of tasks: "
                f"{self.support_x.shape[0]} vs {self.query_x.shape[0]}"
            )
        if self.params and len(self.params) != self.support_x.shape[0]:
            raise TaskShapeError(
                f"params has {len(self.params)} entries for {self.support_x.shape[0]} tasks"
            )

    def __len__(self) -> int:
        return int(self.support_x.shape[0])

    def __getitem__(self, i: int) -> Task:
        return Task(
            self.support_x[i],
            self.support_y[i],
            self.query_x[i],
            self.query_y[i],
            params=dict(self.params[i]) if self.params else {},
        )

    def __iter__(self) -> Iterator[Task]:
        return (self[i] for i in range(len(self)))

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        """Move to ``device``; a floating ``dtype`` applies to inputs and float targets only."""
        sx, sy, qx, qy = (_move(t, device, dtype) for t in self.tensors())
        return TaskBatch(sx, sy, qx, qy, params=[dict(p) for p in self.params])

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return (self.support_x, self.support_y, self.query_x, self.query_y)


def _move(t: Tensor, device: torch.device | str, dtype: torch.dtype | None) -> Tensor:
    if dtype is not None and t.is_floating_point():
        return t.to(device=device, dtype=dtype)
    return t.to(device=device)


def stack_tasks(tasks: Sequence[Task]) -> TaskBatch:
    """Stack equal-shaped tasks into a :class:`TaskBatch` (raises if their shapes differ)."""
    if not tasks:
        raise TaskShapeError("cannot stack an empty list of tasks")
    first = tasks[0]
    for i, t in enumerate(tasks):
        for name, a, b in zip(
            ("support_x", "support_y", "query_x", "query_y"),
            first.tensors(),
            t.tensors(),
            strict=True,
        ):
            if a.shape != b.shape:
                raise TaskShapeError(
                    f"task {i} has {name} of shape {tuple(b.shape)}, task 0 has {tuple(a.shape)}; "
                    "tasks in one batch must have equal shapes"
                )
    return TaskBatch(
        torch.stack([t.support_x for t in tasks]),
        torch.stack([t.support_y for t in tasks]),
        torch.stack([t.query_x for t in tasks]),
        torch.stack([t.query_y for t in tasks]),
        params=[dict(t.params) for t in tasks],
    )


def pad_tasks(tasks: Sequence[Task]) -> TaskBatch:
    """Tasks of different support (and query) sizes stacked into one batch: rows padded with
    zeros (for users as tasks, an unknown item and user) and targets with NaN, which the
    ``masked_mse`` loss leaves out, so each task's loss is exactly its unpadded loss (tested
    against the per-task path). Regression targets only (NaN needs a floating dtype)."""
    if not tasks:
        raise TaskShapeError("pad_tasks needs at least one task")
    if not all(t.support_y.is_floating_point() for t in tasks):
        raise TaskShapeError(
            "pad_tasks marks padding with NaN targets, so it takes regression (float) targets; "
            "stack class-label tasks of equal shapes with stack_tasks"
        )
    s = max(t.shots for t in tasks)
    q = max(len(t.query_x) for t in tasks)

    def pad(x: Tensor, n: int, value: float) -> Tensor:
        fill = x.new_full((n - len(x), *x.shape[1:]), value)
        return torch.cat([x, fill])

    nan = float("nan")
    return TaskBatch(
        torch.stack([pad(t.support_x, s, 0) for t in tasks]),
        torch.stack([pad(t.support_y, s, nan) for t in tasks]),
        torch.stack([pad(t.query_x, q, 0) for t in tasks]),
        torch.stack([pad(t.query_y, q, nan) for t in tasks]),
        params=[dict(t.params) for t in tasks],
    )


def even_ranges(total: int, parts: int) -> list[range]:
    """``[0, total)`` cut into ``parts`` contiguous ranges whose lengths differ by at most one,
    the first ``total mod parts`` one longer (some empty when ``parts > total``): how a batch's
    tasks are shared among processes and how tasks sorted by size are grouped."""
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    base, extra = divmod(total, parts)
    starts = [i * base + min(i, extra) for i in range(parts + 1)]
    return [range(a, b) for a, b in pairwise(starts)]


def size_groups(tasks: Sequence[Task], groups: int) -> list[list[int]]:
    """The indices of ``tasks`` sorted by support size (then query size; stable), cut into
    ``groups`` contiguous groups whose counts differ by at most one (fewer when there are fewer
    tasks): padded with :func:`pad_tasks`, each group wastes little on padding (evaluation
    adapts hundreds of users this way, in groups of similar sizes)."""
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i].shots, len(tasks[i].query_x)))
    return [order[r.start : r.stop] for r in even_ranges(len(order), groups) if len(r)]
