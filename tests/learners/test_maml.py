"""MAML and first-order MAML: exact meta-gradients (finite differences), the first-order formula,
learned inner learning rates, ``adapt``/``adapt_trace``/``predict``, and input checks."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from metamap.errors import TaskShapeError
from metamap.learners import ANIL, FOMAML, MAML, GradientLearner, MetaSGD, Reptile
from metamap.models import MLP, Conv4
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator

Params = dict[str, Tensor]
# Step sizes of each inner step, read from the (possibly perturbed) meta-parameters.
StepSizes = Callable[[Params], list[float | Tensor]]


def _mlp(seed: int = 0, hidden: tuple[int, ...] = (8, 8)) -> MLP:
    torch.manual_seed(seed)
    return MLP(1, 1, hidden).double()


def _batch(n: int = 3, shots: int = 5, queries: int = 6, seed: int = 0) -> TaskBatch:
    return SinusoidTasks(shots, queries).sample(n, make_generator(seed)).to("cpu", torch.float64)


def _model_params(meta: Params) -> Params:
    return {k.removeprefix("model."): v for k, v in meta.items() if k.startswith("model.")}


def reference_meta_loss(
    model: nn.Module,
    meta: Params,
    batch: TaskBatch,
    sizes: StepSizes,
    adapted: Callable[[str], bool],
) -> Tensor:
    """L_meta(φ) computed by hand: plain SGD on each task's support set, MSE on its query set."""
    total = torch.zeros((), dtype=torch.float64)
    for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
        theta = _model_params(meta)
        for lr in sizes(meta):
            p = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
            names = [k for k in p if adapted(k)]
            with torch.enable_grad():
                loss = F.mse_loss(functional_call(model, p, (sx,)), sy)
                gs = dict(zip(names, torch.autograd.grad(loss, [p[k] for k in names]), strict=True))
            theta = {k: v - lr * gs[k] if k in gs else v for k, v in theta.items()}
        total = total + F.mse_loss(functional_call(model, theta, (qx,)), qy)
    return total / len(batch)


def directional_errors(
    learner: GradientLearner,
    batch: TaskBatch,
    ref: Callable[[Params], Tensor],
    n_dirs: int = 3,
    only: str | None = None,
    eps: float = 1e-6,
) -> list[tuple[float, float]]:
    """(finite-difference, analytic) directional derivatives along random directions."""
    meta = {k: v.detach().clone() for k, v in learner.named_parameters()}
    grads = learner.meta_gradients(batch).grads
    g = torch.Generator().manual_seed(1234)
    out = []
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
        analytic = float(sum((grads[k] * d[k]).sum() for k in meta))
        out.append((fd, analytic))
    return out


def assert_matches_fd(pairs: list[tuple[float, float]]) -> None:
    for fd, analytic in pairs:
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-8), pairs


def _maml_sizes(learner: MAML) -> StepSizes:
    if learner.learn_inner_lr:
        return lambda meta: [meta["inner_lrs"][i] for i in range(learner.inner_steps)]
    return lambda meta: list(learner.fixed_lrs)


# ---- exact second-order meta-gradient == central finite differences -----------------------------
@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("learn_inner_lr", [False, True], ids=["fixed_lr", "learned_lr"])
@pytest.mark.parametrize("steps", [1, 2])
def test_maml_meta_gradient_equals_finite_differences(
    steps: int, learn_inner_lr: bool, batching: str
) -> None:
    model = _mlp()
    lrs = [0.08, 0.12][:steps]
    learner = MAML(
        model, inner_steps=steps, inner_lr=lrs, learn_inner_lr=learn_inner_lr, batching=batching
    ).double()
    batch = _batch()

    def ref(meta: Params) -> Tensor:
        return reference_meta_loss(model, meta, batch, _maml_sizes(learner), lambda k: True)

    step = learner.meta_gradients(batch)
    meta = {k: v.detach() for k, v in learner.named_parameters()}
    assert float(step.loss) == pytest.approx(float(ref(meta)), rel=1e-12)
    assert_matches_fd(directional_errors(learner, batch, ref))
    if learn_inner_lr:
        assert_matches_fd(directional_errors(learner, batch, ref, n_dirs=2, only="inner_lrs"))


