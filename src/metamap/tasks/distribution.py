"""The task-distribution protocol p(T) and fixed, seeded evaluation sets.

Sampling always takes an explicit :class:`torch.Generator`; metamap never touches the global
RNG, so that a run is reproduced by its seed and resumed from the generator's saved state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

from metamap.errors import TaskShapeError
from metamap.tasks.task import TaskBatch

__all__ = ["TaskDistribution", "check_counts", "make_generator"]


@runtime_checkable
class TaskDistribution(Protocol):
    """A distribution over tasks p(T) from which equal-shaped batches are drawn."""

    shots: int
    """Support points per task (K in K-shot)."""
    queries: int
    """Query points per task."""

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``batch_size`` i.i.d. tasks, all randomness from ``generator``."""
        ...

    def fixed_tasks(self, n: int, seed: int, shots: int | None = None) -> TaskBatch:
        """A fixed evaluation set: the same ``n`` tasks for the same ``seed``, on any machine."""
        ...

    def fixed_task_chunks(
        self, n: int, seed: int, chunk_size: int = 100, shots: int | None = None
    ) -> Iterator[TaskBatch]:
        """:meth:`fixed_tasks` in batches of at most ``chunk_size`` tasks where materialising
        them all at once would be large (image episodes); the same tasks either way."""
        ...

    def fixed_task_class_names(self, seed: int, shots: int | None = None) -> list[str] | None:
        """The class names of the first fixed task of ``seed`` (``None``: a family of tasks
        without classes, such as regression), for plots."""
        ...


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (the only kind of RNG metamap uses)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def check_counts(shots: int, queries: int, available: int | None = None) -> None:
    """Reject impossible support/query sizes before any sampling happens."""
    if shots < 1:
        raise TaskShapeError(f"shots must be at least 1, got {shots}")
    if queries < 1:
        raise TaskShapeError(f"queries must be at least 1, got {queries}")
    if available is not None and shots + queries > available:
        raise TaskShapeError(
            f"shots + queries = {shots + queries} is more than the {available} points available; "
            "lower shots or queries"
        )
