"""What every policy learner shares: MAML's policy-gradient inner step on rollouts.

Finn, Abbeel & Levine, ICML 2017, §5.3 (Algorithm 3, steps 1-3): from ``K`` episodes of ``π_θ``
in a task (the *support* rollouts ``D_i``, tensors ``(T, E, H, ...)`` the problem samples), one
vanilla policy-gradient step ``θ'_i = θ + α ∇θ Σ log π_θ(a|s) Â``, with advantages ``Â`` the
returns minus the linear feature baseline fitted to ``D_i``, normalised per task; batched over
tasks with ``vmap`` and differentiable in θ (exactly, through the inner gradient; or cut with
``first_order=True``). The outer update is each learner's own (:meth:`meta_update`): TRPO's
(:class:`~metamap.rl.MAMLTRPO`) or PPO's (:class:`~metamap.rl.MAMLPPO`, ProMP).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from pydantic import Field, NonNegativeFloat, PositiveFloat, model_validator
from torch import Tensor, nn
from torch.func import functional_call, vmap

from metamap.core.learner import AdaptedState, MetaStep
from metamap.core.task import TaskBatch
from metamap.errors import TaskShapeError
from metamap.learners.base import MetaLearner
from metamap.learners.registry import LearnerSection
from metamap.models.policy import gaussian_log_prob
from metamap.rl.advantages import (
    LinearFeatureBaseline,
    discounted_returns,
    gae,
    normalize_advantages,
)
from metamap.rl.protocol import Reduce
from metamap.rl.rollout import PolicyFn, Rollouts

__all__ = [
    "PolicyGradientLearner",
    "PolicyLearnerBase",
    "PolicyLearnerSection",
    "PolicySection",
    "advantages",
    "gaussian_kl",
    "masked_task_mean",
]

Params = dict[str, Tensor]


def advantages(r: Rollouts, gamma: float, lam: float) -> Tensor:
    """Normalised GAE advantages ``(T, E, H)`` against a linear baseline fitted to each task."""
    returns = discounted_returns(r.rewards, r.masks, gamma)
    values = LinearFeatureBaseline.fit(r.observations, returns, r.masks)(r.observations)
    return normalize_advantages(gae(r.rewards, values, r.masks, gamma, lam), r.masks)


def gaussian_kl(mean0: Tensor, log_std0: Tensor, mean1: Tensor, log_std1: Tensor) -> Tensor:
    """``KL(N(mean0, σ0²) ‖ N(mean1, σ1²))`` of diagonal Gaussians, summed over the last dim."""
    var0, var1 = torch.exp(2 * log_std0), torch.exp(2 * log_std1)
    return (log_std1 - log_std0 + (var0 + (mean0 - mean1) ** 2) / (2 * var1) - 0.5).sum(-1)


def masked_task_mean(x: Tensor, masks: Tensor) -> Tensor:
    """The mean over tasks of each task's mean of ``x`` over its running steps:
    ``x, masks: (T, E, H)`` → ``()``."""
    n = masks.flatten(1).sum(1).clamp_min(1)
    return ((x * masks).flatten(1).sum(1) / n).mean()


class PolicyLearnerBase(MetaLearner):
    """A learner of policies: it adapts to rollouts, so the supervised-task interface (support
    and query tensors) refuses to run, naming the calls that apply."""

    # ---- the supervised-task interface does not apply -------------------------------------
    def _not_rl(self) -> TaskShapeError:
        return TaskShapeError(
            f"{type(self).__name__} adapts to rollouts of environments, not to (support_x, "
            "support_y) tensors: use adapt_policy(rollouts) and meta_update(support, query)"
        )

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        raise self._not_rl()

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        raise self._not_rl()

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        raise self._not_rl()


class PolicyGradientLearner(PolicyLearnerBase):
    """A Gaussian policy ``self.model`` adapted by policy-gradient steps on rollouts; subclasses
    give the outer update (:meth:`meta_update`)."""

    def __init__(
        self,
        policy: nn.Module,
        inner_lr: float = 0.1,
        first_order: bool = False,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        test_lr: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.model = policy
        self.loss_name = "return"
        self.inner_steps = 1
        self.inner_lr, self.first_order = float(inner_lr), first_order
        lrs = [inner_lr] if test_lr is None else test_lr
        self.test_lrs = [float(a) for a in ([lrs] if isinstance(lrs, int | float) else lrs)]
        self.gamma, self.gae_lambda = float(gamma), float(gae_lambda)

    # ---- the mapping: rollouts -> adapted policy ----------------------------------------------
    def _pg_loss(self, params: Params, obs: Tensor, act: Tensor, adv: Tensor, m: Tensor) -> Tensor:
        """``-Σ J(log π(a|s)) Â / Σ m`` over one task's running steps (``(E, H, ...)``)."""
        mean, log_std = functional_call(self.model, params, (obs,))
        logp = gaussian_log_prob(mean, log_std, act)
        return -(self.likelihood_term(logp) * adv * m).sum() / m.sum().clamp_min(1)

    @staticmethod
    def likelihood_term(logp: Tensor) -> Tensor:
        """What the inner objective weights each advantage by: ``log π`` (the policy
        gradient's likelihood-ratio estimator)."""
        return logp

    def _inner(
        self, params: Params, r: Rollouts, adv: Tensor, shared: bool = True, lr: float | None = None
    ) -> Params:
        """Every task's adapted parameters ``(T, ...)`` after one policy-gradient step from
        ``params`` (one set for all tasks, or ``shared=False``: stacked per task), batched over
        tasks with ``vmap``; differentiable in ``params`` (exactly, through the inner gradient)."""
        grad = vmap(torch.func.grad(self._pg_loss), in_dims=(None if shared else 0, 0, 0, 0, 0))
        grads = grad(params, r.observations, r.actions, adv, r.masks)
        if self.first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        alpha = self.inner_lr if lr is None else lr
        return {k: p - alpha * grads[k] for k, p in params.items()}

    def adapt_policy(
        self, r: Rollouts, params: Params | None = None, training: bool = False, step: int = 0
    ) -> Params:
        """One policy-gradient step per task from rollouts ``r`` of ``params`` (default: θ, the
        meta-parameters), of size α in meta-training (``training``), else the ``step``-th of
        ``test_lr`` (the last for later steps): parameters stacked per task, ``(T, *shape)``,
        detached."""
        base = dict(self.model.named_parameters()) if params is None else params
        adv = advantages(r, self.gamma, self.gae_lambda)
        with torch.no_grad():
            detached = {k: v.detach() for k, v in base.items()}
            lr = self.inner_lr if training else self.test_lrs[min(step, len(self.test_lrs) - 1)]
            adapted = self._inner(detached, r, adv, params is None, lr)
        return {k: v.detach() for k, v in adapted.items()}

    def policy_fn(self, params: Params | None = None) -> PolicyFn:
        """The policy for :func:`~metamap.rl.rollout`: θ for every task, or one parameter set per
        task (``params`` stacked ``(T, ...)``, the rows of ``T`` equal blocks)."""
        if params is None:
            return lambda obs: self.model(obs)
        stacked = params
        tasks = next(iter(stacked.values())).shape[0]

        def per_task(obs: Tensor) -> tuple[Tensor, Tensor]:
            mean, log_std = self._call(stacked, obs.reshape(tasks, -1, obs.shape[-1]))
            return mean.reshape(-1, mean.shape[-1]), log_std.reshape(-1, log_std.shape[-1])

        return per_task

    def _call(self, stacked: Params, obs: Tensor) -> tuple[Tensor, Tensor]:
        """Each task's policy on its observations: ``(T, ...)`` parameters, ``(T, *N, obs)``."""
        out: tuple[Tensor, Tensor] = vmap(lambda p, o: functional_call(self.model, p, (o,)))(
            stacked, obs
        )
        return out

    @abstractmethod
    def meta_update(
        self, support: Rollouts, query: Rollouts, reduce: Reduce | None = None
    ) -> MetaStep:
        """The outer step from support rollouts of θ and query rollouts of the adapted
        policies (``reduce``: these are one process's tasks, see :mod:`metamap.rl.protocol`)."""


