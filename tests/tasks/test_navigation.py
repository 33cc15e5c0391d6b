"""2D navigation (MAML §5.3): seeded goals, the batched environment's dynamics, rewards, masks,
clipping and horizon, stepping T×E copies at once as each alone, and its errors."""

from __future__ import annotations

import pytest
import torch

from metamap.errors import TaskShapeError
from metamap.tasks import Navigation2D, NavigationEnvs


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- goals ---------------------------------------------------------------------------------------
def test_goals_are_uniform_in_the_square_and_seeded() -> None:
    family = Navigation2D()
    goals = family.sample_goals(2000, _g(0))
    assert goals.shape == (2000, 2) and goals.dtype == torch.float32
    assert goals.min() >= -0.5 and goals.max() <= 0.5
    assert goals.mean(0).abs().max() < 0.03  # uniform on [-0.5, 0.5]: mean 0, std 0.289
    assert ((goals.std(0) - 12**-0.5).abs() < 0.02).all()
    assert torch.equal(family.sample_goals(5, _g(1)), family.sample_goals(5, _g(1)))
    assert not torch.equal(family.sample_goals(5, _g(1)), family.sample_goals(5, _g(2)))
    assert family.sample_goals(3, _g(0), torch.float64).dtype == torch.float64
    narrow = Navigation2D(low=0.2, high=0.3).sample_goals(100, _g(0))
    assert narrow.min() >= 0.2 and narrow.max() <= 0.3


