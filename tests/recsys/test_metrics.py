"""Per-user rating metrics against values worked by hand, and their summaries over users."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from metamap.core import AdaptedState, Task, TaskBatch, predict_each
from metamap.recsys import (
    MetricSummary,
    evaluate_users,
    ndcg_at_k,
    paired_difference,
    rating_metrics,
    summarize_users,
)

LOG2_3 = math.log2(3)


def test_rating_metrics_match_a_hand_worked_example() -> None:
    pred = torch.tensor([3.0, 1.0, 2.0])
    true = torch.tensor([[2.0], [5.0], [3.0]])  # (Q, 1) like a task's query_y
    m = rating_metrics(pred, true)
    # |errors| = 1, 4, 1: MAE = 6/3 = 2, RMSE = √((1 + 16 + 1)/3) = √6.
    assert m["mae"] == pytest.approx(2.0)
    assert m["rmse"] == pytest.approx(math.sqrt(6.0))
    # Ranked by prediction: items 0, 2, 1 with true ratings 2, 3, 5, gains 3, 7, 31.
    # DCG  = 3/log2(2) + 7/log2(3) + 31/log2(4) = 3 + 4.41651 + 15.5  = 22.91651
    # IDCG = 31/1 + 7/log2(3) + 3/2              = 31 + 4.41651 + 1.5 = 36.91651
    dcg, idcg = 3 + 7 / LOG2_3 + 31 / 2, 31 + 7 / LOG2_3 + 3 / 2
    assert m["ndcg@3"] == pytest.approx(dcg / idcg)
    assert m["ndcg@3"] == pytest.approx(0.620766, abs=1e-6)
    # Q = 3 < 10: k is truncated to Q, so nDCG@10 = nDCG@3.
    assert m["ndcg@10"] == pytest.approx(m["ndcg@3"])
    assert list(m) == ["mae", "rmse", "ndcg@3", "ndcg@10"]
    # nDCG@1: the top predicted item (gain 3) against the best item (gain 31).
    assert ndcg_at_k(pred, true, 1) == pytest.approx(3 / 31)
    # nDCG@2: (3 + 7/log2 3) / (31 + 7/log2 3).
    assert ndcg_at_k(pred, true, 2) == pytest.approx((3 + 7 / LOG2_3) / (31 + 7 / LOG2_3))


def test_perfect_ranking_scores_one_and_reversed_ranking_less() -> None:
    true = torch.tensor([1.0, 4.0, 2.0, 5.0, 3.0])
    assert rating_metrics(true, true)["ndcg@3"] == pytest.approx(1.0)
    assert rating_metrics(true, true)["mae"] == 0.0
    # Any monotone transform of the truth ranks the same: nDCG is 1 although MAE is not 0.
    shifted = rating_metrics(true / 10, true)
    assert shifted["ndcg@3"] == pytest.approx(1.0) and shifted["mae"] > 0
    reversed_ = rating_metrics(-true, true)
    assert reversed_["ndcg@3"] < 1.0 and reversed_["ndcg@10"] < 1.0
    # Reversed: ranked 1, 2, 3, 4, 5 — gains 1, 3, 7 in the top 3, against 31, 15, 7.
    assert reversed_["ndcg@3"] == pytest.approx((1 + 3 / LOG2_3 + 7 / 2) / (31 + 15 / LOG2_3 + 3.5))


def test_ties_in_the_prediction_are_broken_by_item_order() -> None:
    pred = torch.tensor([2.0, 2.0, 1.0])
    true = torch.tensor([1.0, 5.0, 3.0])
    # Items 0 and 1 tie; item 0 comes first: gains 1, 31, 7.
    # DCG = 1 + 31/log2(3) + 7/2; IDCG = 31 + 7/log2(3) + 1/2.
    expected = (1 + 31 / LOG2_3 + 3.5) / (31 + 7 / LOG2_3 + 0.5)
    assert ndcg_at_k(pred, true, 3) == pytest.approx(expected)
    # Swap the tied items' positions: now the 5 comes first among the ties.
    swapped = ndcg_at_k(pred, true[[1, 0, 2]], 3)
    assert swapped == pytest.approx((31 + 1 / LOG2_3 + 3.5) / (31 + 7 / LOG2_3 + 0.5))
    assert swapped != pytest.approx(expected)
    # All tied (a constant predictor): the item order itself.
    assert ndcg_at_k(torch.zeros(3), true, 3) == pytest.approx(expected)


def test_single_item_and_all_zero_relevance() -> None:
    assert rating_metrics(torch.tensor([4.0]), torch.tensor([2.0]), ks=(1, 5)) == {
        "mae": 2.0,
        "rmse": 2.0,
        "ndcg@1": 1.0,
        "ndcg@5": 1.0,
    }
    assert ndcg_at_k(torch.tensor([1.0, 2.0]), torch.zeros(2), 2) == 1.0


@pytest.mark.parametrize(
    ("pred", "true", "match"),
    [
        (torch.zeros(3), torch.zeros(4), "disagree on the number"),
        (torch.zeros(0), torch.zeros(0), "empty"),
        (torch.zeros(3, 2), torch.zeros(3, 2), r"\(Q,\) or \(Q, 1\)"),
        (torch.tensor([1.0, math.nan]), torch.ones(2), "non-finite"),
        (torch.ones(2), torch.tensor([1.0, -1.0]), ">= 0"),
    ],
)
def test_rating_metrics_rejects_bad_input(pred: Tensor, true: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rating_metrics(pred, true)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_rating_metrics_rejects_bad_k(k: object) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        rating_metrics(torch.ones(2), torch.ones(2), ks=(k,))  # type: ignore[arg-type]


def test_paired_difference_matches_a_hand_worked_example() -> None:
    # d = [1, 2, 2, 3]: mean 2, s = √((1 + 0 + 0 + 1)/3) = √(2/3), ci = 1.96·s/√4.
    d = paired_difference([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, 1.0])
    assert d.n == 4
    assert d.mean == pytest.approx(2.0)
    assert d.ci95 == pytest.approx(1.96 * math.sqrt(2 / 3) / 2)
    assert d.excludes_zero
    # d = [1, -1, 1, -1]: mean 0 — the interval contains 0.
    e = paired_difference([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0])
    assert e.mean == 0.0 and e.ci95 > 0 and not e.excludes_zero
    # One user: no spread estimate, an unbounded interval, never significant.
    one = paired_difference([3.0], [1.0])
    assert one.mean == 2.0 and one.ci95 == math.inf and not one.excludes_zero


def test_paired_difference_rejects_mismatched_empty_or_nonfinite() -> None:
    with pytest.raises(ValueError, match="same users"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        paired_difference([], [])
    with pytest.raises(ValueError, match="user 1 has a non-finite"):
        paired_difference([1.0, math.nan], [1.0, 1.0])


def test_summarize_users_per_metric() -> None:
    per_user = [{"mae": 1.0, "rmse": 2.0}, {"mae": 3.0, "rmse": 2.0}]
    s = summarize_users(per_user)
    assert list(s) == ["mae", "rmse"]
    # mae: mean 2, s = √2, ci = 1.96·√2/√2 = 1.96; rmse: no spread.
    assert s["mae"] == MetricSummary(2.0, pytest.approx(1.96), 2)  # type: ignore[arg-type]
    assert s["rmse"] == MetricSummary(2.0, 0.0, 2)
    assert str(s["mae"]) == "2.0000 ± 1.9600 (n=2)"
    with pytest.raises(ValueError, match="empty"):
        summarize_users([])
    with pytest.raises(ValueError, match="user 1 reports"):
        summarize_users([{"mae": 1.0}, {"rmse": 1.0}])


class _EchoSideFeature:
    """Predicts column 1 of x as the rating: a model whose metrics are known."""

    def __init__(self) -> None:
        self.supports: list[int] = []

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        self.supports.append(len(support_y))
        return AdaptedState(example_shape=tuple(support_x.shape[1:]))

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        return x[:, 1:2].float()

    def predict_tasks(self, batch: TaskBatch, steps: int | None = None) -> Tensor:
        return predict_each(self, batch, steps)


def test_evaluate_users_scores_each_task_after_adapting() -> None:
    x = torch.tensor([[1, 3], [2, 5]])
    y = torch.tensor([[3.0], [4.0]])
    tasks = [Task(x, y, x, y), Task(x, y, x[[1, 0]], y)]
    out = evaluate_users(_EchoSideFeature(), tasks, ks=(2,))
    # Task 0: predictions 3, 5 vs 3, 4 — MAE 0.5, same order. Task 1: predictions 5, 3.
    want = {"mae": 0.5, "rmse": math.sqrt(0.5), "ndcg@2": 1.0, "diverged": 0.0}
    assert out[0] == pytest.approx(want)
    assert out[1]["mae"] == pytest.approx(1.5)
    assert out[1]["ndcg@2"] < 1.0


class _DivergesOnFeature(_EchoSideFeature):
    """Predicts the side feature, but +inf (or NaN) where it is 7 (or 8): a diverged user."""

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        out = x[:, 1:2].float()
        out[x[:, 1] == 7] = math.inf
        out[x[:, 1] == 8] = math.nan
        return out


def test_evaluate_users_flags_a_user_whose_adaptation_diverged() -> None:
    x = torch.tensor([[1, 3], [2, 5]])
    y = torch.tensor([[3.0], [4.0]])
    inf_x, nan_x = torch.tensor([[1, 7], [2, 5]]), torch.tensor([[1, 8], [2, 5]])
    tasks = [Task(x, y, x, y), Task(x, y, inf_x, y), Task(x, y, nan_x, y)]
    out = evaluate_users(_DivergesOnFeature(), tasks, ks=(2,), scale=(1.0, 5.0))
    assert [u["diverged"] for u in out] == [0.0, 1.0, 1.0]
    assert out[1]["mae"] == pytest.approx((2.0 + 1.0) / 2)  # +inf counted as the bound, 5
    assert all(math.isnan(out[2][k]) for k in ("mae", "rmse", "ndcg@2"))
    # without a scale an infinite prediction has no error either: NaN, not an exception
    unscaled = evaluate_users(_DivergesOnFeature(), tasks, ks=(2,))
    assert unscaled[0]["mae"] == pytest.approx(0.5) and math.isnan(unscaled[1]["rmse"])


def test_evaluate_users_keeps_the_users_order_and_adapts_each_on_its_own_ratings() -> None:
    """Users of different sizes are grouped by support size and padded; each is still scored on
    its own queries and adapted on its own (unpadded) support rows, reported in input order."""
    g = torch.Generator().manual_seed(0)
    tasks, expected = [], []
    for s, q in [(7, 3), (2, 5), (12, 4), (2, 2), (5, 6)] * 30:  # 150 users: 3 groups
        x = torch.randint(1, 6, (s + q, 2), generator=g)
        y = torch.randint(1, 6, (s + q, 1), generator=g).float()
        tasks.append(Task(x[:s], y[:s], x[s:], y[s:]))
        expected.append({**rating_metrics(x[s:, 1:2].float(), y[s:], (2,)), "diverged": 0.0})
    model = _EchoSideFeature()
    out = evaluate_users(model, tasks, ks=(2,))
    assert out == expected
    assert sorted(model.supports) == sorted(t.shots for t in tasks)


def test_errors_are_clipped_to_the_scale_but_the_ranking_is_the_models() -> None:
    """Predictions 6.5, 5.5, 1 of true ratings 3, 5, 1 on a 1-5 scale: clipped, the first two
    would tie at 5 and rank by input order (nDCG < 1, whatever the model said); the ranking
    uses 6.5 > 5.5, while MAE counts |5 - 3| and |5 - 5|, the clipped errors."""
    pred, true = torch.tensor([5.5, 6.5, 1.0]), torch.tensor([5.0, 3.0, 1.0])
    got = rating_metrics(pred, true, (1,), scale=(1.0, 5.0))
    assert got["mae"] == pytest.approx(2.0 / 3) and got["rmse"] == pytest.approx(math.sqrt(4 / 3))
    assert got["ndcg@1"] == pytest.approx((2**3 - 1) / (2**5 - 1))  # 6.5 (true 3) ranks first
    assert rating_metrics(pred.clamp(1, 5), true, (1,))["ndcg@1"] == 1.0  # the tie's luck
    x = torch.tensor([[1, 6], [2, 7], [3, 1]])  # _EchoSideFeature predicts the second column
    y = torch.tensor([[3.0], [5.0], [1.0]])
    out = evaluate_users(_EchoSideFeature(), [Task(x, y, x, y)], (1,), (1, 5))
    assert out[0]["ndcg@1"] == pytest.approx(1.0)  # 7 (true 5) above 6 (true 3), listed first
    assert out[0]["mae"] == pytest.approx(2.0 / 3)


def test_a_diverged_prediction_counts_as_the_bound_it_passed() -> None:
    """An adaptation that diverged (±inf) is clipped for the errors, as before, and ranks where
    the model put it; NaN, which no bound can stand for, is still refused."""
    pred, true = torch.tensor([float("-inf"), 4.0, float("inf")]), torch.tensor([2.0, 4.0, 3.0])
    got = rating_metrics(pred, true, (1,), scale=(1.0, 5.0))
    assert got["mae"] == pytest.approx((1 + 0 + 2) / 3)
    assert got["ndcg@1"] == pytest.approx((2**3 - 1) / (2**4 - 1))  # +inf (true 3) first
    with pytest.raises(ValueError, match="non-finite"):
        rating_metrics(torch.tensor([float("nan"), 4.0]), torch.tensor([2.0, 4.0]), scale=(1, 5))
