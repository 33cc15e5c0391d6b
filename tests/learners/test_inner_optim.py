"""Differentiable inner optimizers (momentum SGD, Adam): each step equals torch.optim's, the
second-order meta-gradient through them equals finite differences in float64 (also where a
gradient is exactly zero), they run under vmap as in a loop, and bad settings are refused."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from metamap.learners import ANIL, MAML, MetaSGD, Reptile, inner_loop
from metamap.learners.inner_optim import SGD, Adam, InnerOptimizer
from metamap.models import MLP
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator

Params = dict[str, Tensor]
OPTIMIZERS: dict[str, Callable[[], InnerOptimizer[Any]]] = {
    "sgd": SGD,
    "momentum": lambda: SGD(momentum=0.9),
    "nesterov": lambda: SGD(momentum=0.8, nesterov=True, weight_decay=0.01),
    "adam": Adam,
    "adam-decay": lambda: Adam(betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05),
    "adamw": lambda: Adam(betas=(0.8, 0.95), weight_decay=0.3, decoupled=True),
}
TORCH: dict[str, Callable[[list[Tensor], float], torch.optim.Optimizer]] = {
    "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
    "momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "nesterov": lambda p, lr: torch.optim.SGD(
        p, lr=lr, momentum=0.8, nesterov=True, weight_decay=0.01
    ),
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "adam-decay": lambda p, lr: torch.optim.Adam(
        p, lr=lr, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05
    ),
    "adamw": lambda p, lr: torch.optim.AdamW(p, lr=lr, betas=(0.8, 0.95), weight_decay=0.3),
}


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(1, 1, (8, 8)).double()


def _data(seed: int, n: int = 6) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g, dtype=torch.float64) * 10 - 5
    return x, torch.sin(x + seed)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_each_step_equals_torch_optim(name: str) -> None:
    """Four steps on one support set: the same parameters as torch.optim's, step for step."""
    model = _mlp()
    x, y = _data(1)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    reference = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    opt = TORCH[name](list(reference.values()), 0.05)
    ours, state = dict(params), OPTIMIZERS[name]().init(params)
    for _ in range(4):
        p = {k: v.requires_grad_(True) for k, v in ours.items()}
        loss = F.mse_loss(functional_call(model, p, (x,)), y)
        grads = dict(zip(p, torch.autograd.grad(loss, list(p.values())), strict=True))
        ours, state = OPTIMIZERS[name]().step(
            {k: v.detach() for k, v in p.items()}, grads, state, 0.05
        )
        opt.zero_grad()
        F.mse_loss(functional_call(model, reference, (x,)), y).backward()
        opt.step()
        for k in ours:
            torch.testing.assert_close(ours[k], reference[k].detach(), rtol=1e-12, atol=1e-14)


def _meta_loss(
    model: MLP, optimizer: InnerOptimizer[Any] | None, second_order: bool = True
) -> Callable[[Params], Tensor]:
    """L_meta(θ) of two tasks: three inner steps with ``optimizer``, then the query MSE (inner
    gradients held constant unless ``second_order``)."""
    tasks = [(_data(s), _data(s + 10)) for s in (2, 3)]

    def meta_loss(theta: Params) -> Tensor:
        total = torch.zeros((), dtype=torch.float64)
        for (sx, sy), (qx, qy) in tasks:
            fast, _ = inner_loop(
                lambda p, sx=sx, sy=sy: F.mse_loss(functional_call(model, p, (sx,)), sy),
                theta,
                [0.03, 0.02, 0.02],
                create_graph=second_order,
                use_func=False,
                optimizer=optimizer,
            )
            total = total + F.mse_loss(functional_call(model, fast, (qx,)), qy)
        return total / len(tasks)

    return meta_loss


