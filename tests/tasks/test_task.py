"""Task / TaskBatch / stack_tasks / check_counts: shapes, moves and the errors bad input raises."""

from __future__ import annotations

import pytest
import torch

from metamap.errors import MetamapError, TaskShapeError
from metamap.tasks import Task, TaskBatch, check_counts, make_generator, stack_tasks


def _task(s: int = 5, q: int = 7, feat: tuple[int, ...] = (3,), scale: float = 1.0) -> Task:
    return Task(
        torch.randn(s, *feat),
        torch.randn(s, 1),
        torch.randn(q, *feat),
        torch.randn(q, 1),
        params={"scale": scale},
    )


# ---- valid tasks and batches --------------------------------------------------------------------
def test_task_holds_its_tensors_and_counts_shots() -> None:
    t = _task(s=4, q=6)
    assert t.shots == 4
    assert [tuple(x.shape) for x in t.tensors()] == [(4, 3), (4, 1), (6, 3), (6, 1)]
    assert t.params == {"scale": 1.0}


def test_task_to_casts_floats_but_keeps_integer_labels() -> None:
    t = Task(
        torch.randn(5, 2),
        torch.tensor([0, 1, 2, 0, 1]),
        torch.randn(3, 2),
        torch.tensor([2, 1, 0]),
    )
    d = t.to("cpu", torch.float64)
    assert d.support_x.dtype == torch.float64 and d.query_x.dtype == torch.float64
    assert d.support_y.dtype == torch.long and d.query_y.dtype == torch.long
    torch.testing.assert_close(d.support_x, t.support_x.double())
    assert torch.equal(d.support_y, t.support_y)


def test_stack_tasks_builds_a_batch_that_indexes_back_to_the_tasks() -> None:
    tasks = [_task(scale=float(i)) for i in range(3)]
    batch = stack_tasks(tasks)
    assert len(batch) == 3
    assert tuple(batch.support_x.shape) == (3, 5, 3)
    assert tuple(batch.query_y.shape) == (3, 7, 1)
    for i, t in enumerate(batch):
        for a, b in zip(t.tensors(), tasks[i].tensors(), strict=True):
            assert torch.equal(a, b)
        assert t.params == {"scale": float(i)}


def test_batch_to_moves_every_tensor_and_keeps_params() -> None:
    batch = stack_tasks([_task(), _task()]).to("cpu", torch.float64)
    assert all(t.dtype == torch.float64 for t in batch.tensors())
    assert batch[1].params == {"scale": 1.0}


def test_batch_without_params_gives_tasks_with_empty_params() -> None:
    b = TaskBatch(
        torch.randn(2, 3, 1), torch.randn(2, 3, 1), torch.randn(2, 4, 1), torch.randn(2, 4, 1)
    )
    assert b[0].params == {}


# ---- bad input: TaskShapeError with a message that says what is wrong ---------------------------
def test_task_shape_error_is_a_value_error_and_a_metamap_error() -> None:
    assert issubclass(TaskShapeError, ValueError)
    assert issubclass(TaskShapeError, MetamapError)


def test_task_rejects_wrong_rank() -> None:
    with pytest.raises(TaskShapeError, match=r"support_x must have at least 2 dimensions.*\(5,\)"):
        Task(torch.randn(5), torch.randn(5), torch.randn(3, 1), torch.randn(3, 1))


def test_batch_rejects_wrong_rank_and_names_the_layout() -> None:
    with pytest.raises(
        TaskShapeError, match=r"at least 3 dimensions \(tasks, points, \*features\)"
    ):
        TaskBatch(torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5))


def test_task_rejects_non_tensors() -> None:
    with pytest.raises(TaskShapeError, match=r"must be torch\.Tensor, got list"):
        Task([[0.0]], torch.randn(1, 1), torch.randn(1, 1), torch.randn(1, 1))


