"""Closed-form ridge regression on learned features, for regression tasks.

The regression form of R2D2 (Bertinetto, Henriques, Torr & Vedaldi, ICLR 2019) and the MAP
estimate of ALPaCA (Harrison, Sharma & Pavone, "Meta-Learning Priors for Efficient Online
Bayesian Regression", WAFR 2018): the network gives a prior prediction ``f_φ(x)`` and features
``h_φ(x)``; a task's model is the prior plus a linear correction of the features fitted to the
support residuals in closed form,

    w_T = (H_sᵀH_s + λI)⁻¹ H_sᵀ (y_s − f_φ(x_s)),        ŷ(x) = f_φ(x) + α · h_φ(x) w_T,

where ``h_φ(x) = [features(x), 1]`` (the constant lets each task shift its outputs: a user's
bias) and λ = exp(log_lambda) is one learned penalty per feature — a diagonal prior precision,
as ALPaCA learns a full one — so meta-training decides how far each feature may move; α is
learned too. Meta-training differentiates through the solve, so φ
learns features in which a few examples fix the task: on ratings, item factors whose fold-in
(the least-squares user vector of matrix factorisation) is what a new user's ratings need.

The model must provide ``features(x) -> (N, D)`` and ``feature_dim = D`` beside its forward
``(N, O)``
(:class:`~metamap.models.MLP`, :class:`~metamap.models.MeLU`). Targets may be NaN where missing
(``masked_mse``, the padding of ragged tasks): those rows are left out of the fit and the loss, so
a padded task gets exactly its own answer. The D × D system is solved by Cholesky.

Shapes: one task ``x (S, *feature)``, ``y (S, O)``; a batch ``(B, S, ...)``; ``w_T (…, D, O)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import PositiveFloat
from torch import Tensor, nn
from torch.func import vmap

from metamap.core.task import TaskBatch
from metamap.errors import ConfigError
from metamap.learners.base import AdaptedState, MetaLearner, MetaStep
from metamap.learners.functional import LossName, loss_function
from metamap.learners.metric import expect_state
from metamap.learners.registry import BuildContext, LearnerSection, register_learner

__all__ = ["Ridge", "RidgeRegressionState", "RidgeSection", "ridge_fit"]


@dataclass(kw_only=True)
class RidgeRegressionState(AdaptedState):
    """The task's correction ``weight`` ``(D, O)`` on the network's features."""

    weight: Tensor


def ridge_fit(h: Tensor, r: Tensor, lam: Tensor | float) -> Tensor:
    """``(HᵀH + diag(λ))⁻¹HᵀR`` for ``H (..., S, D)``, ``R (..., S, O)`` and ``λ`` one penalty
    or one per feature ``(D,)``; NaN rows of R are left out (their rows of H count as zero).
    Returns ``(..., D, O)``."""
    present = ~torch.isnan(r).any(-1, keepdim=True)
    h = torch.where(present, h, torch.zeros_like(h))
    r = torch.where(present, r, torch.zeros_like(r))
    eye = torch.eye(h.shape[-1], dtype=h.dtype, device=h.device)
    chol = torch.linalg.cholesky(h.mT @ h + lam * eye)  # λ (D,) scales eye's columns: diag(λ)
    return torch.cholesky_solve(h.mT @ r, chol)


class Ridge(MetaLearner):
    """A network's prior prediction plus a closed-form ridge correction on its features."""

    def __init__(self, model: nn.Module, loss: LossName = "mse", lam: float = 1.0) -> None:
        super().__init__()
        features, dim = getattr(model, "features", None), getattr(model, "feature_dim", None)
        if not callable(features) or not isinstance(dim, int):
            raise ValueError(
                f"ridge needs a model with a features(x) method and its feature_dim, and "
                f"{type(model).__name__} has not both (mlp and melu have them)"
            )
        if loss == "cross_entropy":
            raise ValueError("ridge fits regression targets; for classes use learner 'r2d2'")
        if lam <= 0:
            raise ValueError(f"the ridge penalty lam must be positive, got {lam}")
        self.model = model
        self.loss_name = loss
        dtype = next(model.parameters()).dtype
        self.log_lambda = nn.Parameter(torch.full((dim + 1,), math.log(lam), dtype=dtype))
        self.alpha = nn.Parameter(torch.tensor(1.0, dtype=dtype))

    @property
    def lam(self) -> Tensor:
        """λ = exp(log_lambda), one per feature and one for the constant ``(D + 1,)``."""
        return self.log_lambda.exp()

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Prior ``(N, O)`` and features ``(N, D)`` of inputs ``(N, *feature)``."""
        features: Callable[[Tensor], Tensor] = self.model.features  # type: ignore[assignment]
        out: Tensor = self.model(x)
        h = features(x)
        return out, torch.cat([h, torch.ones_like(h[:, :1])], 1)

    def _batched(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """As :meth:`_forward` for ``(B, N, *feature)``, in one network call."""
        out, h = self._forward(x.flatten(0, 1))
        b, n = x.shape[:2]
        return out.reshape(b, n, *out.shape[1:]), h.reshape(b, n, *h.shape[1:])

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        """The task's ridge weights from its support set (no gradient steps: ``steps`` unused)."""
        self.check_task(support_x, support_y)
        with torch.no_grad():
            prior, h = self._forward(support_x)
            state = RidgeRegressionState(weight=ridge_fit(h, support_y - prior, self.lam))
        state.example_shape = tuple(support_x.shape[1:])
        return state

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Adapted predictions ``(N, O)`` for ``x: (N, *feature)``."""
        self.check_query(state, x)
        prior, h = self._forward(x)
        return prior + self.alpha * h @ expect_state(state, RidgeRegressionState).weight

    def _query_predictions(self, batch: TaskBatch) -> Tensor:
        """Every task's adapted query predictions ``(B, Q, O)``, one batched solve (padded,
        NaN-target support rows left out of each fit), differentiable in φ, λ and α."""
        prior_s, hs = self._batched(batch.support_x)
        prior_q, hq = self._batched(batch.query_x)
        w = ridge_fit(hs, batch.support_y - prior_s, self.lam)
        return prior_q + self.alpha * hq @ w

    def predict_tasks(self, batch: TaskBatch, steps: int | None = None) -> Tensor:
        """Every task's adapted query predictions ``(B, Q, O)``, detached (tested against the
        task-by-task path)."""
        self.check_batch(batch)
        with torch.no_grad():
            return self._query_predictions(batch)

    def task_losses(self, batch: TaskBatch) -> Tensor:
        """Each task's query loss ``(B,)``, differentiable in φ, λ and α."""
        # each task's MSE over its present (non-NaN) targets: (B, Q, O) -> (B,)
        return vmap(loss_function("masked_mse"))(self._query_predictions(batch), batch.query_y)

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        self.check_batch(batch)
        return self.task_losses(batch).mean()

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        loss = self.meta_loss(batch)
        return MetaStep(loss.detach(), loss.detach(), self.gradients_of(loss))


@register_learner
class RidgeSection(LearnerSection):
    """``learner: {name: ridge}`` — a closed-form ridge correction on the model's features
    (R2D2's head for regression; ALPaCA's MAP estimate)."""

    name: Literal["ridge"] = "ridge"
    classification: ClassVar[bool] = False
    shards_exactly: ClassVar[bool] = True
    lam: PositiveFloat = 1.0
    """The ridge penalty λ it starts from (meta-learned)."""

    def build(self, ctx: BuildContext) -> MetaLearner:
        try:
            return Ridge(ctx.model(), ctx.loss, self.lam)
        except ValueError as e:  # a model without features, or class labels
            raise ConfigError(f"learner 'ridge': {e}") from None
