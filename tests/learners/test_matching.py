"""Matching Networks: the output is a proper distribution equal to the paper's formula (softmax
attention over cosine similarities, times one-hot labels), cross-entropy on its log is the
negative log-likelihood, and gradients reach the encoder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metamap.learners import MatchingNet, MatchingState
from metamap.models import MLP
from metamap.tasks import TaskBatch


def clusters(
    ways: int, shots: int, queries: int, dim: int, tasks: int = 1, sep: float = 4.0
) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    means = sep * torch.randn(tasks, ways, 1, dim, generator=g)
    sy = torch.arange(ways).repeat(tasks, shots)
    qy = torch.arange(ways).repeat(tasks, queries)
    sx = (means + torch.randn(tasks, ways, shots, dim, generator=g)).transpose(1, 2)
    qx = (means + torch.randn(tasks, ways, queries, dim, generator=g)).transpose(1, 2)
    return TaskBatch(sx.flatten(1, 2), sy, qx.flatten(1, 2), qy)


def test_output_is_a_distribution_equal_to_the_formula() -> None:
    batch = clusters(ways=3, shots=2, queries=4, dim=5).to("cpu", torch.float64)
    learner = MatchingNet(nn.Identity())
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    state = learner.adapt(sx, sy)
    assert isinstance(state, MatchingState)
    probs = learner.predict(state, qx).exp()
    assert tuple(probs.shape) == (12, 3)
    assert bool((probs > 0).all())
    torch.testing.assert_close(probs.sum(-1), torch.ones(12, dtype=torch.float64))
    for i in range(12):
        cos = torch.tensor([float(F.cosine_similarity(qx[i], sx[j], dim=0)) for j in range(6)])
        a = cos.exp() / cos.exp().sum()
        expected = torch.stack([a[sy == k].sum() for k in range(3)]).double()
        torch.testing.assert_close(probs[i], expected)
        assert float(probs[i].min()) >= math.exp(-2) / 6 - 1e-12  # the documented lower bound


def test_meta_loss_is_the_negative_log_likelihood() -> None:
    batch = clusters(ways=3, shots=2, queries=3, dim=6, tasks=2).to("cpu", torch.float64)
    torch.manual_seed(0)
    enc = MLP(6, 1, (8, 5)).body.double()
    learner = MatchingNet(enc)
    nll = []
    for task in batch:
        log_p = learner.predict(learner.adapt(task.support_x, task.support_y), task.query_x)
        nll.append(-log_p.gather(1, task.query_y[:, None]).mean())
    torch.testing.assert_close(learner.meta_loss(batch), torch.stack(nll).mean())


def test_identity_encoder_classifies_separated_clusters() -> None:
    batch = clusters(ways=5, shots=5, queries=20, dim=16, tasks=2)
    learner = MatchingNet(nn.Identity())
    for task in batch:
        pred = learner.predict(learner.adapt(task.support_x, task.support_y), task.query_x)
        assert float((pred.argmax(-1) == task.query_y).float().mean()) >= 0.95


def test_meta_gradients_match_finite_differences() -> None:
    batch = clusters(ways=3, shots=2, queries=3, dim=6, tasks=2, sep=1.0).to("cpu", torch.float64)
    torch.manual_seed(0)
    learner = MatchingNet(MLP(6, 1, (8, 5)).body.double())
    step = learner.meta_gradients(batch)
    assert set(step.grads) == {k for k, _ in learner.named_parameters()}
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


def test_metric_scale_multiplies_the_cosines_and_is_learned() -> None:
    """TADAM's metric scaling: a(x̂, x_i) = softmax_i(s · cos(f(x̂), g(x_i))), s a parameter."""
    batch = clusters(ways=3, shots=2, queries=4, dim=5).to("cpu", torch.float64)
    learner = MatchingNet(nn.Identity(), scale=7.0).double()
    assert learner.scale is not None and learner.scale.requires_grad
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    probs = learner.predict(learner.adapt(sx, sy), qx).exp()
    for i in range(12):
        cos = torch.stack([F.cosine_similarity(qx[i], sx[j], dim=0) for j in range(6)])
        a = (7.0 * cos).softmax(0)
        torch.testing.assert_close(probs[i], torch.stack([a[sy == k].sum() for k in range(3)]))
    step = learner.meta_gradients(batch)
    assert "scale" in step.grads and float(step.grads["scale"].abs()) > 0
    assert MatchingNet(nn.Identity()).scale is None  # the paper's form by default
    with pytest.raises(ValueError, match="scale must be positive"):
        MatchingNet(nn.Identity(), scale=0.0)
