"""MAML-TRPO (:mod:`metamap.rl.maml_trpo`): the conjugate-gradient solve, the Gaussian KL, the
meta-gradient through the policy-gradient inner step against finite differences in float64, the
batched (vmap) adaptation against the per-task loop, and TRPO's trust region."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from metamap.models import GaussianMLP
from metamap.rl import MAMLTRPO, ProMP, Rollouts, conjugate_gradient, gaussian_kl, rollout
from metamap.rl.maml_trpo import advantages
from metamap.tasks.navigation import Navigation2D

D64 = torch.float64


def setup(seed: int = 0, first_order: bool = False) -> tuple[MAMLTRPO, Rollouts, Rollouts]:
    """A small policy in float64 and support/query rollouts of 3 goals × 4 episodes × 6 steps."""
    torch.manual_seed(seed)
    learner = MAMLTRPO(GaussianMLP(2, 2, (8,)).double(), inner_lr=0.5, first_order=first_order)
    family = Navigation2D(horizon=6)
    g = torch.Generator().manual_seed(seed)
    envs = family.envs(family.sample_goals(3, g, D64), 4)
    support = rollout(learner.policy_fn(), envs, g)
    query = rollout(learner.policy_fn(learner.adapt_policy(support, training=True)), envs, g)
    return learner, support, query


def test_conjugate_gradient_solves_a_symmetric_positive_definite_system() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 6, generator=g, dtype=D64)
    spd = a @ a.T + 0.5 * torch.eye(6, dtype=D64)
    b = torch.randn(6, generator=g, dtype=D64)
    x = conjugate_gradient(lambda v: spd @ v, b, iters=6)
    torch.testing.assert_close(x, torch.linalg.solve(spd, b))


def test_gaussian_kl_matches_torch_distributions() -> None:
    g = torch.Generator().manual_seed(1)
    m0, m1, s0, s1 = (torch.randn(5, 3, generator=g, dtype=D64) for _ in range(4))
    p = torch.distributions.Normal(m0, s0.exp())
    q = torch.distributions.Normal(m1, s1.exp())
    want = torch.distributions.kl_divergence(p, q).sum(-1)
    torch.testing.assert_close(gaussian_kl(m0, s0, m1, s1), want)


def test_batched_adaptation_equals_the_per_task_loop() -> None:
    learner, support, _ = setup()
    adapted = learner.adapt_policy(support, training=True)
    adv = advantages(support, learner.gamma, learner.gae_lambda)
    for t in range(3):
        params = {k: v.detach().requires_grad_(True) for k, v in learner.model.named_parameters()}
        mean, log_std = functional_call(learner.model, params, (support.observations[t],))
        logp = learner.model.log_prob(mean, log_std, support.actions[t])
        m = support.masks[t]
        loss = -(logp * adv[t] * m).sum() / m.sum()
        grads = torch.autograd.grad(loss, list(params.values()))
        for (k, p), gk in zip(params.items(), grads, strict=True):
            torch.testing.assert_close(adapted[k][t], p - 0.5 * gk)


def _objective(
    learner: MAMLTRPO, support: Rollouts, query: Rollouts, old: tuple[Tensor, Tensor] | None = None
) -> Tensor:
    """The surrogate loss; ``old``: the sampling policies' outputs (default: at θ itself)."""
    adv_s = advantages(support, learner.gamma, learner.gae_lambda)
    adv_q = advantages(query, learner.gamma, learner.gae_lambda)
    return learner._objective(support, query, adv_s, adv_q, old)[0]


def _old(learner: MAMLTRPO, support: Rollouts, query: Rollouts) -> tuple[Tensor, Tensor]:
    adv_s = advantages(support, learner.gamma, learner.gae_lambda)
    adv_q = advantages(query, learner.gamma, learner.gae_lambda)
    return learner._objective(support, query, adv_s, adv_q, None)[2]


@pytest.mark.parametrize("first_order", [False, True])
def test_the_meta_gradient_through_the_inner_step_matches_finite_differences(
    first_order: bool,
) -> None:
    learner, support, query = setup(first_order=first_order)
    params = list(learner.model.parameters())
    grads = torch.autograd.grad(_objective(learner, support, query), params)
    exact, _, _ = setup(first_order=False)  # the exact objective, differentiated numerically
    old = _old(exact, support, query)  # the sampling policies stay fixed, as in TRPO
    eps = 1e-6
    for p, gp, q in zip(params, grads, exact.model.parameters(), strict=True):
        for j in range(min(2, p.numel())):
            with torch.no_grad():
                q.view(-1)[j] += eps
            up = float(_objective(exact, support, query, old).detach())
            with torch.no_grad():
                q.view(-1)[j] -= 2 * eps
            down = float(_objective(exact, support, query, old).detach())
            with torch.no_grad():
                q.view(-1)[j] += eps
            fd = (up - down) / (2 * eps)
            if not first_order:
                assert float(gp.view(-1)[j]) == pytest.approx(fd, rel=1e-5, abs=1e-8)
    if first_order:  # the first-order gradient differs from the exact one somewhere
        exact_grads = torch.autograd.grad(
            _objective(exact, support, query), list(exact.model.parameters())
        )
        assert any(not torch.allclose(a, b) for a, b in zip(grads, exact_grads, strict=True))


def test_a_trpo_step_improves_the_surrogate_within_the_trust_region() -> None:
    learner, support, query = setup()
    before = [p.detach().clone() for p in learner.model.parameters()]
    loss_before = float(_objective(learner, support, query).detach())
    adv_s = advantages(support, learner.gamma, learner.gae_lambda)
    adv_q = advantages(query, learner.gamma, learner.gae_lambda)
    _, _, old = learner._objective(support, query, adv_s, adv_q, None)
    step = learner.meta_update(support, query)
    assert step.applied and not step.grads
    assert float(step.metric) == pytest.approx(float(query.returns.mean()))
    moved = any(
        not torch.equal(a, p) for a, p in zip(before, learner.model.parameters(), strict=True)
    )
    assert moved
    loss_after, kl, _ = learner._objective(support, query, adv_s, adv_q, old)
    assert float(loss_after) < loss_before
    assert 0 < float(kl) <= learner.max_kl


def test_the_supervised_interface_is_refused_with_a_message() -> None:
    learner, _, _ = setup()
    with pytest.raises(Exception, match="adapt_policy"):
        learner.adapt(torch.zeros(3, 2), torch.zeros(3, 2))


def test_promps_lvc_inner_step_is_the_policy_gradient_step() -> None:
    """LVC changes the Hessian, not the gradient: ProMP adapts exactly as MAML does."""
    learner, support, _ = setup()
    promp = ProMP(learner.model, inner_lr=0.5)
    for a, b in zip(
        learner.adapt_policy(support, training=True).values(),
        promp.adapt_policy(support, training=True).values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b)