def _fd_errors(meta_loss: Callable[[Params], Tensor], theta: Params) -> list[tuple[float, float]]:
    """(finite difference, analytic) directional derivatives along three random directions."""
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in theta.items()}
    grads = torch.autograd.grad(meta_loss(leaves), list(leaves.values()))
    g = torch.Generator().manual_seed(0)
    pairs = []
    for _ in range(3):
        d = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in theta.items()}
        h = 1e-6
        up = meta_loss({k: (v + h * d[k]).requires_grad_(True) for k, v in theta.items()})
        down = meta_loss({k: (v - h * d[k]).requires_grad_(True) for k, v in theta.items()})
        fd = float(((up - down) / (2 * h)).detach())
        analytic = float(sum((gk * d[k]).sum() for k, gk in zip(leaves, grads, strict=True)))
        pairs.append((fd, analytic))
    return pairs


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam", "adam-decay", "adamw"])
def test_second_order_meta_gradient_equals_finite_differences(name: str) -> None:
    model = _mlp()
    theta = {k: v.detach() for k, v in model.named_parameters()}
    meta_loss = _meta_loss(model, OPTIMIZERS[name]())
    for fd, analytic in _fd_errors(meta_loss, theta):
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)
    # and the check is sharp: the first-order gradient (inner gradients constant) fails it
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    first = _meta_loss(model, OPTIMIZERS[name](), second_order=False)(leaves)
    g1 = torch.autograd.grad(first, list(leaves.values()))
    g2 = torch.autograd.grad(meta_loss(leaves), list(leaves.values()))
    assert max(float((a - b).abs().max()) for a, b in zip(g1, g2, strict=True)) > 1e-4


def test_adam_through_a_gradient_that_is_exactly_zero_stays_finite_and_exact() -> None:
    """A dead ReLU unit's weights get exactly zero gradients, so Adam's v stays 0 there: √ has
    no derivative at 0, and a naive second-order gradient is NaN. Ours is finite and equals
    finite differences."""
    model = _mlp()
    theta = {k: v.detach().clone() for k, v in model.named_parameters()}
    theta["body.0.bias"][0] = -1e3  # unit 0 of the first layer: never active on x ∈ [-5, 5]
    meta_loss = _meta_loss(model, Adam())
    leaves = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    grads = dict(
        zip(leaves, torch.autograd.grad(meta_loss(leaves), list(leaves.values())), strict=True)
    )
    assert all(bool(torch.isfinite(g).all()) for g in grads.values())
    assert float(grads["body.0.weight"][0].abs().sum()) == 0.0  # the dead unit
    for fd, analytic in _fd_errors(meta_loss, theta):
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_vmapped_inner_loop_equals_the_loop(name: str) -> None:
    """With ``use_func`` under ``torch.func.vmap`` (the batched path), each task adapts as alone."""
    model = _mlp()
    theta = {k: v.detach().requires_grad_(True) for k, v in model.named_parameters()}
    xs, ys = zip(*[_data(s) for s in (4, 5, 6)], strict=True)
    sx, sy = torch.stack(xs), torch.stack(ys)

    def adapt(x: Tensor, y: Tensor, use_func: bool) -> Params:
        fast, _ = inner_loop(
            lambda p: F.mse_loss(functional_call(model, p, (x,)), y),
            theta,
            [0.05, 0.05],
            create_graph=False,
            use_func=use_func,
            optimizer=OPTIMIZERS[name](),
        )
        return {k: v.detach() for k, v in fast.items()}

    batched = torch.func.vmap(lambda x, y: adapt(x, y, True))(sx, sy)
    for i in range(3):
        looped = adapt(sx[i], sy[i], False)
        for k, v in looped.items():
            torch.testing.assert_close(batched[k][i], v, rtol=1e-12, atol=1e-14)


