"""ANIL and Meta-SGD: exact meta-gradients (finite differences, including ∇ of the Meta-SGD
learning rates), which parameters adapt, and identities with MAML."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from metamap.learners import ANIL, MAML, GradientLearner, MetaSGD
from metamap.models import MLP
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator

Params = dict[str, Tensor]
StepSize = float | Tensor | Mapping[str, Tensor]
StepSizes = Callable[[Params], list[StepSize]]


def _mlp(seed: int = 0, hidden: tuple[int, ...] = (8, 8)) -> MLP:
    torch.manual_seed(seed)
    return MLP(1, 1, hidden).double()


def _batch(n: int = 3, shots: int = 5, queries: int = 6, seed: int = 0) -> TaskBatch:
    return SinusoidTasks(shots, queries).sample(n, make_generator(seed)).to("cpu", torch.float64)


def _scaled(lr: StepSize, k: str, g: Tensor) -> Tensor:
    return lr[k] * g if isinstance(lr, Mapping) else lr * g


def reference_meta_loss(
    model: nn.Module,
    meta: Params,
    batch: TaskBatch,
    sizes: StepSizes,
    adapted: Callable[[str], bool],
) -> Tensor:
    """L_meta(φ) by hand: plain (per-parameter) SGD on the support set, MSE on the query."""
    total = torch.zeros((), dtype=torch.float64)
    for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
        theta = {k.removeprefix("model."): v for k, v in meta.items() if k.startswith("model.")}
        for lr in sizes(meta):
            p = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
            names = [k for k in p if adapted(k)]
            with torch.enable_grad():
                loss = F.mse_loss(functional_call(model, p, (sx,)), sy)
                gs = dict(zip(names, torch.autograd.grad(loss, [p[k] for k in names]), strict=True))
            theta = {k: v - _scaled(lr, k, gs[k]) if k in gs else v for k, v in theta.items()}
        total = total + F.mse_loss(functional_call(model, theta, (qx,)), qy)
    return total / len(batch)


def assert_matches_finite_differences(
    learner: GradientLearner,
    batch: TaskBatch,
    ref: Callable[[Params], Tensor],
    n_dirs: int = 3,
    only: str | None = None,
    eps: float = 1e-6,
) -> None:
    """Analytic vs central finite-difference directional derivatives along random directions."""
    meta = {k: v.detach().clone() for k, v in learner.named_parameters()}
    step = learner.meta_gradients(batch)
    with torch.no_grad():
        assert float(step.loss) == pytest.approx(float(ref(meta)), rel=1e-12)
    g = torch.Generator().manual_seed(4321)
    for _ in range(n_dirs):
        d = {
            k: torch.randn(v.shape, generator=g, dtype=v.dtype)
            * (1.0 if only is None or k.startswith(only) else 0.0)
            for k, v in meta.items()
        }
        with torch.no_grad():
            plus = ref({k: v + eps * d[k] for k, v in meta.items()})
            minus = ref({k: v - eps * d[k] for k, v in meta.items()})
        fd = float((plus - minus) / (2 * eps))
        analytic = float(sum((step.grads[k] * d[k]).sum() for k in meta))
        assert abs(fd) > 1e-4  # a direction the loss actually changes along
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-8)


def _is_head(name: str) -> bool:
    return name.startswith("head.")


def _metasgd_sizes(learner: MetaSGD) -> StepSizes:
    def sizes(meta: Params) -> list[StepSize]:
        alpha = {
            n: meta["inner_lrs." + n.replace(".", "__")]
            for n, _ in learner.model.named_parameters()
        }
        return [alpha] * learner.inner_steps

    return sizes


# ---- ANIL ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("learn_inner_lr", [False, True], ids=["fixed_lr", "learned_lr"])
@pytest.mark.parametrize("steps", [1, 2])
def test_anil_meta_gradient_equals_finite_differences(
    steps: int, learn_inner_lr: bool, batching: str
) -> None:
    model = _mlp()
    lrs = [0.1, 0.15][:steps]
    learner = ANIL(
        model, inner_steps=steps, inner_lr=lrs, learn_inner_lr=learn_inner_lr, batching=batching
    ).double()
    batch = _batch()

    def sizes(meta: Params) -> list[StepSize]:
        return [meta["inner_lrs"][i] for i in range(steps)] if learn_inner_lr else list(lrs)

    def ref(meta: Params) -> Tensor:
        return reference_meta_loss(model, meta, batch, sizes, _is_head)

    assert_matches_finite_differences(learner, batch, ref)
    assert_matches_finite_differences(learner, batch, ref, n_dirs=1, only="model.body.")
    if learn_inner_lr:
        assert_matches_finite_differences(learner, batch, ref, n_dirs=1, only="inner_lrs")


def test_anil_adapts_the_head_only_but_meta_learns_the_body() -> None:
    learner = ANIL(_mlp(), inner_steps=3, inner_lr=0.1).double()
    batch = _batch()
    task = batch[0]
    state = learner.adapt(task.support_x, task.support_y)
    for name, p in learner.model.named_parameters():
        same = torch.equal(state.params[name], p.detach())
        assert same == (not name.startswith("head.")), name
    grads = learner.meta_gradients(batch).grads
    assert all(g.abs().sum() > 0 for g in grads.values())
    assert set(grads) == {"model." + n for n, _ in learner.model.named_parameters()}


def test_anil_equals_maml_when_the_body_is_empty() -> None:
    """With no hidden layer the head is the whole model, so ANIL is MAML."""
    model = _mlp(hidden=())
    batch = _batch()
    anil = ANIL(model, inner_steps=2, inner_lr=0.1).double().meta_gradients(batch)
    maml = MAML(copy.deepcopy(model), inner_steps=2, inner_lr=0.1).double().meta_gradients(batch)
    assert float(anil.loss) == pytest.approx(float(maml.loss), rel=1e-12)
    for k, v in maml.grads.items():
        torch.testing.assert_close(anil.grads[k], v, rtol=1e-10, atol=1e-12)


def test_anil_differs_from_maml_on_a_deep_model() -> None:
    model = _mlp()
    batch = _batch()
    anil = ANIL(model, inner_lr=0.1).double().meta_gradients(batch)
    maml = MAML(copy.deepcopy(model), inner_lr=0.1).double().meta_gradients(batch)
    assert float(anil.loss) != pytest.approx(float(maml.loss), rel=1e-6)


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_first_order_anil_equals_the_stop_gradient_formula(batching: str) -> None:
    """w' = w - α stopgrad(∇w L_s); the body is reached through the query features only."""
    model = _mlp()
    batch = _batch()
    fo = ANIL(model, inner_steps=2, inner_lr=0.1, first_order=True, batching=batching).double()
    so = ANIL(copy.deepcopy(model), inner_steps=2, inner_lr=0.1, batching=batching).double()
    fo_step, so_step = fo.meta_gradients(batch), so.meta_gradients(batch)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    total = torch.zeros((), dtype=torch.float64)
    for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
        theta = dict(leaves)
        for _ in range(2):
            loss = F.mse_loss(functional_call(model, theta, (sx,)), sy)
            heads = [k for k in theta if _is_head(k)]
            gs = torch.autograd.grad(loss, [theta[k] for k in heads])
            theta.update({k: theta[k] - 0.1 * g.detach() for k, g in zip(heads, gs, strict=True)})
        total = total + F.mse_loss(functional_call(model, theta, (qx,)), qy)
    expected = torch.autograd.grad(total / len(batch), list(leaves.values()))
    for k, g in zip(leaves, expected, strict=True):
        torch.testing.assert_close(fo_step.grads["model." + k], g, rtol=1e-10, atol=1e-12)
    diff = _norm_diff(fo_step.grads, so_step.grads)
    assert diff > 1e-3 * float(sum(g.norm() for g in so_step.grads.values()))


