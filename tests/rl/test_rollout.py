"""Batched rollouts: seeded by their generator, laid out (T, E, H, ...), consistent with the
environment's dynamics, with a goal-seeking policy far above a random one (and a hand-computed
return), and usable with adapted parameters through functional_call."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from metamap.models import GaussianMLP, gaussian_log_prob
from metamap.rl import PolicyFn, Rollouts, rollout
from metamap.tasks import Navigation2D, NavigationEnvs


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _policy(seed: int = 0) -> GaussianMLP:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GaussianMLP(2, 2, hidden=(16, 16))


def _towards(goals: Tensor, envs_per_task: int, log_std: float = -30.0) -> PolicyFn:
    """A policy whose mean is the step to the goal (the environment clips it to 0.1)."""
    targets = goals.repeat_interleave(envs_per_task, 0)

    def policy_fn(obs: Tensor) -> tuple[Tensor, Tensor]:
        return targets - obs, torch.full_like(obs, log_std)

    return policy_fn


def _equal(a: Rollouts, b: Rollouts) -> bool:
    fields = ("observations", "actions", "rewards", "masks", "log_probs")
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields)


def test_layout_and_seeding() -> None:
    envs = NavigationEnvs(Navigation2D().sample_goals(3, _g(0)), envs_per_task=4, horizon=9)
    policy = _policy()
    state = torch.get_rng_state()
    out = rollout(policy, envs, _g(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert out.observations.shape == (3, 4, 9, 2) and out.actions.shape == (3, 4, 9, 2)
    for name in ("rewards", "masks", "log_probs"):
        assert getattr(out, name).shape == (3, 4, 9)
    assert out.returns.shape == (3, 4) and out.lengths.shape == (3, 4)
    assert not out.log_probs.requires_grad and not out.actions.requires_grad
    assert _equal(out, rollout(policy, envs, _g(1)))  # the environments are reset
    assert not torch.equal(out.actions, rollout(policy, envs, _g(2)).actions)


def test_a_share_of_a_batch_rolls_out_what_the_whole_batch_does_for_it() -> None:
    """``shard=(first, total)``: processes splitting a batch of goals each sample their rows of
    the whole batch's noise, and leave the generator where one process would."""
    goals = Navigation2D().sample_goals(5, _g(0))
    policy = _policy()
    g_all, g_a, g_b = _g(1), _g(1), _g(1)
    whole = rollout(policy, NavigationEnvs(goals, 3, horizon=7), g_all)
    a = rollout(policy, NavigationEnvs(goals[:3], 3, horizon=7), g_a, shard=(0, 5))
    b = rollout(policy, NavigationEnvs(goals[3:], 3, horizon=7), g_b, shard=(3, 5))
    for f in ("observations", "actions", "rewards", "masks", "log_probs"):
        torch.testing.assert_close(torch.cat([getattr(a, f), getattr(b, f)]), getattr(whole, f))
    assert torch.equal(g_a.get_state(), g_all.get_state())
    assert torch.equal(g_b.get_state(), g_all.get_state())
    with pytest.raises(ValueError, match="cannot hold"):
        rollout(policy, NavigationEnvs(goals[3:], 3, horizon=7), _g(1), shard=(4, 5))


def test_rollouts_follow_the_dynamics_and_score_the_actions_taken() -> None:
    goals = torch.tensor([[0.02, 0.03], [0.4, -0.1]], dtype=torch.float64)
    envs = NavigationEnvs(goals, envs_per_task=50, horizon=20)

    def noisy_seeker(obs: Tensor) -> tuple[Tensor, Tensor]:  # half-way to the goal, σ = 0.03
        mean = 0.5 * (goals[:, None] - obs.reshape(2, 50, 2))
        return mean.reshape(100, 2), torch.full((2,), 0.03, dtype=obs.dtype).log()

    out = rollout(noisy_seeker, envs, _g(5))
    alive = out.masks.bool()
    assert out.masks[:, :, 0].all() and (out.masks[..., 1:] <= out.masks[..., :-1]).all()
    assert 20 < envs.reached.sum() < 80  # some episodes end at their goal, some run on
    assert envs.reached[out.lengths < 20].all() and (out.lengths[~envs.reached] == 20).all()
    # Positions: the origin, then the running sum of clipped actions; still after the end.
    moves = out.actions.clamp(-0.1, 0.1)
    position = torch.cat([torch.zeros_like(moves[:, :, :1]), moves.cumsum(2)], 2)
    torch.testing.assert_close(out.observations, position[:, :, :-1], rtol=0, atol=1e-12)
    distance = (position[:, :, 1:] - goals[:, None, None]).norm(dim=-1)
    torch.testing.assert_close(out.rewards, -distance * out.masks, rtol=0, atol=1e-12)
    assert (out.rewards[alive] < 0).all() and not out.rewards[~alive].any()
    # The log-probabilities are the acting policy's, as the inner step will rescore them.
    mean = 0.5 * (goals[:, None, None] - out.observations)
    rescored = gaussian_log_prob(mean, torch.tensor(0.03, dtype=torch.float64).log(), out.actions)
    torch.testing.assert_close(out.log_probs[alive], rescored[alive], rtol=0, atol=1e-9)
    assert not out.actions[~alive].any() and not out.log_probs[~alive].any()


