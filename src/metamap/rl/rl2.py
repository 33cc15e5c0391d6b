"""RL²: the adapted model is a recurrent policy's hidden state (Duan, Schulman, Chen, Bartlett,
Sutskever & Abbeel, "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning", 2016;
Wang et al., "Learning to reinforcement learn", 2016).

A trial is a run of episodes in one task whose recurrent policy
(:class:`~metamap.models.GaussianGRU`) keeps its hidden state from episode to episode, reading at
each step the observation, the previous action and reward and a first-step flag. Nothing is
adapted by gradient: experience enters through the hidden state, so ``θ_T = g_φ(D_T)`` is the
GRU's state after ``D_T``.

On the core's meta-RL problem (:class:`metamap.train.MetaRLProblem`):

* the support rollouts are a trial's first episode, from the zero state (``policy_fn()``);
* :meth:`RL2.adapt_policy` runs the GRU over them and returns the state it ends in, per task and
  copy (``{"hidden": (T, E, hidden)}``); each of a task's ``E`` copies is its own trial;
* the query rollouts are the second episode, from that state (``policy_fn(adapted)``);
* :meth:`RL2.meta_update` trains φ on the whole trial (both episodes, one sequence) by ``epochs``
  Adam steps on PPO's clipped surrogate (Schulman et al. 2017), as garage's and ProMP's RL²
  baselines do (the RL² paper used TRPO). The return is the trial's, discounted across the
  episode boundary, so acting to learn in the first episode pays off in the second; the
  baseline of a copy at each step is the mean return of its task's other copies there
  (leave-one-out, unbiased).

Evaluation reads "after ``k`` adaptation steps" as "in the ``k+1``-th episode of the trial":
one episode of experience per step, where MAML's steps use the 20 episodes of every copy. Two
simplifications: an episode's last reward is not fed to the next episode (its first step sees
``a = r = 0`` and the flag), and a copy's hidden state keeps running on its final observation
after its episode ends early (the recomputation does the same).
"""

from __future__ import annotations

from typing import Literal, cast

import torch
from torch import Tensor

from metamap.core.learner import MetaStep
from metamap.errors import TaskShapeError
from metamap.learners.base import MetaLearner
from metamap.learners.registry import BuildContext, register_learner
from metamap.models.policy import gaussian_log_prob
from metamap.models.recurrent_policy import GaussianGRU, feedback_inputs
from metamap.rl.advantages import normalize_advantages
from metamap.rl.maml_ppo import PPOUpdate
from metamap.rl.outer_adam import adam_step, init_adam, reduced_grads
from metamap.rl.policy_gradient import PolicyLearnerBase, masked_task_mean
from metamap.rl.protocol import Reduce
from metamap.rl.rollout import Rollouts

__all__ = ["RL2", "RL2Section", "RecurrentPolicyFn", "trial_inputs"]

Params = dict[str, Tensor]


def trial_inputs(r: Rollouts) -> Tensor:
    """The GRU's inputs ``(T, E, H, input_dim)`` of one episode of rollouts: each step's
    observation, the previous action and reward (0 at the first step) and the first-step flag."""
    prev_action = torch.cat([torch.zeros_like(r.actions[:, :, :1]), r.actions[:, :, :-1]], 2)
    prev_reward = torch.cat([torch.zeros_like(r.rewards[:, :, :1]), r.rewards[:, :, :-1]], 2)
    first = torch.zeros_like(r.rewards)
    first[:, :, 0] = 1
    return feedback_inputs(r.observations, prev_action, prev_reward, first)


