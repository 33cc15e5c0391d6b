"""2D navigation (MAML §5.3): a point moves in the plane towards a hidden goal, one task per goal.

Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017, §5.3 and App. A.2. A task is a goal drawn uniformly from ``[-0.5, 0.5]²``; the agent
observes its position (starting at the origin), its action is a velocity clipped to
``[-0.1, 0.1]²``, its reward is the negative Euclidean distance to the goal after the move, and an
episode ends within 0.01 of the goal or after ``H = 100`` steps. (The paper's code, cbfinn/maml_rl,
tests ``|x - gx| < 0.01 and |y - gy| < 0.01``, a box; the paper's words, used here, say a radius.)

The paper's code also wraps the environment in rllab's ``normalize``: the policy acts in
``[-1, 1]²``, scaled to the velocity bounds (``a · 0.1``) and clipped. ``actions: normalized``
(``action_scale = 0.1``) does the same; ``actions: velocity`` (the default, as the paper's text
and pytorch-maml-rl have it) takes the velocity itself. A Gaussian policy that starts at σ = 1
explores the whole action box in the normalized space, but nearly always saturates at ``±0.1`` in
the raw one.

:class:`NavigationEnvs` steps ``T`` tasks × ``E`` copies of each at once, as tensors on the goals'
device and in their dtype: observations ``(T, E, 2)``, actions ``(T, E, 2)``, rewards ``(T, E)``.
A copy whose episode has ended stays where it is and gets reward 0; each step says which copies
were still running (``mask``), so that sums over ``(T, E, H)`` need no Python bookkeeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar, Literal, NamedTuple

import torch
from pydantic import PositiveInt, model_validator
from torch import Tensor

from metamap.errors import TaskShapeError
from metamap.tasks.distribution import make_generator
from metamap.tasks.registry import EnvironmentTaskSection, register_task

__all__ = [
    "EnvStep",
    "GoalSplit",
    "Navigation2D",
    "NavigationEnvs",
    "NavigationTask",
    "SeededGoals",
    "fixed_draws",
    "goal_generators",
]

GoalSplit = Literal["val", "test"]
"""Which fixed goals a family gives: validation goals (drawn from the training tasks where a
family has a finite set of them, as Meta-World does) or test goals."""

_BLOCK = 64
"""Fixed goals are drawn 64 at a time, so the first ``k`` of a seed do not depend on how many."""


def fixed_draws(
    sample: Callable[[int, torch.Generator, torch.dtype], Tensor],
    n: int,
    seed: int,
    dtype: torch.dtype,
) -> Tensor:
    """The first ``n`` of ``sample``'s draws from a generator seeded with ``seed``, drawn in
    blocks of 64: a family's fixed test goals, the first ``k`` the same whatever ``n`` is."""
    if n < 1:
        raise ValueError(f"the number of goals must be at least 1, got {n}")
    g = make_generator(seed)
    return torch.cat([sample(_BLOCK, g, dtype) for _ in range(-(-n // _BLOCK))])[:n]


class SeededGoals:
    """``fixed_goals`` for a family of continuous goals (its ``sample_goals`` drawn from a
    seeded generator): validation and test goals differ by their seeds alone."""

    def sample_goals(self, n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
        raise NotImplementedError

    def fixed_goals(
        self,
        n: int = 40,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        split: GoalSplit = "test",
    ) -> Tensor:
        """``n`` seeded goals (MAML evaluates on 40), the same for the same ``seed``; the first
        ``k`` are the same whatever ``n`` is."""
        return fixed_draws(self.sample_goals, n, seed, dtype)


def goal_generators(goals: Tensor) -> list[torch.Generator]:
    """One generator per goal row of ``goals: (T, P)``, seeded by that goal's values (on its
    device): the random starts of its environments, the same for the same goal whatever batch,
    or share of a batch, holds it, so a resumed run and processes splitting a batch replay the
    same episodes."""
    out = []
    for row in goals:
        key = int(torch.round(row.double().sum() * 1e6).item()) % (2**31)
        out.append(torch.Generator(device=goals.device).manual_seed(key + 1))
    return out


class EnvStep(NamedTuple):
    """What one batched step returns; every field has leading shape ``(T, E)``."""

    observation: Tensor
    """``(T, E, obs_dim)``: the positions after the step."""
    reward: Tensor
    """``(T, E)``: ``-‖pos - goal‖₂`` for copies that were running, 0 for the others."""
    mask: Tensor
    """``(T, E)`` in the reward's dtype: 1 where the copy was running at this step, else 0."""
    done: Tensor
    """``(T, E)`` bool: the copy's episode has ended (goal reached or horizon hit)."""


class NavigationEnvs:
    """``T`` navigation tasks (one goal each) × ``envs_per_task`` copies, stepped as one tensor.

    ``goals: (T, 2)`` floating point; positions, rewards and masks take their dtype and device.
    Call :meth:`reset`, then :meth:`step` at most ``horizon`` times.
    """

    obs_dim = 2
    act_dim = 2

    def __init__(
        self,
        goals: Tensor,
        envs_per_task: int,
        horizon: int = 100,
        max_speed: float = 0.1,
        success_radius: float = 0.01,
        action_scale: float = 1.0,
    ) -> None:
        if not isinstance(goals, Tensor) or goals.dim() != 2 or goals.shape[1] != 2:
            shape = tuple(goals.shape) if isinstance(goals, Tensor) else type(goals).__name__
            raise TaskShapeError(
                f"goals must be a tensor of shape (tasks, 2), got {shape}; "
                "pass Navigation2D.sample_goals(n, generator) or a stack of (x, y) goals"
            )
        if goals.shape[0] < 1 or not goals.is_floating_point():
            raise TaskShapeError(
                f"goals must hold at least one floating-point goal, got shape "
                f"{tuple(goals.shape)} of {goals.dtype}"
            )
        if not bool(torch.isfinite(goals).all()):
            raise ValueError("goals hold NaN or infinite values; draw them from sample_goals")
        if envs_per_task < 1:
            raise ValueError(f"envs_per_task must be at least 1, got {envs_per_task}")
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 step, got {horizon} (MAML uses 100)")
        if not (max_speed > 0 and success_radius >= 0 and action_scale > 0):
            raise ValueError(
                f"max_speed and action_scale must be positive and success_radius non-negative, "
                f"got {max_speed}, {action_scale} and {success_radius} (MAML: 0.1, 1 and 0.01)"
            )
        self.goals = goals
        self.num_tasks = int(goals.shape[0])
        self.envs_per_task = int(envs_per_task)
        self.horizon = int(horizon)
        self.max_speed = float(max_speed)
        self.success_radius = float(success_radius)
        self.action_scale = float(action_scale)
        shape = (self.num_tasks, self.envs_per_task)
        self.position = goals.new_zeros((*shape, 2))
        self.alive = torch.zeros(shape, dtype=torch.bool, device=goals.device)
        self.reached = torch.zeros_like(self.alive)
        """``(T, E)`` bool: the copy's episode ended at its goal (not at the horizon)."""
        self.t = self.horizon  # no episode running until reset()

    def reset(self) -> Tensor:
        """Start every copy at the origin; returns the observations ``(T, E, 2)``."""
        self.position.zero_()
        self.alive.fill_(True)
        self.reached.fill_(False)
        self.t = 0
        return self.position.clone()

    def step(self, actions: Tensor) -> EnvStep:
        """Move every running copy by ``actions: (T, E, 2)`` times ``action_scale``, clipped to
        ``±max_speed``."""
        want = (self.num_tasks, self.envs_per_task, self.act_dim)
        if not isinstance(actions, Tensor) or tuple(actions.shape) != want:
            got = tuple(actions.shape) if isinstance(actions, Tensor) else type(actions).__name__
            raise TaskShapeError(
                f"actions must have shape (tasks, envs_per_task, 2) = {want}, got {got}; "
                "reshape the policy's (tasks * envs_per_task, 2) output"
            )
        if not bool(torch.isfinite(actions).all()):
            raise ValueError(
                "actions hold NaN or infinite values: the policy has diverged "
                "(lower the step sizes, or check its parameters for NaN)"
            )
        if self.t >= self.horizon:
            raise RuntimeError(
                f"no episode is running (none was started, or all ended at the horizon of "
                f"{self.horizon} steps); call reset() first"
            )
        running = self.alive
        velocity = (actions.to(self.position.dtype) * self.action_scale).clamp(
            -self.max_speed, self.max_speed
        )
        self.position = torch.where(running[..., None], self.position + velocity, self.position)
        distance = torch.linalg.vector_norm(self.position - self.goals[:, None, :], dim=-1)
        reward = torch.where(running, -distance, torch.zeros_like(distance))
        arrived = running & (distance < self.success_radius)
        self.t += 1
        self.reached = self.reached | arrived
        self.alive = running & ~arrived & (self.t < self.horizon)
        return EnvStep(self.position.clone(), reward, running.to(reward.dtype), ~self.alive)


class Navigation2D(SeededGoals):
    """The task family: goals uniform in ``[low, high]²`` (MAML: ``[-0.5, 0.5]²``, ``H = 100``)."""

    def __init__(
        self, horizon: int = 100, low: float = -0.5, high: float = 0.5, action_scale: float = 1.0
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be at least 1 step, got {horizon} (MAML uses 100)")
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"the goal range must be finite with low < high, got [{low}, {high}]")
        if not action_scale > 0:
            raise ValueError(f"action_scale must be positive, got {action_scale}")
        self.horizon = int(horizon)
        self.low = float(low)
        self.high = float(high)
        self.action_scale = float(action_scale)

    def sample_goals(
        self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """``n`` goals ``(n, 2)``, uniform in the square, all randomness from ``generator``."""
        if n < 1:
            raise ValueError(f"the number of goals must be at least 1, got {n}")
        u = torch.rand((n, 2), generator=generator, dtype=dtype, device=generator.device)
        return self.low + (self.high - self.low) * u

    def envs(self, goals: Tensor, envs_per_task: int) -> NavigationEnvs:
        """The vectorised environments of ``goals: (T, 2)`` with this family's horizon."""
        return NavigationEnvs(goals, envs_per_task, self.horizon, action_scale=self.action_scale)


@register_task
class NavigationTask(EnvironmentTaskSection):
    """``task: {family: navigation}`` — 2D navigation (MAML §5.3): one task per goal; each
    task's support and query data are ``rollouts`` episodes of ``horizon`` steps."""

    family: Literal["navigation"] = "navigation"
    planar: ClassVar[bool] = True
    horizon: PositiveInt = 100
    low: float = -0.5
    high: float = 0.5
    actions: Literal["velocity", "normalized"] = "velocity"
    """``velocity``: the policy's action is the velocity (clipped to ±0.1); ``normalized``: it
    acts in ``[-1, 1]²``, scaled by 0.1 and clipped, as rllab's ``normalize`` wrapper in the
    paper's code (cbfinn/maml_rl) does."""

    @model_validator(mode="after")
    def _range(self) -> NavigationTask:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(
                f"task.low and task.high must be finite with low < high, got {self.low} and "
                f"{self.high} (MAML: -0.5 and 0.5)"
            )
        return self

    def in_features(self) -> int:
        return NavigationEnvs.obs_dim

    def out_features(self) -> int:
        return NavigationEnvs.act_dim

    def family_of_tasks(self) -> Navigation2D:
        """The task distribution: goals to sample and fix, and their environments."""
        scale = 0.1 if self.actions == "normalized" else 1.0  # NavigationEnvs' max_speed
        return Navigation2D(self.horizon, self.low, self.high, scale)

    def describe(self) -> str:
        return (
            f"2D navigation, goals in [{self.low:g}, {self.high:g}]², horizon {self.horizon}, "
            f"{self.rollouts} episodes per task and step"
            + (", actions normalized to [-1, 1]" if self.actions == "normalized" else "")
        )
