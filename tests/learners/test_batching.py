"""The two batching paths give the same numbers, also through BatchNorm, and ``meta_loss``'s
backward gives ``meta_gradients``' gradients.

The Conv4 + BatchNorm cases guard against pytorch/functorch#534: ``grad(vmap(...))`` gives a
wrong second-order gradient through batch normalisation, so metamap uses ``vmap(grad(...))``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from metamap.learners import (
    ANIL,
    FOMAML,
    MAML,
    GradientLearner,
    MetaSGD,
    MetaStep,
    Reptile,
    choose_batching,
)
from metamap.models import MLP, Conv4, ResNet12
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator

Make = Callable[..., GradientLearner]

MLP_LEARNERS = [
    pytest.param(lambda m, **kw: MAML(m, inner_steps=2, inner_lr=0.1, **kw), id="maml"),
    pytest.param(
        lambda m, **kw: MAML(m, inner_steps=2, inner_lr=[0.1, 0.05], learn_inner_lr=True, **kw),
        id="maml-learned-lr",
    ),
    pytest.param(lambda m, **kw: FOMAML(m, inner_steps=2, inner_lr=0.1, **kw), id="fomaml"),
    pytest.param(
        lambda m, **kw: ANIL(m, inner_steps=2, inner_lr=0.1, learn_inner_lr=True, **kw), id="anil"
    ),
    pytest.param(lambda m, **kw: MetaSGD(m, inner_steps=2, inner_lr=0.1, **kw), id="metasgd"),
    pytest.param(
        lambda m, **kw: MetaSGD(m, inner_steps=1, inner_lr=0.1, first_order=True, **kw),
        id="metasgd-first-order",
    ),
    pytest.param(lambda m, **kw: Reptile(m, inner_steps=3, inner_lr=0.05, **kw), id="reptile"),
]
DIFFERENTIABLE = MLP_LEARNERS[:-1]  # Reptile's update is not the gradient of a loss


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(1, 1, (8, 8)).double()


def _sinusoids(n: int = 4) -> TaskBatch:
    return SinusoidTasks(5, 6).sample(n, make_generator(0)).to("cpu", torch.float64)


def _images(
    n: int = 2, ways: int = 3, shots: int = 1, queries: int = 2, size: int = 16
) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    return TaskBatch(
        torch.randn(n, ways * shots, 1, size, size, generator=g, dtype=torch.float64),
        torch.arange(ways).repeat(shots).expand(n, -1).clone(),
        torch.randn(n, ways * queries, 1, size, size, generator=g, dtype=torch.float64),
        torch.arange(ways).repeat(queries).expand(n, -1).clone(),
    )


def _conv4(batch_norm: str = "transductive") -> Conv4:
    torch.manual_seed(0)
    return Conv4(3, width=4, image_size=16, batch_norm=batch_norm).double()


def _both(make: Make, model: nn.Module, **kw: object) -> tuple[GradientLearner, GradientLearner]:
    v = make(copy.deepcopy(model), batching="vmap", **kw).double()
    loop = make(copy.deepcopy(model), batching="loop", **kw).double()
    assert v.batching == "vmap" and loop.batching == "loop"
    return v, loop


def assert_same_step(a: MetaStep, b: MetaStep, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    assert set(a.grads) == set(b.grads)
    torch.testing.assert_close(a.loss, b.loss, rtol=rtol, atol=atol)
    torch.testing.assert_close(a.metric, b.metric, rtol=rtol, atol=atol)
    for k in a.grads:
        torch.testing.assert_close(a.grads[k], b.grads[k], rtol=rtol, atol=atol, msg=k)


def _norm(grads: dict[str, Tensor]) -> float:
    return float(sum(g.square().sum() for g in grads.values()) ** 0.5)


# ---- vmap == loop -------------------------------------------------------------------------------
@pytest.mark.parametrize("make", MLP_LEARNERS)
def test_vmap_and_loop_agree_on_an_mlp(make: Make) -> None:
    v, loop = _both(make, _mlp())
    batch = _sinusoids()
    a, b = v.meta_gradients(batch), loop.meta_gradients(batch)
    assert _norm(a.grads) > 1e-3
    assert_same_step(a, b)


def test_vmap_and_loop_agree_for_classification() -> None:
    torch.manual_seed(0)
    v, loop = _both(
        lambda m, **kw: MAML(m, loss="cross_entropy", inner_steps=2, inner_lr=0.3, **kw),
        MLP(4, 3, (8,)),
    )
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(2).expand(3, -1).clone()
    batch = TaskBatch(
        torch.randn(3, 6, 4, generator=g, dtype=torch.float64),
        labels,
        torch.randn(3, 6, 4, generator=g, dtype=torch.float64),
        labels.clone(),
    )
    a, b = v.meta_gradients(batch), loop.meta_gradients(batch)
    assert 0.0 <= float(a.metric) <= 1.0
    assert_same_step(a, b)


def test_vmap_and_loop_agree_in_float32() -> None:
    torch.manual_seed(0)
    model = MLP(1, 1, (16, 16))
    v = MAML(copy.deepcopy(model), inner_steps=2, inner_lr=0.05, batching="vmap")
    loop = MAML(copy.deepcopy(model), inner_steps=2, inner_lr=0.05, batching="loop")
    batch = SinusoidTasks(5, 5).sample(5, make_generator(1))
    assert_same_step(v.meta_gradients(batch), loop.meta_gradients(batch), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda m, **kw: MAML(m, loss="cross_entropy", inner_steps=2, inner_lr=0.3, **kw),
            id="maml",
        ),
        pytest.param(
            lambda m, **kw: ANIL(m, loss="cross_entropy", inner_steps=2, inner_lr=0.3, **kw),
            id="anil",
        ),
    ],
)
def test_vmap_and_loop_agree_through_transductive_batchnorm(make: Make) -> None:
    """Second-order meta-gradients through Conv4 + BatchNorm (pytorch/functorch#534)."""
    v, loop = _both(make, _conv4())
    batch = _images()
    a, b = v.meta_gradients(batch), loop.meta_gradients(batch)
    assert all(
        _norm({k: g}) > 0 for k, g in a.grads.items() if "body" in k and k.endswith("weight")
    )
    assert_same_step(a, b)


class _PlainMLP(nn.Module):
    """The MLP's function without ``forward_each``: the batched path falls back to vmap."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.body(x))
        return out


@pytest.mark.parametrize("make", MLP_LEARNERS)
def test_batched_path_runs_the_models_forward_each_or_vmap_and_both_equal_the_loop(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MLP's copies run as one ``forward_each`` call per pass; a model without one runs
    ``vmap`` of ``functional_call``; both equal the per-task loop."""
    calls: list[tuple[int, ...]] = []
    original = MLP.forward_each

    def spy(self: MLP, params: dict[str, Tensor], x: Tensor) -> Tensor:
        calls.append(tuple(x.shape))
        return original(self, params, x)

    monkeypatch.setattr(MLP, "forward_each", spy)
    batch = _sinusoids()
    for model, uses_it in ((_mlp(), True), (_PlainMLP().double(), False)):
        calls.clear()
        v, loop = _both(make, model)
        a, b = v.meta_gradients(batch), loop.meta_gradients(batch)
        assert _norm(a.grads) > 1e-3
        assert_same_step(a, b)
        batched = v.batched_objective  # ANIL runs its own per-task objective under vmap
        assert bool(calls) == (uses_it and batched)
        if calls:  # a support pass per inner step and the query pass, all B tasks at once
            support = [tuple(batch.support_x.shape)] * v.inner_steps
            assert calls == [*support, tuple(batch.query_x.shape)]


def test_reptile_vmap_equals_the_loop_through_transductive_batchnorm() -> None:
    """Through normalisation Reptile's vmap path solves each task under ``vmap``; without, it
    adapts the batched copies (tested with the MLP learners above)."""
    v, loop = _both(
        lambda m, **kw: Reptile(m, loss="cross_entropy", inner_steps=2, inner_lr=0.3, **kw),
        _conv4(),
    )
    a, b = v.meta_gradients(_images()), loop.meta_gradients(_images())
    assert _norm(a.grads) > 0
    assert_same_step(a, b)


@pytest.mark.parametrize("model", ["mlp", "conv4"])
def test_reptile_inner_minibatches_are_the_same_on_both_paths(model: str) -> None:
    """With ``inner_batch`` each step takes a minibatch: the batched copies of the MLP and the
    per-task ``vmap`` through BatchNorm take each task's own, as the loop does."""
    if model == "mlp":
        net: nn.Module = _mlp()
        batch = SinusoidTasks(6, 6).sample(4, make_generator(0)).to("cpu", torch.float64)
        kw: dict[str, object] = {"loss": "mse", "inner_lr": 0.05}
    else:
        net, batch, kw = _conv4(), _images(ways=3, shots=4), {"loss": "cross_entropy"}
    v, loop = _both(lambda m, **k: Reptile(m, inner_steps=3, inner_batch=4, **kw, **k), net)
    whole = Reptile(copy.deepcopy(net), inner_steps=3, **kw).double()  # type: ignore[arg-type]
    a, b = v.meta_gradients(batch), loop.meta_gradients(batch)
    assert_same_step(a, b)
    c = whole.meta_gradients(batch)
    assert any(not torch.allclose(a.grads[k], c.grads[k]) for k in a.grads)  # minibatches used


def _loss_at(learner: GradientLearner, meta: dict[str, Tensor], batch: TaskBatch) -> float:
    """``learner.meta_loss`` with the meta-parameters set to ``meta`` (then restored)."""
    saved = {k: p.detach().clone() for k, p in learner.named_parameters()}
    try:
        with torch.no_grad():
            for k, p in learner.named_parameters():
                p.copy_(meta[k])
        return float(learner.meta_loss(batch).detach())
    finally:
        with torch.no_grad():
            for k, p in learner.named_parameters():
                p.copy_(saved[k])


def test_conv4_batchnorm_meta_gradient_equals_finite_differences() -> None:
    """Both paths agreeing is not enough if both were wrong: check one against the loss itself
    (the loop path; the vmap path equals it to 1e-10, tested above)."""
    learner = MAML(
        _conv4(), loss="cross_entropy", inner_steps=2, inner_lr=0.3, batching="loop"
    ).double()
    batch = _images()
    step = learner.meta_gradients(batch)
    meta = {k: v.detach().clone() for k, v in learner.named_parameters()}
    assert float(step.loss) == pytest.approx(_loss_at(learner, meta, batch), rel=1e-12)
    g = torch.Generator().manual_seed(0)
    eps = 1e-6
    for only in ("model.body.", "model.body.1."):  # everything in the body; the first BN's affine
        d = {
            k: torch.randn(v.shape, generator=g, dtype=v.dtype) * float(k.startswith(only))
            for k, v in meta.items()
        }
        plus = _loss_at(learner, {k: v + eps * d[k] for k, v in meta.items()}, batch)
        minus = _loss_at(learner, {k: v - eps * d[k] for k, v in meta.items()}, batch)
        fd = (plus - minus) / (2 * eps)
        analytic = float(sum((step.grads[k] * d[k]).sum() for k in meta))
        assert abs(fd) > 1e-5
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_vmap_path_batches_autograd_except_through_normalisation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without normalisation layers the vmap path differentiates the batched graph with autograd
    (``_batched_step``); through BatchNorm, and for a learner with its own objective (ANIL), it
    nests ``torch.func.grad`` under ``vmap``; each equals the loop (tests above)."""
    calls: list[str] = []
    original = GradientLearner._batched_step

    def spy(self: GradientLearner, batch: TaskBatch) -> MetaStep:
        calls.append(type(self).__name__)
        return original(self, batch)

    monkeypatch.setattr(GradientLearner, "_batched_step", spy)
    MAML(_mlp(), inner_lr=0.1, batching="vmap").double().meta_gradients(_sinusoids())
    assert calls == ["MAML"]
    conv = MAML(_conv4(), loss="cross_entropy", inner_lr=0.3, batching="vmap").double()
    conv.meta_gradients(_images())
    ANIL(MLP(1, 1, (8, 8)), inner_lr=0.1, batching="vmap").double().meta_gradients(_sinusoids())
    assert calls == ["MAML"]


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_batch_gradient_is_the_mean_of_per_task_gradients(batching: str) -> None:
    learner = MAML(_mlp(), inner_steps=2, inner_lr=0.1, batching=batching).double()
    batch = _sinusoids(3)
    whole = learner.meta_gradients(batch)
    singles = [
        learner.meta_gradients(TaskBatch(*(t[i : i + 1] for t in batch.tensors())))
        for i in range(3)
    ]
    torch.testing.assert_close(whole.loss, torch.stack([s.loss for s in singles]).mean())
    for k, g in whole.grads.items():
        torch.testing.assert_close(g, torch.stack([s.grads[k] for s in singles]).mean(0))


# ---- meta_loss(batch).backward() == meta_gradients(batch).grads ---------------------------------
@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("make", DIFFERENTIABLE)
def test_meta_loss_backward_equals_meta_gradients(make: Make, batching: str) -> None:
    learner = make(_mlp(), batching=batching).double()
    batch = _sinusoids()
    step = learner.meta_gradients(batch)
    loss = learner.meta_loss(batch)
    assert loss.requires_grad
    torch.testing.assert_close(loss.detach(), step.loss, rtol=1e-12, atol=0)
    loss.backward()
    for k, p in learner.named_parameters():
        assert p.grad is not None, k
        torch.testing.assert_close(p.grad, step.grads[k], rtol=1e-10, atol=1e-12, msg=k)


def test_meta_loss_backward_equals_meta_gradients_through_batchnorm() -> None:
    learner = MAML(
        _conv4(), loss="cross_entropy", inner_steps=2, inner_lr=0.3, batching="loop"
    ).double()
    batch = _images()
    step = learner.meta_gradients(batch)
    learner.meta_loss(batch).backward()
    for k, p in learner.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(p.grad, step.grads[k], rtol=1e-10, atol=1e-12, msg=k)


# ---- choosing the path --------------------------------------------------------------------------
def test_auto_batching_picks_vmap_for_mlps_and_loop_for_convolutions() -> None:
    assert choose_batching(MLP(1, 1, (4,)), "auto") == "vmap"
    assert choose_batching(_conv4(), "auto") == "loop"
    assert choose_batching(_conv4("inductive"), "auto") == "loop"
    assert choose_batching(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), "auto") == "loop"
    assert choose_batching(_conv4(), "vmap") == "vmap"
    assert choose_batching(MLP(1, 1, (4,)), "loop") == "loop"
    assert MAML(MLP(1, 1, (4,))).batching == "vmap"
    assert Reptile(_conv4(), loss="cross_entropy").batching == "loop"


def test_auto_batching_picks_vmap_for_convolutions_on_a_gpu() -> None:
    # One batched launch per layer beats a Python loop of small kernels on a GPU (README, GPU).
    cuda = torch.device("cuda")
    assert choose_batching(_conv4(), "auto", cuda) == "vmap"
    assert choose_batching(_conv4(), "auto", "cuda:1") == "vmap"
    assert choose_batching(_conv4(), "auto", "cpu") == "loop"
    assert choose_batching(_conv4(), "loop", cuda) == "loop"
    # running statistics and random masks keep the loop wherever the model runs
    assert choose_batching(_conv4("inductive"), "auto", cuda) == "loop"
    dropout = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.1))
    assert choose_batching(dropout, "auto", cuda) == "loop"
    assert choose_batching(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), "auto") == "loop"
    assert choose_batching(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0)), "auto") == "vmap"
    resnet = ResNet12(5, 3, (4, 4, 4, 4), "transductive", drop_rate=0.1)
    assert choose_batching(resnet, "auto", cuda) == "loop"
    assert choose_batching(ResNet12(5, 3, (4, 4, 4, 4), "transductive"), "auto", cuda) == "vmap"


def test_vmap_is_refused_with_running_batchnorm_statistics() -> None:
    with pytest.raises(ValueError, match="use batch_norm='transductive' or batching='loop'"):
        choose_batching(_conv4("inductive"), "vmap")
    for cls in (MAML, FOMAML, ANIL, MetaSGD, Reptile):
        with pytest.raises(
            ValueError, match="batching='vmap' cannot update BatchNorm running statistics"
        ):
            cls(_conv4("inductive"), loss="cross_entropy", batching="vmap")


def test_loop_path_works_with_inductive_batchnorm() -> None:
    learner = MAML(
        _conv4("inductive"), loss="cross_entropy", inner_lr=0.3, batching="loop"
    ).double()
    step = learner.meta_gradients(_images())
    assert torch.isfinite(step.loss)
    assert all(torch.isfinite(g).all() for g in step.grads.values())
    assert _norm(step.grads) > 0


def test_channels_last_is_on_for_conv4_and_gives_the_same_meta_gradient() -> None:
    fast = MAML(_conv4(), loss="cross_entropy", inner_steps=2, inner_lr=0.3).double()
    plain = MAML(_conv4(), loss="cross_entropy", inner_steps=2, inner_lr=0.3).double()
    plain.use_channels_last(False)
    assert fast.channels_last and not plain.channels_last
    assert fast.model.body[4].weight.is_contiguous(memory_format=torch.channels_last)
    assert not MAML(_mlp()).channels_last  # nothing to gain without convolutions
    batch = _images()
    assert_same_step(fast.meta_gradients(batch), plain.meta_gradients(batch))


def test_channels_last_is_refused_on_the_vmap_path() -> None:
    v = MAML(_conv4(), loss="cross_entropy", batching="vmap")
    assert not v.channels_last  # torch.func.vmap cannot batch channels-last weights
    with pytest.raises(ValueError, match="batching='loop'"):
        v.use_channels_last()


def test_support_pass_runs_in_the_default_layout_and_query_pass_channels_last() -> None:
    """Why: BatchNorm's double backward is slower channels-last (see GradientLearner._adapt)."""
    learner = MAML(_conv4(), loss="cross_entropy", inner_lr=0.3).double()
    batch = _images(queries=4)  # support 3 images, query 12
    seen: dict[int, set[bool]] = {}

    def record(_m: nn.Module, inputs: tuple[Tensor, ...], _out: Tensor) -> None:
        x = inputs[0]
        seen.setdefault(x.shape[0], set()).add(x.stride(1) == 1)

    hooks = [
        m.register_forward_hook(record) for m in learner.model.body if isinstance(m, nn.BatchNorm2d)
    ]
    learner.meta_gradients(batch)
    for h in hooks:
        h.remove()
    seen.pop(1)  # check_batch's one-image probe of the model
    assert seen == {3: {False}, 12: {True}}
