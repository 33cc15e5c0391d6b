"""``predict_tasks``: a batch of tasks of different sizes, padded, adapted and predicted in one
call, gives each task the predictions it gets when adapted alone (float64, to rounding), for
every learner that batches it (vmap, a batched closed form) and for the task-by-task default."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from metamap.core import Task, TaskBatch, pad_tasks, predict_each
from metamap.learners import ANIL, FOMAML, MAML, MetaLearner, MetaSGD, ProtoNet, Reptile, Ridge
from metamap.learners.mamlpp import MAMLPlusPlus
from metamap.models import MLP
from metamap.tasks import SinusoidTasks, make_generator

Make = Callable[[nn.Module], MetaLearner]

LEARNERS = [
    pytest.param(lambda m: MAML(m, "masked_mse", inner_steps=2, inner_lr=0.1), id="maml"),
    pytest.param(lambda m: FOMAML(m, "masked_mse", inner_steps=2, inner_lr=0.1), id="fomaml"),
    pytest.param(lambda m: ANIL(m, "masked_mse", inner_steps=2, inner_lr=0.1), id="anil"),
    pytest.param(lambda m: MetaSGD(m, "masked_mse", inner_steps=1, inner_lr=0.1), id="metasgd"),
    pytest.param(lambda m: Reptile(m, "masked_mse", inner_steps=3, inner_lr=0.05), id="reptile"),
    pytest.param(lambda m: MAMLPlusPlus(m, "masked_mse", inner_steps=2), id="mamlpp"),
    pytest.param(lambda m: Ridge(m, "masked_mse", lam=0.5), id="ridge"),
]


def _ragged_tasks() -> list[Task]:
    """Sinusoid tasks with 3 to 9 support points and 4 to 6 queries."""
    batch = SinusoidTasks(9, 6).sample(5, make_generator(3)).to("cpu", torch.float64)
    shots, queries = [9, 3, 6, 4, 7], [6, 4, 5, 6, 4]
    return [
        Task(t.support_x[:s], t.support_y[:s], t.query_x[:q], t.query_y[:q])
        for t, s, q in zip(batch, shots, queries, strict=True)
    ]


def _learner(make: Make) -> MetaLearner:
    torch.manual_seed(0)
    return make(MLP(1, 1, (8, 8)).double())


@pytest.mark.parametrize("make", LEARNERS)
@pytest.mark.parametrize("steps", [None, 0, 4])
def test_a_padded_batch_predicts_each_task_as_alone(make: Make, steps: int | None) -> None:
    learner = _learner(make)
    tasks = _ragged_tasks()
    got = learner.predict_tasks(pad_tasks(tasks), steps)
    assert got.shape == (5, 6, 1) and not got.requires_grad
    for i, t in enumerate(tasks):
        state = learner.adapt(t.support_x, t.support_y, steps)
        with torch.no_grad():
            alone = learner.predict(state, t.query_x)
        torch.testing.assert_close(got[i, : len(t.query_x)], alone, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make", LEARNERS[:2])
def test_the_batched_path_is_the_task_by_task_default(make: Make) -> None:
    learner = _learner(make)
    batch = pad_tasks(_ragged_tasks())
    torch.testing.assert_close(learner.predict_tasks(batch), predict_each(learner, batch))


def test_the_adaptation_changes_the_predictions() -> None:
    learner = _learner(LEARNERS[0].values[0])
    batch = pad_tasks(_ragged_tasks())
    before, after = learner.predict_tasks(batch, 0), learner.predict_tasks(batch)
    assert (before - after).abs().max() > 1e-3


def test_classification_learners_take_the_task_by_task_default() -> None:
    torch.manual_seed(0)
    learner = ProtoNet(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double())
    x = torch.randn(2, 6, 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2]).repeat(2, 1)
    batch = TaskBatch(x, y, x[:, :4], y[:, :4])
    got = learner.predict_tasks(batch)
    for i in range(2):
        state = learner.adapt(x[i], y[i])
        torch.testing.assert_close(got[i], learner.predict(state, x[i, :4]).detach())
