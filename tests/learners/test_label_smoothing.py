"""MetaOptNet's label smoothing of the query loss: 1 − ε on the true class, ε/(W − 1) elsewhere."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metamap.learners import R2D2, MatchingNet, ProtoNet, SVMHead
from metamap.tasks import TaskBatch


def batch(ways: int = 5, shots: int = 2, queries: int = 3, tasks: int = 2) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    sx = torch.randn(tasks, ways * shots, 6, generator=g, dtype=torch.float64)
    qx = torch.randn(tasks, ways * queries, 6, generator=g, dtype=torch.float64)
    sy = torch.arange(ways).repeat_interleave(shots).repeat(tasks, 1)
    qy = torch.arange(ways).repeat_interleave(queries).repeat(tasks, 1)
    return TaskBatch(sx, sy, qx, qy)


@pytest.mark.parametrize("ways", [2, 5, 20])
def test_query_loss_is_metaoptnet_formula(ways: int) -> None:
    eps = 0.1
    g = torch.Generator().manual_seed(ways)
    out = torch.randn(3, 7, ways, generator=g, dtype=torch.float64)
    y = torch.randint(0, ways, (3, 7), generator=g)
    target = torch.full_like(out, eps / (ways - 1)).scatter_(2, y[..., None], 1 - eps)
    want = -(target * F.log_softmax(out, dim=-1)).sum(-1).mean()
    learner = ProtoNet(nn.Identity()).use_label_smoothing(eps)
    torch.testing.assert_close(learner.query_loss(out, y), want)


@pytest.mark.parametrize("make", [ProtoNet, MatchingNet, R2D2, SVMHead], ids=lambda c: c.__name__)
def test_every_cross_entropy_learner_trains_on_the_smoothed_loss(make: type) -> None:
    b = batch()
    learner = make(nn.Identity()).double()
    plain = learner.meta_loss(b)
    smoothed = learner.use_label_smoothing(0.1).meta_loss(b)
    assert torch.isfinite(smoothed) and not torch.allclose(smoothed, plain)
    assert learner.use_label_smoothing(0.0).meta_loss(b).item() == pytest.approx(plain.item())


def test_bad_label_smoothing() -> None:
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        ProtoNet(nn.Identity()).use_label_smoothing(1.0)
