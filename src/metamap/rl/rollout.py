"""Seeded, batched rollouts of a Gaussian policy in ``T`` tasks × ``E`` copies of each.

In MAML's reinforcement learning (Finn, Abbeel & Levine, ICML 2017, §5.3, Algorithm 3) each task
``T_i`` gets ``K`` trajectories of the current policy ``f_θ`` (the inner step's data), and ``K``
more of the adapted policy ``f_θ'_i`` (the outer step's data); 2D navigation uses ``K = 20``
trajectories of ``H = 100`` steps. :func:`rollout` collects all of them for a batch of tasks in
``H`` batched policy evaluations: the policy sees ``(T·E, obs_dim)`` observations at once, so it
may be ``functional_call(policy, adapted, ...)`` with one parameter set for every task, or a
function that splits the rows by task (``(T, E, ...)`` reshaped) to use one set per task.

Everything comes back as ``(T, E, H, ...)`` tensors. ``masks`` is 1 where the episode was still
running at that step; where it is 0, rewards, actions and log-probabilities are 0 and the
observation is the episode's final one, so sums over steps need no other bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from metamap.errors import NonFiniteRolloutError
from metamap.models.policy import gaussian_log_prob, gaussian_sample

__all__ = ["FeedbackPolicy", "PolicyFn", "Rollouts", "VectorEnvs", "rollout"]

PolicyFn = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``obs (N, obs_dim) -> (mean (N, act_dim), log_std broadcastable to it)``."""


class FeedbackPolicy(Protocol):
    """A policy with memory (:class:`metamap.rl.RL2`'s): called like a :data:`PolicyFn` once a
    step, and told after each step what was done and got (``observe``), so that its next call
    can depend on them."""

    def __call__(self, obs: Tensor) -> tuple[Tensor, Tensor]: ...

    def observe(self, action: Tensor, reward: Tensor) -> None:
        """``action (N, act_dim)`` as :class:`Rollouts` record it (0 after the episode ended)
        and ``reward (N,)``."""
        ...


class VectorEnvs(Protocol):
    """``num_tasks × envs_per_task`` environments stepped as one tensor, for at most ``horizon``
    steps (e.g. :class:`metamap.tasks.navigation.NavigationEnvs`)."""

    num_tasks: int
    envs_per_task: int
    horizon: int
    obs_dim: int
    act_dim: int

    def reset(self) -> Tensor:
        """Start every episode; observations ``(T, E, obs_dim)``."""
        ...

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``actions (T, E, act_dim)`` → ``(observation (T, E, obs_dim), reward (T, E),
        mask (T, E): 1 where the episode was running, done (T, E) bool)``."""
        ...


@dataclass(frozen=True)
class Rollouts:
    """``E`` episodes of ``H`` steps in each of ``T`` tasks."""

    observations: Tensor
    """``(T, E, H, obs_dim)``: what the policy saw before each action."""
    actions: Tensor
    """``(T, E, H, act_dim)``: the sampled actions, before the environment clips them."""
    rewards: Tensor
    """``(T, E, H)``."""
    masks: Tensor
    """``(T, E, H)``, rewards' dtype: 1 where the episode was running, 0 after it ended."""
    log_probs: Tensor
    """``(T, E, H)``: ``log π(a_t | s_t)`` of the policy that acted (no gradient)."""
    successes: Tensor | None = None
    """``(T, E)``: 1 where the episode reached its goal, for environments that say so
    (``VectorEnvs`` with a ``success`` attribute, e.g. Meta-World's); else ``None``."""

    @property
    def returns(self) -> Tensor:
        """``(T, E)``: each episode's undiscounted return (MAML's reported score)."""
        return self.rewards.sum(-1)

    @property
    def lengths(self) -> Tensor:
        """``(T, E)``: how many steps each episode ran."""
        return self.masks.sum(-1)


@torch.no_grad()
def rollout(
    policy_fn: PolicyFn,
    envs: VectorEnvs,
    generator: torch.Generator,
    shard: tuple[int, int] | None = None,
) -> Rollouts:
    """Run one episode in every environment of ``envs``, sampling actions from
    ``N(mean, exp(log_std)²)`` with noise from ``generator`` (on the observations' device).

    ``shard = (first, total)``: ``envs`` hold tasks ``[first, first + T)`` of a batch of
    ``total``; each step draws the whole batch's noise and uses this share's rows, so processes
    that split a batch sample what one process would (and leave the generator where it would).

    Raises :class:`~metamap.errors.NonFiniteRolloutError` when the policy's outputs or the
    environments' observations or rewards are NaN or infinite."""
    tasks, copies, horizon = envs.num_tasks, envs.envs_per_task, envs.horizon
    first, total = (0, tasks) if shard is None else shard
    if not 0 <= first <= total - tasks:
        raise ValueError(f"shard {shard} cannot hold the {tasks} tasks of these environments")
    obs = envs.reset()
    if generator.device.type != obs.device.type:
        raise ValueError(
            f"the generator is on {generator.device} but the environments on {obs.device}; "
            f"use torch.Generator(device={str(obs.device)!r})"
        )
    steps: list[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = []
    observe = getattr(policy_fn, "observe", None)  # a FeedbackPolicy learns what it did
    for _ in range(horizon):
        mean, log_std = policy_fn(obs.reshape(tasks * copies, envs.obs_dim))
        want = (tasks * copies, envs.act_dim)
        if tuple(mean.shape) != want:
            raise ValueError(
                f"policy_fn must return a mean of shape (N, act_dim) = {want} for observations "
                f"of shape {(tasks * copies, envs.obs_dim)}, got {tuple(mean.shape)}"
            )
        if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(log_std).all())):
            raise NonFiniteRolloutError(
                "the policy gave NaN or infinite actions: it has diverged (lower the step sizes, "
                "e.g. learner.inner_lr or learner.max_kl); resume from the last checkpoint"
            )
        action = gaussian_sample(mean, log_std, generator, (first * copies, total * copies))
        log_prob = gaussian_log_prob(mean, log_std, action).reshape(tasks, copies)
        action = action.reshape(tasks, copies, envs.act_dim)
        next_obs, reward, mask, _ = envs.step(action)
        if not (bool(torch.isfinite(next_obs).all()) and bool(torch.isfinite(reward).all())):
            raise NonFiniteRolloutError(
                f"the environments returned NaN or infinite observations or rewards at step "
                f"{len(steps)} of the episode: check the task family's dynamics and parameters"
            )
        steps.append((obs, action * mask[..., None], reward, mask, log_prob * mask))
        if observe is not None:
            observe(steps[-1][1].reshape(want), reward.reshape(-1))
        obs = next_obs
    observations, actions, rewards, masks, log_probs = (
        torch.stack(s, 2) for s in zip(*steps, strict=True)
    )
    successes = getattr(envs, "success", None)  # for environments that report success
    return Rollouts(observations, actions, rewards, masks, log_probs, successes)
