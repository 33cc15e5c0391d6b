"""Reptile: the meta-update θ ← θ + ε (mean_T θ̃_T − θ) against k hand-written SGD steps per task."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metamap.learners import Reptile
from metamap.learners.minibatch import step_indices
from metamap.models import MLP
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(1, 1, (8, 8)).double()


def _batch(n: int = 4, shots: int = 5, queries: int = 6, seed: int = 0) -> TaskBatch:
    return SinusoidTasks(shots, queries).sample(n, make_generator(seed)).to("cpu", torch.float64)


def _solve_by_hand(model: nn.Module, sx: Tensor, sy: Tensor, k: int, lr: float) -> nn.Module:
    """θ̃_T: k steps of plain torch.optim.SGD on the support set, from a copy of θ."""
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(k):
        opt.zero_grad()
        F.mse_loss(net(sx), sy).backward()
        opt.step()
    return net


@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("k", [1, 3])
def test_one_sgd_step_on_the_meta_gradient_is_the_reptile_update(k: int, batching: str) -> None:
    eps, inner_lr = 0.3, 0.02
    model = _mlp()
    batch = _batch()
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    solved = [
        dict(_solve_by_hand(model, sx, sy, k, inner_lr).named_parameters())
        for sx, sy, *_ in zip(*batch.tensors(), strict=True)
    ]
    mean_tilde = {n: torch.stack([s[n].detach() for s in solved]).mean(0) for n in theta}
    # the adapted models really moved, by different amounts per task
    assert not torch.allclose(solved[0]["head.bias"], solved[1]["head.bias"])

    learner = Reptile(model, inner_steps=k, inner_lr=inner_lr, batching=batching)
    opt = torch.optim.SGD(learner.parameters(), lr=eps)
    step = learner.meta_gradients(batch)
    assert set(step.grads) == {"model." + n for n in theta}
    learner.apply_gradients(step)
    opt.step()
    for n, p in model.named_parameters():
        expected = theta[n] + eps * (mean_tilde[n] - theta[n])
        torch.testing.assert_close(p.detach(), expected, rtol=1e-10, atol=1e-12)
        assert not torch.allclose(p.detach(), theta[n])


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_reptile_logs_the_query_loss_after_adaptation(batching: str) -> None:
    model = _mlp()
    batch = _batch()
    learner = Reptile(model, inner_steps=3, inner_lr=0.02, batching=batching)
    step = learner.meta_gradients(batch)
    losses = [
        F.mse_loss(_solve_by_hand(model, sx, sy, 3, 0.02)(qx), qy).detach()
        for sx, sy, qx, qy in zip(*batch.tensors(), strict=True)
    ]
    expected = float(torch.stack(losses).mean())
    assert float(step.loss) == pytest.approx(expected, rel=1e-10)
    assert float(step.metric) == pytest.approx(expected, rel=1e-10)


def test_reptile_meta_gradients_leave_the_model_unchanged() -> None:
    model = _mlp()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for batching in ("vmap", "loop"):
        step = Reptile(model, inner_steps=2, batching=batching).meta_gradients(_batch())
        assert all(not g.requires_grad for g in step.grads.values())
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
        assert p.grad is None


def test_reptile_adapt_is_k_sgd_steps() -> None:
    model = _mlp()
    task = _batch(n=1)[0]
    learner = Reptile(model, inner_steps=4, inner_lr=0.05)
    state = learner.adapt(task.support_x, task.support_y)
    by_hand = _solve_by_hand(model, task.support_x, task.support_y, 4, 0.05)
    for n, p in by_hand.named_parameters():
        torch.testing.assert_close(state.params[n], p.detach())
    assert len(state.support_losses) == 4


def test_reptile_defaults_and_invalid_arguments() -> None:
    learner = Reptile(MLP(1, 1, (4,)))
    assert learner.inner_steps == 5 and learner.inner_lr == 0.01
    assert learner.second_order is False
    assert learner.batching == "vmap"
    with pytest.raises(ValueError, match=r"inner_lr must be positive, got -0\.5"):
        Reptile(MLP(1, 1, (4,)), inner_lr=-0.5)
    with pytest.raises(ValueError, match="inner_steps must be at least 1, got 0"):
        Reptile(MLP(1, 1, (4,)), inner_steps=0)
    assert learner.inner_batch is None
    with pytest.raises(ValueError, match=r"inner_batch must be at least 1 \(None: the whole"):
        Reptile(MLP(1, 1, (4,)), inner_batch=0)
    with pytest.raises(ValueError, match=r"inner_batch must be at least 1 .*got 2\.5"):
        Reptile(MLP(1, 1, (4,)), inner_batch=2.5)  # type: ignore[arg-type]


def test_reptile_has_no_meta_loss() -> None:
    learner = Reptile(MLP(1, 1, (8,)))
    with pytest.raises(NotImplementedError, match="meta_gradients"):
        learner.meta_loss(SinusoidTasks(5, 5).sample(2, make_generator(0)))


# ---- inner minibatches (Nichol et al.'s inner-batch) ---------------------------------------------
def _solve_on_minibatches(
    model: nn.Module, sx: Tensor, sy: Tensor, k: int, lr: float, size: int
) -> nn.Module:
    """θ̃_T: k steps of torch.optim.SGD, step i on the support rows ``step_indices`` gives it."""
    net = copy.deepcopy(model)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for rows in step_indices(sy, size, k):
        opt.zero_grad()
        F.mse_loss(net(sx[rows]), sy[rows]).backward()
        opt.step()
    return net


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_reptile_with_inner_minibatches_takes_each_step_on_its_minibatch(batching: str) -> None:
    eps, inner_lr, k = 0.5, 0.05, 4
    model = _mlp()
    batch = _batch(shots=10)
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    solved = [
        dict(_solve_on_minibatches(model, sx, sy, k, inner_lr, 3).named_parameters())
        for sx, sy, *_ in zip(*batch.tensors(), strict=True)
    ]
    learner = Reptile(model, inner_steps=k, inner_lr=inner_lr, batching=batching, inner_batch=3)
    opt = torch.optim.SGD(learner.parameters(), lr=eps)
    learner.apply_gradients(learner.meta_gradients(batch))
    opt.step()
    for n, p in model.named_parameters():
        mean_tilde = torch.stack([s[n].detach() for s in solved]).mean(0)
        torch.testing.assert_close(p.detach(), theta[n] + eps * (mean_tilde - theta[n]))


def test_reptile_adapts_test_tasks_on_the_same_minibatches() -> None:
    model = _mlp()
    task = _batch(n=1, shots=10)[0]
    learner = Reptile(model, inner_steps=2, inner_lr=0.05, inner_batch=4)
    trace = learner.adapt_trace(task.support_x, task.support_y, [2, 5])  # 5 continues from 2
    by_hand = _solve_on_minibatches(model, task.support_x, task.support_y, 5, 0.05, 4)
    for n, p in by_hand.named_parameters():
        torch.testing.assert_close(trace[5].params[n], p.detach())
    whole = Reptile(model, inner_steps=2, inner_lr=0.05, inner_batch=10)  # no smaller than S
    state = whole.adapt(task.support_x, task.support_y)
    by_hand = _solve_by_hand(model, task.support_x, task.support_y, 2, 0.05)
    for n, p in by_hand.named_parameters():
        torch.testing.assert_close(state.params[n], p.detach())
