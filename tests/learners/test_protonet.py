"""Prototypical Networks, and the shared encoder-learner base (labels, batching, BatchNorm):
prototypes are class means, logits are −squared distances, gradients match finite differences
in float64, one batched forward = mean of per-task gradients where it should, bad labels raise."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metamap.errors import TaskShapeError
from metamap.learners import (
    R2D2,
    EncoderLearner,
    MatchingNet,
    MetaStep,
    PretrainBaseline,
    ProtoNet,
    PrototypeState,
    RelationNet,
    SVMHead,
    check_labels,
)
from metamap.models import MLP, Conv4
from metamap.tasks import TaskBatch
from metamap.train import evaluate


def clusters(
    ways: int, shots: int, queries: int, dim: int, tasks: int = 1, sep: float = 4.0, seed: int = 0
) -> TaskBatch:
    """Gaussian clusters: ``tasks`` tasks of ``ways`` classes with random means in R^dim."""
    g = torch.Generator().manual_seed(seed)
    means = sep * torch.randn(tasks, ways, dim, generator=g)
    sy = torch.arange(ways).repeat(shots).expand(tasks, -1)
    qy = torch.arange(ways).repeat(queries).expand(tasks, -1)
    sx = means.gather(1, sy[..., None].expand(-1, -1, dim)) + torch.randn(
        *sy.shape, dim, generator=g
    )
    qx = means.gather(1, qy[..., None].expand(-1, -1, dim)) + torch.randn(
        *qy.shape, dim, generator=g
    )
    return TaskBatch(sx, sy.contiguous(), qx, qy.contiguous())


def images(
    tasks: int = 3, ways: int = 3, shots: int = 2, queries: int = 2, seed: int = 0
) -> TaskBatch:
    """Tiny 1×16×16 image tasks whose classes differ in mean pattern."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(tasks, ways, 1, 16, 16, generator=g)
    sy = torch.arange(ways).repeat(shots).expand(tasks, -1).contiguous()
    qy = torch.arange(ways).repeat(queries).expand(tasks, -1).contiguous()
    pick = lambda y: torch.stack([patterns[b, y[b]] for b in range(tasks)])  # noqa: E731
    sx = pick(sy) + 0.5 * torch.randn(*sy.shape, 1, 16, 16, generator=g)
    qx = pick(qy) + 0.5 * torch.randn(*qy.shape, 1, 16, 16, generator=g)
    return TaskBatch(sx, sy, qx, qy)


def conv_body(batch_norm: str = "transductive", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Conv4(1, width=4, image_size=16, batch_norm=batch_norm).body.double()  # type: ignore[arg-type]


def mlp_body(dim: int = 6, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return MLP(dim, 1, (8, 5)).body.double()


def assert_grads_match_finite_differences(
    learner: EncoderLearner, batch: TaskBatch, n_dirs: int = 3, eps: float = 1e-6
) -> MetaStep:
    """Directional derivatives of meta_loss along random directions, analytic vs central FD."""
    step = learner.meta_gradients(batch)
    named = dict(learner.named_parameters())
    assert set(step.grads) == {k for k, p in named.items() if p.requires_grad}
    g = torch.Generator().manual_seed(1234)
    base = {k: p.detach().clone() for k, p in named.items()}
    for _ in range(n_dirs):
        d = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in named.items()}
        d = {k: v if named[k].requires_grad else torch.zeros_like(v) for k, v in d.items()}
        losses = []
        with torch.no_grad():
            for t in (eps, -eps):
                for k, p in named.items():
                    p.copy_(base[k] + t * d[k])
                losses.append(float(learner.meta_loss(batch)))
            for k, p in named.items():
                p.copy_(base[k])
        fd = (losses[0] - losses[1]) / (2 * eps)
        analytic = sum(float((step.grads[k] * d[k]).sum()) for k in step.grads)
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-8)
    return step


