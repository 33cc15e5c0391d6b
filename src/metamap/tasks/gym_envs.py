"""Gymnasium environments as a batch of tasks: ``T`` tasks × ``E`` copies of each, one Python
environment per copy, stepped in a plain loop and returned as tensors ``(T, E, ...)``.

The loop is what ``gymnasium.vector.SyncVectorEnv`` does; on 2 cores it beats
``AsyncVectorEnv``, whose pipes cost more than the simulation (measured in
``shared/notes``). Observations and rewards are gathered into NumPy buffers and handed to torch
once a step. A copy whose episode has ended (terminated, truncated, or at ``horizon``) is not
stepped again; it keeps its last observation and gets reward 0, and ``mask`` says which copies
were running, as :class:`metamap.tasks.navigation.NavigationEnvs` does. Each copy is reset with
its own seed (``reset_seeds``), so the same task gives the same episodes in every batch.

Used by the MuJoCo locomotion families (:mod:`metamap.tasks.locomotion`) and the Meta-World
adapter (:mod:`metamap.tasks.metaworld`); each gives the environments and the reward, and
lends the same environments to every batch (:class:`EnvPool`), configured for its tasks,
instead of making new ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metamap.errors import TaskShapeError
from metamap.tasks.navigation import EnvStep, goal_generators

__all__ = ["EnvPool", "GymTaskEnvs", "RewardFn", "reset_seeds"]

RewardFn = Callable[[int, dict[str, Any], Any, float], float]
"""``(task index, Gymnasium's step info, the clipped action, Gymnasium's reward) -> reward``."""


def reset_seeds(goals: Tensor, envs_per_task: int) -> Tensor:
    """One reset seed per copy ``(T·E,)``, task-major, drawn from each goal's own generator
    (:func:`~metamap.tasks.navigation.goal_generators`): the same goal gives the same episodes,
    whatever batch or share of a batch holds it (a resumed run, processes splitting a batch)."""
    return torch.cat([
        torch.randint(2**31 - 1, (envs_per_task,), generator=g)
        for g in goal_generators(goals.cpu())
    ])  # fmt: skip


class EnvPool:
    """Environments made once and lent to one batch of tasks at a time.

    Making a MuJoCo environment parses and compiles its XML model (and MuJoCo 3.3+ prints a
    deprecation line for HalfCheetah's ``settotalmass`` each time); a HalfCheetah
    meta-iteration made 800 of them. A batch configures each lent environment for its task
    and resets it from its own seed before its episodes, so a lent environment gives the same
    episodes as a new one (tested bitwise). ``make(kind)`` builds one environment of a kind
    (e.g. a Meta-World task's class); :meth:`lend` keeps each kind apart. The batch that reset
    them last holds them all (``holder``): one that steps them after another batch's reset is
    refused rather than silently stepping the other's episodes.
    """

    def __init__(self, make: Callable[[str], Any]) -> None:
        self.make = make
        self.envs: dict[str, list[Any]] = {}
        self.holder: object | None = None

    def lend(self, n: int, kind: str = "") -> list[Any]:
        """``n`` environments of ``kind``, made on first need and kept for later batches."""
        envs = self.envs.setdefault(kind, [])
        while len(envs) < n:
            envs.append(self.make(kind))
        return envs[:n]

    @property
    def made(self) -> int:
        """How many environments the pool has made."""
        return sum(len(v) for v in self.envs.values())


class GymTaskEnvs:
    """``envs``: ``T·E`` Gymnasium environments, task-major (copy ``e`` of task ``t`` at
    ``t·E + e``), already configured for their task; ``reset_seeds``: one seed per copy.

    Actions ``(T, E, act_dim)`` are clipped to ``[-1, 1]`` (the action box of the MuJoCo bodies
    and of Meta-World's arm) and passed as float64. ``pool``: the :class:`EnvPool` that lent
    ``envs``, claimed at each :meth:`reset`.
    """

    def __init__(
        self,
        envs: Sequence[Any],
        envs_per_task: int,
        horizon: int,
        obs_dim: int,
        act_dim: int,
        reset_seeds: Tensor,
        reward: RewardFn,
        dtype: torch.dtype = torch.float32,
        success_key: str | None = None,
        pool: EnvPool | None = None,
    ) -> None:
        if envs_per_task < 1 or len(envs) % envs_per_task:
            raise ValueError(
                f"{len(envs)} environments cannot be split into tasks of {envs_per_task} copies"
            )
        n = len(envs)
        if reset_seeds.numel() < n:
            raise ValueError(f"{n} environments need {n} reset seeds, got {reset_seeds.numel()}")
        self.envs = list(envs)
        self.num_tasks, self.envs_per_task = n // envs_per_task, int(envs_per_task)
        self.horizon, self.obs_dim, self.act_dim = int(horizon), int(obs_dim), int(act_dim)
        self.seeds = [int(s) for s in reset_seeds.reshape(-1)[:n]]
        self.reward_of = reward
        self.dtype = dtype
        self._obs = np.zeros((n, self.obs_dim))
        self._alive = np.zeros(n, dtype=bool)
        self.success_key = success_key
        self._succeeded = np.zeros(n, dtype=bool)
        self.t = self.horizon  # no episode running until reset()
        self.pool = pool

    @property
    def success(self) -> Tensor | None:
        """``(T, E)`` in the observations' dtype: 1 where the episode reached its goal at some
        step (Gymnasium's ``info[success_key]``, e.g. Meta-World's ``success``); ``None`` when
        the environments report no success."""
        if self.success_key is None:
            return None
        return self._shaped(self._succeeded.astype(np.float64)).squeeze(-1)

    def _shaped(self, a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).to(self.dtype).reshape(self.num_tasks, self.envs_per_task, -1)

    def reset(self) -> Tensor:
        """Start every copy from its seed; observations ``(T, E, obs_dim)``."""
        if self.pool is not None:
            self.pool.holder = self
        for i, (env, seed) in enumerate(zip(self.envs, self.seeds, strict=True)):
            self._obs[i] = env.reset(seed=seed)[0]
        self._alive[:] = True
        self._succeeded[:] = False
        self.t = 0
        return self._shaped(self._obs)

    def step(self, actions: Tensor) -> EnvStep:
        want = (self.num_tasks, self.envs_per_task, self.act_dim)
        if tuple(actions.shape) != want:
            raise TaskShapeError(f"actions must have shape {want}, got {tuple(actions.shape)}")
        if self.t >= self.horizon:
            raise RuntimeError("no episode is running; call reset() first")
        if self.pool is not None and self.pool.holder is not self:
            raise RuntimeError(
                "another batch of tasks has reset these environments (they are lent from one "
                "EnvPool) since this batch's reset(); finish one batch's episodes before "
                "starting another's, or reset() this batch again"
            )
        running = self._alive.copy()
        reward = np.zeros(len(self.envs))
        flat = actions.detach().reshape(-1, self.act_dim).clamp(-1.0, 1.0).double().numpy()
        for i in np.flatnonzero(running):
            o, r, terminated, truncated, info = self.envs[i].step(flat[i])
            self._obs[i] = o
            reward[i] = self.reward_of(int(i) // self.envs_per_task, info, flat[i], float(r))
            if self.success_key is not None and float(info.get(self.success_key, 0.0)) >= 1.0:
                self._succeeded[i] = True
            if terminated or truncated:
                self._alive[i] = False
        self.t += 1
        if self.t >= self.horizon:
            self._alive[:] = False
        shape = (self.num_tasks, self.envs_per_task)
        r = torch.from_numpy(reward).to(self.dtype).reshape(shape)
        mask = torch.from_numpy(running).to(self.dtype).reshape(shape)
        done = torch.from_numpy(~self._alive).reshape(shape)
        return EnvStep(self._shaped(self._obs), r, mask, done)