def _norm_diff(a: Params, b: Params) -> float:
    return float(sum((a[k] - b[k]).norm() for k in a))


def test_anil_needs_a_body_and_a_head() -> None:
    with pytest.raises(ValueError, match="ANIL needs a model with `body` and `head` sub-modules"):
        ANIL(nn.Linear(1, 1))


# ---- Meta-SGD -----------------------------------------------------------------------------------
@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("steps", [1, 2])
def test_metasgd_meta_gradient_equals_finite_differences(steps: int, batching: str) -> None:
    model = _mlp()
    learner = MetaSGD(model, inner_steps=steps, inner_lr=0.05, batching=batching).double()
    with torch.no_grad():  # distinct per-element rates, so that a mix-up of α's would show
        for p in learner.inner_lrs.values():
            p.mul_(
                1.0 + torch.rand(p.shape, generator=torch.Generator().manual_seed(5), dtype=p.dtype)
            )
    batch = _batch()

    def ref(meta: Params) -> Tensor:
        return reference_meta_loss(model, meta, batch, _metasgd_sizes(learner), lambda k: True)

    assert_matches_finite_differences(learner, batch, ref)
    assert_matches_finite_differences(learner, batch, ref, n_dirs=2, only="inner_lrs.")
    assert_matches_finite_differences(learner, batch, ref, n_dirs=1, only="inner_lrs.head__bias")


