"""MuJoCo locomotion task families on Gymnasium (MAML §5.3): HalfCheetah direction and velocity,
Ant direction.

Finn, Abbeel & Levine, ICML 2017, §5.3 and App. A.2: one task per goal, horizon 200.

* ``halfcheetah_vel`` — a goal velocity ``v*`` uniform in [0, 2]; reward ``-|v_x - v*|`` minus a
  control cost ``0.05‖a‖²``.
* ``halfcheetah_dir`` — a direction ``d ∈ {-1, +1}`` (forward or backward), each with
  probability 1/2; reward ``d · v_x - 0.05‖a‖²``.
* ``ant_dir`` — the same for Ant, plus Gymnasium's healthy bonus (an episode ends when the Ant
  falls).

The environments are Gymnasium's ``HalfCheetah-v5`` / ``Ant-v5`` (MuJoCo 3 or later), one per task
and episode, stepped in a plain Python loop (:class:`~metamap.tasks.gym_envs.GymTaskEnvs`, as
``SyncVectorEnv`` does; on these CPUs it beats ``AsyncVectorEnv``); the reward is recomputed from
Gymnasium's ``x_velocity`` and the task's goal. Each environment is reset with a seed drawn from
the goals' generator stream (``reset_seeds``), so a run and its resume see the same episodes.
Gymnasium and MuJoCo are an optional extra (``pip install "metamap[mujoco]"``); building a family
without them raises a :class:`~metamap.errors.ConfigError` that says so."""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import PositiveInt
from torch import Tensor

from metamap.errors import ConfigError, TaskShapeError
from metamap.tasks.gym_envs import EnvPool, GymTaskEnvs, reset_seeds
from metamap.tasks.navigation import SeededGoals
from metamap.tasks.registry import EnvironmentTaskSection, register_task

__all__ = [
    "AntDirTask",
    "HalfCheetahDirTask",
    "HalfCheetahVelTask",
    "LocomotionEnvs",
    "LocomotionFamily",
    "LocomotionTask",
    "make_gym_env",
]

FAMILIES: dict[str, tuple[str, str, int, int]] = {
    # name: (Gymnasium id, goal kind, observation size, action size)
    "halfcheetah_vel": ("HalfCheetah-v5", "velocity", 17, 6),
    "halfcheetah_dir": ("HalfCheetah-v5", "direction", 17, 6),
    "ant_dir": ("Ant-v5", "direction", 105, 8),
}
CONTROL_COST = 0.05


def make_gym_env(env_id: str) -> Any:
    """``gymnasium.make(env_id)``, or a :class:`ConfigError` naming what to install."""
    try:
        import gymnasium as gym
    except ImportError:
        raise ConfigError(
            f"{env_id} needs Gymnasium and MuJoCo: pip install 'metamap[mujoco]' "
            "(gymnasium>=1.0, mujoco>=3)"
        ) from None
    if env_id not in gym.registry:
        raise ConfigError(f"unknown Gymnasium environment id {env_id!r}")
    try:
        return gym.make(env_id)
    except (ImportError, gym.error.DependencyNotInstalled) as e:
        raise ConfigError(
            f"{env_id} needs MuJoCo: pip install 'metamap[mujoco]' (mujoco>=3); {e}"
        ) from None


class LocomotionEnvs(GymTaskEnvs):
    """``T`` tasks × ``E`` episodes of a Gymnasium MuJoCo body, as tensors ``(T, E, ...)``; the
    reward is the task's (:meth:`LocomotionFamily.reward`)."""

    def __init__(
        self, family: LocomotionFamily, goals: Tensor, envs_per_task: int, reset_seeds: Tensor
    ) -> None:
        if goals.dim() != 2 or goals.shape[1] != 1:
            raise TaskShapeError(f"goals must have shape (tasks, 1), got {tuple(goals.shape)}")
        self.family, self.goals = family, goals
        targets = [float(g) for g in goals[:, 0]]

        def reward(task: int, info: dict[str, Any], action: Any, gym_reward: float) -> float:
            return family.reward(targets[task], info, action, gym_reward)

        n = int(goals.shape[0]) * int(envs_per_task)
        super().__init__(
            family.pool.lend(n), envs_per_task, family.horizon, family.obs_dim, family.act_dim,
            reset_seeds, reward, goals.dtype, pool=family.pool,
        )  # fmt: skip


class LocomotionFamily(SeededGoals):
    """Goals of one of :data:`FAMILIES` and their environments."""

    def __init__(self, name: str, horizon: int = 200) -> None:
        if name not in FAMILIES:
            raise ConfigError(f"unknown locomotion family {name!r}; choose one of {list(FAMILIES)}")
        self.name, self.horizon = name, int(horizon)
        self.env_id, self.kind, self.obs_dim, self.act_dim = FAMILIES[name]
        self.pool = EnvPool(lambda _: make_gym_env(self.env_id))
        """The family's environments, lent to each batch (the goal is only in the reward)."""

    def sample_goals(
        self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """``n`` goals ``(n, 1)``; then one reset seed per goal's possible episode is drawn
        later from the same stream (:meth:`envs`)."""
        u = torch.rand((n, 1), generator=generator, dtype=dtype)
        if self.kind == "velocity":
            return 2.0 * u
        return torch.where(u < 0.5, -1.0, 1.0).to(dtype)

    def envs(self, goals: Tensor, envs_per_task: int) -> LocomotionEnvs:
        return LocomotionEnvs(self, goals, envs_per_task, reset_seeds(goals, envs_per_task))

    def reward(self, goal: float, info: dict[str, Any], action: Any, gym_reward: float) -> float:
        """The task's reward from Gymnasium's step ``info`` and the clipped ``action``."""
        v = float(info["x_velocity"])
        ctrl = CONTROL_COST * float((action**2).sum())
        healthy = float(info.get("reward_survive", 0.0))
        if self.kind == "velocity":
            return -abs(v - goal) - ctrl
        return goal * v - ctrl + healthy


class LocomotionTask(EnvironmentTaskSection):
    """MuJoCo locomotion goals (MAML §5.3): ``rollouts`` episodes of ``horizon`` steps per task
    and adaptation step; one registered section per family below."""

    family: str
    horizon: PositiveInt = 200

    def in_features(self) -> int:
        return FAMILIES[self.family][2]

    def out_features(self) -> int:
        return FAMILIES[self.family][3]

    def family_of_tasks(self) -> LocomotionFamily:
        return LocomotionFamily(self.family, self.horizon)

    def describe(self) -> str:
        env_id, kind = FAMILIES[self.family][:2]
        return (
            f"{env_id} {kind} goals, horizon {self.horizon}, {self.rollouts} episodes per task "
            "and step"
        )


@register_task
class HalfCheetahVelTask(LocomotionTask):
    """``task: {family: halfcheetah_vel}`` — goal velocities in [0, 2]."""

    family: Literal["halfcheetah_vel"] = "halfcheetah_vel"


@register_task
class HalfCheetahDirTask(LocomotionTask):
    """``task: {family: halfcheetah_dir}`` — forward or backward."""

    family: Literal["halfcheetah_dir"] = "halfcheetah_dir"


@register_task
class AntDirTask(LocomotionTask):
    """``task: {family: ant_dir}`` — forward or backward, for Ant."""

    family: Literal["ant_dir"] = "ant_dir"
