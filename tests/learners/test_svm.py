"""MetaOptNet-SVM: the unrolled FISTA solver reaches the Crammer–Singer optimum (feasibility,
complementary slackness, zero duality gap), separable support sets are classified perfectly,
and the head's gradients w.r.t. the embeddings match finite differences in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metamap.learners import SVMHead, SVMState
from metamap.learners.svm import crammer_singer_dual, duality_gap, project_simplex
from metamap.models import MLP
from metamap.tasks import TaskBatch

f64 = torch.float64


def problem(
    s: int = 6, ways: int = 3, d: int = 4, seed: int = 0, sep: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Support embeddings ``(S, D)`` around class means and one-hot labels ``(S, W)``."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(ways).repeat(s // ways)
    means = sep * torch.randn(ways, d, generator=g, dtype=f64)
    return means[y] + torch.randn(s, d, generator=g, dtype=f64), F.one_hot(y, ways).to(f64)


def clusters(ways: int, shots: int, queries: int, dim: int, sep: float) -> TaskBatch:
    g = torch.Generator().manual_seed(1)
    means = sep * torch.randn(ways, dim, generator=g)
    sy, qy = torch.arange(ways).repeat(shots), torch.arange(ways).repeat(queries)
    sx = means[sy] + torch.randn(len(sy), dim, generator=g)
    qx = means[qy] + torch.randn(len(qy), dim, generator=g)
    return TaskBatch(sx[None], sy[None], qx[None], qy[None])


def test_simplex_projection() -> None:
    v = torch.tensor(
        [[0.5, 0.2, 0.1], [2.0, 0.0, -1.0], [0.3, 0.3, 0.3], [-1.0, 1.5, 1.0]], dtype=f64
    )
    p = project_simplex(v)
    torch.testing.assert_close(p[0], torch.tensor([0.5, 0.2, 0.1], dtype=f64) + 0.2 / 3)
    torch.testing.assert_close(p[1], torch.tensor([1.0, 0.0, 0.0], dtype=f64))
    torch.testing.assert_close(p[2], torch.full((3,), 1 / 3, dtype=f64))
    torch.testing.assert_close(p[3], torch.tensor([0.0, 0.75, 0.25], dtype=f64))
    # optimality of a Euclidean projection: <v - p, q - p> ≤ 0 for every q on the simplex
    q = torch.distributions.Dirichlet(torch.ones(3, dtype=f64)).sample((100,))
    assert float(((v - p)[:, None] * (q[None] - p[:, None])).sum(-1).max()) <= 1e-12


@pytest.mark.parametrize(("c", "seed"), [(0.1, 0), (1.0, 1), (10.0, 2)])
def test_solver_reaches_the_kkt_point(c: float, seed: int) -> None:
    x, y = problem(seed=seed)
    k = x @ x.T
    alpha = crammer_singer_dual(k, y, c, iterations=500)
    # dual feasibility: α_n ≤ C y_n and Σ_k α_nk = 0
    assert float((alpha - c * y).max()) <= 1e-12
    torch.testing.assert_close(alpha.sum(-1), torch.zeros(6, dtype=f64), atol=1e-12, rtol=0)
    # strong duality: primal(w = Xᵀα) − dual(α) = 0
    assert 0 <= float(duality_gap(k, y, alpha, c)) < 1e-9
    # complementary slackness: α_nk < C y_nk only for constraints with the largest margin
    scores = k @ alpha
    margins = 1 - y + scores - (scores * y).sum(-1, keepdim=True)
    slack = margins.amax(-1, keepdim=True)  # ξ_n
    active = (c * y - alpha) > 1e-8
    assert float((slack - margins)[active].max()) < 1e-7
    # primal optimality: w matches an independent sub-gradient-free check via the dual fixed point
    step = 1 / torch.linalg.eigvalsh(k)[-1]
    p = y - alpha / c
    torch.testing.assert_close(project_simplex(p - step * (y - scores) / c), p, atol=1e-9, rtol=0)


def test_fewer_iterations_give_a_larger_gap() -> None:
    x, y = problem(s=12, ways=4, d=3, seed=3)
    k = x @ x.T
    gaps = [float(duality_gap(k, y, crammer_singer_dual(k, y, 1.0, n), 1.0)) for n in (5, 50, 400)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-8


def test_separable_support_is_classified_perfectly() -> None:
    batch = clusters(ways=5, shots=5, queries=10, dim=16, sep=3.0)
    learner = SVMHead(nn.Identity(), c=1.0)
    sx, sy = batch.support_x[0], batch.support_y[0]
    state = learner.adapt(sx, sy)
    assert isinstance(state, SVMState)
    assert tuple(state.weight.shape) == (16, 5) and tuple(state.dual.shape) == (25, 5)
    assert torch.equal(learner.predict(state, sx).argmax(-1), sy)
    acc = (learner.predict(state, batch.query_x[0]).argmax(-1) == batch.query_y[0]).float().mean()
    assert float(acc) >= 0.9


def test_adapt_uses_test_iterations_or_steps_and_predict_is_scaled() -> None:
    x, y = problem()
    sy = y.argmax(-1)
    learner = SVMHead(nn.Identity(), c=0.5, iterations=3, test_iterations=40, scale=2.0).double()
    torch.testing.assert_close(learner.adapt(x, sy).dual, crammer_singer_dual(x @ x.T, y, 0.5, 40))
    state = learner.adapt(x, sy, steps=7)
    torch.testing.assert_close(state.dual, crammer_singer_dual(x @ x.T, y, 0.5, 7))  # type: ignore[attr-defined]
    torch.testing.assert_close(learner.predict(state, x), 2.0 * x @ (x.T @ state.dual))  # type: ignore[attr-defined]
    # meta-training (fit, meta_loss) uses `iterations`
    torch.testing.assert_close(learner.fit(x, y).dual, crammer_singer_dual(x @ x.T, y, 0.5, 3))
    with pytest.raises(ValueError, match="c > 0"):
        SVMHead(nn.Identity(), c=0.0)


def test_head_gradients_wrt_embeddings_match_finite_differences() -> None:
    """The unrolled solver is differentiable: gradcheck of query logits w.r.t. support and query
    embeddings (central finite differences, float64)."""
    x, y = problem(s=6, ways=3, d=4, seed=4)
    xq = torch.randn(5, 4, dtype=f64, generator=torch.Generator().manual_seed(5))
    learner = SVMHead(nn.Identity(), c=0.5, iterations=30).double()

    def logits(zs: Tensor, zq: Tensor) -> Tensor:
        return learner.score(learner.fit(zs, y), zq)

    assert torch.autograd.gradcheck(
        logits, (x.requires_grad_(), xq.requires_grad_()), eps=1e-6, atol=1e-6, rtol=1e-5
    )


def test_meta_gradients_reach_the_encoder_and_the_scale() -> None:
    torch.manual_seed(0)
    batch = clusters(ways=3, shots=2, queries=3, dim=6, sep=1.0).to("cpu", f64)
    learner = SVMHead(MLP(6, 1, (8, 5)).body, iterations=20).double()
    step = learner.meta_gradients(batch)
    assert set(step.grads) == {k for k, _ in learner.named_parameters()}
    assert all(bool(torch.isfinite(g).all()) for g in step.grads.values())
    assert float(step.grads["model.0.weight"].abs().sum()) > 0 and float(step.grads["scale"]) != 0
    # and they are the gradients of meta_loss (directional finite difference)
    d = {k: torch.randn_like(p) for k, p in learner.named_parameters()}
    eps, losses = 1e-6, []
    with torch.no_grad():
        for t in (eps, -eps):
            for k, p in learner.named_parameters():
                p.add_(t * d[k])
            losses.append(float(learner.meta_loss(batch)))
            for k, p in learner.named_parameters():
                p.sub_(t * d[k])
    analytic = sum(float((step.grads[k] * d[k]).sum()) for k in d)
    assert analytic == pytest.approx((losses[0] - losses[1]) / (2 * eps), rel=1e-5)
