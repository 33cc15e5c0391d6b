"""MAML-TRPO: meta-reinforcement learning with a policy-gradient inner step and a TRPO outer step.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017, §5.3 and Algorithm 3; the outer update is TRPO's (Schulman, Levine, Moritz, Jordan &
Abbeel, "Trust Region Policy Optimization", ICML 2015). For a batch of tasks ``T_i``:

1. sample ``K`` episodes of the policy ``π_θ`` in each task (the *support* rollouts ``D_i``);
2. adapt with one vanilla policy-gradient step, ``θ'_i = θ + α ∇θ Σ log π_θ(a|s) Â`` (advantages
   Â: returns minus the linear feature baseline fitted to ``D_i``, normalised per task);
3. sample ``K`` episodes of each adapted policy ``π_θ'_i`` (the *query* rollouts ``D'_i``);
4. maximise ``L(θ) = (1/T) Σ_i E_{D'_i}[ π_θ'_i(a|s) / π_old(a|s) · Â' ]`` subject to the mean KL
   between the old and new adapted policies on ``D'_i`` staying under ``max_kl``: the natural
   gradient direction ``x = F⁻¹ g`` by conjugate gradient on Fisher-vector products (Hessians of
   the KL, through the inner step), scaled to the KL bound, then a backtracking line search that
   accepts the first step improving ``L`` within the bound.

``θ'_i`` depends on θ through the inner step; with ``first_order=True`` that dependence is cut
(the inner gradient is a constant). Steps 1 and 3 need environments, which a learner never sees:
the problem (:class:`metamap.train.MetaRLProblem`) samples the rollouts and hands them here as
tensors (:class:`~metamap.rl.Rollouts`, ``(T, E, H, ...)``). Settings default to the paper's: α =
0.1, max KL 0.01, 10 conjugate-gradient iterations with damping 1e-5, a line search of 15 halvings
by 0.8, γ = 0.99 and GAE λ = 1 (plain returns minus the baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from pydantic import Field, PositiveFloat, PositiveInt
from torch import Tensor, nn

from metamap.core.learner import MetaStep
from metamap.learners.base import MetaLearner
from metamap.learners.registry import BuildContext, register_learner
from metamap.models.policy import gaussian_log_prob
from metamap.rl.policy_gradient import (
    PolicyGradientLearner,
    PolicySection,
    advantages,
    gaussian_kl,
    masked_task_mean,
)
from metamap.rl.protocol import Reduce
from metamap.rl.rollout import Rollouts

__all__ = [
    "MAMLTRPO",
    "MAMLTRPOSection",
    "advantages",
    "conjugate_gradient",
    "gaussian_kl",
    "masked_task_mean",
]


def conjugate_gradient(fvp: Callable[[Tensor], Tensor], b: Tensor, iters: int) -> Tensor:
    """``x ≈ F⁻¹ b`` by ``iters`` conjugate-gradient iterations on products ``fvp(v) = F v``."""
    x, r, p = torch.zeros_like(b), b.clone(), b.clone()
    rr = r @ r
    for _ in range(iters):
        fp = fvp(p)
        step = rr / (p @ fp + 1e-12)
        x, r = x + step * p, r - step * fp
        rr_new = r @ r
        if float(rr_new) < 1e-10:
            break
        p, rr = r + (rr_new / rr) * p, rr_new
    return x


def _flat(ts: tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


class MAMLTRPO(PolicyGradientLearner):
    """A Gaussian policy ``self.model`` meta-trained by MAML with TRPO's outer step."""

    def __init__(
        self,
        policy: nn.Module,
        inner_lr: float = 0.1,
        first_order: bool = False,
        max_kl: float = 0.01,
        cg_iters: int = 10,
        cg_damping: float = 1e-5,
        ls_steps: int = 15,
        ls_backtrack: float = 0.8,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        test_lr: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__(policy, inner_lr, first_order, gamma, gae_lambda, test_lr)
        self.max_kl, self.cg_iters, self.cg_damping = float(max_kl), cg_iters, float(cg_damping)
        self.ls_steps, self.ls_backtrack = ls_steps, float(ls_backtrack)

    # ---- the outer step: TRPO on the adapted policies' surrogate --------------------------
    def _objective(
        self,
        support: Rollouts,
        query: Rollouts,
        adv_s: Tensor,
        adv_q: Tensor,
        old: tuple[Tensor, Tensor] | None,
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        """Mean surrogate loss ``-L(θ)``, mean KL(old ‖ new) over the tasks, and the adapted
        policies' (mean, log σ) on the query observations (``old``: those at θ_old)."""
        adapted = self._inner(dict(self.model.named_parameters()), support, adv_s)
        mean, log_std = self._call(adapted, query.observations)
        old_mean, old_log_std = (mean.detach(), log_std.detach()) if old is None else old
        logp = gaussian_log_prob(mean, log_std, query.actions)
        ratio = torch.exp(logp - gaussian_log_prob(old_mean, old_log_std, query.actions))
        loss = -masked_task_mean(ratio * adv_q, query.masks)
        kl = masked_task_mean(gaussian_kl(old_mean, old_log_std, mean, log_std), query.masks)
        return loss, kl, (old_mean, old_log_std)

    def meta_update(
        self, support: Rollouts, query: Rollouts, reduce: Reduce | None = None
    ) -> MetaStep:
        """One TRPO step of θ from support rollouts of θ and query rollouts of the adapted
        policies; θ is updated in place (``applied=True``). ``metric``: the query rollouts'
        mean return, the score after adaptation (``loss``: its negative). ``reduce``: these
        rollouts are one process's tasks; the gradient, every Fisher-vector product and the
        line search's loss and KL are means over all processes' tasks, so every process takes
        the step one process would."""
        mean = reduce or (lambda t: t)
        params = list(self.model.parameters())
        adv_s = advantages(support, self.gamma, self.gae_lambda)
        adv_q = advantages(query, self.gamma, self.gae_lambda)
        with torch.enable_grad():
            loss, kl, old = self._objective(support, query, adv_s, adv_q, None)
            g = mean(_flat(torch.autograd.grad(loss, params, retain_graph=True)))
            grad_kl = _flat(torch.autograd.grad(kl, params, create_graph=True))

            def fvp(v: Tensor) -> Tensor:
                hv = torch.autograd.grad(grad_kl @ v, params, retain_graph=True)
                return mean(_flat(hv)) + self.cg_damping * v

            step = conjugate_gradient(fvp, -g, self.cg_iters)
            shs = 0.5 * step @ fvp(step)
        # Scaled so that the quadratic model of the KL, ½xᵀFx, is twice the bound: the line
        # search backtracks from there (0.8 at a time) to the first step within the bound.
        full = step * torch.sqrt(2 * self.max_kl / shs.clamp_min(1e-12)) if shs > 0 else step * 0
        start = _flat([p.detach() for p in params]).clone()
        before = float(mean(loss.detach()))
        accepted = False
        for i in range(self.ls_steps):
            self._set(params, start + self.ls_backtrack**i * full)
            with torch.no_grad():
                new_loss, new_kl, _ = self._objective(support, query, adv_s, adv_q, old)
                new_loss, new_kl = mean(torch.stack([new_loss, new_kl])).unbind()
            if float(new_kl) <= self.max_kl and float(new_loss) < before:
                accepted = True
                break
        if not accepted:
            self._set(params, start)
        returns = mean(query.returns.mean().detach())
        return MetaStep(loss=-returns, metric=returns, grads={}, applied=True)

    @staticmethod
    @torch.no_grad()
    def _set(params: list[nn.Parameter], flat: Tensor) -> None:
        i = 0
        for p in params:
            p.copy_(flat[i : i + p.numel()].view_as(p))
            i += p.numel()


@register_learner
class MAMLTRPOSection(PolicySection):
    """``learner: {name: maml_trpo}`` — MAML with a policy-gradient inner step and a TRPO outer
    step (Finn et al. 2017, §5.3), on environments as tasks."""

    name: Literal["maml_trpo"] = "maml_trpo"
    first_order: bool = False
    max_kl: PositiveFloat = 0.01
    cg_iters: PositiveInt = 10
    cg_damping: float = Field(default=1e-5, ge=0.0)
    ls_steps: PositiveInt = 15
    ls_backtrack: float = Field(default=0.8, gt=0.0, lt=1.0)

    def build(self, ctx: BuildContext) -> MetaLearner:
        return MAMLTRPO(
            ctx.model(),
            self.inner_lr,
            self.first_order,
            self.max_kl,
            self.cg_iters,
            self.cg_damping,
            self.ls_steps,
            self.ls_backtrack,
            self.gamma,
            self.gae_lambda,
            self.test_lr,
        )
