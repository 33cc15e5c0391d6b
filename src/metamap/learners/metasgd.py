"""Meta-SGD: learn the initialisation *and* a per-parameter inner learning rate.

Li, Zhou, Chen & Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning", 2017:

    θ_T = θ - α ⊙ ∇θ L(f_θ, D^tr_T),      (θ, α) ← (θ, α) - β ∇_(θ,α) E_T L(f_θ_T, D^ts_T),

where α has the shape of θ. The paper uses one inner step; more steps reuse the same α.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import PositiveFloat
from torch import nn

from metamap.learners.functional import LossName, Params, StepSize
from metamap.learners.gradient import Batching, GradientLearner, GradientSection
from metamap.learners.registry import BuildContext, register_learner

__all__ = ["MetaSGD", "MetaSGDSection"]


def _key(name: str) -> str:
    return name.replace(".", "__")


class MetaSGD(GradientLearner):
    """Per-parameter learned step sizes ``inner_lrs[name]`` (same shape as the parameter)."""

    def __init__(
        self,
        model: nn.Module,
        loss: LossName = "mse",
        inner_steps: int = 1,
        inner_lr: float = 0.01,
        first_order: bool = False,
        batching: Batching = "auto",
    ) -> None:
        super().__init__(model, loss, inner_steps, batching)
        if inner_lr <= 0:
            raise ValueError(f"inner_lr (the initial α) must be positive, got {inner_lr}")
        self.second_order = not first_order
        self.inner_lrs = nn.ParameterDict(
            {
                _key(n): nn.Parameter(torch.full_like(p, inner_lr))
                for n, p in model.named_parameters()
            }
        )

    def adapt_only(self, prefixes: Sequence[str]) -> MetaSGD:
        """As :meth:`GradientLearner.adapt_only`; α is kept for the adapted parameters only."""
        super().adapt_only(prefixes)
        for n, _ in self.model.named_parameters():
            if not self._adapted(n):
                del self.inner_lrs[_key(n)]
        return self

    def step_sizes(self, meta: Params, steps: int) -> list[StepSize]:
        alpha = {
            n: meta[f"inner_lrs.{_key(n)}"]
            for n, _ in self.model.named_parameters()
            if self._adapted(n)
        }
        return [alpha] * steps


@register_learner
class MetaSGDSection(GradientSection):
    """``learner: {name: metasgd}`` — Meta-SGD (Li et al. 2017): a learned step size per
    parameter, initialised to ``inner_lr``."""

    name: Literal["metasgd"] = "metasgd"
    inner_lr: PositiveFloat = 0.01
    first_order: bool = False

    def build(self, ctx: BuildContext) -> MetaSGD:
        m = ctx.model()
        return self.restrict(
            MetaSGD(m, ctx.loss, self.inner_steps, self.inner_lr, self.first_order, self.batching)
        )
