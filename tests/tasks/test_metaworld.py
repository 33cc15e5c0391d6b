"""The Meta-World adapter (:mod:`metamap.tasks.metaworld`).

Two halves. Without ``metaworld`` installed (the main environment: Meta-World pins another
MuJoCo), a small stand-in module with Meta-World's interface (``ML1`` / ``ML10``, their task
lists and classes, ``set_task``, 500-step truncation) checks the adapter's own logic: which tasks
training, validation and test draw, that every copy is set to its task and reset with its seed,
the rewards, truncation, and the messages for bad configs. With ``metaworld`` installed (``make
test-metaworld``), the same adapter runs the real environments: reproducible rollouts, and one
MAML-TRPO meta-iteration on ML1 reach.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch

from metamap.errors import ConfigError
from metamap.models import GaussianMLP
from metamap.rl import rollout
from metamap.tasks.metaworld import MetaWorldFamily, MetaWorldTask, load_benchmark
from metamap.train import Trainer, build_problem, load_config
from metamap.train.build import build_run_learner

REAL = importlib.util.find_spec("metaworld") is not None
CONFIGS = Path(__file__).parents[2] / "configs" / "rl"


class FakeTask(NamedTuple):
    env_name: str
    data: int  # the variation's number (Meta-World: pickled positions)


class FakeEnv:
    """Reward = the variation's number + the first action; observation: (variation, t, ...)."""

    max_path_length = 500

    def __init__(self) -> None:
        self.task: FakeTask | None = None
        self.seed: int | None = None

    def set_task(self, task: FakeTask) -> None:
        self.task = task

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if self.task is None:
            raise RuntimeError("set_task must be called before reset")
        self.seed, self.t = seed, 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        assert self.task is not None
        return np.array([self.task.data, self.t, self.seed or 0] + [0.0] * 36)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.t >= self.max_path_length:
            raise ValueError("Maximum path length allowed by the benchmark has been exceeded")
        self.t += 1
        assert self.task is not None
        r = float(self.task.data) + float(action[0])
        success = float(self.task.data % 2 == 0 and self.t == 3)  # raised at one step only
        return self._obs(), r, False, self.t >= self.max_path_length, {"success": success}


def _classes(names: list[str]) -> dict[str, type]:
    return {n: type(n, (FakeEnv,), {}) for n in names}


class FakeML1:
    ENV_NAMES = ("reach-v3", "push-v3")

    def __init__(self, env_name: str, seed: int | None = None) -> None:
        self.train_classes = self.test_classes = _classes([env_name])
        self.train_tasks = [FakeTask(env_name, i) for i in range(50)]
        self.test_tasks = [FakeTask(env_name, 100 + i) for i in range(50)]


class FakeML10:
    def __init__(self, seed: int | None = None) -> None:
        self.train_classes = _classes([f"train{i}" for i in range(10)])
        self.test_classes = _classes([f"test{i}" for i in range(5)])
        self.train_tasks = [FakeTask(f"train{i % 10}", i) for i in range(500)]
        self.test_tasks = [FakeTask(f"test{i % 5}", 1000 + i) for i in range(250)]


@pytest.fixture
def fake_metaworld(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("metaworld")
    module.ML1 = FakeML1  # type: ignore[attr-defined]
    module.ML10 = FakeML10  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "metaworld", module)
    load_benchmark.cache_clear()
    yield
    load_benchmark.cache_clear()


@pytest.mark.usefixtures("fake_metaworld")
def test_training_and_validation_draw_training_tasks_and_evaluation_test_tasks() -> None:
    fam = MetaWorldFamily("ML1", "reach-v3")
    train = fam.sample_goals(64, torch.Generator().manual_seed(0))
    assert train.shape == (64, 2) and set(train[:, 0].tolist()) == {0.0}
    assert len(set(train[:, 1].tolist())) > 20  # spread over the 50 variations
    val = fam.fixed_goals(30, seed=5, split="val")
    test = fam.fixed_goals(30, seed=5)
    assert set(val[:, 0].tolist()) == {0.0} and set(test[:, 0].tolist()) == {1.0}
    assert torch.equal(fam.fixed_goals(10, seed=5), test[:10])  # nested across sizes
    data = {fam.task(row).data for row in test}
    assert min(data) >= 100  # Meta-World's test variations, not its training ones
    ml10 = MetaWorldFamily("ML10", None)
    names = {ml10.task(row).env_name for row in ml10.fixed_goals(100, seed=0)}
    assert names <= {f"test{i}" for i in range(5)} and len(names) == 5


