"""MAML++ (Antoniou et al. 2019): the MSL schedule, derivative-order annealing, per-layer per-step
learning rates and per-step BatchNorm, against plain MAML, FOMAML, finite differences and
hand-written references."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from metamap.errors import TaskShapeError
from metamap.learners import FOMAML, MAML
from metamap.learners.mamlpp import MAMLPlusPlus, msl_weights
from metamap.models import MLP, Conv4
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator

Params = dict[str, Tensor]
BN_LAYERS = ["body.1", "body.5", "body.9", "body.13"]  # Conv-4's BatchNorm layers (max-pool)


def _mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    return MLP(1, 1, (8, 8)).double()


def _sinusoids(n: int = 3, seed: int = 0) -> TaskBatch:
    return SinusoidTasks(5, 6).sample(n, make_generator(seed)).to("cpu", torch.float64)


def _conv(batch_norm: str = "transductive", seed: int = 0) -> Conv4:
    torch.manual_seed(seed)
    return Conv4(2, width=8, image_size=28, batch_norm=batch_norm).double()  # type: ignore[arg-type]


def _images(n: int = 2, shots: int = 1, queries: int = 2, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    return TaskBatch(
        torch.randn(n, 2 * shots, 1, 28, 28, generator=g, dtype=torch.float64),
        torch.arange(2).repeat(shots).expand(n, -1).clone(),
        torch.randn(n, 2 * queries, 1, 28, 28, generator=g, dtype=torch.float64),
        torch.arange(2).repeat(queries).expand(n, -1).clone(),
    )


class TanhBN(nn.Module):
    """1 → 16 → BatchNorm of 8 channels × 2 (batch statistics) → tanh → 1: smooth, for finite
    differences (Conv-4's max-pools and ReLUs put kinks within a finite-difference step of its
    meta-loss). Two values per channel, so that the input check's one-example pass can run."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Linear(1, 16),
            nn.Unflatten(1, (8, 2)),
            nn.BatchNorm1d(8, track_running_stats=False),
            nn.Tanh(),
            nn.Flatten(),
        )
        self.head = nn.Linear(16, 1)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.body(x))
        return out


def _mamlpp(model: nn.Module, **kw: object) -> MAMLPlusPlus:
    loss = "cross_entropy" if isinstance(model, Conv4) else "mse"
    return MAMLPlusPlus(model, loss=loss, **kw).double()  # type: ignore[arg-type]


def paper_weights(n: int, anneal: int, t: int) -> list[float]:
    """``get_per_step_loss_importance_vector`` of the paper's code, with epochs → iterations."""
    if t >= anneal:
        return [0.0] * (n - 1) + [1.0]
    w = [1.0 / n] * n
    decay, floor = 1.0 / n / anneal, 0.03 / n
    for i in range(n - 1):
        w[i] = max(w[i] - t * decay, floor)
    w[-1] = min(w[-1] + t * (n - 1) * decay, 1.0 - (n - 1) * floor)
    return w


# ---- an independent MAML++ meta-loss, for finite differences ------------------------------------
def _norm_name(step: int, entry: str) -> str:
    """The learner's name of inner step ``step``'s copy of BatchNorm ``entry`` (documented)."""
    if step == 0:
        return "model." + entry
    layer, attr = entry.rsplit(".", 1)
    return f"step_norms.{step - 1}.{layer.replace('.', '__')}.{attr}"


