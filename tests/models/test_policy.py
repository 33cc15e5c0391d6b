"""The Gaussian MLP policy of MAML's RL experiments: its shape, its log-density against
torch.distributions, seeded sampling, and its use through torch.func.functional_call (with a
differentiable inner policy-gradient step, as MAML's)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn
from torch.distributions import Normal
from torch.func import functional_call

from metamap.models import GaussianMLP, gaussian_log_prob, gaussian_sample


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _policy(hidden: tuple[int, ...] = (100, 100), seed: int = 0) -> GaussianMLP:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GaussianMLP(2, 2, hidden)


def test_maml_policy_shape_parameters_and_initial_std() -> None:
    policy = _policy()  # MAML App. A.2: two hidden layers of 100 ReLU units
    linears = [m for m in policy.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2, 100), (100, 100), (100, 2)]
    assert sum(isinstance(m, nn.ReLU) for m in policy.modules()) == 2
    n = sum(p.numel() for p in policy.parameters())
    assert n == (2 * 100 + 100) + (100 * 100 + 100) + (100 * 2 + 2) + 2
    assert torch.equal(policy.log_std.detach(), torch.zeros(2))  # σ = 1 at the start
    mean, log_std = policy(torch.randn(7, 2, generator=_g(0)))
    assert mean.shape == (7, 2) and log_std.shape == (7, 2)
    assert torch.equal(log_std, torch.zeros(7, 2))
    assert policy(torch.randn(3, 4, 2, generator=_g(1)))[0].shape == (3, 4, 2)  # any batch dims
    torch.testing.assert_close(policy(torch.ones(3, 4, 2))[0][1, 2], policy(torch.ones(1, 2))[0][0])


def test_log_prob_equals_torch_distributions() -> None:
    g = _g(0)
    mean = torch.randn(5, 3, 2, generator=g, dtype=torch.float64)
    log_std = torch.randn(2, generator=g, dtype=torch.float64)
    actions = torch.randn(5, 3, 2, generator=g, dtype=torch.float64)
    want = Normal(mean, log_std.exp()).log_prob(actions).sum(-1)  # type: ignore[no-untyped-call]
    got = gaussian_log_prob(mean, log_std, actions)
    assert got.shape == (5, 3)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert torch.equal(GaussianMLP.log_prob(mean, log_std, actions), got)
    assert torch.equal(
        GaussianMLP.sample(mean, log_std, _g(0)), gaussian_sample(mean, log_std, _g(0))
    )


def test_a_share_of_the_rows_samples_what_the_whole_batch_does_for_them() -> None:
    mean = torch.randn(10, 2, generator=_g(0))
    log_std = torch.tensor([-1.0, 0.5])
    g_all, g_part = _g(5), _g(5)
    whole = gaussian_sample(mean, log_std, g_all)
    torch.testing.assert_close(gaussian_sample(mean[4:7], log_std, g_part, (4, 10)), whole[4:7])
    assert torch.equal(g_all.get_state(), g_part.get_state())  # the same noise drawn


def test_sampling_is_seeded_by_its_generator_only() -> None:
    mean = torch.tensor([[0.3, -1.0]]).expand(40_000, 2)
    log_std = torch.tensor([-1.0, 0.5])
    state = torch.get_rng_state()
    a = gaussian_sample(mean, log_std, _g(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, gaussian_sample(mean, log_std, _g(3)))
    assert not torch.equal(a, gaussian_sample(mean, log_std, _g(4)))
    torch.testing.assert_close(a.mean(0), mean[0], atol=0.03, rtol=0)
    torch.testing.assert_close(a.std(0), log_std.exp(), atol=0.03, rtol=0.02)
    assert a.dtype == torch.float32
    assert gaussian_sample(mean.double(), log_std.double(), _g(3)).dtype == torch.float64


def test_the_policy_is_usable_functionally_with_a_differentiable_inner_step() -> None:
    policy = _policy((16, 16))
    params: dict[str, Tensor] = dict(policy.named_parameters())
    obs = torch.randn(20, 2, generator=_g(0))
    mean, log_std = functional_call(policy, params, (obs,))
    torch.testing.assert_close(mean, policy(obs)[0])
    # One vanilla policy-gradient step (MAML's inner step, α = 0.1) on made-up advantages.
    actions = gaussian_sample(mean, log_std, _g(1)).detach()
    advantages = torch.randn(20, generator=_g(2))
    surrogate = (gaussian_log_prob(mean, log_std, actions) * advantages).mean()
    grads = torch.autograd.grad(surrogate, list(params.values()), create_graph=True)
    adapted = {k: p + 0.1 * d for (k, p), d in zip(params.items(), grads, strict=True)}
    new_mean, new_log_std = functional_call(policy, adapted, (obs,))
    assert not torch.allclose(new_mean, mean) and not torch.allclose(new_log_std, log_std)
    # The same noise gives other actions under the adapted parameters.
    assert not torch.allclose(gaussian_sample(new_mean, new_log_std, _g(1)), actions)
    # The outer objective differentiates through the inner step back to the initial parameters.
    outer = gaussian_log_prob(new_mean, new_log_std, actions).mean()
    outer_grads = torch.autograd.grad(outer, list(params.values()))
    assert all(torch.isfinite(d).all() and d.abs().sum() > 0 for d in outer_grads)
    assert policy.log_std.grad is None  # nothing was written into the module


def test_a_changed_log_std_changes_the_spread_only() -> None:
    policy = _policy((8,))
    obs = torch.zeros(1000, 2)
    params = {k: v.detach() for k, v in policy.named_parameters()}
    wide = {**params, "log_std": torch.full((2,), math.log(3.0))}
    mean, log_std = functional_call(policy, params, (obs,))
    a = gaussian_sample(mean, log_std, _g(0))
    wide_mean, wide_log_std = functional_call(policy, wide, (obs,))
    b = gaussian_sample(wide_mean, wide_log_std, _g(0))
    torch.testing.assert_close(b - mean, 3.0 * (a - mean))


def test_bad_sizes_and_observations_are_refused() -> None:
    with pytest.raises(ValueError, match=r"obs_dim and act_dim of at least 1, got 0 and 2"):
        GaussianMLP(0, 2)
    with pytest.raises(ValueError, match="sizes must be positive"):
        GaussianMLP(2, 2, hidden=(0,))
    with pytest.raises(ValueError, match="init_log_std must be finite"):
        GaussianMLP(2, 2, init_log_std=float("nan"))
    with pytest.raises(ValueError, match=r"observations of shape \(\.\.\., 2\), got \(5, 3\)"):
        _policy((4,))(torch.zeros(5, 3))
