"""Meta-gradients over tasks of different shapes: equal to the batched path where tasks stack,
and enough to meta-train on Meta-Dataset's variable-way, variable-shot episodes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from metamap.data.dataset import ImageClassDataset
from metamap.errors import TaskShapeError
from metamap.learners import MAML, R2D2, MetaLearner, ProtoNet, Reptile, ragged_meta_gradients
from metamap.models import MLP
from metamap.tasks import MetaDatasetSampler, SinusoidTasks, TaskBatch, make_generator
from metamap.train import evaluate


def encoder(dim: int = 64) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(dim, 32), nn.ReLU(), nn.Linear(32, 16))


def clusters(tasks: int, ways: int, shots: int, queries: int, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.randn(tasks, ways, 1, 8, 8, generator=g, dtype=torch.float64)
    sy = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).contiguous()
    pick = torch.arange(tasks)[:, None]
    sx = means[pick, sy] + torch.randn(*sy.shape, 1, 8, 8, generator=g, dtype=torch.float64)
    qx = means[pick, qy] + torch.randn(*qy.shape, 1, 8, 8, generator=g, dtype=torch.float64)
    return TaskBatch(sx, sy, qx, qy)


LEARNERS: list[tuple[str, Callable[[], MetaLearner], Callable[[], TaskBatch]]] = [
    ("protonet", lambda: ProtoNet(encoder()), lambda: clusters(3, 4, 2, 3)),
    ("r2d2", lambda: R2D2(encoder()), lambda: clusters(3, 4, 2, 3)),
    (
        "maml",
        lambda: MAML(MLP(1, 1, [16, 16]), inner_steps=2, inner_lr=0.05),
        lambda: SinusoidTasks(queries=5).sample(3, make_generator(0)),
    ),
    (
        "reptile",
        lambda: Reptile(MLP(1, 1, [16, 16]), inner_steps=3, inner_lr=0.02),
        lambda: SinusoidTasks(queries=5).sample(3, make_generator(0)),
    ),
]


@pytest.mark.parametrize(("name", "make", "data"), LEARNERS, ids=[n for n, _, _ in LEARNERS])
def test_on_tasks_that_stack_it_equals_the_batched_path(
    name: str, make: Callable[[], MetaLearner], data: Callable[[], TaskBatch]
) -> None:
    torch.manual_seed(0)
    learner = make().double()
    batch = data().to("cpu", torch.float64)
    batched = learner.meta_gradients(batch)
    ragged = ragged_meta_gradients(learner, list(batch))
    assert torch.allclose(ragged.loss, batched.loss, rtol=1e-10, atol=1e-12)
    assert batched.grads.keys() == ragged.grads.keys()
    for k in batched.grads:
        assert torch.allclose(ragged.grads[k], batched.grads[k], rtol=1e-8, atol=1e-10), (name, k)


def domain(classes: int, seed: int) -> ImageClassDataset:
    """8×8 grey images: a faint class template in the left half, loud noise in the right half,
    so that a random encoder is distracted by the noise and a trained one learns to ignore it."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(12, 30, classes)
    labels = np.repeat(np.arange(classes), counts)
    templates = rng.integers(0, 2, (classes, 8, 4)) * 60
    images = np.empty((len(labels), 1, 8, 8), dtype=np.uint8)
    images[:, 0, :, :4] = templates[labels] + rng.integers(0, 40, (len(labels), 8, 4))
    images[:, 0, :, 4:] = rng.integers(0, 256, (len(labels), 8, 4))
    return ImageClassDataset(images, labels.astype(np.int64), [f"c{c}" for c in range(classes)])


def test_protonet_meta_trains_on_variable_way_variable_shot_episodes() -> None:
    torch.manual_seed(0)
    train = MetaDatasetSampler([domain(20, 0), domain(14, 1)], max_ways=10)
    test = MetaDatasetSampler([domain(12, 2)], max_ways=10).fixed_tasks(40, seed=7)
    assert len({t.support_x.shape for t in test}) > 1  # the test tasks do not stack
    learner = ProtoNet(encoder())
    before = evaluate(learner, test, [0])[0].mean
    opt = torch.optim.Adam(learner.parameters(), lr=3e-3)
    g = make_generator(0)
    for _ in range(200):
        learner.apply_gradients(ragged_meta_gradients(learner, train.sample(4, g)))
        opt.step()
    after = evaluate(learner, test, [0])[0].mean
    assert after > 0.7 and after > before + 0.3, (before, after)  # measured: 0.27 -> 0.79


def test_a_fixed_head_refuses_an_episode_wider_than_it() -> None:
    sampler = MetaDatasetSampler([domain(12, 0)], min_ways=6, max_ways=6)
    maml = MAML(nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), inner_steps=1, inner_lr=0.1)
    with pytest.raises(TaskShapeError):
        ragged_meta_gradients(maml, sampler.sample(1, make_generator(0)))
    with pytest.raises(TaskShapeError, match="at least one task"):
        ragged_meta_gradients(maml, [])
