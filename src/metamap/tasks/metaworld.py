"""Meta-World ML1 and ML10 as a task family (an optional extra: ``pip install
"metamap[metaworld]"``).

Yu et al., "Meta-World: A Benchmark and Evaluation for Multi-Task and Meta Reinforcement
Learning", CoRL 2019; the v3 environments of ``metaworld`` 3.x (Farama). A Sawyer arm observes 39
numbers and acts with 4 in ``[-1, 1]``; an episode lasts at most 500 steps.

* **ML1** (``benchmark: ML1``, ``env_name: reach-v3``): one manipulation task whose goal and
  object positions vary; 50 training and 50 test variations.
* **ML10** (``benchmark: ML10``): 10 training tasks (each with its variations) and 5 held-out
  test tasks.

A task's parameters ``(P = 2)`` are ``(split, index)``: 0 for Meta-World's training tasks or 1
for its test tasks, and the index into that list. Training draws training tasks
(:meth:`MetaWorldFamily.sample_goals`), validation draws seeded training tasks
(``fixed_goals(split="val")``: Meta-World has no validation set, and choosing a checkpoint on the
test tasks would leak them), and evaluation seeded test tasks (``split="test"``). Each task's
environment is built from its class and ``set_task`` (the benchmark's own, seeded with
``seed``), reset with seeds drawn from the task's own generator, and rewarded with Meta-World's
dense reward. An episode succeeds when Meta-World's ``success`` flag is raised at any of its
steps; evaluation reports the success rate beside the return.

``metaworld`` 3.1 pins ``mujoco==3.3.0``: install it in its own environment (``make
test-metaworld`` builds one and runs this adapter's tests there).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import cache
from typing import Any, Literal

import torch
from pydantic import NonNegativeInt, PositiveInt, model_validator
from torch import Tensor

from metamap.errors import ConfigError, TaskShapeError
from metamap.tasks.gym_envs import EnvPool, GymTaskEnvs, reset_seeds
from metamap.tasks.navigation import GoalSplit, fixed_draws
from metamap.tasks.registry import EnvironmentTaskSection, register_task

__all__ = ["MAX_PATH_LENGTH", "MetaWorldFamily", "MetaWorldTask", "check_horizon", "load_benchmark"]

OBS_DIM, ACT_DIM = 39, 4
MAX_PATH_LENGTH = 500
"""Meta-World's episode length: its environments refuse to step further."""
TRAIN, TEST = 0, 1


def check_horizon(horizon: int) -> None:
    """A :class:`ConfigError` unless ``1 <= horizon <= 500``, Meta-World's episode length."""
    if not 1 <= horizon <= MAX_PATH_LENGTH:
        raise ConfigError(
            f"task.horizon must be at least 1 and at most {MAX_PATH_LENGTH} steps (Meta-World's "
            f"episode length), got {horizon}"
        )


@cache
def load_benchmark(benchmark: str, env_name: str | None, seed: int) -> Any:
    """``metaworld.ML1(env_name, seed=seed)`` or ``metaworld.ML10(seed=seed)``, built once per
    process; a :class:`ConfigError` that names what to install or which names exist."""
    try:
        import metaworld
    except ImportError as e:
        raise ConfigError(
            "task.family: metaworld needs Meta-World: pip install 'metamap[metaworld]' "
            "(metaworld>=3.1 and packaging; it pins mujoco==3.3.0, so give it its own "
            f"environment, as `make test-metaworld` does); {e}"
        ) from None
    if benchmark == "ML10":
        return metaworld.ML10(seed=seed)
    names = sorted(metaworld.ML1.ENV_NAMES)
    if env_name not in names:
        raise ConfigError(f"unknown Meta-World ML1 env_name {env_name!r}; choose one of {names}")
    return metaworld.ML1(env_name, seed=seed)


