"""The ``task`` section of image episodes (``task.family: episodes``).

N-way K-shot episodes of a dataset's classes (:class:`~metamap.tasks.EpisodeSampler`), or, with
``sampler: metadataset``, Meta-Dataset's variable-way, variable-shot episodes (Triantafillou et
al., ICLR 2020; :class:`~metamap.tasks.MetaDatasetSampler`). The images come from the run's
``data`` section; the trained problem is ``episodes`` or ``metadataset``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import PositiveInt

from metamap.tasks.registry import TaskLoss, TaskSection, register_task

__all__ = ["EpisodeTask"]


@register_task
class EpisodeTask(TaskSection):
    """``task.family: episodes``: classification episodes of labelled images."""

    family: Literal["episodes"] = "episodes"
    sampler: Literal["fixed", "metadataset"] = "fixed"
    """The training episodes. ``fixed``: N-way K-shot with ``ways``, ``shots`` and
    ``queries``. ``metadataset``: Meta-Dataset's variable-way, variable-shot, class-imbalanced
    episodes of ``min_ways`` … ``max_ways`` classes of the training split; ``ways``, ``shots``
    and ``queries`` then shape only the (N-way K-shot) validation episodes. Metric and
    closed-form learners only."""
    min_ways: PositiveInt = 5
    """``sampler: metadataset``: fewest classes per training episode (the paper: 5)."""
    max_ways: PositiveInt = 50
    """``sampler: metadataset``: most classes per training episode (the paper: 50)."""
    hierarchy: bool = False
    """``sampler: metadataset`` on Omniglot: draw each episode's characters from one alphabet
    (Meta-Dataset's ``bilevel`` hierarchy for Omniglot)."""
    ways: PositiveInt = 5
    """Classes per episode."""
    shots: PositiveInt = 10
    """Support images per class."""
    queries: PositiveInt = 10
    """Query images per class."""

    images: ClassVar[bool] = True
    tensor_tasks: ClassVar[bool] = True
    loss: ClassVar[TaskLoss] = "cross_entropy"

    def problem(self) -> str:
        return "metadataset" if self.sampler == "metadataset" else "episodes"

    def out_features(self) -> int:
        return self.ways

    def variable_ways(self) -> bool:
        return self.sampler == "metadataset"

    def grouped(self) -> bool:
        return self.hierarchy

    def describe(self) -> str:
        if self.sampler == "metadataset":
            within = ", one alphabet each" if self.hierarchy else ""
            return f"Meta-Dataset episodes of {self.min_ways}-{self.max_ways} ways{within}"
        return f"{self.ways}-way {self.shots}-shot"

    def episodes(self) -> EpisodeTask:
        return self
