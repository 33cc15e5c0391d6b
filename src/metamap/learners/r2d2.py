"""R2D2: ridge regression differentiable discriminator.

Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with differentiable closed-form solvers",
ICLR 2019. The task head is ridge regression from support embeddings X ``(S, D)`` to one-hot
labels Y ``(S, W)``, solved in closed form. Since S ≪ D in few-shot learning, the paper uses
the Woodbury identity so that the only matrix to invert is S × S (Eq. 4):

    W = (XᵀX + λI_D)⁻¹ XᵀY = Xᵀ (XXᵀ + λI_S)⁻¹ Y,

and calibrates the regression outputs for the softmax cross-entropy with two learned scalars
(Eq. 5): ``Ŷ = α X' W + β``. λ is learned too, as ``λ = exp(log_lambda)`` (always positive).

XXᵀ + λI is symmetric positive definite, so it is solved with a Cholesky factorisation
(``torch.linalg.cholesky`` + ``torch.cholesky_solve``), differentiable in X and λ.
Note that β, one scalar added to every logit, does not change the softmax: its gradient under
cross-entropy is exactly zero. It is kept for fidelity to the paper.

Shapes: X ``(..., S, D)``, Y ``(..., S, W)`` → W ``(..., D, W)``; X' ``(..., Q, D)`` → logits
``(..., Q, W)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from metamap.learners.base import AdaptedState
from metamap.learners.metric import EncoderLearner, EncoderSection, expect_state
from metamap.learners.registry import BuildContext, register_learner

__all__ = ["R2D2", "R2D2Section", "RidgeState", "ridge_woodbury"]


@dataclass(kw_only=True)
class RidgeState(AdaptedState):
    """The ridge-regression weights ``weight`` ``(D, W)``."""

    weight: Tensor


def ridge_woodbury(x: Tensor, y: Tensor, lam: Tensor | float) -> Tensor:
    """``Xᵀ(XXᵀ + λI)⁻¹Y`` for X ``(..., S, D)`` and Y ``(..., S, W)``: ``(..., D, W)``."""
    eye = torch.eye(x.shape[-2], dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky(x @ x.mT + lam * eye)
    return x.mT @ torch.cholesky_solve(y, chol)


class R2D2(EncoderLearner):
    """Closed-form ridge-regression head with learned λ, α and β on any encoder."""

    def __init__(
        self,
        encoder: nn.Module,
        lam: float = 1.0,
        scale: float = 1.0,
        bias: float = 0.0,
        learn_lambda: bool = True,
        per_task_forward: bool = False,
    ) -> None:
        super().__init__(encoder, per_task_forward)
        if lam <= 0:
            raise ValueError(f"the ridge penalty lam must be positive, got {lam}")
        self.log_lambda = nn.Parameter(torch.tensor(math.log(lam)), requires_grad=learn_lambda)
        self.alpha = nn.Parameter(torch.tensor(float(scale)))
        self.beta = nn.Parameter(torch.tensor(float(bias)))

    @property
    def lam(self) -> Tensor:
        """λ = exp(log_lambda)."""
        return self.log_lambda.exp()

    def fit(self, support: Tensor, onehot: Tensor, steps: int | None = None) -> RidgeState:
        return RidgeState(weight=ridge_woodbury(support, onehot, self.lam))

    def score(self, state: AdaptedState, query: Tensor) -> Tensor:
        return self.alpha * query @ expect_state(state, RidgeState).weight + self.beta


@register_learner
class R2D2Section(EncoderSection):
    """``learner: {name: r2d2}`` — a closed-form ridge-regression head (Bertinetto et al. 2019)."""

    name: Literal["r2d2"] = "r2d2"

    def build(self, ctx: BuildContext) -> EncoderLearner:
        return R2D2(self.encoder_of(ctx)).use_label_smoothing(self.label_smoothing)