def test_a_module_policy_is_scored_by_its_own_log_prob() -> None:
    envs = NavigationEnvs(Navigation2D().sample_goals(2, _g(3), torch.float64), 3, horizon=12)
    policy = _policy().double()
    out = rollout(policy, envs, _g(5))
    mean, log_std = policy(out.observations)
    rescored = gaussian_log_prob(mean, log_std, out.actions).detach()
    torch.testing.assert_close(out.log_probs, rescored, rtol=0, atol=1e-12)
    assert out.masks.all()  # a random policy does not stop on a point in 12 steps


def test_going_to_the_goal_beats_a_random_policy_and_matches_a_hand_computed_return() -> None:
    goals = Navigation2D().fixed_goals(40, seed=0)
    envs = NavigationEnvs(goals, envs_per_task=2)
    greedy = rollout(_towards(goals, 2), envs, _g(0))
    assert envs.reached.all() and (greedy.lengths <= 8).all()  # ≤ 0.5 / 0.1 steps + the last
    random = rollout(_policy(), envs, _g(0))
    assert not envs.reached.any()
    # Straight to the goal scores about -0.5 (MAML's trained oracle, a stochastic policy told the
    # goal: -2.3); the untrained policy about -100 (MAML's randomly initialised one: -82.7).
    assert greedy.returns.mean() > -1.0 and random.returns.mean() < -50.0
    # One dimension: 0.1, 0.2, 0.3, then 0.35 (the goal): rewards -0.25, -0.15, -0.05, -0.
    line = torch.tensor([[0.35, 0.0]], dtype=torch.float64)
    out = rollout(_towards(line, 1), NavigationEnvs(line, 1), _g(0))
    assert out.lengths.item() == 4
    torch.testing.assert_close(out.returns, torch.tensor([[-0.45]], dtype=torch.float64))
    want = torch.tensor([-0.25, -0.15, -0.05, 0.0], dtype=torch.float64)
    torch.testing.assert_close(out.rewards[0, 0, :4], want, rtol=0, atol=1e-9)
    assert not out.rewards[0, 0, 4:].any() and out.rewards.shape[-1] == 100


def test_adapted_parameters_act_through_functional_call() -> None:
    envs = NavigationEnvs(Navigation2D().sample_goals(2, _g(0)), envs_per_task=3, horizon=10)
    policy = _policy()
    params = {k: v.detach() for k, v in policy.named_parameters()}
    own = rollout(lambda obs: functional_call(policy, params, (obs,)), envs, _g(1))
    assert _equal(own, rollout(policy, envs, _g(1)))
    moved = {**params, "mean.head.bias": params["mean.head.bias"] + 0.05}
    adapted = rollout(lambda obs: functional_call(policy, moved, (obs,)), envs, _g(1))
    assert not torch.equal(adapted.actions, own.actions)
    # One parameter set per task: the rows of task i act with set i.
    sets = [params, moved]

    def per_task(obs: Tensor) -> tuple[Tensor, Tensor]:
        outs = [functional_call(policy, p, (o,)) for p, o in zip(sets, obs.chunk(2), strict=True)]
        return torch.cat([m for m, _ in outs]), torch.cat([s for _, s in outs])

    mixed = rollout(per_task, envs, _g(1))
    assert torch.equal(mixed.actions[0, :, 0], own.actions[0, :, 0])
    assert torch.equal(mixed.actions[1, :, 0], adapted.actions[1, :, 0])


def test_a_policy_of_the_wrong_size_is_refused() -> None:
    envs = NavigationEnvs(torch.zeros(2, 2), envs_per_task=3, horizon=5)
    with pytest.raises(
        ValueError, match=r"mean of shape \(N, act_dim\) = \(6, 2\) .* got \(6, 3\)"
    ):
        rollout(GaussianMLP(2, 3, hidden=(4,)), envs, _g(0))
