"""The Pendulum family (:mod:`metamap.tasks.pendulum`): Gymnasium's Pendulum-v1 dynamics and
reward, step for step, with each task's own mass and length; seeded starts; a policy learner on
it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metamap.errors import TaskShapeError
from metamap.tasks.pendulum import PendulumEnvs, PendulumFamily
from metamap.train import MetaRLProblem, build_problem, load_config
from metamap.train.build import build_run_learner


def test_one_pendulum_of_unit_mass_and_length_is_gymnasiums_pendulum_v1() -> None:
    gym = pytest.importorskip("gymnasium")
    envs = PendulumEnvs(torch.tensor([[1.0, 1.0]], dtype=torch.float64), 1, horizon=30)
    obs = envs.reset()
    ref = gym.make("Pendulum-v1").unwrapped
    ref.reset(seed=0)
    ref.state = np.array([float(envs.angle[0, 0]), float(envs.speed[0, 0])])
    assert torch.allclose(obs[0, 0], torch.as_tensor(ref._get_obs(), dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        u = 4 * torch.rand(1, 1, 1, generator=g, dtype=torch.float64) - 2
        step = envs.step(u)
        o, r, *_ = ref.step(u[0, 0].numpy())
        assert float(step.reward[0, 0]) == pytest.approx(r, abs=1e-9)
        assert torch.allclose(step.observation[0, 0], torch.as_tensor(o, dtype=torch.float64))


def test_heavier_longer_pendulums_fall_more_slowly_and_starts_are_seeded() -> None:
    goals = torch.tensor([[0.5, 0.5], [1.5, 1.5]])
    a, b = PendulumEnvs(goals, 3), PendulumEnvs(goals, 3)
    assert torch.equal(a.reset(), b.reset())
    a.angle.fill_(math.pi / 2)
    a.speed.zero_()
    after = a.step(torch.zeros(2, 3, 1)).observation[..., 2]  # angular speed after one step
    assert bool((after[0].abs() > after[1].abs()).all())
    with pytest.raises(TaskShapeError, match="positive"):
        PendulumEnvs(torch.tensor([[0.0, 1.0]]), 1)
    goals = PendulumFamily().sample_goals(100, torch.Generator().manual_seed(0))
    assert float(goals.min()) >= 0.5 and float(goals.max()) <= 1.5


def test_a_policy_learner_runs_on_the_family() -> None:
    over = ["task={family: pendulum, horizon: 20, rollouts: 4}", "model={name: gaussian_mlp}"]
    cfg = load_config(None, [*over, "learner={name: maml_trpo}", "train.val_tasks=3"])
    problem = build_problem(cfg)
    assert isinstance(problem, MetaRLProblem)
    learner = build_run_learner(cfg)
    assert learner.model.obs_dim == 3 and learner.model.act_dim == 1
    assert math.isfinite(problem.validate(learner))
    step = problem.meta_step(learner, torch.Generator().manual_seed(0))
    assert step.applied and math.isfinite(float(step.metric))


def test_a_goal_starts_its_episodes_alike_whatever_batch_holds_it() -> None:
    """Random starts come from each goal, so a share of a batch (processes splitting it) and a
    resumed run replay the same episodes."""
    goals = PendulumFamily().sample_goals(4, torch.Generator().manual_seed(0))
    whole, part = PendulumEnvs(goals, 3, 10), PendulumEnvs(goals[2:], 3, 10)
    torch.testing.assert_close(part.start_angle, whole.start_angle[2:])
    torch.testing.assert_close(part.start_speed, whole.start_speed[2:])
    assert not torch.equal(whole.start_angle[0], whole.start_angle[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_pendulums_on_a_gpu_start_and_step_there() -> None:
    """Each goal's generator is on the goals' device: the starts are drawn there too (they were
    drawn on the CPU, which a CUDA generator refuses), and the steps stay there."""
    goals = PendulumFamily().sample_goals(3, torch.Generator().manual_seed(0))
    cpu, gpu = PendulumEnvs(goals, 2, 5), PendulumEnvs(goals.cuda(), 2, 5)
    obs = gpu.reset()
    assert obs.device.type == "cuda" and gpu.start_angle.device.type == "cuda"
    step = gpu.step(torch.zeros(3, 2, 1, device="cuda"))
    assert step.done.device.type == "cuda" and step.reward.device.type == "cuda"
    assert cpu.reset().shape == obs.shape