class PolicyLearnerSection(LearnerSection):
    """What every policy learner takes (environments as tasks, and only those) and the discount
    of its returns."""

    regression = False
    classification = False
    reinforcement = True
    fixed_head = False
    shards_exactly = True  # meta_update reduces its means over tasks across processes
    min_rollouts: ClassVar[int] = 1
    """The fewest episodes per task and step (``task.rollouts``) its update works with."""

    gamma: float = Field(default=0.99, gt=0.0, le=1.0)


class PolicySection(PolicyLearnerSection):
    """The settings of MAML's inner policy-gradient step and of its advantages."""

    inner_lr: NonNegativeFloat = 0.1
    """α of the inner step in meta-training; 0: no adaptation in training, i.e. one policy
    trained on all tasks (the multi-task pre-training baseline)."""
    test_lr: PositiveFloat | list[PositiveFloat] | None = None
    """The step size of adaptation after training (``metamap eval``, validation): one, or one
    per step (the last for later ones; the MAML paper evaluates with ``[0.1, 0.05]``);
    default α."""
    gae_lambda: float = Field(default=1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _test_step_size(self) -> PolicySection:
        if self.inner_lr == 0 and self.test_lr is None:
            raise ValueError(
                "inner_lr is 0 (no adaptation in training) and test_lr is not set, so validation "
                "and evaluation would adapt with a step size of 0: set learner.test_lr, e.g. "
                "learner.test_lr=0.1 (the multi-task pre-training baseline)"
            )
        return self
