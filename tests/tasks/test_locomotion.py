"""MuJoCo locomotion task families (:mod:`metamap.tasks.locomotion`) on Gymnasium: goals, the
task rewards recomputed from Gymnasium's velocities, reproducible episodes, the configs, and the
messages for a missing extra or an unknown environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from metamap.errors import ConfigError
from metamap.models import GaussianMLP
from metamap.rl import rollout
from metamap.tasks.locomotion import CONTROL_COST, LocomotionFamily, make_gym_env
from metamap.train import build_problem, load_config
from metamap.train.build import build_run_learner

pytest.importorskip("mujoco")
CONFIGS = Path(__file__).parents[2] / "configs" / "rl"


def test_goals_are_velocities_in_0_2_or_directions() -> None:
    g = torch.Generator().manual_seed(0)
    vel = LocomotionFamily("halfcheetah_vel").sample_goals(200, g)
    assert vel.shape == (200, 1) and float(vel.min()) >= 0 and float(vel.max()) <= 2
    dirs = LocomotionFamily("halfcheetah_dir").sample_goals(200, g)
    assert set(dirs.flatten().tolist()) == {-1.0, 1.0}
    fixed = LocomotionFamily("halfcheetah_vel").fixed_goals(40, seed=3)
    assert torch.equal(fixed[:10], LocomotionFamily("halfcheetah_vel").fixed_goals(10, seed=3))


@pytest.mark.parametrize("family", ["halfcheetah_vel", "halfcheetah_dir"])
def test_the_reward_is_the_tasks_and_episodes_replay(family: str) -> None:
    fam = LocomotionFamily(family, horizon=8)
    goals = fam.sample_goals(2, torch.Generator().manual_seed(1))
    envs = fam.envs(goals, 2)
    assert (envs.obs_dim, envs.act_dim) == (17, 6)
    envs.reset()
    actions = torch.full((2, 2, 6), 0.5)
    step = envs.step(actions)
    info_env = make_gym_env("HalfCheetah-v5")
    info_env.reset(seed=envs.seeds[0])
    _, _, _, _, info = info_env.step(actions[0, 0].double().numpy())
    v, goal, ctrl = info["x_velocity"], float(goals[0, 0]), CONTROL_COST * 6 * 0.25
    want = -abs(v - goal) - ctrl if family.endswith("vel") else goal * v - ctrl
    assert float(step.reward[0, 0]) == pytest.approx(want, abs=1e-5)
    policy = GaussianMLP(17, 6)
    a = rollout(policy, fam.envs(goals, 2), torch.Generator().manual_seed(0))
    b = rollout(policy, fam.envs(goals, 2), torch.Generator().manual_seed(0))
    assert torch.equal(a.returns, b.returns) and a.observations.shape == (2, 2, 8, 17)
    assert bool(a.masks.all())  # HalfCheetah never falls: every episode runs to the horizon


def test_lent_environments_give_the_episodes_of_new_ones_and_batches_do_not_interleave() -> None:
    pooled = LocomotionFamily("halfcheetah_vel", horizon=6)
    policy = GaussianMLP(17, 6)
    g = torch.Generator().manual_seed(2)
    batches = [pooled.sample_goals(n, g) for n in (3, 2, 3)]  # fewer, then more environments
    for goals in batches:
        a = rollout(policy, pooled.envs(goals, 2), torch.Generator().manual_seed(0))
        b = rollout(policy, LocomotionFamily("halfcheetah_vel", 6).envs(goals, 2),
                    torch.Generator().manual_seed(0))  # fmt: skip
        assert torch.equal(a.observations, b.observations) and torch.equal(a.rewards, b.rewards)
    assert pooled.pool.made == 6  # made once: 3 tasks × 2 episodes at most
    first, second = pooled.envs(batches[0], 2), pooled.envs(batches[1], 2)
    first.reset()
    second.reset()  # the same environments, now this batch's
    with pytest.raises(RuntimeError, match="another batch of tasks has reset these environments"):
        first.step(torch.zeros(3, 2, 6))
    first.reset()
    assert first.step(torch.zeros(3, 2, 6)).reward.shape == (3, 2)


def test_the_configs_build_a_policy_of_the_bodys_sizes() -> None:
    sizes = {"halfcheetah-dir": (17, 6), "halfcheetah-vel": (17, 6), "ant-dir": (105, 8)}
    for name, size in sizes.items():
        cfg = load_config(CONFIGS / f"maml-trpo-{name}.yaml", ["train.threads=1"])
        assert type(build_problem(cfg)).__name__ == "MetaRLProblem"
        policy = build_run_learner(cfg).model
        assert (policy.obs_dim, policy.act_dim) == size


def test_missing_gymnasium_and_unknown_ids_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown Gymnasium environment id 'HalfCheetah-v0'"):
        make_gym_env("HalfCheetah-v0")
    with pytest.raises(ConfigError, match="unknown locomotion family 'hopper'"):
        LocomotionFamily("hopper")
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # `import gymnasium` now fails
    with pytest.raises(ConfigError, match=r"pip install 'metamap\[mujoco\]'"):
        make_gym_env("HalfCheetah-v5")