def test_finite_difference_check_can_fail_first_order_is_not_exact() -> None:
    """The check above is sharp enough to reject FOMAML's gradient as the true one."""
    model = _mlp()
    learner = FOMAML(model, inner_steps=2, inner_lr=0.1).double()
    batch = _batch()

    def ref(meta: Params) -> Tensor:
        return reference_meta_loss(model, meta, batch, lambda m: [0.1, 0.1], lambda k: True)

    pairs = directional_errors(learner, batch, ref)
    assert any(abs(fd - an) > 1e-3 * abs(fd) for fd, an in pairs), pairs


# ---- first-order MAML ---------------------------------------------------------------------------
def _stopgrad_meta_grads(model: nn.Module, batch: TaskBatch, lrs: list[float]) -> Params:
    """∇θ mean_T L_q(θ_T), θ_{k+1} = θ_k - α stopgrad(∇L_s(θ_k)), with plain autograd."""
    theta0 = {k: v.detach().clone().requires_grad_(True) for k, v in model.named_parameters()}
    total = torch.zeros((), dtype=torch.float64)
    for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
        theta = dict(theta0)
        for lr in lrs:
            loss = F.mse_loss(functional_call(model, theta, (sx,)), sy)
            gs = torch.autograd.grad(loss, list(theta.values()))
            theta = {k: v - lr * g.detach() for (k, v), g in zip(theta.items(), gs, strict=True)}
        total = total + F.mse_loss(functional_call(model, theta, (qx,)), qy)
    grads = torch.autograd.grad(total / len(batch), list(theta0.values()))
    return {"model." + k: g for k, g in zip(theta0, grads, strict=True)}


@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("steps", [1, 2])
def test_fomaml_equals_the_stop_gradient_formula_and_differs_from_maml(
    steps: int, batching: str
) -> None:
    model = _mlp()
    lrs = [0.1, 0.05][:steps]
    batch = _batch()
    fo = FOMAML(model, inner_steps=steps, inner_lr=lrs, batching=batching).double()
    so = MAML(copy.deepcopy(model), inner_steps=steps, inner_lr=lrs, batching=batching).double()
    assert fo.second_order is False and so.second_order is True
    fo_step, so_step = fo.meta_gradients(batch), so.meta_gradients(batch)
    expected = _stopgrad_meta_grads(model, batch, lrs)
    assert set(fo_step.grads) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(fo_step.grads[k], v, rtol=1e-10, atol=1e-12)
    # same forward computation, different gradient on a nonlinear model
    assert float(fo_step.loss) == pytest.approx(float(so_step.loss), rel=1e-12)
    diff = sum(float((fo_step.grads[k] - so_step.grads[k]).norm()) for k in expected)
    size = sum(float(so_step.grads[k].norm()) for k in expected)
    assert diff > 1e-3 * size


def test_maml_first_order_flag_is_fomaml() -> None:
    model = _mlp()
    batch = _batch()
    a = MAML(model, inner_steps=2, inner_lr=0.1, first_order=True).double().meta_gradients(batch)
    b = FOMAML(model, inner_steps=2, inner_lr=0.1).double().meta_gradients(batch)
    for k in a.grads:
        torch.testing.assert_close(a.grads[k], b.grads[k], rtol=0, atol=0)


# ---- learned inner learning rates ---------------------------------------------------------------
def test_fixed_lr_maml_has_no_lr_parameter() -> None:
    learner = MAML(_mlp(), inner_steps=2, inner_lr=0.1)
    names = {n for n, _ in learner.named_parameters()}
    assert names == {"model." + n for n, _ in learner.model.named_parameters()}
    assert not hasattr(learner, "inner_lrs")
    step = learner.double().meta_gradients(_batch())
    assert set(step.grads) == names


@pytest.mark.parametrize("cls", [MAML, FOMAML])
@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_learned_inner_lrs_are_parameters_and_receive_gradients(
    cls: type[MAML], batching: str
) -> None:
    learner = cls(
        _mlp(), inner_steps=2, inner_lr=[0.05, 0.1], learn_inner_lr=True, batching=batching
    ).double()
    params = dict(learner.named_parameters())
    assert "inner_lrs" in params
    torch.testing.assert_close(
        params["inner_lrs"].detach(), torch.tensor([0.05, 0.1], dtype=torch.float64)
    )
    grads = learner.meta_gradients(_batch()).grads
    assert grads["inner_lrs"].shape == (2,)
    assert (grads["inner_lrs"].abs() > 1e-8).all()
    assert all(grads[k].abs().sum() > 0 for k in params)


