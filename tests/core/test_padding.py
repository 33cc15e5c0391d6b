"""Padding tasks of different sizes into one batch, and grouping them by size first."""

from __future__ import annotations

import pytest
import torch

from metamap.core import Task, even_ranges, pad_tasks, size_groups
from metamap.errors import TaskShapeError


def _task(shots: int, queries: int = 2) -> Task:
    x = torch.arange(float(shots + queries))[:, None]
    return Task(x[:shots], x[:shots] * 2, x[shots:], x[shots:] * 2)


def test_size_groups_sort_by_support_size_and_balance_the_counts() -> None:
    tasks = [_task(s) for s in [5, 1, 9, 3, 7, 2, 8]]
    groups = size_groups(tasks, 3)
    assert [len(g) for g in groups] == [3, 2, 2]
    assert [tasks[i].shots for g in groups for i in g] == [1, 2, 3, 5, 7, 8, 9]
    assert sorted(i for g in groups for i in g) == list(range(7))
    assert size_groups(tasks[:2], 5) == [[1], [0]]  # never an empty group
    assert size_groups([], 3) == []
    with pytest.raises(ValueError, match="at least 1"):
        size_groups(tasks, 0)


def test_pad_tasks_marks_the_padding_with_nan_targets() -> None:
    batch = pad_tasks([_task(3), _task(1, queries=4)])
    assert batch.support_x.shape == (2, 3, 1) and batch.query_x.shape == (2, 4, 1)
    assert torch.isnan(batch.support_y[1, 1:]).all() and not torch.isnan(batch.support_y[0]).any()
    assert (batch.support_x[1, 1:] == 0).all()
    assert torch.isnan(batch.query_y[0, 2:]).all()


def test_pad_tasks_refuses_class_labels() -> None:
    x = torch.zeros(2, 3)
    y = torch.tensor([0, 1])
    with pytest.raises(TaskShapeError, match="stack_tasks"):
        pad_tasks([Task(x, y, x, y)])


def test_even_ranges_cover_the_range_once_and_differ_by_at_most_one() -> None:
    assert even_ranges(7, 3) == [range(0, 3), range(3, 5), range(5, 7)]
    assert even_ranges(2, 4) == [range(0, 1), range(1, 2), range(2, 2), range(2, 2)]
    assert even_ranges(0, 1) == [range(0, 0)]
    with pytest.raises(ValueError, match="at least 1"):
        even_ranges(3, 0)