def test_task_rejects_x_y_count_mismatch() -> None:
    with pytest.raises(
        TaskShapeError, match=r"support_x and support_y disagree.*\(5, 3\) vs \(4, 1\)"
    ):
        Task(torch.randn(5, 3), torch.randn(4, 1), torch.randn(2, 3), torch.randn(2, 1))
    with pytest.raises(TaskShapeError, match=r"query_x and query_y disagree"):
        Task(torch.randn(5, 3), torch.randn(5, 1), torch.randn(2, 3), torch.randn(3, 1))


def test_batch_rejects_support_query_task_count_mismatch() -> None:
    with pytest.raises(TaskShapeError, match=r"different numbers of tasks: 2 vs 3"):
        TaskBatch(
            torch.randn(2, 5, 1), torch.randn(2, 5, 1), torch.randn(3, 4, 1), torch.randn(3, 4, 1)
        )


def test_task_rejects_feature_shape_mismatch_between_support_and_query() -> None:
    with pytest.raises(TaskShapeError, match=r"different feature shapes: \(3,\) vs \(2,\)"):
        Task(torch.randn(5, 3), torch.randn(5, 1), torch.randn(4, 2), torch.randn(4, 1))


def test_task_rejects_target_shape_or_dtype_mismatch() -> None:
    with pytest.raises(TaskShapeError, match=r"targets have different shapes: \(1,\) vs \(2,\)"):
        Task(torch.randn(5, 3), torch.randn(5, 1), torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(TaskShapeError, match="differ in dtype"):
        Task(
            torch.randn(5, 3),
            torch.zeros(5, dtype=torch.long),
            torch.randn(4, 3),
            torch.zeros(4),
        )


def test_task_rejects_empty_sets() -> None:
    with pytest.raises(TaskShapeError, match="support set is empty"):
        Task(torch.randn(0, 3), torch.randn(0, 1), torch.randn(4, 3), torch.randn(4, 1))


def test_batch_rejects_params_of_the_wrong_length() -> None:
    with pytest.raises(TaskShapeError, match="params has 1 entries for 2 tasks"):
        TaskBatch(
            torch.randn(2, 3, 1),
            torch.randn(2, 3, 1),
            torch.randn(2, 3, 1),
            torch.randn(2, 3, 1),
            params=[{"a": 1.0}],
        )


def test_stack_tasks_rejects_different_shapes_and_names_the_task() -> None:
    with pytest.raises(
        TaskShapeError, match=r"task 1 has support_x of shape \(4, 3\), task 0 has \(5, 3\)"
    ):
        stack_tasks([_task(s=5), _task(s=4)])
    with pytest.raises(
        TaskShapeError, match=r"task 2 has query_x of shape \(6, 3\), task 0 has \(7, 3\)"
    ):
        stack_tasks([_task(), _task(), _task(q=6)])


def test_stack_tasks_rejects_an_empty_list() -> None:
    with pytest.raises(TaskShapeError, match="empty list"):
        stack_tasks([])


# ---- check_counts and make_generator ------------------------------------------------------------
def test_check_counts_accepts_possible_sizes() -> None:
    check_counts(1, 1)
    check_counts(5, 15, available=20)


@pytest.mark.parametrize(
    ("shots", "queries", "available", "message"),
    [
        (0, 5, None, "shots must be at least 1, got 0"),
        (-2, 5, None, "shots must be at least 1, got -2"),
        (5, 0, None, "queries must be at least 1, got 0"),
        (5, 16, 20, r"shots \+ queries = 21 is more than the 20 points available; lower shots"),
    ],
)
def test_check_counts_rejects_impossible_sizes(
    shots: int, queries: int, available: int | None, message: str
) -> None:
    with pytest.raises(TaskShapeError, match=message):
        check_counts(shots, queries, available)


def test_make_generator_is_seeded() -> None:
    a = torch.rand(5, generator=make_generator(3))
    b = torch.rand(5, generator=make_generator(3))
    c = torch.rand(5, generator=make_generator(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