def test_one_lr_is_shared_by_every_step_and_lrs_beyond_training_reuse_the_last() -> None:
    learner = MAML(_mlp(), inner_steps=3, inner_lr=0.2, learn_inner_lr=True)
    assert learner.fixed_lrs == [0.2, 0.2, 0.2]
    assert learner.inner_lrs.shape == (3,)
    fixed = MAML(_mlp(), inner_steps=2, inner_lr=[0.1, 0.3])
    assert fixed.step_sizes({}, 4) == [0.1, 0.3, 0.3, 0.3]
    meta = dict(learner.named_parameters())
    sizes = learner.step_sizes(meta, 5)
    assert [float(s.detach()) for s in sizes] == pytest.approx([0.2] * 5)


def test_apply_gradients_fills_grad_for_an_optimizer() -> None:
    learner = MAML(_mlp(), inner_lr=0.1, learn_inner_lr=True).double()
    step = learner.meta_gradients(_batch())
    before = {k: v.detach().clone() for k, v in learner.named_parameters()}
    learner.apply_gradients(step)
    for name, p in learner.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(p.grad, step.grads[name])
    torch.optim.SGD(learner.parameters(), lr=0.5).step()
    for name, p in learner.named_parameters():
        torch.testing.assert_close(p.detach(), before[name] - 0.5 * step.grads[name])


def test_meta_gradients_do_not_change_parameters_or_grad() -> None:
    learner = MAML(_mlp(), inner_steps=2, inner_lr=0.1, batching="loop").double()
    before = {k: v.detach().clone() for k, v in learner.named_parameters()}
    step = learner.meta_gradients(_batch())
    for k, v in learner.named_parameters():
        assert torch.equal(v, before[k])
        assert v.grad is None
    assert not step.loss.requires_grad and not step.metric.requires_grad
    assert all(not g.requires_grad for g in step.grads.values())
    # for regression the metric is the query MSE, i.e. the loss itself
    assert float(step.metric) == pytest.approx(float(step.loss))


def test_cross_entropy_metric_is_accuracy() -> None:
    torch.manual_seed(0)
    learner = MAML(MLP(2, 3, (8,)), loss="cross_entropy", inner_lr=0.1)
    b = _classification_batch()
    step = learner.meta_gradients(b)
    meta = dict(learner.named_parameters())
    accs = []
    for sx, sy, qx, qy in zip(*b.tensors(), strict=True):
        state = learner.adapt(sx, sy)
        accs.append((learner.predict(state, qx).argmax(-1) == qy).double().mean())
    assert 0.0 <= float(step.metric) <= 1.0
    assert float(step.metric) == pytest.approx(float(torch.stack(accs).mean()), abs=1e-6)
    assert set(step.grads) == set(meta)


# ---- adapt, adapt_trace and predict -------------------------------------------------------------
def test_adapt_reduces_the_support_loss_on_a_sinusoid() -> None:
    torch.manual_seed(0)
    learner = MAML(MLP(1, 1, (40, 40)), inner_lr=0.01)
    task = SinusoidTasks(shots=10, queries=10).sample(1, make_generator(3))[0]

    def support_loss(steps: int) -> float:
        state = learner.adapt(task.support_x, task.support_y, steps=steps)
        return float(F.mse_loss(learner.predict(state, task.support_x), task.support_y))

    before, after = support_loss(0), support_loss(20)
    assert after < 0.7 * before
    state = learner.adapt(task.support_x, task.support_y, steps=20)
    assert len(state.support_losses) == 20
    assert state.support_losses[0] == pytest.approx(before, rel=1e-5)
    assert state.support_losses[-1] < state.support_losses[0]


def test_adapt_is_the_hand_written_gradient_step_with_learned_lrs() -> None:
    model = _mlp()
    learner = MAML(model, inner_steps=2, inner_lr=[0.1, 0.2], learn_inner_lr=True).double()
    with torch.no_grad():
        learner.inner_lrs.copy_(torch.tensor([0.03, 0.07]))
    task = _batch(n=1)[0]
    state = learner.adapt(task.support_x, task.support_y)  # default: inner_steps = 2
    theta = {k: v.detach() for k, v in model.named_parameters()}
    for lr in (0.03, 0.07):
        p = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
        loss = F.mse_loss(functional_call(model, p, (task.support_x,)), task.support_y)
        gs = torch.autograd.grad(loss, list(p.values()))
        theta = {k: v - lr * g for (k, v), g in zip(theta.items(), gs, strict=True)}
    assert set(state.params) == set(theta)
    for k, v in theta.items():
        torch.testing.assert_close(state.params[k], v)


