"""Discounted returns, GAE and the linear feature baseline against plain per-episode Python
loops and direct least-squares solves (float64), batched over tasks, on padded episodes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from metamap.rl import (
    LinearFeatureBaseline,
    baseline_features,
    discounted_returns,
    gae,
    normalize_advantages,
    rollout,
)
from metamap.tasks import Navigation2D, NavigationEnvs

F64 = torch.float64


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _episodes(tasks: int, copies: int, horizon: int, seed: int, shortest: int = 1) -> tuple:  # type: ignore[type-arg]
    """Random rewards, values, observations and masks of episodes of random lengths (some
    full), with garbage where the masks are 0 (the functions must ignore it)."""
    g = _g(seed)
    lengths = torch.randint(shortest, horizon + 1, (tasks, copies), generator=g)
    lengths[0, 0] = horizon
    masks = (torch.arange(horizon) < lengths[..., None]).to(F64)
    rewards = torch.randn(tasks, copies, horizon, generator=g, dtype=F64)
    values = torch.randn(tasks, copies, horizon, generator=g, dtype=F64)
    obs = torch.rand(tasks, copies, horizon, 2, generator=g, dtype=F64) - 0.5
    rewards = torch.where(masks.bool(), rewards, 1e3)
    obs = torch.where(masks.bool()[..., None], obs, 7.0)
    return rewards, values, obs, masks, lengths


def _returns_loop(r: list[float], gamma: float) -> list[float]:
    out, after = [0.0] * len(r), 0.0
    for t in reversed(range(len(r))):
        after = r[t] + gamma * after
        out[t] = after
    return out


def _gae_loop(r: list[float], v: list[float], gamma: float, lam: float) -> list[float]:
    n = len(r)
    out, after = [0.0] * n, 0.0
    for t in reversed(range(n)):
        next_value = v[t + 1] if t + 1 < n else 0.0
        delta = r[t] + gamma * next_value - v[t]
        after = delta + gamma * lam * after
        out[t] = after
    return out


def _per_episode(lengths: Tensor, horizon: int, fn, *rows: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
    out = torch.zeros(*lengths.shape, horizon, dtype=F64)
    for i, e in torch.cartesian_prod(*map(torch.arange, lengths.shape)).tolist():
        n = int(lengths[i, e])
        out[i, e, :n] = torch.tensor(fn(*(row[i, e, :n].tolist() for row in rows)), dtype=F64)
    return out


@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.0, 0.5)])
def test_gae_and_returns_equal_a_python_loop_over_each_episode(gamma: float, lam: float) -> None:
    rewards, values, _, masks, lengths = _episodes(3, 5, 9, seed=0)
    want = _per_episode(lengths, 9, lambda r, v: _gae_loop(r, v, gamma, lam), rewards, values)
    torch.testing.assert_close(gae(rewards, values, masks, gamma, lam), want, rtol=0, atol=1e-12)
    want = _per_episode(lengths, 9, lambda r: _returns_loop(r, gamma), rewards)
    got = discounted_returns(rewards, masks, gamma)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_lambda_one_is_return_minus_baseline_and_lambda_zero_the_td_error() -> None:
    rewards, values, _, masks, _ = _episodes(2, 4, 12, seed=1)
    returns = discounted_returns(rewards, masks, 0.99)
    plain = (returns - values) * masks
    torch.testing.assert_close(gae(rewards, values, masks, 0.99, 1.0), plain, rtol=0, atol=1e-12)
    next_values = torch.cat(
        [values[..., 1:] * masks[..., 1:], torch.zeros_like(values[..., :1])], -1
    )
    td = (rewards + 0.99 * next_values - values) * masks
    torch.testing.assert_close(gae(rewards, values, masks, 0.99, 0.0), td, rtol=0, atol=1e-12)


def test_normalised_advantages_have_mean_zero_and_std_one_per_task() -> None:
    rewards, values, _, masks, _ = _episodes(3, 4, 10, seed=2)
    adv = normalize_advantages(5.0 + 3.0 * gae(rewards, values, masks, 0.99, 1.0), masks)
    alive = masks.bool()
    for i in range(3):
        a = adv[i][alive[i]]
        assert abs(float(a.mean())) < 1e-12 and abs(float(a.std(correction=0)) - 1) < 1e-7
    assert not adv[~alive].any()


def _ridge(x: Tensor, y: Tensor, c: float) -> Tensor:
    w: Tensor = torch.linalg.solve(x.T @ x + c * torch.eye(x.shape[1], dtype=F64), x.T @ y)
    return w


def test_the_linear_baseline_is_a_ridge_fit_per_task_on_the_running_steps() -> None:
    _, _, obs, masks, _ = _episodes(3, 6, 10, seed=3, shortest=3)
    returns = discounted_returns(torch.randn(3, 6, 10, generator=_g(9), dtype=F64), masks, 0.99)
    fitted = LinearFeatureBaseline.fit(obs, returns, masks)
    assert fitted.coeffs.shape == (3, 8) and fitted.coeffs.dtype == F64  # [o, o², t, t², t³, 1]
    features = baseline_features(obs)
    for i in range(3):
        alive = masks[i].bool()
        x, y = features[i][alive], returns[i][alive]
        torch.testing.assert_close(fitted.coeffs[i], _ridge(x, y, 1e-5), rtol=1e-9, atol=1e-9)
        # The same ridge problem as plain least squares: [X; √c I] w ≈ [y; 0].
        stacked = torch.cat([x, 1e-5**0.5 * torch.eye(8, dtype=F64)])
        lstsq = torch.linalg.lstsq(stacked, torch.cat([y, torch.zeros(8, dtype=F64)])).solution
        torch.testing.assert_close(fitted(obs)[i][alive], x @ lstsq, rtol=0, atol=1e-8)
    # The features are rllab's: [o, o², t/100, (t/100)², (t/100)³, 1].
    t = torch.arange(10, dtype=F64) / 100
    o = obs.clamp(-10, 10)
    torch.testing.assert_close(features[..., :2], o)
    torch.testing.assert_close(features[..., 2:4], o**2)
    for k in range(1, 4):
        torch.testing.assert_close(features[1, 2, :, 3 + k], t**k)
    assert (features[..., 7] == 1).all()


def test_the_baseline_explains_navigation_returns_better_than_their_mean() -> None:
    goals = Navigation2D().sample_goals(4, _g(0), F64)
    envs = NavigationEnvs(goals, envs_per_task=20)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        drift = (torch.randn(4, 2, dtype=F64) * 0.05).repeat_interleave(20, 0)  # one per task
    out = rollout(lambda obs: (drift, torch.full_like(obs, -3.0)), envs, _g(1))
    returns = discounted_returns(out.rewards, out.masks, 0.99)
    values = LinearFeatureBaseline.fit(out.observations, returns, out.masks)(out.observations)
    assert out.masks.all()  # no copy stops: every step counts
    residual = ((returns - values) ** 2).sum((1, 2))
    spread = ((returns - returns.mean((1, 2), keepdim=True)) ** 2).sum((1, 2))
    assert (residual < 0.05 * spread).all()  # it tracks position and time; a constant cannot
    float32 = LinearFeatureBaseline.fit(
        out.observations.float(), returns.float(), out.masks.float()
    )
    assert float32.coeffs.dtype == torch.float32  # fitted in float64 whatever comes in
    torch.testing.assert_close(
        float32(out.observations.float()).double(), values, atol=1e-3, rtol=0
    )


def test_bad_inputs_are_refused_with_the_fix() -> None:
    rewards, values, obs, masks, _ = _episodes(2, 3, 5, seed=4)
    with pytest.raises(ValueError, match=r"values has shape \(2, 3, 4\) but masks \(2, 3, 5\)"):
        gae(rewards, values[..., :4], masks, 0.99, 1.0)
    with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\], got 1.5"):
        discounted_returns(rewards, masks, 1.5)
    with pytest.raises(ValueError, match=r"lam must be in \[0, 1\], got -0.1"):
        gae(rewards, values, masks, 0.99, -0.1)
    restarted = masks.clone()
    restarted[0, 0] = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="one episode a row: 1 while it runs, then 0"):
        discounted_returns(rewards, restarted, 0.99)
    returns = discounted_returns(rewards, masks, 0.99)
    with pytest.raises(ValueError, match=r"\(T, E, H, obs_dim\) and \(T, E, H\)"):
        LinearFeatureBaseline.fit(obs[:, :2], returns, masks)
    with pytest.raises(ValueError, match="NaN or infinite"):
        LinearFeatureBaseline.fit(obs, returns * float("nan"), masks)
    with pytest.raises(ValueError, match=r"reg_coeff must be positive, got 0 \(rllab: 1e-5\)"):
        LinearFeatureBaseline.fit(obs, returns, masks, reg_coeff=0)
    fitted = LinearFeatureBaseline.fit(obs, returns, masks)
    with pytest.raises(ValueError, match="a baseline of 2 tasks and 8 features"):
        fitted(obs[:1])
