"""What meta-reinforcement learning needs of a task family, of its config section, and of a
learner: capabilities written as protocols, so the problem (:mod:`metamap.train.meta_rl`) asks
no object what it is.

* :class:`TaskFamily` — draws task parameters (2D navigation's goals, a cheetah's target
  velocity) from an explicit generator, fixes seeded test tasks, and makes the vectorised
  environments of a batch of tasks (:class:`~metamap.rl.VectorEnvs`).
* :class:`EnvTaskSection` — a ``task`` section of environments: its family and how many episodes
  (``rollouts``) each task gets per adaptation step.
* :class:`PolicyLearner` — maps rollouts to adapted policies (``adapt_policy``), gives the policy
  to roll out (``policy_fn``), and takes the outer step from support and query rollouts
  (``meta_update``, which may update the parameters itself, as TRPO does). Given ``reduce``,
  the rollouts are one process's share of the batch's tasks, and every mean over tasks it takes
  (a gradient, a Fisher-vector product, a line-search value) goes through ``reduce`` to become the
  mean over all processes' tasks (:func:`metamap.train.distributed.mean_over_ranks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import torch
from torch import Tensor

from metamap.core.learner import Learner, MetaStep, Params
from metamap.rl.rollout import PolicyFn, Rollouts, VectorEnvs

__all__ = ["EnvTaskSection", "PolicyLearner", "Reduce", "TaskFamily"]

Reduce = Callable[[Tensor], Tensor]
"""A mean over this process's tasks → the mean over every process's tasks (identity alone)."""


class TaskFamily(Protocol):
    """A distribution over environments, one task per parameter vector ``(P,)``."""

    horizon: int

    def sample_goals(self, n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        """``n`` task parameters ``(n, P)``, all randomness from ``generator``."""
        ...

    def fixed_goals(
        self, n: int, seed: int, dtype: torch.dtype, split: Literal["val", "test"] = "test"
    ) -> Tensor:
        """``n`` seeded task parameters for validation or test (``split``); the first ``k`` do
        not depend on ``n``. A family with a finite set of tasks split into training and test
        tasks (Meta-World) draws validation tasks from the training ones."""
        ...

    def envs(self, goals: Tensor, envs_per_task: int) -> VectorEnvs:
        """The environments of ``goals: (T, P)``, ``envs_per_task`` copies of each."""
        ...


class EnvTaskSection(Protocol):
    """A ``task`` section whose tasks are environments."""

    rollouts: int
    """Episodes per task and adaptation step."""
    planar: bool
    """Its observations are positions in the plane, whose paths can be drawn."""

    def family_of_tasks(self) -> TaskFamily: ...

    def describe(self) -> str: ...


class PolicyLearner(Learner, Protocol):
    """A meta-learner of policies."""

    def policy_fn(self, params: Params | None = None) -> PolicyFn:
        """The meta-parameters' policy, or each task's from ``params`` stacked ``(T, ...)``."""
        ...

    def adapt_policy(
        self,
        rollouts: Rollouts,
        params: Params | None = None,
        training: bool = False,
        step: int = 0,
    ) -> Params:
        """One adaptation step per task from ``rollouts`` of ``params`` (default: θ), as in
        meta-training (``training``) or as the ``step``-th after it."""
        ...

    def meta_update(
        self, support: Rollouts, query: Rollouts, reduce: Reduce | None = None
    ) -> MetaStep:
        """The outer step from support rollouts of θ and query rollouts of the adapted
        policies (``reduce``: these are one process's tasks; see the module's docstring)."""
        ...
