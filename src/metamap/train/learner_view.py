"""A learner seen by the trainer's step with another ``meta_gradients``; the rest forwarded.

The trainer's step asks the problem for a meta-step from a learner. Two things change how the
meta-gradient is computed without changing the learner: sharding it over processes
(:class:`~metamap.train.distributed.ShardedLearner`) and compiling it
(:class:`~metamap.train.compiled.CompiledLearner`). Each is a :class:`LearnerView` of the learner
that overrides :meth:`LearnerView.meta_gradients`; they nest (a compiled learner, sharded).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import cast

from torch import Tensor, nn

from metamap.core import MetaStep, TaskBatch
from metamap.core.learner import AdaptedState, LossName, Params
from metamap.learners import MetaLearner
from metamap.rl.protocol import PolicyLearner, Reduce
from metamap.rl.rollout import PolicyFn, Rollouts

__all__ = ["LearnerView"]


class LearnerView:
    """``learner`` as it is, every call forwarded: subclasses override :meth:`meta_gradients`."""

    def __init__(self, learner: MetaLearner | LearnerView) -> None:
        self.learner = learner
        self.loss_name: LossName = learner.loss_name
        self.inner_steps: int = learner.inner_steps

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        return self.learner.meta_gradients(batch)

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        return self.learner.adapt(support_x, support_y, steps)

    def adapt_trace(
        self, support_x: Tensor, support_y: Tensor, steps: Sequence[int]
    ) -> dict[int, AdaptedState]:
        return self.learner.adapt_trace(support_x, support_y, steps)

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        return self.learner.predict(state, x)

    def predict_tasks(self, batch: TaskBatch, steps: int | None = None) -> Tensor:
        return self.learner.predict_tasks(batch, steps)

    def set_training_step(self, step: int) -> None:
        self.learner.set_training_step(step)

    # A policy learner's calls only forward: under sharding the problem splits its batch (each
    # rank rolls out its share of the environments, :class:`~metamap.train.MetaRLProblem`) and
    # passes ``meta_update`` its reduction across ranks.
    def policy_fn(self, params: Params | None = None) -> PolicyFn:
        return cast(PolicyLearner, self.learner).policy_fn(params)

    def adapt_policy(
        self,
        rollouts: Rollouts,
        params: Params | None = None,
        training: bool = False,
        step: int = 0,
    ) -> Params:
        return cast(PolicyLearner, self.learner).adapt_policy(rollouts, params, training, step)

    def meta_update(
        self, support: Rollouts, query: Rollouts, reduce: Reduce | None = None
    ) -> MetaStep:
        return cast(PolicyLearner, self.learner).meta_update(support, query, reduce)

    def encoder(self) -> nn.Module:
        return self.learner.encoder()

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        return self.learner.named_parameters()

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.learner.parameters()