def per_task_mean(learner: EncoderLearner, batch: TaskBatch) -> tuple[Tensor, dict[str, Tensor]]:
    steps = [
        learner.meta_gradients(TaskBatch(*(t[i : i + 1] for t in batch.tensors())))
        for i in range(len(batch))
    ]
    loss = torch.stack([s.loss for s in steps]).mean()
    return loss, {k: torch.stack([s.grads[k] for s in steps]).mean(0) for k in steps[0].grads}


# ---- the algorithm -----------------------------------------------------------------------------
def test_prototypes_are_class_means() -> None:
    batch = clusters(ways=4, shots=3, queries=2, dim=5)
    sx, sy = batch.support_x[0], batch.support_y[0]
    state = ProtoNet(nn.Identity()).adapt(sx, sy)
    assert isinstance(state, PrototypeState)
    assert tuple(state.prototypes.shape) == (4, 5)
    for k in range(4):
        torch.testing.assert_close(state.prototypes[k], sx[sy == k].mean(0))


def test_logits_are_negative_squared_distances() -> None:
    batch = clusters(ways=3, shots=2, queries=4, dim=6).to("cpu", torch.float64)
    enc = mlp_body()
    learner = ProtoNet(enc)
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    logits = learner.predict(learner.adapt(sx, sy), qx)
    with torch.no_grad():
        zs, zq = enc(sx), enc(qx)
    c = torch.stack([zs[sy == k].mean(0) for k in range(3)])
    expected = torch.tensor(
        [[-float(((zq[i] - c[k]) ** 2).sum()) for k in range(3)] for i in range(12)]
    )
    torch.testing.assert_close(logits, expected.double())


def test_cosine_logits_use_the_learnable_scale() -> None:
    batch = clusters(ways=3, shots=2, queries=4, dim=6)
    learner = ProtoNet(nn.Identity(), distance="cosine", scale=7.0)
    assert [n for n, _ in learner.named_parameters()] == ["scale"]
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    logits = learner.predict(learner.adapt(sx, sy), qx)
    c = torch.stack([sx[sy == k].mean(0) for k in range(3)])
    torch.testing.assert_close(logits, 7.0 * F.cosine_similarity(qx[:, None], c[None], dim=-1))
    with pytest.raises(ValueError, match="distance must be"):
        ProtoNet(nn.Identity(), distance="manhattan")  # type: ignore[arg-type]


def test_identity_encoder_classifies_separated_clusters() -> None:
    batch = clusters(ways=5, shots=5, queries=20, dim=16, tasks=4)
    learner = ProtoNet(nn.Identity())
    for task in batch:
        pred = learner.predict(learner.adapt(task.support_x, task.support_y), task.query_x)
        assert float((pred.argmax(-1) == task.query_y).double().mean()) >= 0.95


def test_meta_gradients_match_finite_differences() -> None:
    batch = clusters(ways=3, shots=2, queries=3, dim=6, tasks=2, sep=1.0).to("cpu", torch.float64)
    step = assert_grads_match_finite_differences(ProtoNet(mlp_body()), batch)
    assert set(step.grads) == {"model.0.weight", "model.0.bias", "model.2.weight", "model.2.bias"}
    assert 0 <= float(step.metric) <= 1
    cos = ProtoNet(mlp_body(), distance="cosine").double()
    assert "scale" in assert_grads_match_finite_differences(cos, batch).grads


def test_meta_loss_is_the_mean_query_cross_entropy() -> None:
    batch = clusters(ways=3, shots=2, queries=3, dim=6, tasks=2).to("cpu", torch.float64)
    learner = ProtoNet(mlp_body())
    expected = []
    for task in batch:
        logits = learner.predict(learner.adapt(task.support_x, task.support_y), task.query_x)
        expected.append(F.cross_entropy(logits, task.query_y))
    torch.testing.assert_close(learner.meta_loss(batch), torch.stack(expected).mean())
    torch.testing.assert_close(learner.meta_gradients(batch).loss, torch.stack(expected).mean())


