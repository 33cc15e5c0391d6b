"""R2D2: the Woodbury form equals primal ridge regression, logits are α X'W + β, gradients
w.r.t. the encoder, λ and α match finite differences in float64, separated clusters are
classified."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from metamap.learners import R2D2, EncoderLearner, RidgeState
from metamap.learners.r2d2 import ridge_woodbury
from metamap.models import MLP, Conv4
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


def assert_grads_match_finite_differences(
    learner: EncoderLearner, batch: TaskBatch, eps: float = 1e-6
) -> dict[str, torch.Tensor]:
    grads = learner.meta_gradients(batch).grads
    params = {k: p for k, p in learner.named_parameters() if p.requires_grad}
    assert set(grads) == set(params)
    g = torch.Generator().manual_seed(1234)
    for _ in range(3):
        d = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}
        losses = []
        with torch.no_grad():
            for t in (eps, -eps):
                for k, p in params.items():
                    p.add_(t * d[k])
                losses.append(float(learner.meta_loss(batch)))
                for k, p in params.items():
                    p.sub_(t * d[k])
        fd = (losses[0] - losses[1]) / (2 * eps)
        assert sum(float((grads[k] * d[k]).sum()) for k in grads) == pytest.approx(
            fd, rel=1e-5, abs=1e-8
        )
    return grads


@pytest.mark.parametrize(("s", "d"), [(6, 10), (10, 4)])
def test_woodbury_equals_the_primal_ridge_solution(s: int, d: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(s, d, generator=g, dtype=torch.float64)
    y = torch.randn(s, 3, generator=g, dtype=torch.float64)
    lam = 0.7
    primal = torch.linalg.solve(x.T @ x + lam * torch.eye(d, dtype=torch.float64), x.T @ y)
    torch.testing.assert_close(ridge_woodbury(x, y, lam), primal, rtol=1e-10, atol=1e-10)
    # batched over leading dimensions
    xb, yb = torch.stack([x, 2 * x]), torch.stack([y, y])
    torch.testing.assert_close(ridge_woodbury(xb, yb, lam)[0], primal, rtol=1e-10, atol=1e-10)


def test_adapt_solves_ridge_regression_to_one_hot_and_predict_is_calibrated() -> None:
    batch = clusters(ways=3, shots=2, queries=4, dim=8).to("cpu", torch.float64)
    learner = R2D2(nn.Identity(), lam=0.5, scale=3.0, bias=0.25).double()
    assert learner.lam.item() == pytest.approx(0.5)
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    state = learner.adapt(sx, sy)
    assert isinstance(state, RidgeState) and tuple(state.weight.shape) == (8, 3)
    y = torch.nn.functional.one_hot(sy, 3).double()
    w = torch.linalg.solve(sx.T @ sx + 0.5 * torch.eye(8, dtype=torch.float64), sx.T @ y)
    torch.testing.assert_close(state.weight, w)
    torch.testing.assert_close(learner.predict(state, qx), 3.0 * qx @ w + 0.25)


def test_identity_encoder_classifies_separated_clusters() -> None:
    batch = clusters(ways=5, shots=5, queries=20, dim=32, tasks=4)
    learner = R2D2(nn.Identity())
    for task in batch:
        pred = learner.predict(learner.adapt(task.support_x, task.support_y), task.query_x)
        assert float((pred.argmax(-1) == task.query_y).float().mean()) >= 0.95


def test_meta_gradients_match_finite_differences_including_lambda_and_alpha() -> None:
    batch = clusters(ways=3, shots=2, queries=3, dim=6, tasks=2, sep=1.0).to("cpu", torch.float64)
    torch.manual_seed(0)
    learner = R2D2(MLP(6, 1, (8, 5)).body, lam=0.3, scale=2.0).double()
    grads = assert_grads_match_finite_differences(learner, batch)
    assert {"log_lambda", "alpha", "beta", "model.0.weight"} <= set(grads)
    assert float(grads["log_lambda"].abs()) > 0 and float(grads["alpha"].abs()) > 0
    assert float(grads["beta"]) == pytest.approx(0.0, abs=1e-12)  # softmax ignores β


def test_fixed_lambda_gets_no_gradient() -> None:
    learner = R2D2(nn.Identity(), lam=2.0, learn_lambda=False)
    batch = clusters(ways=2, shots=2, queries=2, dim=4)
    step = learner.meta_gradients(batch)
    assert "log_lambda" not in step.grads and set(step.grads) == {"alpha", "beta"}
    assert learner.log_lambda.item() == pytest.approx(math.log(2.0))
    with pytest.raises(ValueError, match="must be positive"):
        R2D2(nn.Identity(), lam=0.0)


def test_conv_encoder_batch_runs_and_trains() -> None:
    torch.manual_seed(0)
    batch = TaskBatch(
        torch.randn(2, 4, 1, 16, 16),
        torch.tensor([[0, 1, 0, 1]] * 2),
        torch.randn(2, 4, 1, 16, 16),
        torch.tensor([[0, 1, 1, 0]] * 2),
    )
    learner = R2D2(Conv4(1, width=4, image_size=16).body)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    first = learner.meta_gradients(batch)
    assert all(torch.isfinite(g).all() for g in first.grads.values())
    for _ in range(5):
        learner.apply_gradients(learner.meta_gradients(batch))
        opt.step()
    assert float(learner.meta_loss(batch).detach()) < float(first.loss)
