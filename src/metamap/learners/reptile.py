"""Reptile.

Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", 2018 (Algorithm 2,
batched version). Each task is solved by k steps of SGD from θ, giving θ̃_T; the meta-update is

    θ ← θ + ε (1/B) Σ_T (θ̃_T − θ).

metamap expresses it as the meta-gradient g = θ − mean_T θ̃_T, so plain SGD with learning rate ε
is exactly Reptile, and Adam on g is the paper's Adam variant. The inner loop runs on the support
set; the logged loss is the query loss after adaptation.

The paper's Omniglot and mini-ImageNet runs take each inner step on a minibatch of the task
(``inner_batch``: 10 examples of 5 ways × 10 training shots, 5 steps), adapt with Adam (β₁ = 0;
``use_inner_optimizer``) and anneal the meta step size ε linearly to 0 (``train.schedule:
linear`` with SGD at ``lr`` ε); configs/omniglot/reptile-5w1s.yaml sets all three.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import Tensor, nn

from metamap.core.task import TaskBatch
from metamap.learners.base import MetaStep
from metamap.learners.functional import LossName, Params, StepSize
from metamap.learners.gradient import _MODEL, Batching, GradientLearner, GradientSection
from metamap.learners.registry import BuildContext, register_learner

__all__ = ["Reptile", "ReptileSection"]


class Reptile(GradientLearner):
    """k steps of SGD with step size ``inner_lr`` per task; meta-gradient θ − mean θ̃.

    ``inner_batch``: examples of the support set per inner step (Nichol et al.'s inner
    minibatches, :mod:`metamap.learners.minibatch`); ``None``: every step on all of them. It
    applies when adapting to test tasks too, where a support set no larger than it is taken
    whole."""

    second_order = False

    def __init__(
        self,
        model: nn.Module,
        loss: LossName = "mse",
        inner_steps: int = 5,
        inner_lr: float = 0.01,
        batching: Batching = "auto",
        inner_batch: int | None = None,
    ) -> None:
        super().__init__(model, loss, inner_steps, batching)
        if inner_lr <= 0:
            raise ValueError(f"inner_lr must be positive, got {inner_lr}")
        if inner_batch is not None and (not isinstance(inner_batch, int) or inner_batch < 1):
            raise ValueError(
                f"inner_batch must be at least 1 (None: the whole support set), got {inner_batch}"
            )
        self.inner_lr = float(inner_lr)
        self.inner_batch = inner_batch

    def step_sizes(self, meta: Params, steps: int) -> list[StepSize]:
        return [self.inner_lr] * steps

    def _solve(
        self, meta: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor, use_func: bool
    ) -> tuple[Params, Tensor, Tensor]:
        sizes = self.step_sizes(meta, self.inner_steps)
        adapted, _ = self._adapt(meta, sx, sy, sizes, False, use_func)
        pred = self._run(adapted, qx).detach()
        return (
            {k: v.detach() for k, v in adapted.items()},
            self._loss(pred, qy),
            self._metric(pred, qy),
        )

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Reptile's update is not the gradient of a loss; use :meth:`meta_gradients`."""
        raise NotImplementedError(
            "Reptile has no differentiable meta-loss (its update θ - mean θ̃ is not a gradient); "
            "use meta_gradients(batch)"
        )

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        self.check_batch(batch)
        meta = {k: v.detach() for k, v in self.named_parameters()}
        if self.batching == "vmap" and not self._normalises:  # every task at once, as MAML's
            meta = {k: v.requires_grad_(True) for k, v in meta.items()}
            fast, run_each = self._adapt_each(meta, batch, create_graph=False)
            with torch.no_grad():
                pred = run_each(fast, batch.query_x)
                losses = self._task_losses(pred, batch.query_y)
                metrics = self._task_metrics(pred, batch.query_y)
            frozen = self._split(meta)[1]
            mean_adapted = {**frozen, **{k: v.detach().mean(0) for k, v in fast.items()}}
        elif self.batching == "vmap":
            adapted, losses, metrics = torch.func.vmap(
                lambda sx, sy, qx, qy: self._solve(meta, sx, sy, qx, qy, use_func=True)
            )(*batch.tensors())
            mean_adapted = {k: v.mean(0) for k, v in adapted.items()}
        else:
            meta = {k: v.requires_grad_(True) for k, v in meta.items()}
            results = [
                self._solve(meta, sx, sy, qx, qy, use_func=False)
                for sx, sy, qx, qy in zip(*batch.tensors(), strict=True)
            ]
            mean_adapted = {
                k: torch.stack([r[0][k] for r in results]).mean(0) for k in results[0][0]
            }
            losses = torch.stack([r[1] for r in results])
            metrics = torch.stack([r[2] for r in results])
        # A parameter the inner loop does not adapt (learner.adapt) gets exactly no update (the
        # mean of B identical copies would round to noise that Adam scales into full steps).
        grads = {
            _MODEL + k: meta[_MODEL + k].detach() - v if self._adapted(k) else torch.zeros_like(v)
            for k, v in mean_adapted.items()
        }
        return MetaStep(losses.mean(), metrics.mean(), grads)


@register_learner
class ReptileSection(GradientSection):
    """``learner: {name: reptile}`` — Reptile (Nichol et al. 2018)."""

    name: Literal["reptile"] = "reptile"
    inner_lr: PositiveFloat = 0.01
    inner_batch: PositiveInt | None = None
    """Support examples per inner step (Nichol et al.: 10 on Omniglot); omitted: all of them."""

    def notes(self) -> list[str]:
        batch = [] if self.inner_batch is None else [f"inner minibatches of {self.inner_batch}"]
        return [*super().notes(), *batch]

    def build(self, ctx: BuildContext) -> Reptile:
        return self.restrict(
            Reptile(
                ctx.model(),
                ctx.loss,
                self.inner_steps,
                self.inner_lr,
                self.batching,
                self.inner_batch,
            )
        )