# ---- batching and BatchNorm --------------------------------------------------------------------
def test_per_task_forward_gives_the_mean_of_per_task_gradients() -> None:
    batch = images().to("cpu", torch.float64)
    learner = ProtoNet(conv_body("transductive"), per_task_forward=True)
    step = learner.meta_gradients(batch)
    loss, grads = per_task_mean(learner, batch)
    torch.testing.assert_close(step.loss, loss)
    for k, g in grads.items():
        torch.testing.assert_close(step.grads[k], g)
    # one forward for the whole batch normalises across tasks: a different (documented) answer
    joint = ProtoNet(conv_body("transductive")).meta_gradients(batch)
    assert not torch.allclose(joint.grads["model.0.weight"], step.grads["model.0.weight"])


def test_one_forward_equals_per_task_gradients_with_running_statistics_in_eval() -> None:
    enc = conv_body("inductive")
    enc.train()
    enc(images(seed=1).support_x.flatten(0, 1).double())  # some non-trivial running statistics
    learner = ProtoNet(enc).eval()
    batch = images().to("cpu", torch.float64)
    step = learner.meta_gradients(batch)
    loss, grads = per_task_mean(learner, batch)
    torch.testing.assert_close(step.loss, loss)
    for k, g in grads.items():
        torch.testing.assert_close(step.grads[k], g)


def test_checks_do_not_touch_running_statistics_and_training_updates_them_once() -> None:
    learner = ProtoNet(conv_body("inductive"))
    batch = images().to("cpu", torch.float64)
    bn = learner.model[1]
    before = bn.num_batches_tracked.clone()
    learner.check_batch(batch)
    assert torch.equal(bn.num_batches_tracked, before)
    learner.meta_gradients(batch)
    assert int(bn.num_batches_tracked) == int(before) + 1


def test_apply_gradients_then_an_optimizer_step_lowers_the_loss() -> None:
    batch = clusters(ways=3, shots=2, queries=3, dim=6, tasks=4, sep=1.0).to("cpu", torch.float64)
    learner = ProtoNet(mlp_body())
    opt = torch.optim.SGD(learner.parameters(), lr=0.05)
    first = float(learner.meta_loss(batch).detach())
    for _ in range(5):
        learner.apply_gradients(learner.meta_gradients(batch))
        opt.step()
    assert float(learner.meta_loss(batch).detach()) < first


# ---- labels -------------------------------------------------------------------------------------
BAD_SUPPORT: list[tuple[list[int], str]] = [
    ([0, 0, 2, 2], r"task 0 are \[0, 2\]: they must be exactly 0..ways-1"),  # a gap
    ([1, 1, 2, 2], r"task 0 are \[1, 2\]"),  # does not start at 0
    ([-1, 0, 1, 1], r"task 0 are \[-1, 0, 1\]"),
]


@pytest.mark.parametrize(("labels", "message"), BAD_SUPPORT)
def test_bad_support_labels_raise(labels: list[int], message: str) -> None:
    learner = ProtoNet(nn.Identity())
    x = torch.randn(4, 3)
    with pytest.raises(TaskShapeError, match=message):
        learner.adapt(x, torch.tensor(labels))
    batch = TaskBatch(x[None], torch.tensor([labels]), x[None], torch.tensor([[0, 0, 0, 0]]))
    with pytest.raises(TaskShapeError, match=message):
        learner.meta_gradients(batch)


def test_query_labels_outside_the_support_classes_raise() -> None:
    x = torch.randn(1, 4, 3)
    batch = TaskBatch(x, torch.tensor([[0, 1, 0, 1]]), x, torch.tensor([[0, 1, 2, 1]]))
    with pytest.raises(
        TaskShapeError, match=r"query labels of task 0 include \[2\].*no support example"
    ):
        ProtoNet(nn.Identity()).meta_gradients(batch)


def test_other_label_errors() -> None:
    learner = ProtoNet(nn.Identity())
    x = torch.randn(4, 3)
    with pytest.raises(TaskShapeError, match="int64 class indices"):
        learner.adapt(x, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    sy = torch.tensor([[0, 1, 0, 1], [0, 1, 2, 2]])  # 2 ways, then 3 ways
    with pytest.raises(TaskShapeError, match="task 1 has 3 ways but task 0 has 2"):
        learner.meta_loss(TaskBatch(torch.randn(2, 4, 3), sy, torch.randn(2, 4, 3), sy))
    assert check_labels(torch.tensor([[1, 0, 2], [2, 1, 0]]), torch.tensor([[2, 2], [0, 1]])) == 3


def test_inputs_that_do_not_fit_the_encoder_raise() -> None:
    learner = ProtoNet(conv_body())
    with pytest.raises(
        TaskShapeError, match=r"support inputs of shape \(4, 3, 16, 16\) do not fit"
    ):
        learner.adapt(torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 0, 1]))


