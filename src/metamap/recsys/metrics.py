"""Per-user rating metrics for cold-start recommendation, and their summaries over users.

Each user is a task: a model adapts to the user's support ratings and predicts the query ratings.
:func:`rating_metrics` scores one user's query items, as MeLU does (Lee, Im, Jang, Cho & Chung,
"MeLU: Meta-Learned User Preference Estimator for Cold-Start Recommendation", KDD 2019):

* ``mae  = (1/Q) Σ_j |r̂_j − r_j|`` and ``rmse = √((1/Q) Σ_j (r̂_j − r_j)²)``;
* ``ndcg@k = DCG@k / IDCG@k`` over the user's ``Q`` query items ranked by predicted rating, with
  graded gain ``2^{r} − 1`` (``r`` the true rating) and discount ``1/log₂(rank + 1)``::

      DCG@k = Σ_{rank=1}^{min(k, Q)} (2^{r_(rank)} − 1) / log₂(rank + 1),

  IDCG@k the same sum over the items in the true order (best first).

Shapes: one user's predictions and true ratings, ``(Q,)`` or ``(Q, 1)``.

Summaries over users (:func:`summarize_users`, :func:`paired_difference`) report the mean and the
95% confidence half-width ``1.96 · s / √n`` (``s`` the sample standard deviation over users), the
normal approximation :func:`metamap.train.summarize` uses for the other benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from metamap.core import Task, TaskBatch, pad_tasks, size_groups

__all__ = [
    "MetricSummary",
    "PairedDifference",
    "RatingModel",
    "evaluate_users",
    "ndcg_at_k",
    "paired_difference",
    "rating_metrics",
    "summarize_users",
]


def _flat_pair(pred: Tensor, true: Tensor) -> tuple[Tensor, Tensor]:
    """``pred`` and ``true`` as finite float64 vectors ``(Q,)``; raises on anything else."""
    for name, t in (("pred", pred), ("true", true)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not (t.dim() == 1 or (t.dim() == 2 and t.shape[1] == 1)):
            raise ValueError(
                f"{name} must hold one user's query ratings, shape (Q,) or (Q, 1); "
                f"got {tuple(t.shape)}"
            )
    p = pred.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    t = true.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    if p.numel() != t.numel():
        raise ValueError(
            f"pred and true disagree on the number of query items: {p.numel()} vs {t.numel()}"
        )
    if p.numel() == 0:
        raise ValueError("no query items to score: pred and true are empty")
    for name, v in (("pred", p), ("true", t)):
        bad = (~torch.isfinite(v)).nonzero()
        if bad.numel():
            i = int(bad[0])
            raise ValueError(f"{name} has a non-finite value ({float(v[i])}) at item {i}")
    if (t < 0).any():
        i = int((t < 0).nonzero()[0])
        raise ValueError(
            f"true ratings are graded relevances and must be >= 0; got {float(t[i])} at item {i}"
        )
    return p, t


def _ndcg(p: Tensor, t: Tensor, k: int) -> float:
    kk = min(k, p.numel())
    discount = 1.0 / torch.log2(torch.arange(2, kk + 2, dtype=torch.float64))
    # Stable sort: items with equal predictions keep their order in the input (index order).
    order = torch.sort(p, descending=True, stable=True).indices[:kk]
    ideal = torch.sort(t, descending=True).values[:kk]
    dcg = float(((torch.pow(2.0, t[order]) - 1.0) * discount).sum())
    idcg = float(((torch.pow(2.0, ideal) - 1.0) * discount).sum())
    return dcg / idcg if idcg > 0 else 1.0


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer (a ranking cut-off), got {k!r}")
    return k


def ndcg_at_k(pred: Tensor, true: Tensor, k: int) -> float:
    """nDCG@k of one user's query items ``(Q,)``/``(Q, 1)`` ranked by ``pred`` (see the module).

    ``k`` larger than ``Q`` is truncated to ``Q``. Ties in ``pred`` are broken deterministically by
    item order: of two items with the same predicted rating, the one earlier in ``pred`` ranks
    higher (a stable sort), so the score never depends on the sorting algorithm. If every true
    rating is 0 (all gains 0) any order is ideal and the score is 1.
    """
    p, t = _flat_pair(pred, true)
    return _ndcg(p, t, _check_k(k))


def rating_metrics(
    pred: Tensor,
    true: Tensor,
    ks: Sequence[int] = (3, 10),
    scale: tuple[float, float] | None = None,
) -> dict[str, float]:
    """``{"mae", "rmse", "ndcg@k" for k in ks}`` for one user's query items.

    ``pred``, ``true``: ``(Q,)`` or ``(Q, 1)``, finite, ``true >= 0``. nDCG as in
    :func:`ndcg_at_k` (``k`` truncated to ``Q``; ties in ``pred`` broken by item order).
    ``scale``: the errors are those of the predictions clipped to the rating scale (clipping
    only brings a prediction closer; an infinite one, of an adaptation that diverged, counts as
    the bound it passed), while nDCG ranks the predictions as the model made them: clipped,
    every item predicted beyond the top of the scale would tie, and be ranked by its position
    in the input instead of by the model.
    """
    cutoffs = [_check_k(k) for k in ks]
    p, t = _flat_pair(pred if scale is None else pred.clamp(*scale), true)
    err = p - t
    out = {"mae": float(err.abs().mean()), "rmse": math.sqrt(float(err.pow(2).mean()))}
    ranked = p if scale is None else pred.detach().reshape(-1).to(p)  # as made: ±inf sort
    for k in cutoffs:
        out[f"ndcg@{k}"] = _ndcg(ranked, t, k)
    return out


def _mean_ci95(values: Sequence[float]) -> tuple[float, float, int]:
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    n = t.numel()
    if n == 1:
        # One value carries no estimate of the spread: the interval is unbounded.
        return float(t[0]), math.inf, 1
    return float(t.mean()), 1.96 * float(t.std(unbiased=True)) / math.sqrt(n), n


@dataclass(frozen=True)
class MetricSummary:
    """Mean over users, 95% CI half-width ``1.96 · s / √n`` and the number of users ``n``.

    With ``n = 1`` the half-width is ``inf`` (one user says nothing about the spread). A
    non-finite per-user value makes ``mean`` and ``ci95`` non-finite (NaN): check
    ``math.isfinite(summary.mean)`` before reporting.
    """

    mean: float
    ci95: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f} (n={self.n})"


def summarize_users(per_user: Sequence[dict[str, float]]) -> dict[str, MetricSummary]:
    """Summarise per-user metric dicts (e.g. from :func:`rating_metrics`) metric by metric.

    Every user must report the same metric names; the result keeps the first user's key order.
    """
    if not per_user:
        raise ValueError("cannot summarise an empty list of users")
    keys = list(per_user[0])
    for i, d in enumerate(per_user):
        if set(d) != set(keys):
            raise ValueError(
                f"user {i} reports metrics {sorted(d)} but user 0 reports {sorted(keys)}; "
                "score every user with the same ks"
            )
    out: dict[str, MetricSummary] = {}
    for key in keys:
        mean, ci, n = _mean_ci95([d[key] for d in per_user])
        out[key] = MetricSummary(mean, ci, n)
    return out


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-user differences ``a_i − b_i``, its 95% CI half-width and ``n`` users.

    Paired over the same users, the interval is much tighter than comparing two separate
    intervals, because the user-to-user variation common to both methods cancels.
    """

    mean: float
    ci95: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """Whether ``mean ± ci95`` lies entirely on one side of 0 (never with ``n = 1``)."""
        return abs(self.mean) > self.ci95

    def __str__(self) -> str:
        return f"{self.mean:+.4f} ± {self.ci95:.4f} (n={self.n})"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> PairedDifference:
    """Per-user differences ``a_i − b_i`` summarised as mean ± ``1.96 · s / √n``.

    ``a`` and ``b`` are one metric of two methods on the same users, in the same order (e.g. the
    query MAE of a meta-learner and of a baseline). With ``n = 1`` the half-width is ``inf``.
    """
    if len(a) != len(b):
        raise ValueError(
            f"a and b must score the same users: got {len(a)} and {len(b)} values; "
            "evaluate both methods on the same user list"
        )
    if len(a) == 0:
        raise ValueError("cannot compare methods on an empty list of users")
    diffs = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        d = float(x) - float(y)
        if not math.isfinite(d):
            raise ValueError(
                f"user {i} has a non-finite score ({x} vs {y}); drop or fix diverged users first"
            )
        diffs.append(d)
    mean, ci, n = _mean_ci95(diffs)
    return PairedDifference(mean, ci, n)