def test_metasgd_has_one_rate_per_parameter_element_and_they_get_gradients() -> None:
    learner = MetaSGD(_mlp(), inner_lr=0.03).double()
    lrs = dict(learner.inner_lrs.named_parameters())
    assert set(lrs) == {n.replace(".", "__") for n, _ in learner.model.named_parameters()}
    for n, p in learner.model.named_parameters():
        alpha = lrs[n.replace(".", "__")]
        assert alpha.shape == p.shape
        assert torch.all(alpha == 0.03)
    grads = learner.meta_gradients(_batch()).grads
    for n in lrs:
        g = grads["inner_lrs." + n]
        assert g.shape == lrs[n].shape
        assert g.abs().sum() > 1e-6, n


def test_metasgd_with_uniform_rates_is_maml_with_a_learned_rate() -> None:
    """Same forward; ∂L/∂α for a shared α is the sum of the per-element ∂L/∂α_i."""
    model = _mlp()
    batch = _batch()
    msgd = MetaSGD(model, inner_lr=0.1).double().meta_gradients(batch)
    maml_learner = MAML(copy.deepcopy(model), inner_lr=0.1, learn_inner_lr=True).double()
    with torch.no_grad():  # exactly 0.1 (MAML builds its rates in float32 before .double())
        maml_learner.inner_lrs.fill_(0.1)
    maml = maml_learner.meta_gradients(batch)
    assert float(msgd.loss) == pytest.approx(float(maml.loss), rel=1e-12)
    for n, _ in model.named_parameters():
        torch.testing.assert_close(msgd.grads["model." + n], maml.grads["model." + n])
    total = sum(g.sum() for k, g in msgd.grads.items() if k.startswith("inner_lrs."))
    torch.testing.assert_close(total, maml.grads["inner_lrs"][0])


def test_metasgd_adapt_uses_per_parameter_rates() -> None:
    learner = MetaSGD(_mlp(), inner_steps=2, inner_lr=0.1).double()
    with torch.no_grad():
        learner.inner_lrs["head__weight"].zero_()
        learner.inner_lrs["body__0__bias"].fill_(0.3)
    task = _batch(n=1)[0]
    state = learner.adapt(task.support_x, task.support_y)
    model = learner.model
    assert torch.equal(state.params["head.weight"], model.head.weight.detach())
    assert not torch.equal(state.params["head.bias"], model.head.bias.detach())
    # the first step by hand
    one = learner.adapt(task.support_x, task.support_y, steps=1)
    p = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    loss = F.mse_loss(functional_call(model, p, (task.support_x,)), task.support_y)
    gs = dict(zip(p, torch.autograd.grad(loss, list(p.values())), strict=True))
    for k, v in p.items():
        alpha = learner.inner_lrs[k.replace(".", "__")].detach()
        torch.testing.assert_close(one.params[k], v.detach() - alpha * gs[k])


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_first_order_metasgd_equals_the_stop_gradient_formula(batching: str) -> None:
    model = _mlp()
    learner = MetaSGD(
        model, inner_steps=2, inner_lr=0.1, first_order=True, batching=batching
    ).double()
    batch = _batch()
    step = learner.meta_gradients(batch)
    theta0 = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    alpha = {k: torch.full_like(v, 0.1).requires_grad_(True) for k, v in theta0.items()}
    total = torch.zeros((), dtype=torch.float64)
    for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
        theta = dict(theta0)
        for _ in range(2):
            loss = F.mse_loss(functional_call(model, theta, (sx,)), sy)
            gs = torch.autograd.grad(loss, list(theta.values()))
            theta = {
                k: v - alpha[k] * g.detach() for (k, v), g in zip(theta.items(), gs, strict=True)
            }
        total = total + F.mse_loss(functional_call(model, theta, (qx,)), qy)
    leaves = [*theta0.values(), *alpha.values()]
    expected = torch.autograd.grad(total / len(batch), leaves)
    names = ["model." + k for k in theta0] + ["inner_lrs." + k.replace(".", "__") for k in alpha]
    assert set(step.grads) == set(names)
    for name, g in zip(names, expected, strict=True):
        torch.testing.assert_close(step.grads[name], g, rtol=1e-10, atol=1e-12)
    assert all(step.grads[n].abs().sum() > 0 for n in names if n.startswith("inner_lrs."))


def test_metasgd_rejects_a_non_positive_initial_rate() -> None:
    with pytest.raises(ValueError, match=r"inner_lr \(the initial α\) must be positive, got 0\.0"):
        MetaSGD(_mlp(), inner_lr=0.0)
    with pytest.raises(ValueError, match="inner_steps must be at least 1"):
        MetaSGD(_mlp(), inner_steps=0)