def test_adapt_is_detached_and_predict_follows_grad_mode() -> None:
    learner = ProtoNet(mlp_body())
    batch = clusters(ways=2, shots=2, queries=2, dim=6).to("cpu", torch.float64)
    state = learner.adapt(batch.support_x[0], batch.support_y[0])
    assert isinstance(state, PrototypeState) and not state.prototypes.requires_grad
    assert learner.predict(state, batch.query_x[0]).requires_grad
    with pytest.raises(TypeError, match="expected a PrototypeState"):
        learner.score(object(), batch.query_x[0])  # type: ignore[arg-type]


# ---- every encoder learner through the library's evaluation --------------------------------
def test_every_encoder_learner_runs_in_evaluate_and_trains() -> None:
    batch = images(tasks=2, ways=3, shots=2, queries=3).to("cpu", torch.float64)
    torch.manual_seed(0)
    two_blocks = Conv4(1, width=4, image_size=16).body[:8].double()  # maps (N, 4, 4, 4)
    learners: list[EncoderLearner] = [
        ProtoNet(conv_body()),
        ProtoNet(conv_body(), distance="cosine"),
        MatchingNet(conv_body()),
        R2D2(conv_body()),
        SVMHead(conv_body(), iterations=10),
        RelationNet(two_blocks, (4, 4, 4), width=4, hidden=4),
        PretrainBaseline(conv_body(), 5, feature_dim=4, head="logistic"),
    ]
    for learner in learners:
        learner.double()
        result = evaluate(learner, batch, steps=[1])[1]
        assert 0 <= result.mean <= 1 and result.n == 2
        if not isinstance(learner, PretrainBaseline):
            step = learner.meta_gradients(batch)
            assert step.grads and all(bool(torch.isfinite(g).all()) for g in step.grads.values())


def test_relation_per_task_forward_gives_the_mean_of_per_task_gradients() -> None:
    torch.manual_seed(0)
    enc = Conv4(1, width=4, image_size=16).body[:8].double()
    learner = RelationNet(enc, (4, 4, 4), width=4, hidden=4, per_task_forward=True).double()
    batch = images().to("cpu", torch.float64)
    step = learner.meta_gradients(batch)
    loss, grads = per_task_mean(learner, batch)
    torch.testing.assert_close(step.loss, loss)
    for k, g in grads.items():
        torch.testing.assert_close(step.grads[k], g)


def test_channels_last_is_the_default_for_conv_encoders_and_changes_nothing() -> None:
    """Same meta-gradients (float64) in the channels-last and contiguous memory formats."""
    torch.manual_seed(0)
    body = Conv4(5, 1, 8, 28, "transductive").body.double()
    fast = ProtoNet(copy.deepcopy(body))
    slow = ProtoNet(copy.deepcopy(body)).use_channels_last(False)
    assert fast.channels_last and not slow.channels_last
    assert fast.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not ProtoNet(MLP(4, 3, [8]).body).channels_last  # no convolutions: left alone
    g = torch.Generator().manual_seed(1)
    batch = TaskBatch(
        torch.rand(2, 5, 1, 28, 28, generator=g, dtype=torch.float64),
        torch.arange(5).repeat(2, 1),
        torch.rand(2, 10, 1, 28, 28, generator=g, dtype=torch.float64),
        torch.arange(5).repeat_interleave(2).repeat(2, 1),
    )
    a, b = fast.meta_gradients(batch), slow.meta_gradients(batch)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-12, atol=1e-12)
    for k in a.grads:
        torch.testing.assert_close(a.grads[k], b.grads[k], rtol=1e-9, atol=1e-10)