class RatingModel(Protocol):
    """What :func:`evaluate_users` needs: a meta-learner or a rating baseline."""

    def predict_tasks(self, batch: TaskBatch, steps: int | None = None) -> Tensor: ...


EVAL_GROUP = 64
"""Users adapted together by :func:`evaluate_users` (padded to the largest support among them)."""


def evaluate_users(
    model: RatingModel,
    tasks: Sequence[Task],
    ks: Sequence[int] = (3, 10),
    scale: tuple[float, float] | None = None,
    steps: int | None = None,
) -> list[dict[str, float]]:
    """:func:`rating_metrics` of each user (task) after adapting ``model`` to its support set.

    Users are sorted by support size into groups of at most :data:`EVAL_GROUP`, each padded
    (:func:`~metamap.core.pad_tasks`) and adapted in one ``model.predict_tasks`` call (batched
    where the learner can, else user by user; each user adapts as alone either way).
    ``scale``: the rating scale, to which the predictions are clipped for MAE and RMSE (a
    network's may leave it), not for the ranking (:func:`rating_metrics`);
    ``steps``: the learner's number of inner steps (default: the trained number).
    Returns one dict per task, in order: its :func:`rating_metrics` and ``"diverged"``, 1.0 if
    any of its predictions was NaN or infinite (an adaptation that diverged), else 0.0. Such a
    user's errors count an infinite prediction as the scale's bound (:func:`rating_metrics`);
    with a NaN prediction, or an infinite one and no ``scale``, every metric of the user is NaN
    (counted by :func:`~metamap.train.evaluate.summarize` as not finite) instead of an error
    that would stop the evaluation. Summarise
    with :func:`summarize_users`, compare two models with :func:`paired_difference` on one key.
    """
    out: dict[int, dict[str, float]] = {}
    for group in size_groups(tasks, math.ceil(len(tasks) / EVAL_GROUP) or 1):
        mine = [tasks[i] for i in group]
        pred = model.predict_tasks(pad_tasks(mine), steps)
        for i, task, p in zip(group, mine, pred, strict=True):
            own = p[: len(task.query_y)]  # the padding's rows dropped
            finite = bool(torch.isfinite(own).all())
            if finite or (scale is not None and not bool(own.isnan().any())):
                scores = rating_metrics(own, task.query_y, ks, scale)
            else:  # no error to give: a NaN prediction, or an infinite one without a scale
                scores = dict.fromkeys(["mae", "rmse", *(f"ndcg@{k}" for k in ks)], math.nan)
            out[i] = {**scores, "diverged": float(not finite)}
    return [out[i] for i in range(len(tasks))]