def test_per_parameter_step_sizes_scale_each_update() -> None:
    """Meta-SGD's step sizes (one tensor per parameter) compose with the optimizer's update."""
    theta = {"w": torch.tensor([1.0, 2.0], dtype=torch.float64)}
    grads = {"w": torch.tensor([0.5, -0.5], dtype=torch.float64)}
    lr = {"w": torch.tensor([0.1, 0.0], dtype=torch.float64)}
    for opt in (SGD(momentum=0.9), Adam(), Adam(weight_decay=0.5, decoupled=True)):
        new, _ = opt.step(theta, grads, opt.init(theta), lr)
        assert float(new["w"][1]) == 2.0 and float(new["w"][0]) < 1.0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SGD(momentum=-0.1), "momentum must be at least 0"),
        (lambda: SGD(nesterov=True), "nesterov needs a momentum above 0"),
        (lambda: SGD(weight_decay=math.nan), "weight_decay must be at least 0"),
        (lambda: Adam(betas=(1.0, 0.999)), r"betas\[0\] must be in \[0, 1\)"),
        (lambda: Adam(betas=(0.9, -0.5)), r"betas\[1\] must be in \[0, 1\)"),
        (lambda: Adam(eps=0.0), "eps must be above 0"),
    ],
)
def test_bad_settings_are_refused_with_the_reason(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_describe_names_the_settings() -> None:
    assert SGD().describe() == "sgd"
    assert SGD(momentum=0.9, nesterov=True).describe() == "sgd, nesterov 0.9"
    assert SGD(weight_decay=0.01).describe() == "sgd, weight decay 0.01"
    assert Adam().describe() == "adam β=(0.9, 0.999) ε=1e-08"
    decoupled = Adam(weight_decay=0.01, decoupled=True).describe()
    assert decoupled == "adamw β=(0.9, 0.999) ε=1e-08, decoupled weight decay 0.01"


# ---- in the learners: MAML, Meta-SGD, ANIL, Reptile with an inner optimizer ---------------------
def _sinusoid_batch(n: int = 3) -> TaskBatch:
    return SinusoidTasks(5, 6).sample(n, make_generator(0)).to("cpu", torch.float64)


@pytest.mark.parametrize("name", ["maml", "metasgd", "anil"])
def test_learners_meta_gradient_with_adam_is_exact_on_both_batching_paths(name: str) -> None:
    """The meta-gradient through Adam's inner steps: the vmap and loop paths agree, and equal
    finite differences of the meta-loss in float64."""
    make = {
        "maml": lambda b: MAML(_mlp(), inner_steps=2, inner_lr=0.05, batching=b),
        "metasgd": lambda b: MetaSGD(_mlp(), inner_steps=2, inner_lr=0.05, batching=b),
        "anil": lambda b: ANIL(_mlp(), inner_steps=2, inner_lr=0.05, batching=b),
    }[name]
    batch = _sinusoid_batch()
    steps = {}
    for batching in ("vmap", "loop"):
        learner = make(batching).double().use_inner_optimizer(Adam(betas=(0.8, 0.9)))
        steps[batching] = learner.meta_gradients(batch)
    for k, g in steps["loop"].grads.items():
        torch.testing.assert_close(steps["vmap"].grads[k], g, rtol=1e-9, atol=1e-12)
    plain = make("loop").double().meta_gradients(batch)
    assert any(not torch.allclose(plain.grads[k], g) for k, g in steps["loop"].grads.items())

    learner = make("loop").double().use_inner_optimizer(Adam(betas=(0.8, 0.9)))
    theta = {k: v.detach().clone() for k, v in learner.named_parameters()}

    def meta_loss_at(params: Params) -> float:
        with torch.no_grad():
            for k, p in learner.named_parameters():
                p.copy_(params[k])
        return float(learner.meta_loss(batch).detach())

    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        d = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in theta.items()}
        h = 1e-6
        up = meta_loss_at({k: v + h * d[k] for k, v in theta.items()})
        down = meta_loss_at({k: v - h * d[k] for k, v in theta.items()})
        analytic = sum(float((steps["loop"].grads[k] * d[k]).sum()) for k in theta)
        assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-9)


def test_adapt_trace_with_adam_equals_adapting_each_step_count_from_the_start() -> None:
    """Adam's moments start at zero for each adaptation, so the trace's k-step model is the
    k-step adaptation, not a continuation of a shorter one with its state reset."""
    learner = MAML(_mlp(), inner_steps=2, inner_lr=0.05).double().use_inner_optimizer(Adam())
    batch = _sinusoid_batch(1)
    sx, sy = batch.support_x[0], batch.support_y[0]
    trace = learner.adapt_trace(sx, sy, [0, 1, 3, 5])
    for k in (1, 3, 5):
        alone = learner.adapt(sx, sy, steps=k)
        for n, v in alone.params.items():
            torch.testing.assert_close(trace[k].params[n], v, rtol=0, atol=0)
        assert trace[k].support_losses == alone.support_losses
    learner.use_inner_optimizer(None)  # and it is Adam's: plain steps end elsewhere
    plain = learner.adapt(sx, sy, steps=3)
    assert not torch.equal(plain.params["head.bias"], trace[3].params["head.bias"])


def test_reptile_adapts_with_adam_as_nichol_et_al() -> None:
    """Reptile's inner loop with Adam (the paper's choice) on both batching paths: the same step."""
    batch = _sinusoid_batch()
    outs = [
        Reptile(_mlp(), inner_steps=3, inner_lr=0.02, batching=b)
        .double()
        .use_inner_optimizer(Adam(betas=(0.0, 0.999)))
        .meta_gradients(batch)
        for b in ("vmap", "loop")
    ]
    for k, g in outs[1].grads.items():
        torch.testing.assert_close(outs[0].grads[k], g, rtol=1e-9, atol=1e-12)
