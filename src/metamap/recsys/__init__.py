"""Cold-start recommendation on plain tensors: per-user rating metrics and rating baselines.

Each user is a task (:class:`metamap.core.Task`): ``x: (N, F)`` int64 rows with the item id in
column 0 (0 for an item unknown to the model) and categorical side features after it,
``y: (N, 1)`` ratings on the 1–5 scale. :mod:`~metamap.recsys.metrics` scores one user's query
ratings (MAE, RMSE, nDCG@k as in MeLU) and summarises over users;
:mod:`~metamap.recsys.baselines` holds the non-meta-learned baselines (global mean, item mean,
item + user bias, matrix factorisation with fold-in) behind a meta-learner's ``adapt``/``predict``.

Depends only on :mod:`metamap.core` and :mod:`metamap.errors`: no data or training code.
"""

from metamap.recsys.baselines import (
    BaselineState,
    GlobalMean,
    ItemMean,
    ItemUserBias,
    MatrixFactorization,
    NotFittedError,
    RatingBaseline,
    Tuned,
    tune,
)
from metamap.recsys.metrics import (
    MetricSummary,
    PairedDifference,
    RatingModel,
    evaluate_users,
    ndcg_at_k,
    paired_difference,
    rating_metrics,
    summarize_users,
)

__all__ = [
    "BaselineState",
    "GlobalMean",
    "ItemMean",
    "ItemUserBias",
    "MatrixFactorization",
    "MetricSummary",
    "NotFittedError",
    "PairedDifference",
    "RatingBaseline",
    "RatingModel",
    "Tuned",
    "evaluate_users",
    "ndcg_at_k",
    "paired_difference",
    "rating_metrics",
    "summarize_users",
    "tune",
]
