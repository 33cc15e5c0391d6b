"""Relation Networks: the paper's embedding shapes, class maps are sums of support maps, scores
in [0, 1] of shape (Q, W), MSE against one-hot, and a few training steps lower the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metamap.errors import TaskShapeError
from metamap.learners import RelationNet, RelationState, relation_embedding, relation_feature_shape
from metamap.models import Conv4
from metamap.tasks import TaskBatch


def images(
    tasks: int = 2, ways: int = 3, shots: int = 2, queries: int = 2, size: int = 28
) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(tasks, ways, 1, 1, size, size, generator=g)
    sy = torch.arange(ways).repeat(tasks, shots)
    qy = torch.arange(ways).repeat(tasks, queries)
    sx = (patterns + 0.5 * torch.randn(tasks, ways, shots, 1, size, size, generator=g)).transpose(
        1, 2
    )
    qx = (patterns + 0.5 * torch.randn(tasks, ways, queries, 1, size, size, generator=g)).transpose(
        1, 2
    )
    return TaskBatch(sx.flatten(1, 2), sy, qx.flatten(1, 2), qy)


def small_relation_net(batch_norm: str = "transductive", **kw: object) -> RelationNet:
    torch.manual_seed(0)
    enc = relation_embedding(in_channels=1, width=8, batch_norm=batch_norm)  # type: ignore[arg-type]
    return RelationNet(
        enc, relation_feature_shape(28, width=8), width=8, hidden=4, batch_norm=batch_norm, **kw
    )  # type: ignore[arg-type]


def test_embedding_shapes_as_in_the_paper() -> None:
    assert relation_feature_shape(28) == (64, 5, 5)  # Omniglot
    assert relation_feature_shape(84) == (64, 19, 19)  # mini-ImageNet
    enc = relation_embedding(in_channels=3, width=4)
    assert tuple(enc(torch.randn(2, 3, 84, 84)).shape) == (2, 4, 19, 19)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in enc.modules()) == 2
    with pytest.raises(ValueError, match="too small"):
        relation_feature_shape(8)


def test_class_maps_scores_and_loss() -> None:
    batch = images(tasks=1)
    learner = small_relation_net("inductive").eval()  # running statistics: pairs independent
    sx, sy, qx, qy = batch.support_x[0], batch.support_y[0], batch.query_x[0], batch.query_y[0]
    state = learner.adapt(sx, sy)
    assert isinstance(state, RelationState)
    with torch.no_grad():
        maps = learner.model(sx)
        torch.testing.assert_close(
            state.class_maps, torch.stack([maps[sy == k].sum(0) for k in range(3)])
        )
        scores = learner.predict(state, qx)
    assert tuple(scores.shape) == (6, 3)
    assert bool(((scores >= 0) & (scores <= 1)).all())
    # the relation of query i and class k is g(concat(class map k, query map i))
    with torch.no_grad():
        pair = torch.cat([state.class_maps[2], learner.model(qx[4:5])[0]])[None]
        torch.testing.assert_close(scores[4, 2], learner.relation(pair).sigmoid()[0, 0])
    torch.testing.assert_close(
        learner.query_loss(scores, qy), F.mse_loss(scores, F.one_hot(qy, 3).float())
    )


def test_cross_entropy_option_returns_pre_sigmoid_scores() -> None:
    batch = images(tasks=1)
    mse, ce = small_relation_net(), small_relation_net(loss="cross_entropy")
    sx, sy, qx = batch.support_x[0], batch.support_y[0], batch.query_x[0]
    with torch.no_grad():
        r = ce.predict(ce.adapt(sx, sy), qx)
        torch.testing.assert_close(r.sigmoid(), mse.predict(mse.adapt(sx, sy), qx))
        torch.testing.assert_close(
            ce.query_loss(r, batch.query_y[0]), F.cross_entropy(r, batch.query_y[0])
        )
    assert ce.loss_name == mse.loss_name == "cross_entropy"
    with pytest.raises(ValueError, match="loss must be"):
        small_relation_net(loss="hinge")


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_training_steps_lower_the_loss_on_a_fixed_batch(loss: str) -> None:
    batch = images()
    learner = small_relation_net(loss=loss)
    opt = torch.optim.Adam(learner.parameters(), lr=1e-2)
    first = learner.meta_gradients(batch)
    assert {"relation.5.weight", "model.0.0.weight"} <= set(first.grads)
    assert all(float(g.abs().sum()) > 0 for g in first.grads.values())
    learner.apply_gradients(first)
    opt.step()
    for _ in range(7):
        learner.apply_gradients(learner.meta_gradients(batch))
        opt.step()
    assert float(learner.meta_loss(batch).detach()) < 0.95 * float(first.loss)


def test_conv4_body_without_flatten_works_and_wrong_maps_raise() -> None:
    torch.manual_seed(0)
    enc = Conv4(1, width=4, image_size=64).body[:-1]  # (N, 4, 4, 4) maps
    learner = RelationNet(enc, (4, 4, 4), width=4, hidden=4, padding=1)
    batch = images(tasks=1, size=64)
    with pytest.raises(ValueError, match="too small"):
        RelationNet(enc, (4, 4, 4), padding=0)
    out = learner.predict(learner.adapt(batch.support_x[0], batch.support_y[0]), batch.query_x[0])
    assert tuple(out.shape) == (6, 3)
    wrong = RelationNet(relation_embedding(width=4), (4, 6, 6), width=4)
    with pytest.raises(TaskShapeError, match=r"features of shape \(4, 5, 5\).*\(4, 6, 6\)"):
        wrong.meta_loss(images(tasks=1))


def test_relation_networks_refuse_label_smoothing() -> None:
    with pytest.raises(ValueError, match="RelationNet has its own query loss"):
        small_relation_net().use_label_smoothing(0.1)


def test_mean_class_feature_divides_the_sum_by_the_shots_and_equals_it_at_one_shot() -> None:
    """``class_feature="mean"`` is the paper's sum over K: K times smaller at K shots, the same
    at one, and the same however the support is ordered."""
    summed, mean = small_relation_net("inductive").eval(), small_relation_net("inductive").eval()
    mean.class_feature = "mean"
    five = images(tasks=1, shots=5)
    sx, sy = five.support_x[0], five.support_y[0]
    with torch.no_grad():
        s = expect_maps(summed.adapt(sx, sy))
        m = expect_maps(mean.adapt(sx, sy))
        torch.testing.assert_close(m, s / 5)
        order = torch.randperm(len(sy), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(expect_maps(mean.adapt(sx[order], sy[order])), m)
        one = images(tasks=1, shots=1)
        torch.testing.assert_close(
            summed.predict(summed.adapt(one.support_x[0], one.support_y[0]), one.query_x[0]),
            mean.predict(mean.adapt(one.support_x[0], one.support_y[0]), one.query_x[0]),
        )
    with pytest.raises(ValueError, match="class_feature must be 'sum' or 'mean'"):
        small_relation_net(class_feature="max")


def test_mean_class_feature_on_imbalanced_support_weighs_classes_alike() -> None:
    """With 3 shots of class 0 and 1 of class 1, the mean gives each class the scale of one map."""
    learner = small_relation_net("inductive", class_feature="mean").eval()
    batch = images(tasks=1, ways=2, shots=3)
    keep = torch.tensor([0, 1, 2, 4])  # support labels 0, 1, 0, 0 → three of 0, one of 1
    sx, sy = batch.support_x[0][keep], batch.support_y[0][keep]
    assert sy.tolist() == [0, 1, 0, 0]
    with torch.no_grad():
        maps = learner.model(sx)
        torch.testing.assert_close(
            expect_maps(learner.adapt(sx, sy)), torch.stack([maps[sy == 0].mean(0), maps[1]])
        )


def expect_maps(state: object) -> torch.Tensor:
    assert isinstance(state, RelationState)
    return state.class_maps
