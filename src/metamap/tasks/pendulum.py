"""Pendulum swing-up with varied physics: a classic-control task family, as batched torch code.

Gymnasium's ``Pendulum-v1`` dynamics (the same equations, constants and reward), where each task
is a pendulum of its own mass ``m`` and length ``l``, drawn uniformly from ``[0.5, 1.5]`` each
(``goals: (T, 2)``, the task parameters). A torque ``u ∈ [-2, 2]`` drives

    θ̇ ← clip(θ̇ + (3g / (2l) · sin θ + 3 / (m l²) · u) · dt, -8, 8),    θ ← θ + θ̇ · dt,

with ``g = 10``, ``dt = 0.05``; the reward is ``-(θ̃² + 0.1 θ̇² + 0.001 u²)`` with ``θ̃`` the angle
from upright in ``[-π, π)``; the observation is ``(cos θ, sin θ, θ̇)``. Episodes never end before
the horizon (200 steps, Gymnasium's). Each episode starts at an angle in ``[-π, π]`` and a
velocity in ``[-1, 1]`` drawn from a generator seeded by the tasks' parameters, so the same tasks
start the same way (and a resumed run replays them). A fast family for tests and for trying a
learner: a batch of 400 pendulums steps as one tensor program, like 2D navigation.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import PositiveInt
from torch import Tensor

from metamap.errors import TaskShapeError
from metamap.tasks.navigation import EnvStep, SeededGoals, goal_generators
from metamap.tasks.registry import EnvironmentTaskSection, register_task

__all__ = ["PendulumEnvs", "PendulumFamily", "PendulumTask"]

G, DT, MAX_SPEED, MAX_TORQUE = 10.0, 0.05, 8.0, 2.0


class PendulumEnvs:
    """``T`` pendulums (``goals: (T, 2)``: mass and length) × ``envs_per_task`` episodes."""

    obs_dim = 3
    act_dim = 1

    def __init__(self, goals: Tensor, envs_per_task: int, horizon: int = 200) -> None:
        if goals.dim() != 2 or goals.shape[1] != 2 or not bool((goals > 0).all()):
            raise TaskShapeError(
                f"goals must be positive (mass, length) pairs of shape (tasks, 2), got "
                f"{tuple(goals.shape)}"
            )
        self.goals, self.horizon = goals, int(horizon)
        self.num_tasks, self.envs_per_task = int(goals.shape[0]), int(envs_per_task)
        # random starts from each goal: the same goal gives the same episodes, whatever batch or
        # share of a batch holds it (a resumed run, processes splitting a batch)
        starts = []
        n, dtype, device = self.envs_per_task, goals.dtype, goals.device  # the generators'
        for g in goal_generators(goals):
            angle = (2 * torch.rand(n, generator=g, dtype=dtype, device=device) - 1) * math.pi
            speed = 2 * torch.rand(n, generator=g, dtype=dtype, device=device) - 1
            starts.append(torch.stack([angle, speed]))
        self.start_angle, self.start_speed = torch.stack(starts, 1).unbind()
        self.angle, self.speed = self.start_angle.clone(), self.start_speed.clone()
        self.t = self.horizon

    def _obs(self) -> Tensor:
        return torch.stack([self.angle.cos(), self.angle.sin(), self.speed], -1)

    def reset(self) -> Tensor:
        self.angle, self.speed = self.start_angle.clone(), self.start_speed.clone()
        self.t = 0
        return self._obs()

    def step(self, actions: Tensor) -> EnvStep:
        want = (self.num_tasks, self.envs_per_task, 1)
        if tuple(actions.shape) != want:
            raise TaskShapeError(f"actions must have shape {want}, got {tuple(actions.shape)}")
        if self.t >= self.horizon:
            raise RuntimeError("no episode is running; call reset() first")
        u = actions[..., 0].to(self.angle.dtype).clamp(-MAX_TORQUE, MAX_TORQUE)
        mass, length = self.goals[:, None, 0], self.goals[:, None, 1]
        upright = torch.remainder(self.angle + math.pi, 2 * math.pi) - math.pi
        reward = -(upright**2 + 0.1 * self.speed**2 + 0.001 * u**2)
        accel = 3 * G / (2 * length) * self.angle.sin() + 3.0 / (mass * length**2) * u
        self.speed = (self.speed + accel * DT).clamp(-MAX_SPEED, MAX_SPEED)
        self.angle = self.angle + self.speed * DT
        self.t += 1
        running = torch.ones_like(reward)
        done = torch.full(reward.shape, self.t >= self.horizon, dtype=torch.bool, device=u.device)
        return EnvStep(self._obs(), reward, running, done)


class PendulumFamily(SeededGoals):
    """Pendulums of mass and length uniform in ``[low, high]``."""

    obs_dim, act_dim = PendulumEnvs.obs_dim, PendulumEnvs.act_dim

    def __init__(self, horizon: int = 200, low: float = 0.5, high: float = 1.5) -> None:
        if not 0 < low < high:
            raise ValueError(f"the parameter range must satisfy 0 < low < high, got {low}, {high}")
        self.horizon, self.low, self.high = int(horizon), float(low), float(high)

    def sample_goals(
        self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        u = torch.rand((n, 2), generator=generator, dtype=dtype, device=generator.device)
        return self.low + (self.high - self.low) * u

    def envs(self, goals: Tensor, envs_per_task: int) -> PendulumEnvs:
        return PendulumEnvs(goals, envs_per_task, self.horizon)


@register_task
class PendulumTask(EnvironmentTaskSection):
    """``task: {family: pendulum}`` — Pendulum swing-up, one task per (mass, length)."""

    family: Literal["pendulum"] = "pendulum"
    horizon: PositiveInt = 200

    def in_features(self) -> int:
        return PendulumEnvs.obs_dim

    def out_features(self) -> int:
        return PendulumEnvs.act_dim

    def family_of_tasks(self) -> PendulumFamily:
        return PendulumFamily(self.horizon)

    def describe(self) -> str:
        return (
            f"Pendulum swing-up, mass and length in [0.5, 1.5], horizon {self.horizon}, "
            f"{self.rollouts} episodes per task and step"
        )
