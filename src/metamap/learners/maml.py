"""MAML and first-order MAML.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017. The mapping is a few steps of gradient descent from a learned initialisation:

    θ_T = θ - Σ_k α_k ∇θ_k L(f_θ_k, D^tr_T),        L_meta(θ) = E_T L(f_θ_T, D^ts_T).

``first_order=False`` differentiates through the inner gradients (exact second order, via
``create_graph=True``); ``first_order=True`` treats them as constants (FOMAML, §5.2 of the paper).
``inner_lr`` is one step size or one per step; ``learn_inner_lr`` makes the per-step sizes
meta-parameters (as in MAML++'s LSLR, Antoniou et al. 2019).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from metamap.learners.functional import LossName, Params, StepSize
from metamap.learners.gradient import Batching, GradientLearner, StepSizeSection
from metamap.learners.registry import register_learner

__all__ = ["FOMAML", "MAML", "FOMAMLSection", "MAMLSection"]


class MAML(GradientLearner):
    """MAML with a fixed or learned step size per inner step."""

    def __init__(
        self,
        model: nn.Module,
        loss: LossName = "mse",
        inner_steps: int = 1,
        inner_lr: float | Sequence[float] = 0.01,
        learn_inner_lr: bool = False,
        first_order: bool = False,
        batching: Batching = "auto",
    ) -> None:
        super().__init__(model, loss, inner_steps, batching)
        lrs = (
            [float(inner_lr)] if isinstance(inner_lr, int | float) else [float(a) for a in inner_lr]
        )
        if len(lrs) not in (1, inner_steps):
            raise ValueError(
                f"inner_lr has {len(lrs)} values; give one, or one per inner step ({inner_steps})"
            )
        if any(a <= 0 for a in lrs):
            raise ValueError(f"inner learning rates must be positive, got {lrs}")
        lrs = lrs * inner_steps if len(lrs) == 1 else lrs
        self.second_order = not first_order
        self.learn_inner_lr = learn_inner_lr
        self.fixed_lrs = lrs
        if learn_inner_lr:
            dtype = next(model.parameters()).dtype
            self.inner_lrs = nn.Parameter(torch.tensor(lrs, dtype=dtype))

    def step_sizes(self, meta: Params, steps: int) -> list[StepSize]:
        if self.learn_inner_lr:
            lrs = meta["inner_lrs"]
            return [lrs[min(i, len(self.fixed_lrs) - 1)] for i in range(steps)]
        return [self.fixed_lrs[min(i, len(self.fixed_lrs) - 1)] for i in range(steps)]


class FOMAML(MAML):
    """First-order MAML: ``MAML(first_order=True)``."""

    def __init__(
        self,
        model: nn.Module,
        loss: LossName = "mse",
        inner_steps: int = 1,
        inner_lr: float | Sequence[float] = 0.01,
        learn_inner_lr: bool = False,
        batching: Batching = "auto",
    ) -> None:
        super().__init__(model, loss, inner_steps, inner_lr, learn_inner_lr, True, batching)


@register_learner
class MAMLSection(StepSizeSection):
    """``learner: {name: maml}`` — MAML (Finn et al. 2017), exact second order unless
    ``first_order``."""

    name: Literal["maml"] = "maml"
    first_order: bool = False
    learner_class = MAML

    def is_first_order(self) -> bool:
        return self.first_order


@register_learner
class FOMAMLSection(StepSizeSection):
    """``learner: {name: fomaml}`` — first-order MAML (Finn et al. 2017, §5.2)."""

    name: Literal["fomaml"] = "fomaml"
    learner_class = MAML

    def is_first_order(self) -> bool:
        return True