def _bn_params(model: nn.Module) -> list[str]:
    """The names of the weights and biases of ``model``'s BatchNorm layers."""
    layers = {n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    return [n for n, _ in model.named_parameters() if n.rsplit(".", 1)[0] in layers]


def reference_meta_loss(learner: MAMLPlusPlus, meta: Params, batch: TaskBatch) -> Tensor:
    """Σ_i w_i L_query(θ_{i+1}) averaged over tasks, θ_{i+1} = θ_i - α_{l,i} ∇L_support(θ_i) with
    step i's BatchNorm weights, all read from the (perturbed) meta-parameters ``meta``."""
    model, n = learner.model, learner.inner_steps
    loss_fn = F.mse_loss if learner.loss_name == "mse" else F.cross_entropy
    weights = paper_weights(n, learner.msl_steps, learner.training_step)
    bn = _bn_params(model)
    total = torch.zeros((), dtype=torch.float64)
    for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
        theta = {k: meta["model." + k] for k, _ in model.named_parameters() if k not in bn}
        for i in range(n):
            norms = {e: meta[_norm_name(i, e)] for e in bn}
            p = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
            with torch.enable_grad():
                loss = loss_fn(functional_call(model, {**p, **norms}, (sx,)), sy)
                gs = torch.autograd.grad(loss, list(p.values()))
            lrs = {k: meta["inner_lrs." + k.replace(".", "__")][i] for k in theta}
            theta = {k: v - lrs[k] * g for (k, v), g in zip(theta.items(), gs, strict=True)}
            if weights[i] > 0:
                pred = functional_call(model, {**theta, **norms}, (qx,))
                total = total + weights[i] * loss_fn(pred, qy)
    return total / len(batch)


def directional_pairs(
    learner: MAMLPlusPlus, batch: TaskBatch, only: tuple[str, ...] = ("",), eps: float = 1e-6
) -> list[tuple[float, float]]:
    """(central finite difference, analytic) derivatives along 3 random directions."""
    meta = {k: v.detach().clone() for k, v in learner.named_parameters()}
    grads = learner.meta_gradients(batch).grads
    g = torch.Generator().manual_seed(1234)
    out = []
    for _ in range(3):
        d = {
            k: torch.randn(v.shape, generator=g, dtype=v.dtype) * float(k.startswith(only))
            for k, v in meta.items()
        }
        with torch.no_grad():
            plus = reference_meta_loss(learner, {k: v + eps * d[k] for k, v in meta.items()}, batch)
            minus = reference_meta_loss(
                learner, {k: v - eps * d[k] for k, v in meta.items()}, batch
            )
        out.append(
            (float((plus - minus) / (2 * eps)), float(sum((grads[k] * d[k]).sum() for k in d)))
        )
    return out


def _spread_lrs(learner: MAMLPlusPlus) -> None:
    """Different α per layer and step, so that a mixed-up index shows."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in learner.inner_lrs.values():
            p.mul_(0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype))


# ---- MSL and DA: functions of the training step ---------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5])
def test_msl_weights_are_the_papers_schedule(n: int) -> None:
    anneal = 50
    assert msl_weights(n, anneal, 0) == pytest.approx([1.0 / n] * n, abs=1e-15)
    for t in range(0, anneal + 5):
        w = msl_weights(n, anneal, t)
        assert len(w) == n and sum(w) == pytest.approx(1.0, abs=1e-14)
        assert w == pytest.approx(paper_weights(n, anneal, t), abs=1e-14)
        if t < anneal:
            assert min(w) >= 0.03 / n - 1e-15 and all(x == w[0] for x in w[:-1])
            assert t == 0 or w[-1] >= msl_weights(n, anneal, t - 1)[-1]
        else:
            assert w == [0.0] * (n - 1) + [1.0]
    if n > 1:
        assert msl_weights(n, anneal, anneal - 1)[0] == pytest.approx(0.03 / n)  # at the floor
    assert msl_weights(n, 0, 0) == [0.0] * (n - 1) + [1.0]  # msl_steps=0: MAML's loss


def test_training_step_sets_msl_weights_and_derivative_order() -> None:
    learner = MAMLPlusPlus(_mlp(), inner_steps=4, msl_steps=10, first_order_steps=3)
    assert learner.training_step == 0 and not learner.second_order
    assert learner.loss_weights() == pytest.approx([0.25] * 4)
    learner.set_training_step(3)
    assert learner.second_order and learner.loss_weights() == msl_weights(4, 10, 3)
    learner.set_training_step(10)
    assert learner.loss_weights() == [0.0, 0.0, 0.0, 1.0]
    learner.set_training_step(2)  # a pure function of the step: going back goes back
    assert not learner.second_order and learner.loss_weights() == msl_weights(4, 10, 2)
    with pytest.raises(ValueError, match="training step must be non-negative, got -1"):
        learner.set_training_step(-1)


def test_a_resumed_learner_replays_the_run_exactly() -> None:
    """Training, then a fresh learner loaded from the state dict: the same next step, bit for
    bit, through the DA switch and the end of MSL (running statistics are in the state dict)."""
    batch = _images()
    run = _mamlpp(_conv("inductive"), inner_steps=2, msl_steps=3, first_order_steps=2)
    opt = torch.optim.SGD(run.parameters(), lr=0.1)
    for t in range(5):
        resumed = _mamlpp(
            _conv("inductive", seed=1), inner_steps=2, msl_steps=3, first_order_steps=2
        )
        resumed.load_state_dict(run.state_dict())
        run.set_training_step(t)
        resumed.set_training_step(t)
        a, b = run.meta_gradients(batch), resumed.meta_gradients(batch)
        assert torch.equal(a.loss, b.loss)
        assert all(torch.equal(a.grads[k], b.grads[k]) for k in a.grads)
        for k, v in run.state_dict().items():
            assert torch.equal(v, resumed.state_dict()[k]), k
        run.apply_gradients(a)
        opt.step()


# ---- against MAML and FOMAML ------------------------------------------------------------------
@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_annealed_second_order_with_constant_rates_is_maml(batching: str) -> None:
    model, batch = _mlp(), _sinusoids()
    pp = _mamlpp(
        copy.deepcopy(model), inner_steps=3, msl_steps=4, first_order_steps=2, batching=batching
    )
    pp.set_training_step(4)
    maml = MAML(copy.deepcopy(model), inner_steps=3, inner_lr=0.1, batching=batching).double()
    a, b = pp.meta_gradients(batch), maml.meta_gradients(batch)
    assert set(a.grads) == set(b.grads) | {f"inner_lrs.{n}" for n in pp.inner_lrs}
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-13, atol=0)
    for k, g in b.grads.items():
        torch.testing.assert_close(a.grads[k], g, rtol=1e-12, atol=1e-14, msg=k)


def test_derivative_order_annealing_is_fomaml_then_maml() -> None:
    model, batch = _mlp(), _sinusoids()
    pp = _mamlpp(copy.deepcopy(model), inner_steps=2, msl_steps=0, first_order_steps=5)
    fo = FOMAML(copy.deepcopy(model), inner_steps=2, inner_lr=0.1).double().meta_gradients(batch)
    so = MAML(copy.deepcopy(model), inner_steps=2, inner_lr=0.1).double().meta_gradients(batch)
    for t, expected in [(0, fo), (4, fo), (5, so), (100, so)]:
        pp.set_training_step(t)
        got = pp.meta_gradients(batch).grads
        for k, g in expected.grads.items():
            torch.testing.assert_close(got[k], g, rtol=1e-12, atol=1e-14, msg=f"{t} {k}")
    gap = sum(float((fo.grads[k] - so.grads[k]).norm()) for k in fo.grads)
    assert gap > 1e-3 * sum(float(g.norm()) for g in so.grads.values())


# ---- exact meta-gradients: finite differences of the written-out meta-loss --------------------
@pytest.mark.parametrize("batching", ["loop", "vmap"])
@pytest.mark.parametrize("t", [3, 40], ids=["msl", "annealed"])
def test_second_order_meta_gradient_equals_finite_differences_mlp(t: int, batching: str) -> None:
    learner = _mamlpp(_mlp(), inner_steps=3, msl_steps=20, first_order_steps=0, batching=batching)
    _spread_lrs(learner)
    learner.set_training_step(t)
    batch = _sinusoids()
    meta = {k: v.detach() for k, v in learner.named_parameters()}
    assert float(learner.meta_gradients(batch).loss) == pytest.approx(
        float(reference_meta_loss(learner, meta, batch)), rel=1e-12
    )
    for only in [("",), ("inner_lrs",)]:
        for fd, analytic in directional_pairs(learner, batch, only):
            assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("batching", ["loop", "vmap"])
def test_second_order_meta_gradient_equals_finite_differences_with_per_step_norms(
    batching: str,
) -> None:
    learner = _mamlpp(
        TanhBN().double(), inner_steps=3, msl_steps=10, first_order_steps=0, batching=batching
    )
    assert learner.batching == batching
    _spread_lrs(learner)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # per-step BatchNorm copies that differ from the model's own
        for p in learner.step_norms.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    learner.set_training_step(4)
    batch = _sinusoids()
    meta = {k: v.detach() for k, v in learner.named_parameters()}
    assert float(learner.meta_gradients(batch).loss) == pytest.approx(
        float(reference_meta_loss(learner, meta, batch)), rel=1e-12
    )
    for only in [("",), ("step_norms", "model.body.2"), ("inner_lrs",)]:
        for fd, analytic in directional_pairs(learner, batch, only):
            assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_first_order_phase_is_not_the_exact_gradient() -> None:
    learner = _mamlpp(_mlp(), inner_steps=2, msl_steps=20, first_order_steps=10)
    learner.set_training_step(3)
    pairs = directional_pairs(learner, _sinusoids())
    assert any(abs(fd - an) > 1e-3 * abs(fd) for fd, an in pairs), pairs


@pytest.mark.parametrize("t", [0, 3, 40], ids=["first_order", "msl", "annealed"])
def test_vmap_equals_loop(t: int) -> None:
    model, batch = _mlp(), _sinusoids()
    kw = {"inner_steps": 3, "msl_steps": 20, "first_order_steps": 2}
    v = _mamlpp(copy.deepcopy(model), batching="vmap", **kw)
    loop = _mamlpp(copy.deepcopy(model), batching="loop", **kw)
    v.set_training_step(t)
    loop.set_training_step(t)
    a, b = v.meta_gradients(batch), loop.meta_gradients(batch)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-12, atol=0)
    for k in b.grads:
        torch.testing.assert_close(a.grads[k], b.grads[k], rtol=1e-10, atol=1e-12, msg=k)


def test_channels_last_gives_the_default_layouts_numbers() -> None:
    cl = _mamlpp(_conv("inductive"), inner_steps=2, msl_steps=10, first_order_steps=0)
    plain = _mamlpp(_conv("inductive"), inner_steps=2, msl_steps=10, first_order_steps=0)
    plain.use_channels_last(False)
    assert cl.channels_last and not plain.channels_last
    a, b = cl.meta_gradients(_images()), plain.meta_gradients(_images())
    for k in b.grads:
        torch.testing.assert_close(a.grads[k], b.grads[k], rtol=1e-9, atol=1e-12, msg=k)


# ---- per-step learning rates and BatchNorm are meta-learned ----------------------------------
@pytest.mark.parametrize("batch_norm", ["transductive", "inductive"])
def test_per_step_rates_and_norms_receive_gradients(batch_norm: str) -> None:
    learner = _mamlpp(_conv(batch_norm), inner_steps=3, msl_steps=10, first_order_steps=0)
    learner.set_training_step(2)
    names = {n for n, _ in learner.named_parameters()}
    norms = {n for n in names if n.startswith("step_norms.")}
    bn = _bn_params(learner.model)
    assert norms == {_norm_name(i, e) for i in (1, 2) for e in bn}
    adapted = [n for n, _ in learner.model.named_parameters() if n not in bn]
    assert set(learner.inner_lrs) == {n.replace(".", "__") for n in adapted}
    assert all(p.shape == (3,) and torch.all(p == 0.1) for p in learner.inner_lrs.values())
    grads = learner.meta_gradients(_images()).grads
    assert set(grads) == names
    for n in norms | {"model." + e for e in bn}:
        assert float(grads[n].abs().min()) > 0, n
    for n, g in grads.items():
        # a convolution's bias before BatchNorm has no effect, nor its learning rate
        if n.startswith("inner_lrs.") and not (n.endswith("bias") and "body" in n):
            assert bool((g.abs() > 1e-10).all()), n


def test_after_annealing_in_first_order_only_the_last_steps_norms_learn() -> None:
    """The query loss of the last step alone, inner gradients as constants: earlier steps'
    BatchNorm copies then shape nothing the meta-loss sees."""
    learner = _mamlpp(_conv(), inner_steps=3, msl_steps=0, first_order_steps=10)
    grads = learner.meta_gradients(_images()).grads
    for n, g in grads.items():
        if n.startswith("step_norms.1."):
            assert float(g.abs().min()) > 0, n
        elif n.startswith("step_norms.0.") or n in {
            "model." + e for e in _bn_params(learner.model)
        }:
            assert not g.any(), n


# ---- per-step running statistics -------------------------------------------------------------
def _running(learner: MAMLPlusPlus, step: int) -> Params:
    buffers = dict(learner.named_buffers())
    return {
        f"{layer}.{a}": buffers[_norm_name(step, f"{layer}.{a}")]
        for layer in BN_LAYERS
        for a in ("running_mean", "running_var", "num_batches_tracked")
    }


def test_each_step_updates_only_its_own_running_statistics() -> None:
    learner = _mamlpp(_conv("inductive"), inner_steps=3, msl_steps=10, first_order_steps=0)
    batch = _images(n=3)
    sx, sy = batch.support_x[0], batch.support_y[0]
    fresh = copy.deepcopy(learner)
    theta1 = copy.deepcopy(fresh).adapt(sx, sy, steps=1).params
    learner.adapt(sx, sy, steps=2)  # support passes of steps 0 and 1, in training mode
    for step, passes in [(0, 1), (1, 1), (2, 0)]:
        for name, v in _running(learner, step).items():
            if name.endswith("num_batches_tracked"):
                assert int(v) == passes, (step, name)
            else:
                assert torch.equal(v, _running(fresh, step)[name]) == (passes == 0), (step, name)
    # step 1's first BatchNorm saw the first convolution of θ_1 on the support images
    z = F.conv2d(sx, theta1["body.0.weight"], theta1["body.0.bias"], padding=1)
    stats = _running(learner, 1)
    torch.testing.assert_close(stats["body.1.running_mean"], 0.1 * z.mean((0, 2, 3)))
    torch.testing.assert_close(
        stats["body.1.running_var"], 0.9 + 0.1 * z.transpose(0, 1).flatten(1).var(1)
    )
    # a meta-batch of 3 tasks: support and query passes of every step while MSL weighs them all,
    # then the query pass of the last step only
    learner = copy.deepcopy(fresh)
    learner.set_training_step(5)
    learner.meta_gradients(batch)
    learner.set_training_step(10)
    learner.meta_gradients(batch)
    for step, passes in [(0, 6 + 3), (1, 6 + 3), (2, 6 + 6)]:
        assert all(
            int(_running(learner, step)[f"{b}.num_batches_tracked"]) == passes for b in BN_LAYERS
        )
    frozen = {k: v.clone() for k, v in learner.named_buffers()}
    learner.eval()
    learner.predict(learner.adapt(sx, sy, steps=5), batch.query_x[0])
    assert all(torch.equal(v, frozen[k]) for k, v in learner.named_buffers())


def test_evaluation_uses_each_steps_running_statistics() -> None:
    """In ``eval()``, step i's support pass and the model adapted by i+1 steps normalise with step
    i's running statistics; the model at θ_0 with step 0's; steps beyond those trained reuse the
    last step's BatchNorm and α."""
    learner = _mamlpp(_conv("inductive"), inner_steps=2)
    _spread_lrs(learner)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # every step's statistics and BatchNorm weights differ
        for name, b in learner.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                b.copy_(0.2 * torch.randn(b.shape, generator=g, dtype=b.dtype) + (b > 0.5))
        for p in learner.step_norms.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    learner.eval()
    model = learner.model
    batch = _images(n=1)
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    bn = _bn_params(model)

    def run(theta: Params, step: int, x: Tensor) -> Tensor:
        norms = {e: learner.get_parameter(_norm_name(step, e)) for e in bn}
        out: Tensor = functional_call(model, ({**theta, **norms}, _running(learner, step)), (x,))
        return out

    theta = {k: v.detach() for k, v in model.named_parameters() if k not in bn}
    expected = {0: run(theta, 0, qx)}
    for i in range(3):
        j = min(i, 1)
        p = {k: v.requires_grad_(True) for k, v in theta.items()}
        gs = torch.autograd.grad(F.cross_entropy(run(p, j, sx), sy), list(p.values()))
        lrs = {k: learner.inner_lrs[k.replace(".", "__")][j].detach() for k in p}
        theta = {k: (v - lrs[k] * gk).detach() for (k, v), gk in zip(p.items(), gs, strict=True)}
        expected[i + 1] = run(theta, j, qx)
    trace = learner.adapt_trace(sx, sy, [0, 1, 2, 3])
    for k, out in expected.items():
        torch.testing.assert_close(learner.predict(trace[k], qx), out, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(expected[1], run(trace[1].params, 1, qx))  # the statistics matter


def test_state_dict_round_trips_the_per_step_statistics() -> None:
    learner = _mamlpp(_conv("inductive"), inner_steps=3, msl_steps=10)
    learner.set_training_step(1)
    learner.meta_gradients(_images())
    state = learner.state_dict()
    assert {f"step_norms.{i}.body__5.running_var" for i in (0, 1)} <= set(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    other = _mamlpp(_conv("inductive", seed=5), inner_steps=3, msl_steps=10)
    other.load_state_dict(torch.load(buf, weights_only=True))
    for k, v in learner.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    learner.eval()
    other.eval()
    task = _images(n=1, seed=2)[0]
    a = learner.predict(learner.adapt(task.support_x, task.support_y), task.query_x)
    b = other.predict(other.adapt(task.support_x, task.support_y), task.query_x)
    assert torch.equal(a, b)


# ---- the mapping ----------------------------------------------------------------------------
def test_adapt_trace_agrees_with_adapt_and_leaves_the_learner_untouched() -> None:
    learner = _mamlpp(_conv("inductive"), inner_steps=2).eval()
    _spread_lrs(learner)
    task = _images(n=1)[0]
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    trace = learner.adapt_trace(task.support_x, task.support_y, [4, 0, 1])
    assert sorted(trace) == [0, 1, 4]
    for k in (0, 1, 4):
        single = learner.adapt(task.support_x, task.support_y, steps=k)
        assert len(single.support_losses) == k
        assert trace[k].support_losses == pytest.approx(single.support_losses, rel=1e-12)
        torch.testing.assert_close(
            learner.predict(trace[k], task.query_x), learner.predict(single, task.query_x)
        )
        assert all(not v.requires_grad for v in single.params.values())
    assert learner.adapt(task.support_x, task.support_y).support_losses == pytest.approx(
        trace[4].support_losses[:2]
    )
    for name, v in learner.model.named_parameters():
        assert torch.equal(trace[0].params[name], v.detach())
    for k, v in learner.state_dict().items():
        assert torch.equal(v, before[k]), k


# ---- arguments and bad input ---------------------------------------------------------------
def test_invalid_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="inner_steps must be at least 1, got 0"):
        MAMLPlusPlus(_mlp(), inner_steps=0)
    with pytest.raises(ValueError, match=r"inner_lr \(the initial α\) must be positive"):
        MAMLPlusPlus(_mlp(), inner_lr=0.0)
    with pytest.raises(ValueError, match="msl_steps and first_order_steps must be non-negative"):
        MAMLPlusPlus(_mlp(), msl_steps=-1)
    with pytest.raises(ValueError, match="batching='vmap' cannot update BatchNorm running"):
        MAMLPlusPlus(_conv("inductive"), loss="cross_entropy", batching="vmap")


def test_bad_input_is_refused_before_any_work() -> None:
    learner = _mamlpp(_conv("inductive"), inner_steps=2)
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    bad = _images()
    bad.support_y[1, 0] = 2
    with pytest.raises(TaskShapeError, match=r"support labels must lie in \[0, 2\)"):
        learner.meta_gradients(bad)
    nan = _images()
    nan.query_x[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(TaskShapeError, match="query_x"):
        learner.meta_gradients(nan)
    with pytest.raises(TaskShapeError, match="do not fit"):
        learner.adapt(torch.randn(2, 1, 16, 16, dtype=torch.float64), torch.arange(2))
    for k, v in learner.state_dict().items():  # refused before any BatchNorm update
        assert torch.equal(v, before[k]), k
    task = _images(n=1)[0]
    state = learner.adapt(task.support_x, task.support_y)
    with pytest.raises(TaskShapeError, match="do not fit"):
        learner.predict(state, torch.randn(3, 1, 16, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-negative"):
        learner.adapt_trace(task.support_x, task.support_y, [-1])