def test_fixed_goals_depend_on_the_seed_only_and_leave_the_global_rng_alone() -> None:
    family = Navigation2D()
    state = torch.get_rng_state()
    test = family.fixed_goals(seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert test.shape == (40, 2)  # MAML scores 40 test tasks
    assert torch.equal(test, family.fixed_goals(40, seed=7))
    assert not torch.equal(test, family.fixed_goals(40, seed=8))
    assert torch.equal(family.fixed_goals(100, seed=7)[:40], test)  # nested across sizes
    assert torch.equal(family.fixed_goals(10, seed=7), test[:10])


# ---- dynamics, rewards, masks --------------------------------------------------------------------
def test_rewards_are_minus_the_distance_until_done_then_zero_and_done_copies_stay() -> None:
    goals = torch.tensor([[0.15, 0.0], [0.4, -0.3]], dtype=torch.float64)
    envs = NavigationEnvs(goals, envs_per_task=3, horizon=6)
    obs = envs.reset()
    assert obs.shape == (2, 3, 2) and obs.dtype == torch.float64 and not obs.any()
    position = torch.zeros(2, 3, 2, dtype=torch.float64)
    alive = torch.ones(2, 3, dtype=torch.bool)
    step_right = torch.zeros(2, 3, 2, dtype=torch.float64)
    step_right[..., 0] = 0.075  # task 0 reaches (0.15, 0) after two steps
    for t in range(6):
        out = envs.step(step_right)
        position = torch.where(alive[..., None], position + step_right, position)
        distance = (position - goals[:, None]).norm(dim=-1)
        assert torch.equal(out.observation, position)
        assert torch.equal(out.mask, alive.double())
        assert torch.equal(out.reward, torch.where(alive, -distance, torch.zeros_like(distance)))
        alive = alive & (distance >= 0.01) & (t + 1 < 6)
        assert torch.equal(out.done, ~alive)
        if t == 1:  # task 0 at its goal: done, reward -0 (a distance below 0.01)
            assert out.done[0].all() and not out.done[1].any()
            assert out.reward[0].abs().max() < 1e-12
    assert envs.reached[0].all() and not envs.reached[1].any()  # task 1 stopped at the horizon
    assert torch.equal(envs.position[0], torch.tensor([[0.15, 0.0]] * 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"ended at the horizon of 6 steps\); call reset"):
        envs.step(step_right)
    assert not envs.reset().any() and envs.alive.all()  # a new episode starts from the origin


def test_actions_are_clipped_to_the_speed_limit() -> None:
    envs = NavigationEnvs(torch.tensor([[0.5, 0.5]]), envs_per_task=4)
    envs.reset()
    actions = torch.tensor([[[3.0, -7.0], [0.05, -0.02], [-0.2, 0.1], [1e6, -1e6]]])
    out = envs.step(actions)
    want = torch.tensor([[[0.1, -0.1], [0.05, -0.02], [-0.1, 0.1], [0.1, -0.1]]])
    torch.testing.assert_close(out.observation, want)
    torch.testing.assert_close(out.reward, -(want - 0.5).norm(dim=-1))


def test_all_copies_at_once_equal_each_copy_alone() -> None:
    goals = Navigation2D().sample_goals(3, _g(0), torch.float64)
    actions = 0.15 * torch.randn(10, 3, 2, 2, generator=_g(1), dtype=torch.float64)
    actions[:, 0, 0] = (goals[0] / 5).expand(10, 2)  # one copy reaches its goal in 5 steps
    batched = NavigationEnvs(goals, envs_per_task=2, horizon=10)
    batched.reset()
    alone = [[NavigationEnvs(goals[i : i + 1], 1, horizon=10) for _ in range(2)] for i in range(3)]
    for row in alone:
        for env in row:
            env.reset()
    for t in range(10):
        out = batched.step(actions[t])
        for i, row in enumerate(alone):
            for e, env in enumerate(row):
                one = env.step(actions[t, i : i + 1, e : e + 1])
                for a, b in zip(out, one, strict=True):
                    assert torch.equal(a[i, e], b[0, 0])
    assert batched.reached[0, 0] and batched.reached.sum() == 1


def test_normalized_actions_are_scaled_to_the_box_then_clipped_as_rllab_normalize() -> None:
    """``actions: normalized`` (the paper's code): a ∈ [-1, 1]² moves 0.1·a, beyond it 0.1."""
    from metamap.tasks.navigation import NavigationTask

    family = NavigationTask(actions="normalized").family_of_tasks()
    envs = family.envs(torch.tensor([[0.5, 0.5]]), envs_per_task=3)
    envs.reset()
    out = envs.step(torch.tensor([[[1.0, -1.0], [0.5, -0.2], [3.0, -7.0]]]))
    want = torch.tensor([[[0.1, -0.1], [0.05, -0.02], [0.1, -0.1]]])
    torch.testing.assert_close(out.observation, want)
    assert "normalized" in NavigationTask(actions="normalized").describe()
    assert NavigationTask().family_of_tasks().action_scale == 1.0  # the default: velocities
    with pytest.raises(ValueError, match="action_scale must be positive"):
        Navigation2D(action_scale=0.0)


def test_the_family_builds_environments_with_its_horizon() -> None:
    envs = Navigation2D(horizon=5).envs(torch.zeros(2, 2) + 0.4, envs_per_task=3)
    envs.reset()
    masks = [envs.step(torch.zeros(2, 3, 2)).mask for _ in range(5)]
    assert envs.horizon == 5 and all(bool(m.all()) for m in masks) and not envs.alive.any()


# ---- errors --------------------------------------------------------------------------------------
def test_bad_goals_actions_and_settings_are_refused_with_the_fix() -> None:
    with pytest.raises(
        TaskShapeError, match=r"goals must be a tensor of shape \(tasks, 2\), got \(3,\)"
    ):
        NavigationEnvs(torch.zeros(3), 2)
    with pytest.raises(TaskShapeError, match=r"got \(3, 3\)"):
        NavigationEnvs(torch.zeros(3, 3), 2)
    with pytest.raises(TaskShapeError, match="floating-point"):
        NavigationEnvs(torch.zeros(3, 2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        NavigationEnvs(torch.tensor([[0.1, float("nan")]]), 2)
    with pytest.raises(ValueError, match="envs_per_task must be at least 1, got 0"):
        NavigationEnvs(torch.zeros(3, 2), 0)
    with pytest.raises(
        ValueError, match=r"horizon must be at least 1 step, got 0 \(MAML uses 100\)"
    ):
        NavigationEnvs(torch.zeros(3, 2), 2, horizon=0)
    with pytest.raises(ValueError, match="horizon must be at least 1 step, got -1"):
        Navigation2D(horizon=-1)
    with pytest.raises(ValueError, match=r"low < high, got \[0.5, -0.5\]"):
        Navigation2D(low=0.5, high=-0.5)
    with pytest.raises(ValueError, match="number of goals must be at least 1, got 0"):
        Navigation2D().fixed_goals(0)
    envs = NavigationEnvs(torch.zeros(3, 2), 2)
    with pytest.raises(RuntimeError, match=r"call reset\(\) first"):
        envs.step(torch.zeros(3, 2, 2))  # not started
    envs.reset()
    with pytest.raises(
        TaskShapeError, match=r"\(tasks, envs_per_task, 2\) = \(3, 2, 2\), got \(6, 2\)"
    ):
        envs.step(torch.zeros(6, 2))
    with pytest.raises(ValueError, match="NaN or infinite values: the policy has diverged"):
        envs.step(torch.full((3, 2, 2), float("inf")))
