"""Inner minibatches: the support positions each inner step takes (stratified by class, cycling,
padding never drawn), whatever order the task stores its examples in."""

from __future__ import annotations

import pytest
import torch

from metamap.learners.minibatch import step_indices


def _class_counts(labels: torch.Tensor, ways: int) -> list[int]:
    return torch.bincount(labels, minlength=ways).tolist()


@pytest.mark.parametrize("layout", ["class-major", "shot-major"])
def test_each_minibatch_holds_every_class_evenly_and_an_epoch_every_example(layout: str) -> None:
    ways, shots = 5, 10
    labels = torch.arange(ways)
    y = labels.repeat_interleave(shots) if layout == "class-major" else labels.repeat(shots)
    idx = step_indices(y, 10, 7)
    assert idx.shape == (7, 10)
    for step in idx[:5]:
        assert _class_counts(y[step], ways) == [2] * ways  # a shuffle would leave classes out
    assert sorted(idx[:5].flatten().tolist()) == list(range(50))  # 5 steps: one pass
    assert torch.equal(idx[5:], idx[:2])  # then the same order again


def test_later_steps_continue_the_order() -> None:
    y = torch.arange(4).repeat_interleave(3)
    assert torch.equal(step_indices(y, 5, 3, first=2), step_indices(y, 5, 5)[2:])


def test_regression_points_come_mixed_and_padding_is_never_drawn() -> None:
    x_sorted = torch.linspace(-5, 5, 12)
    y = torch.cat([torch.sin(x_sorted)[:9, None], torch.full((3, 1), float("nan"))])
    idx = step_indices(y, 4, 6)
    assert int(idx.max()) < 9  # the 3 NaN rows are padding
    first_epoch = idx.flatten()[:9]
    assert sorted(first_epoch.tolist()) == list(range(9))  # every real point once, then again
    assert not torch.equal(idx[0], torch.arange(4))  # not the first points of a sorted task


def test_the_same_order_under_vmap_as_task_by_task() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.stack([torch.randperm(13, generator=g) % 3 for _ in range(4)])
    batched = torch.func.vmap(lambda t: step_indices(t, 6, 4))(y)  # first with 13 rows
    assert torch.equal(batched, torch.stack([step_indices(t, 6, 4) for t in y]))


@pytest.mark.parametrize("size", [0, 12, 13])
def test_a_minibatch_must_be_smaller_than_the_support(size: int) -> None:
    with pytest.raises(ValueError, match="larger than it"):
        step_indices(torch.arange(12) % 3, size, 2)