def test_adapt_trace_agrees_with_adapt() -> None:
    learner = MAML(_mlp(), inner_steps=1, inner_lr=0.05).double()
    task = _batch(n=1)[0]
    trace = learner.adapt_trace(task.support_x, task.support_y, [5, 0, 1])
    assert sorted(trace) == [0, 1, 5]
    for k in (0, 1, 5):
        single = learner.adapt(task.support_x, task.support_y, steps=k)
        assert set(trace[k].params) == set(single.params)
        for name, v in single.params.items():
            torch.testing.assert_close(trace[k].params[name], v, rtol=1e-12, atol=1e-14)
        assert trace[k].support_losses == pytest.approx(single.support_losses, rel=1e-12)
        assert len(trace[k].support_losses) == k
        torch.testing.assert_close(
            learner.predict(trace[k], task.query_x), learner.predict(single, task.query_x)
        )
    # 0 steps is the initialisation itself; more steps move away from it
    for name, v in learner.model.named_parameters():
        assert torch.equal(trace[0].params[name], v.detach())
    assert not torch.equal(trace[5].params["head.bias"], trace[1].params["head.bias"])
    with pytest.raises(ValueError, match="non-negative"):
        learner.adapt_trace(task.support_x, task.support_y, [-1])


@pytest.mark.parametrize("make", [MAML, FOMAML, ANIL, MetaSGD, Reptile])
def test_fractional_step_counts_are_refused_by_name(make: Callable[..., GradientLearner]) -> None:
    # adapt(steps=2.5) used to fail deep in the step sizes ("'float' object cannot be
    # interpreted as an integer", "can't multiply sequence by non-int of type 'float'")
    learner = make(MLP(1, 1, (8,)))
    task = SinusoidTasks(shots=5, queries=5).fixed_tasks(1, seed=0)[0]
    batch = SinusoidTasks(shots=5, queries=5).sample(2, make_generator(0))
    for bad in (2.5, True):
        with pytest.raises(ValueError, match=r"step counts must be non-negative integers"):
            learner.adapt(task.support_x, task.support_y, steps=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"step counts must be non-negative integers"):
            learner.predict_tasks(batch, steps=bad)  # type: ignore[arg-type]


def test_adapt_leaves_the_learner_untouched_and_returns_detached_params() -> None:
    learner = MAML(_mlp(), inner_steps=3, inner_lr=0.1, learn_inner_lr=True).double()
    before = {k: v.detach().clone() for k, v in learner.named_parameters()}
    task = _batch(n=1)[0]
    with torch.no_grad():  # adapt needs gradients internally, even under no_grad
        state = learner.adapt(task.support_x, task.support_y)
    assert all(not v.requires_grad for v in state.params.values())
    assert len(state.support_losses) == 3
    for k, v in learner.named_parameters():
        assert torch.equal(v, before[k])
        assert v.grad is None


def test_predict_shapes() -> None:
    learner = MAML(_mlp(), inner_lr=0.1).double()
    task = _batch(n=1)[0]
    state = learner.adapt(task.support_x, task.support_y)
    assert tuple(learner.predict(state, torch.randn(13, 1, dtype=torch.float64)).shape) == (13, 1)
    torch.manual_seed(0)
    conv = MAML(Conv4(5, width=4, image_size=16), loss="cross_entropy", inner_lr=0.1)
    sx = torch.randn(5, 1, 16, 16)
    state = conv.adapt(sx, torch.arange(5), steps=2)
    assert tuple(conv.predict(state, torch.randn(7, 1, 16, 16)).shape) == (7, 5)
    assert state.buffers == {}


# ---- constructor arguments ----------------------------------------------------------------------
def test_invalid_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="inner_steps must be at least 1, got 0"):
        MAML(_mlp(), inner_steps=0)
    with pytest.raises(ValueError, match=r"inner learning rates must be positive, got \[-0.1\]"):
        MAML(_mlp(), inner_lr=-0.1)
    with pytest.raises(ValueError, match="must be positive"):
        MAML(_mlp(), inner_steps=2, inner_lr=[0.1, 0.0])
    with pytest.raises(
        ValueError, match=r"inner_lr has 2 values; give one, or one per inner step \(3\)"
    ):
        MAML(_mlp(), inner_steps=3, inner_lr=[0.1, 0.2])
    with pytest.raises(ValueError, match="batching must be 'auto', 'vmap' or 'loop'"):
        MAML(_mlp(), batching="threads")
    inductive = Conv4(3, width=4, image_size=16, batch_norm="inductive")
    with pytest.raises(
        ValueError, match="batching='vmap' cannot update BatchNorm running statistics"
    ):
        MAML(inductive, loss="cross_entropy", batching="vmap")
    with pytest.raises(ValueError, match="inner_steps must be at least 1"):
        FOMAML(_mlp(), inner_steps=0)


