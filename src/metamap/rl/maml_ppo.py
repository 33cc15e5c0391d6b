"""MAML with a PPO outer update: first-order by default, a clipped surrogate, several epochs.

The inner step is MAML's policy-gradient step (:class:`~metamap.rl.PolicyGradientLearner`); the
outer update replaces TRPO's natural-gradient step by ``epochs`` Adam steps on PPO's clipped
surrogate (Schulman, Wolski, Dhariwal, Radford & Klimov, "Proximal Policy Optimization
Algorithms", 2017) of the adapted policies on the query rollouts:

    L(θ) = (1/T) Σ_i E_{D'_i}[ min(r Â', clip(r, 1 - ε, 1 + ε) Â') ],
    r = π_θ'_i(a|s) / π_old(a|s),   θ'_i = θ + α ∇θ J(θ; D_i).

With ``first_order=True`` (the default, "first-order MAML with a PPO outer update") the inner
gradient is a constant in ∇L, so each epoch costs two backward passes, not TRPO's Hessian-vector
products; ``first_order=False`` differentiates through it. The outer Adam's moments and step
count are buffers of the learner (Kingma & Ba 2015, β = (0.9, 0.999), ε = 1e-8), so they are
saved in every checkpoint and a resumed run continues them bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from metamap.core.learner import MetaStep
from metamap.learners.base import MetaLearner
from metamap.learners.registry import BuildContext, register_learner
from metamap.models.policy import gaussian_log_prob
from metamap.rl.outer_adam import adam_step, init_adam, reduced_grads
from metamap.rl.policy_gradient import (
    PolicyGradientLearner,
    PolicyLearnerSection,
    PolicySection,
    advantages,
    gaussian_kl,
    masked_task_mean,
)
from metamap.rl.protocol import Reduce
from metamap.rl.rollout import Rollouts

__all__ = ["MAMLPPO", "MAMLPPOSection", "PPOUpdate", "ProMP", "ProMPSection"]


class MAMLPPO(PolicyGradientLearner):
    """MAML's policy-gradient inner step with PPO's clipped outer update (Adam, ``epochs``)."""

    def __init__(
        self,
        policy: torch.nn.Module,
        inner_lr: float = 0.1,
        first_order: bool = True,
        outer_lr: float = 1e-3,
        epochs: int = 5,
        clip: float = 0.2,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        test_lr: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__(policy, inner_lr, first_order, gamma, gae_lambda, test_lr)
        self.epochs, self.clip, self.outer_lr = epochs, float(clip), float(outer_lr)
        init_adam(self, list(self.model.parameters()))

    def meta_update(
        self, support: Rollouts, query: Rollouts, reduce: Reduce | None = None
    ) -> MetaStep:
        """``epochs`` Adam steps on the clipped surrogate; θ is updated in place (``reduce``:
        each step's gradient is the mean over every process's tasks)."""
        adv_s = advantages(support, self.gamma, self.gae_lambda)
        adv_q = advantages(query, self.gamma, self.gae_lambda)
        with torch.no_grad():  # the pre-update policies before this step (copies, not views)
            mean0, log_std0 = self.model(support.observations)
            old = (mean0.clone(), log_std0.clone())
        for _ in range(self.epochs):
            with torch.enable_grad():
                adapted = self._inner(dict(self.model.named_parameters()), support, adv_s)
                mean, log_std = self._call(adapted, query.observations)
                ratio = torch.exp(gaussian_log_prob(mean, log_std, query.actions) - query.log_probs)
                clipped = torch.clamp(ratio, 1 - self.clip, 1 + self.clip)
                surrogate = torch.minimum(ratio * adv_q, clipped * adv_q)
                loss = -masked_task_mean(surrogate, query.masks) + self.penalty(support, old)
                params = list(self.model.parameters())
                grads = torch.autograd.grad(loss, params)
            adam_step(self, params, reduced_grads(grads, params, reduce), self.outer_lr)
        returns = query.returns.mean().detach()
        returns = returns if reduce is None else reduce(returns)
        return MetaStep(loss=-returns, metric=returns, grads={}, applied=True)

    def penalty(self, support: Rollouts, old: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """A term added to the outer loss (none here; ProMP's KL penalty)."""
        return torch.zeros((), dtype=old[0].dtype)


class PPOUpdate(PolicyLearnerSection):
    """The settings of a PPO outer update: ``epochs`` Adam steps of ``outer_lr`` on the
    surrogate clipped at ``1 ± clip`` (MAML-PPO, ProMP, RL²)."""

    outer_lr: PositiveFloat = 1e-3
    epochs: PositiveInt = 5
    clip: float = Field(default=0.2, gt=0.0, lt=1.0)


class PPOSection(PolicySection, PPOUpdate):
    """MAML's inner step with a PPO outer update."""


@register_learner
class MAMLPPOSection(PPOSection):
    """``learner: {name: maml_ppo}`` — first-order MAML (by default) with a PPO outer update."""

    name: Literal["maml_ppo"] = "maml_ppo"
    first_order: bool = True

    def build(self, ctx: BuildContext) -> MetaLearner:
        return MAMLPPO(
            ctx.model(),
            self.inner_lr,
            self.first_order,
            self.outer_lr,
            self.epochs,
            self.clip,
            self.gamma,
            self.gae_lambda,
            self.test_lr,
        )


class ProMP(MAMLPPO):
    """ProMP (Rothfuss, Lee, Clavera, Asfour & Abbeel, "ProMP: Proximal Meta-Policy Search",
    ICLR 2019): MAMLPPO differentiated through the inner step (second order) with the inner
    objective replaced by the low-variance curvature (LVC) estimator

        J^LVC(θ) = E[ π_θ(a|s) / ⊥π_θ(a|s) · Â ]        (⊥: stop-gradient),

    whose gradient at θ is the policy gradient but whose Hessian drops the high-variance terms of
    the log-likelihood trick, and the outer objective penalised by ``kl_coeff`` times the KL
    between the pre-update policies before and after the update, on the support observations."""

    def __init__(self, policy: torch.nn.Module, kl_coeff: float = 5e-4, **kw: float) -> None:
        super().__init__(policy, first_order=False, **kw)  # type: ignore[arg-type]
        self.kl_coeff = float(kl_coeff)

    @staticmethod
    def likelihood_term(logp: torch.Tensor) -> torch.Tensor:
        """LVC: ``π / ⊥π`` — the same gradient as ``log π``, a lower-variance Hessian."""
        return torch.exp(logp - logp.detach())

    def penalty(self, support: Rollouts, old: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        mean, log_std = self.model(support.observations)
        kl = gaussian_kl(old[0], old[1], mean, log_std)
        return self.kl_coeff * masked_task_mean(kl, support.masks)


@register_learner
class ProMPSection(PPOSection):
    """``learner: {name: promp}`` — ProMP (Rothfuss et al. 2019): LVC inner step, PPO outer
    update with a KL penalty on the pre-update policy."""

    name: Literal["promp"] = "promp"
    clip: float = Field(default=0.3, gt=0.0, lt=1.0)
    kl_coeff: NonNegativeFloat = 5e-4

    def build(self, ctx: BuildContext) -> MetaLearner:
        return ProMP(
            ctx.model(),
            self.kl_coeff,
            inner_lr=self.inner_lr,
            outer_lr=self.outer_lr,
            epochs=self.epochs,
            clip=self.clip,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            test_lr=self.test_lr,  # type: ignore[arg-type]
        )
