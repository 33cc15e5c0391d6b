"""The ``ridge`` learner (:mod:`metamap.learners.ridge`): the closed form against a direct solve,
missing targets left out exactly, the batched meta-loss against the per-task loop, gradients
against finite differences in float64, meta-training on sinusoids, and clear refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from metamap.core.task import TaskBatch
from metamap.errors import ConfigError
from metamap.learners import Ridge
from metamap.learners.ridge import ridge_fit
from metamap.models import MLP, Conv4
from metamap.train import Trainer, load_config

D64 = torch.float64


def learner(seed: int = 0, dtype: torch.dtype = torch.float32) -> Ridge:
    torch.manual_seed(seed)
    return Ridge(MLP(1, 1, (16, 8)).to(dtype), "masked_mse", lam=0.5).to(dtype)


def tasks(n: int, support: int, query: int, seed: int = 0) -> list[tuple[Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        amp, phase = 0.1 + 4.9 * torch.rand(1, generator=g), math.pi * torch.rand(1, generator=g)
        x = 10 * torch.rand(support + query, 1, generator=g) - 5
        y = amp * torch.sin(x - phase)
        out.append((x[:support], y[:support], x[support:], y[support:]))
    return out


def test_ridge_fit_is_the_regularised_least_squares_solution_with_a_penalty_per_feature() -> None:
    g = torch.Generator().manual_seed(1)
    h, r = torch.randn(7, 4, generator=g, dtype=D64), torch.randn(7, 2, generator=g, dtype=D64)
    lam = torch.tensor([0.1, 1.0, 10.0, 3.0], dtype=D64)
    want = torch.linalg.solve(h.T @ h + torch.diag(lam), h.T @ r)
    torch.testing.assert_close(ridge_fit(h, r, lam), want)
    torch.testing.assert_close(
        ridge_fit(h, r, 2.0), torch.linalg.solve(h.T @ h + 2 * torch.eye(4, dtype=D64), h.T @ r)
    )


def test_missing_targets_are_left_out_of_the_fit_exactly() -> None:
    g = torch.Generator().manual_seed(2)
    h, r = torch.randn(5, 3, generator=g), torch.randn(5, 1, generator=g)
    padded_h = torch.cat([h, torch.randn(3, 3, generator=g)])
    padded_r = torch.cat([r, torch.full((3, 1), float("nan"))])
    torch.testing.assert_close(ridge_fit(padded_h, padded_r, 0.7), ridge_fit(h, r, 0.7))


def test_the_batched_meta_loss_on_padded_tasks_equals_the_per_task_loop() -> None:
    ridge = learner(dtype=D64)
    ts = [t for n in (3, 6, 9) for t in tasks(1, n, 4, seed=n)]  # ragged support sizes
    s = max(len(t[0]) for t in ts)

    def pad(x: Tensor, fill: float) -> Tensor:
        return torch.cat([x, torch.full((s - len(x), *x.shape[1:]), fill, dtype=x.dtype)])

    batch = TaskBatch(
        torch.stack([pad(t[0], 0.0) for t in ts]).double(),
        torch.stack([pad(t[1], float("nan")) for t in ts]).double(),
        torch.stack([t[2] for t in ts]).double(),
        torch.stack([t[3] for t in ts]).double(),
    )
    loss = ridge.meta_loss(batch)
    grads = torch.autograd.grad(loss, list(ridge.parameters()))
    loop = []
    for sx, sy, qx, qy in ts:
        one = TaskBatch(sx[None].double(), sy[None].double(), qx[None].double(), qy[None].double())
        loop.append(ridge.meta_loss(one))
    mean = torch.stack(loop).mean()
    torch.testing.assert_close(loss, mean)
    for g_batch, g_loop in zip(
        grads, torch.autograd.grad(mean, list(ridge.parameters())), strict=True
    ):
        torch.testing.assert_close(g_batch, g_loop)
    # adapt + predict (the evaluation path) gives the same query predictions as the batch
    sx, sy, qx, qy = (t.double() for t in ts[1])
    pred = ridge.predict(ridge.adapt(sx, sy), qx)
    torch.testing.assert_close(((pred - qy) ** 2).mean(), loop[1].detach())


def test_meta_gradients_match_finite_differences_in_float64() -> None:
    ridge = learner(dtype=D64)
    sx, sy, qx, qy = (t.double()[None] for t in tasks(1, 6, 5, seed=3)[0])
    batch = TaskBatch(sx, sy, qx, qy)
    params = [ridge.log_lambda, ridge.alpha, ridge.model.head.weight]

    def loss_of(*ps: Tensor) -> Tensor:
        with torch.no_grad():
            for p, v in zip(params, ps, strict=True):
                p.copy_(v)
        return ridge.meta_loss(batch)

    step = ridge.meta_gradients(batch)
    base = [p.detach().clone() for p in params]
    names = ["log_lambda", "alpha", "model.head.weight"]
    eps = 1e-6
    for name, p0, i in zip(names, base, range(len(base)), strict=True):
        flat = p0.flatten()
        for j in range(min(3, flat.numel())):
            up, down = [b.clone() for b in base], [b.clone() for b in base]
            up[i].view(-1)[j] += eps
            down[i].view(-1)[j] -= eps
            fd = (loss_of(*up) - loss_of(*down)).detach() / (2 * eps)
            assert float(step.grads[name].flatten()[j]) == pytest.approx(
                float(fd), rel=1e-6, abs=1e-9
            )
    loss_of(*base)


def test_meta_training_on_sinusoids_lowers_the_adapted_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    over = [
        "learner={name: ridge, lam: 1.0}",
        "train.steps=150",
        "train.val_every=50",
        "train.ckpt_every=50",
        "train.progress=false",
        "model.hidden=[40, 40]",
    ]
    trainer = Trainer(load_config(None, over), tmp_path / "run")
    before = trainer.validate()
    result = trainer.fit()
    assert result.best_val < 0.7 * before  # MSE after the closed-form fit on 10 points


def test_a_model_without_features_and_classification_are_refused() -> None:
    with pytest.raises(ValueError, match="features"):
        Ridge(Conv4(5, 1, 8), "mse")
    with pytest.raises(ValueError, match="r2d2"):
        Ridge(MLP(1, 1), "cross_entropy")
    with pytest.raises(ValueError, match="positive"):
        Ridge(MLP(1, 1), "mse", lam=0.0)
    with pytest.raises(ConfigError, match="r2d2"):
        load_config(None, ["task.family=episodes", "model.name=conv4", "learner.name=ridge"])