@pytest.mark.usefixtures("fake_metaworld")
def test_every_copy_is_set_to_its_task_and_rewards_and_truncation_are_meta_worlds() -> None:
    fam = MetaWorldFamily("ML1", "reach-v3", horizon=500)
    goals = fam.fixed_goals(3, seed=1)
    envs = fam.envs(goals, 2)
    obs = envs.reset()
    assert obs.shape == (3, 2, 39)
    for t in range(3):
        assert obs[t, :, 0].tolist() == [float(fam.task(goals[t]).data)] * 2
    assert torch.equal(obs[:, :, 2], torch.tensor(envs.seeds, dtype=obs.dtype).reshape(3, 2))
    action = torch.zeros(3, 2, 4)
    action[..., 0] = 2.0  # clipped to 1
    step = envs.step(action)
    assert torch.equal(step.reward, obs[:, :, 0] + 1.0)
    for _ in range(3):
        envs.step(action)
    even = (obs[:, :, 0] % 2 == 0).to(obs.dtype)
    assert envs.success is not None and torch.equal(envs.success, even)  # once is a success
    step = envs.step(action)
    for _ in range(495):
        step = envs.step(action)
    assert bool(step.done.all()) and bool(step.mask.all())
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(action)
    again = fam.envs(goals, 2)
    assert torch.equal(again.reset(), obs)  # the same task gives the same episodes
    ml10 = MetaWorldFamily("ML10", None, horizon=5)  # lent again, each set to its new task
    for seed in (1, 2):
        goals = ml10.fixed_goals(6, seed=seed)
        obs = ml10.envs(goals, 2).reset()
        want = [[float(ml10.task(row).data)] * 2 for row in goals]
        assert obs[:, :, 0].tolist() == want
    made = ml10.pool.made
    ml10.envs(ml10.fixed_goals(6, seed=1), 2).reset()
    assert ml10.pool.made == made  # a batch the pool has served before needs no new ones


@pytest.mark.usefixtures("fake_metaworld")
def test_a_config_builds_a_policy_of_the_arms_sizes_and_trains() -> None:
    cfg = load_config(
        CONFIGS / "maml-trpo-metaworld-ml1-reach.yaml",
        [
            "train.threads=1",
            "task.horizon=5",
            "task.rollouts=2",
            "train.meta_batch=2",
            "eval.tasks=4",
            "eval.steps=[1]",
        ],
    )
    assert isinstance(cfg.task, MetaWorldTask)
    assert type(build_problem(cfg)).__name__ == "MetaRLProblem"
    assert cfg.task.describe().startswith("Meta-World ML1 reach-v3")
    problem = build_problem(cfg)
    scores = problem.evaluate(build_run_learner(cfg))["scores"]
    rates = scores["4 test tasks, success rate"]
    assert set(rates) == {"0", "1"} and all(0 <= v["mean"] <= 1 for v in rates.values())
    assert set(scores["4 test tasks"]) == {"0", "1"}


def test_bad_configs_and_a_missing_package_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"ML1 needs task\.env_name"):
        MetaWorldTask(benchmark="ML1")
    with pytest.raises(ValueError, match=r"drop task\.env_name"):
        MetaWorldTask(benchmark="ML10", env_name="reach-v3")
    with pytest.raises(ValueError, match="at most 500"):
        MetaWorldTask(env_name="reach-v3", horizon=501)
    monkeypatch.setitem(sys.modules, "metaworld", types.ModuleType("metaworld"))
    monkeypatch.setattr(sys.modules["metaworld"], "ML1", FakeML1, raising=False)
    load_benchmark.cache_clear()
    with pytest.raises(ConfigError, match=r"unknown Meta-World ML1 env_name 'rech-v3'"):
        MetaWorldFamily("ML1", "rech-v3")
    monkeypatch.setitem(sys.modules, "metaworld", None)  # `import metaworld` now fails
    load_benchmark.cache_clear()
    with pytest.raises(ConfigError, match=r"pip install 'metamap\[metaworld\]'"):
        MetaWorldFamily("ML1", "reach-v3")
    load_benchmark.cache_clear()


@pytest.mark.skipif(not REAL, reason="metaworld is not installed (make test-metaworld)")
def test_real_meta_world_rollouts_replay_and_a_meta_iteration_runs(tmp_path: Path) -> None:
    load_benchmark.cache_clear()
    fam = MetaWorldFamily("ML1", "reach-v3", horizon=20)
    goals = fam.sample_goals(2, torch.Generator().manual_seed(0))
    policy = GaussianMLP(39, 4)
    a = rollout(policy, fam.envs(goals, 2), torch.Generator().manual_seed(0))
    other = fam.sample_goals(2, torch.Generator().manual_seed(1))
    rollout(policy, fam.envs(other, 2), torch.Generator().manual_seed(0))  # lent to other tasks
    b = rollout(policy, fam.envs(goals, 2), torch.Generator().manual_seed(0))
    fresh = MetaWorldFamily("ML1", "reach-v3", horizon=20)  # a pool of new environments
    c = rollout(policy, fresh.envs(goals, 2), torch.Generator().manual_seed(0))
    assert a.observations.shape == (2, 2, 20, 39) and torch.equal(a.returns, b.returns)
    assert torch.equal(b.observations, c.observations) and torch.equal(b.rewards, c.rewards)
    assert bool((a.returns > 0).all())  # Meta-World's dense rewards are positive
    assert a.successes is not None and a.successes.shape == (2, 2)
    cfg = load_config(
        CONFIGS / "maml-trpo-metaworld-ml1-reach.yaml",
        [
            "train.threads=1",
            "task.horizon=10",
            "task.rollouts=2",
            "train.meta_batch=2",
            "train.steps=1",
            "train.val_tasks=2",
            "train.progress=false",
        ],
    )
    result = Trainer(cfg, tmp_path / "run").fit()
    assert result.step == 1 and np.isfinite(result.best_val)