class MetaWorldFamily:
    """The tasks of one Meta-World benchmark, split into its training and test tasks."""

    obs_dim, act_dim = OBS_DIM, ACT_DIM

    def __init__(
        self,
        benchmark: Literal["ML1", "ML10"] = "ML1",
        env_name: str | None = "reach-v3",
        horizon: int = MAX_PATH_LENGTH,
        seed: int = 0,
    ) -> None:
        check_horizon(horizon)
        self.benchmark, self.env_name, self.horizon = benchmark, env_name, int(horizon)
        bench = load_benchmark(benchmark, env_name if benchmark == "ML1" else None, seed)
        self.classes = {**bench.train_classes, **bench.test_classes}
        self.tasks = (list(bench.train_tasks), list(bench.test_tasks))
        self.pool = EnvPool(lambda name: self.classes[name]())
        """The family's environments, one kind per Meta-World class, lent to each batch."""

    def _draw(self, split: int) -> Callable[[int, torch.Generator, torch.dtype], Tensor]:
        def sample(n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
            index = torch.randint(len(self.tasks[split]), (n,), generator=generator)
            return torch.stack([torch.full((n,), split), index], 1).to(dtype)

        return sample

    def sample_goals(
        self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """``n`` training tasks ``(n, 2)``, drawn uniformly with replacement."""
        return self._draw(TRAIN)(n, generator, dtype)

    def fixed_goals(
        self,
        n: int = 40,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        split: GoalSplit = "test",
    ) -> Tensor:
        """``n`` seeded test tasks, or training tasks for validation (``split="val"``)."""
        return fixed_draws(self._draw(TEST if split == "test" else TRAIN), n, seed, dtype)

    def task(self, goal: Tensor) -> Any:
        """The Meta-World task of one parameter row ``(split, index)``."""
        split, index = (int(v) for v in goal.tolist())
        if split not in (TRAIN, TEST) or not 0 <= index < len(self.tasks[split]):
            raise TaskShapeError(f"no Meta-World task ({split}, {index}) in this benchmark")
        return self.tasks[split][index]

    def envs(self, goals: Tensor, envs_per_task: int) -> GymTaskEnvs:
        """One environment per task and episode, each ``set_task`` to its task: lent by the
        family's :class:`~metamap.tasks.gym_envs.EnvPool`, one kind per Meta-World class."""
        if goals.dim() != 2 or goals.shape[1] != 2:
            raise TaskShapeError(f"goals must have shape (tasks, 2), got {tuple(goals.shape)}")
        tasks = [self.task(row) for row in goals.cpu()]
        needed = Counter(task.env_name for task in tasks)
        lent = {k: iter(self.pool.lend(n * envs_per_task, k)) for k, n in needed.items()}
        envs = []
        for task in tasks:
            for _ in range(envs_per_task):
                env = next(lent[task.env_name])
                env.set_task(task)
                envs.append(env)

        def reward(task: int, info: dict[str, Any], action: Any, gym_reward: float) -> float:
            return gym_reward

        return GymTaskEnvs(
            envs, envs_per_task, self.horizon, OBS_DIM, ACT_DIM,
            reset_seeds(goals, envs_per_task), reward, goals.dtype,
            success_key="success", pool=self.pool,
        )  # fmt: skip


@register_task
class MetaWorldTask(EnvironmentTaskSection):
    """``task: {family: metaworld, benchmark: ML1, env_name: reach-v3}`` or ``{family:
    metaworld, benchmark: ML10}``."""

    family: Literal["metaworld"] = "metaworld"
    benchmark: Literal["ML1", "ML10"] = "ML1"
    env_name: str | None = None
    """The ML1 task (e.g. ``reach-v3``, ``push-v3``, ``pick-place-v3``); ML10 takes none."""
    horizon: PositiveInt = MAX_PATH_LENGTH
    benchmark_seed: NonNegativeInt = 0
    """Meta-World's own seed for its task variations."""

    @model_validator(mode="after")
    def _named(self) -> MetaWorldTask:
        if self.benchmark == "ML1" and not self.env_name:
            raise ValueError("benchmark ML1 needs task.env_name, e.g. reach-v3")
        if self.benchmark == "ML10" and self.env_name:
            raise ValueError(
                f"benchmark ML10 has its own 10 training and 5 test tasks; drop task.env_name "
                f"({self.env_name!r}), or use benchmark: ML1 for one task"
            )
        check_horizon(self.horizon)
        return self

    def in_features(self) -> int:
        return OBS_DIM

    def out_features(self) -> int:
        return ACT_DIM

    def family_of_tasks(self) -> MetaWorldFamily:
        return MetaWorldFamily(self.benchmark, self.env_name, self.horizon, self.benchmark_seed)

    def describe(self) -> str:
        which = f"ML1 {self.env_name}" if self.benchmark == "ML1" else "ML10"
        return (
            f"Meta-World {which}, horizon {self.horizon}, {self.rollouts} episodes per task "
            "and step"
        )