# ---- bad input raises TaskShapeError with a helpful message -------------------------------------
def _classification_batch(
    n: int = 3, ways: int = 3, shots: int = 2, features: int = 2, seed: int = 0
) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(ways).repeat(shots)
    return TaskBatch(
        torch.randn(n, ways * shots, features, generator=g),
        labels.expand(n, -1).clone(),
        torch.randn(n, ways * shots, features, generator=g),
        labels.expand(n, -1).clone(),
    )


LEARNERS = [
    pytest.param(lambda m, **kw: MAML(m, **kw), id="maml"),
    pytest.param(lambda m, **kw: FOMAML(m, **kw), id="fomaml"),
    pytest.param(lambda m, **kw: ANIL(m, **kw), id="anil"),
    pytest.param(lambda m, **kw: MetaSGD(m, **kw), id="metasgd"),
    pytest.param(lambda m, **kw: Reptile(m, **kw), id="reptile"),
]


@pytest.mark.parametrize("make", LEARNERS)
@pytest.mark.parametrize("task", [0, 2])
def test_labels_outside_the_ways_are_rejected_in_any_task(make, task: int) -> None:
    learner = make(MLP(2, 3, (4,)), loss="cross_entropy")
    b = _classification_batch()
    b.support_y[task, 1] = 3
    with pytest.raises(
        TaskShapeError,
        match=r"support labels must lie in \[0, 3\) for a 3-way model; got labels from 0 to 3",
    ):
        learner.meta_gradients(b)
    b = _classification_batch()
    b.query_y[task, 0] = -1
    with pytest.raises(TaskShapeError, match=r"query labels must lie in \[0, 3\).*Remap labels"):
        learner.meta_gradients(b)


@pytest.mark.parametrize("make", LEARNERS)
def test_float_labels_are_rejected_for_cross_entropy(make) -> None:
    learner = make(MLP(2, 3, (4,)), loss="cross_entropy")
    b = _classification_batch()
    b = TaskBatch(b.support_x, b.support_y.float(), b.query_x, b.query_y.float())
    with pytest.raises(
        TaskShapeError, match=r"support labels must be int64 class indices, got torch\.float32"
    ):
        learner.meta_gradients(b)
    with pytest.raises(TaskShapeError, match="int64 class indices"):
        learner.adapt(b.support_x[0], b.support_y[0])


@pytest.mark.parametrize("make", LEARNERS)
def test_inputs_that_do_not_fit_the_model_are_rejected(make) -> None:
    learner = make(MLP(1, 1, (4,)))
    b = _classification_batch()
    b = TaskBatch(
        b.support_x, b.support_y[..., None].float(), b.query_x, b.query_y[..., None].float()
    )
    with pytest.raises(
        TaskShapeError, match=r"support inputs of shape \(6, 2\) do not fit the model.*\(N, 1\)"
    ):
        learner.meta_gradients(b)
    with pytest.raises(TaskShapeError, match="do not fit the model"):
        learner.adapt(b.support_x[0], b.support_y[0])


@pytest.mark.parametrize("make", LEARNERS)
def test_regression_targets_of_the_wrong_shape_or_dtype_are_rejected(make) -> None:
    learner = make(MLP(1, 1, (4,)))
    b = _batch(n=2).to("cpu", torch.float32)
    wrong = TaskBatch(b.support_x, b.support_y[..., 0], b.query_x, b.query_y[..., 0])
    with pytest.raises(
        TaskShapeError, match=r"targets have shape \(5,\) but the model outputs \(1,\) per point"
    ):
        learner.meta_gradients(wrong)
    ints = TaskBatch(b.support_x, b.support_y.long(), b.query_x, b.query_y.long())
    with pytest.raises(
        TaskShapeError, match=r"regression targets must be floating point, got torch\.int64"
    ):
        learner.meta_gradients(ints)


def test_input_check_does_not_touch_batchnorm_running_statistics() -> None:
    torch.manual_seed(0)
    learner = MAML(Conv4(3, width=4, image_size=16, batch_norm="inductive"), loss="cross_entropy")
    before = {k: v.clone() for k, v in learner.model.named_buffers()}
    learner.check_task(torch.randn(3, 1, 16, 16) + 5.0, torch.arange(3))
    for k, v in learner.model.named_buffers():
        assert torch.equal(v, before[k]), k
