"""The pre-train-then-fine-tune baseline: supervised gradients and steps on base classes, a
prototype or logistic-regression head that fits the support set (deterministically, at the
optimum of its objective), and a meta_gradients that says to use supervised training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metamap.errors import TaskShapeError
from metamap.learners import LinearState, PretrainBaseline, PrototypeState
from metamap.models import MLP
from metamap.tasks import TaskBatch


def base_data(n: int = 64, classes: int = 4, dim: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(classes).repeat(n // classes)
    return means[y] + torch.randn(n, dim, generator=g), y


def task(ways: int = 5, shots: int = 3, dim: int = 6, seed: int = 1) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    means = 4 * torch.randn(ways, dim, generator=g)
    y = torch.arange(ways).repeat(shots)
    return means[y] + torch.randn(len(y), dim, generator=g), y


def baseline(head: str = "prototype", **kw: object) -> PretrainBaseline:
    torch.manual_seed(0)
    return PretrainBaseline(MLP(6, 1, (16, 8)).body, 4, feature_dim=8, head=head, **kw)  # type: ignore[arg-type]


def test_supervised_gradients_and_steps_train_the_base_classifier() -> None:
    learner = baseline()
    x, y = base_data()
    step = learner.supervised_gradients(x, y)
    assert set(step.grads) == {k for k, _ in learner.named_parameters()}
    assert {"classifier.weight", "model.0.weight"} <= set(step.grads)
    logits = learner.classifier(learner.model(x))
    torch.testing.assert_close(step.loss, F.cross_entropy(logits, y).detach())
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    for _ in range(30):
        last = learner.pretrain_step(x, y, opt)
    assert float(last.loss) < 0.5 * float(step.loss) and float(last.metric) > 0.9


def test_base_labels_are_checked() -> None:
    learner = baseline()
    x, _ = base_data(8)
    with pytest.raises(TaskShapeError, match=r"in \[0, 4\).*values 0..4"):
        learner.supervised_gradients(x, torch.tensor([0, 1, 2, 3, 4, 0, 1, 2]))
    with pytest.raises(TaskShapeError, match="int64"):
        learner.supervised_gradients(x, torch.zeros(8))


@pytest.mark.parametrize("head", ["prototype", "logistic"])
def test_heads_fit_the_support_set(head: str) -> None:
    learner = PretrainBaseline(nn.Identity(), 4, feature_dim=6, head=head, logistic_c=10.0)  # type: ignore[arg-type]
    sx, sy = task()
    state = learner.adapt(sx, sy)
    assert isinstance(state, LinearState if head == "logistic" else PrototypeState)
    assert torch.equal(learner.predict(state, sx).argmax(-1), sy)


@pytest.mark.parametrize("head", ["prototype", "logistic"])
def test_pretrained_features_serve_tasks_of_base_like_classes(head: str) -> None:
    learner = baseline(head)
    x, y = base_data(n=128)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    for _ in range(40):
        learner.pretrain_step(x, y, opt)
    learner.eval()
    g = torch.Generator().manual_seed(5)
    perm = torch.randperm(128, generator=g)
    sx, sy = x[perm[:40]], y[perm[:40]]
    qx, qy = x[perm[40:]], y[perm[40:]]
    pred = learner.predict(learner.adapt(sx, sy), qx).argmax(-1)
    assert float((pred == qy).float().mean()) > 0.9


def test_prototype_head_is_nearest_centroid_on_normalised_features() -> None:
    learner = baseline("prototype")
    sx, sy = task(ways=3, shots=2)
    state = learner.adapt(sx, sy)
    with torch.no_grad():
        z = F.normalize(learner.model(sx), dim=-1)
        c = torch.stack([z[sy == k].mean(0) for k in range(3)])
        torch.testing.assert_close(learner.predict(state, sx), -torch.cdist(z, c).square())


def test_logistic_head_is_deterministic_and_optimal() -> None:
    learner = baseline("logistic", logistic_c=2.0, logistic_steps=200).double()
    sx, sy = task()
    sx = sx.double()
    a, b = learner.adapt(sx, sy), learner.adapt(sx, sy)
    assert isinstance(a, LinearState) and isinstance(b, LinearState)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    assert tuple(a.weight.shape) == (5, 8) and tuple(a.bias.shape) == (5,)
    # the gradient of ½‖W‖² + C Σ CE vanishes at the solution
    with torch.no_grad():
        z = F.normalize(learner.model(sx), dim=-1)
    w, bias = a.weight.clone().requires_grad_(), a.bias.clone().requires_grad_()
    loss = 0.5 * w.square().sum() + 2.0 * F.cross_entropy(z @ w.T + bias, sy, reduction="sum")
    gw, gb = torch.autograd.grad(loss, (w, bias))
    assert float(gw.abs().max()) < 1e-6 and float(gb.abs().max()) < 1e-6


def test_meta_gradients_point_to_supervised_training() -> None:
    learner = baseline()
    sx, sy = task()
    batch = TaskBatch(sx[None], sy[None], sx[None], sy[None])
    with pytest.raises(NotImplementedError, match="supervised_gradients"):
        learner.meta_gradients(batch)
    with pytest.raises(NotImplementedError, match="supervised_gradients"):
        learner.meta_loss(batch)


def test_construction_errors_and_support_labels() -> None:
    with pytest.raises(ValueError, match="give feature_dim"):
        PretrainBaseline(nn.Identity(), 4)
    with pytest.raises(ValueError, match="head must be"):
        baseline("svm")
    sx, _ = task(ways=2, shots=2)
    with pytest.raises(TaskShapeError, match=r"must be exactly 0\.\.ways-1"):
        baseline().adapt(sx, torch.tensor([0, 2, 0, 2]))