class RecurrentPolicyFn:
    """The policy a rollout steps (a :class:`~metamap.rl.rollout.FeedbackPolicy`): the GRU from
    ``hidden (N, hidden)`` (zeros when ``None``), fed back each step's action and reward."""

    def __init__(self, model: GaussianGRU, hidden: Tensor | None) -> None:
        self.model, self.hidden = model, hidden
        self.prev: tuple[Tensor, Tensor] | None = None

    def __call__(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        n = obs.shape[0]
        if self.hidden is None:
            self.hidden = self.model.initial_state(n, obs.dtype, obs.device)
        if self.hidden.shape[0] != n:
            raise TaskShapeError(
                f"the adapted hidden state holds {self.hidden.shape[0]} trials but the "
                f"environments {n}: roll out the adapted policy in the environments it adapted in"
            )
        first = self.prev is None
        action, reward = self.prev or (obs.new_zeros(n, self.model.act_dim), obs.new_zeros(n))
        x = feedback_inputs(obs, action, reward, obs.new_full((n,), float(first)))
        mean, log_std, self.hidden = self.model.step(x, self.hidden)
        return mean, log_std

    def observe(self, action: Tensor, reward: Tensor) -> None:
        self.prev = (action, reward)


class RL2(PolicyLearnerBase):
    """RL² with PPO's outer update; ``policy`` a :class:`~metamap.models.GaussianGRU`."""

    def __init__(
        self,
        policy: GaussianGRU,
        outer_lr: float = 1e-3,
        epochs: int = 5,
        clip: float = 0.2,
        gamma: float = 0.99,
    ) -> None:
        super().__init__()
        self.model = policy
        self.loss_name = "return"
        self.inner_steps = 1
        self.outer_lr, self.epochs, self.clip, self.gamma = float(outer_lr), epochs, clip, gamma
        init_adam(self, list(self.model.parameters()))

    @property
    def gru(self) -> GaussianGRU:
        """``self.model``, typed."""
        return cast(GaussianGRU, self.model)

    # ---- the mapping: a trial's experience -> the hidden state -----------------------------
    def policy_fn(self, params: Params | None = None) -> RecurrentPolicyFn:
        hidden = None if params is None else params["hidden"].reshape(-1, self.gru.hidden)
        return RecurrentPolicyFn(self.gru, hidden)

    def _run(self, x: Tensor, params: Params | None) -> tuple[Tensor, Tensor, Tensor]:
        """The GRU over ``x: (T, E, L, input_dim)`` from ``params``' state (or zeros)."""
        t, e, length = x.shape[:3]
        h0 = (
            self.gru.initial_state(t * e, x.dtype, x.device)
            if params is None
            else params["hidden"].reshape(t * e, -1)
        )
        mean, log_std, h = self.gru(x.reshape(t * e, length, -1), h0)
        shape = (t, e, length, -1)
        return mean.reshape(shape), log_std.reshape(shape), h.reshape(t, e, -1)

    def adapt_policy(
        self, r: Rollouts, params: Params | None = None, training: bool = False, step: int = 0
    ) -> Params:
        """The hidden state ``(T, E, hidden)`` after the episodes ``r``, continuing ``params``'
        (the zero state when ``None``); detached."""
        with torch.no_grad():
            return {"hidden": self._run(trial_inputs(r), params)[2]}

    # ---- the outer update ------------------------------------------------------------------
    def _trial_advantages(self, rewards: Tensor, masks: Tensor, horizon: int) -> Tensor:
        """Advantages ``(T, E, L)`` of trials of ``L / horizon`` episodes: the trial's discounted
        return against the leave-one-out mean of the task's other copies, normalised per task
        over its running steps (:func:`~metamap.rl.normalize_advantages`, one episode a row)."""
        returns = torch.zeros_like(rewards)
        after = torch.zeros_like(rewards[..., 0])
        for t in reversed(range(rewards.shape[-1])):
            after = rewards[..., t] + self.gamma * after
            returns[..., t] = after
        copies = rewards.shape[1]
        if copies < 2:
            raise TaskShapeError("RL² needs at least 2 episodes per task (task.rollouts)")
        baseline = (returns.sum(1, keepdim=True) - returns) / (copies - 1)
        episodes = (*masks.shape[:-1], -1, horizon)  # one a row; per task, the same on any shard
        adv = normalize_advantages(
            ((returns - baseline) * masks).reshape(episodes), masks.reshape(episodes)
        )
        return adv.flatten(-2)

    def meta_update(
        self, support: Rollouts, query: Rollouts, reduce: Reduce | None = None
    ) -> MetaStep:
        """``epochs`` Adam steps on the clipped surrogate of the two-episode trial."""
        x = torch.cat([trial_inputs(support), trial_inputs(query)], 2)
        actions = torch.cat([support.actions, query.actions], 2)
        old = torch.cat([support.log_probs, query.log_probs], 2)
        masks = torch.cat([support.masks, query.masks], 2)
        rewards = torch.cat([support.rewards, query.rewards], 2)
        adv = self._trial_advantages(rewards, masks, support.rewards.shape[-1])
        params = list(self.model.parameters())
        for _ in range(self.epochs):
            with torch.enable_grad():
                mean, log_std, _ = self._run(x, None)
                ratio = torch.exp(gaussian_log_prob(mean, log_std, actions) - old)
                clipped = torch.clamp(ratio, 1 - self.clip, 1 + self.clip)
                surrogate = torch.minimum(ratio * adv, clipped * adv)
                loss = -masked_task_mean(surrogate, masks)
                grads = torch.autograd.grad(loss, params)
            adam_step(self, params, reduced_grads(grads, params, reduce), self.outer_lr)
        returns = query.returns.mean().detach()
        returns = returns if reduce is None else reduce(returns)
        return MetaStep(loss=-returns, metric=returns, grads={}, applied=True)


@register_learner
class RL2Section(PPOUpdate):
    """``learner: {name: rl2}`` — RL² (Duan et al. 2016) with a PPO outer update; needs
    ``model.name: gaussian_gru``."""

    name: Literal["rl2"] = "rl2"
    recurrent = True
    min_rollouts = 2  # each copy's baseline is the mean of its task's other copies

    def build(self, ctx: BuildContext) -> MetaLearner:
        model = cast(GaussianGRU, ctx.model())  # the run config checks it is recurrent
        return RL2(model, self.outer_lr, self.epochs, self.clip, self.gamma)
