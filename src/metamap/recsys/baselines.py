"""Rating baselines for cold-start users, with a meta-learner's ``adapt``/``predict`` interface.

Every baseline is first ``fit`` on all training ratings, then, for each new (test) user, maps the
user's support ratings to a state (``adapt``) and predicts query ratings from it (``predict``),
so that one evaluation (:func:`metamap.recsys.evaluate_users`) runs baselines and meta-learners
alike. The baselines, from weakest to strongest on data with user-specific taste:

* :class:`GlobalMean` — ``r̂ = μ``, the mean training rating.
* :class:`ItemMean` — the damped item mean ``(n_i · mean_i + λ · μ) / (n_i + λ)``.
* :class:`ItemUserBias` — ``r̂ = μ + b_i + b_u``, the baseline predictors of Koren, "Factor in
  the Neighbors: Scalable and Accurate Collaborative Filtering", TKDD 2010 (Sec. 2.1):
  ``b_i = Σ_{u ∈ R(i)} (r_ui − μ) / (λ_i + |R(i)|)`` over the training ratings, and for a new user
  ``b_u = Σ_{i ∈ support} (r_ui − μ − b_i) / (λ_u + |support|)``.
* :class:`MatrixFactorization` — biased matrix factorisation ``r̂ = μ + b_u + b_i + p_uᵀ q_i``
  (Koren, Bell & Volinsky, "Matrix Factorization Techniques for Recommender Systems", IEEE
  Computer 2009) fitted by alternating least squares (Zhou, Wilkinson, Schreiber & Pan,
  "Large-Scale Parallel Collaborative Filtering for the Netflix Prize", AAIM 2008; Hu, Koren &
  Volinsky, ICDM 2008); a new user is *folded in*: with the item biases and factors fixed, its
  ``(b_u, p_u)`` is the closed-form ridge solution on its support ratings.

:func:`tune` picks a baseline's hyperparameters by query MAE on validation users.

Inputs, as in the rating tasks: ``x: (N, F)`` int64, one row per rated item, **column 0 the item
id** (``1 … max_id``; ``0`` an item unknown to the model, e.g. a cold item never seen in
training), columns ``1 …`` categorical side features, which these baselines ignore. Ratings
``y: (N, 1)`` (or ``(N,)``) floating, within ``scale`` (default ``(1, 5)``); predictions
``(N, 1)`` float32, clipped to ``scale``, on the device of ``x``.

Conventions, the same for every baseline:

* An item id of 0, one larger than any id seen by ``fit``, or one that has no training rating is
  *unknown*: not an error, it gets the global mean (``b_i = 0``, and ``q_i = 0`` for the
  factorisation). Training rows with item id 0 count towards ``μ`` (and towards the users'
  parameters of the factorisation) but towards no item.
* An empty support set ``(0, F)`` is allowed: the user bias and factors are 0, so the prediction
  is the non-personalised one. (:class:`metamap.core.Task` itself requires a non-empty support
  set; call ``adapt`` directly for zero-shot users.)
* Everything is computed on the CPU in float64, so results are deterministic (and, for the
  factorisation, identical for the same ``seed``).
* Mistakes raise :class:`metamap.errors.TaskShapeError` (a ``ValueError``) for tensors of the
  wrong type, shape or range, :class:`NotFittedError` for ``adapt``/``predict`` before ``fit``.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import torch
from torch import Tensor

from metamap.core import AdaptedState, Task, TaskBatch, predict_each
from metamap.errors import MetamapError, TaskShapeError
from metamap.recsys.metrics import evaluate_users

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "BaselineState",
    "GlobalMean",
    "ItemMean",
    "ItemUserBias",
    "MatrixFactorization",
    "NotFittedError",
    "RatingBaseline",
    "Tuned",
    "tune",
]

_F64 = torch.float64


class NotFittedError(MetamapError, RuntimeError):
    """``adapt`` or ``predict`` was called on a baseline that has not been ``fit``."""


@dataclass(kw_only=True, eq=False)
class BaselineState(AdaptedState):
    """One user's adapted baseline: the user bias ``b_u`` and factors ``p_u`` ``(K,)``.

    Both are 0 for the baselines without them (and for an empty support set); ``K = 0`` except
    for :class:`MatrixFactorization`. ``support_size`` is the number of support ratings used.
    Compared by identity (``eq=False``), as it holds a tensor.
    """

    user_bias: float = 0.0
    user_factors: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=_F64))
    support_size: int = 0


def _check_x(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TaskShapeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.int64 or x.dim() != 2 or x.shape[1] < 1:
        raise TaskShapeError(
            f"{name} must be a 2-D int64 tensor (N, F) with the item id in column 0; got dtype "
            f"{x.dtype} and shape {tuple(x.shape)}. Convert with x.long(), and give a single "
            "row as x.view(1, -1)"
        )
    ids = x[:, 0]
    if (ids < 0).any():
        row = int((ids < 0).nonzero()[0])
        raise TaskShapeError(
            f"{name} has a negative item id ({int(ids[row])}) in row {row}; item ids are "
            ">= 1, with 0 for an item unknown to the model"
        )
    return x


def _check_y(name: str, y: object, rows: int, scale: tuple[float, float]) -> Tensor:
    if not isinstance(y, Tensor):
        raise TaskShapeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if not y.is_floating_point():
        raise TaskShapeError(f"{name} must be floating point, got {y.dtype}; use y.float()")
    if not (y.shape == (rows,) or y.shape == (rows, 1)):
        raise TaskShapeError(
            f"{name} must hold one rating per row of x, shape ({rows}, 1) or ({rows},); "
            f"got {tuple(y.shape)}"
        )
    r = y.detach().reshape(-1).to(device="cpu", dtype=_F64)
    lo, hi = scale
    bad = (~torch.isfinite(r)) | (r < lo) | (r > hi)
    if bad.any():
        row = int(bad.nonzero()[0])
        raise TaskShapeError(
            f"{name} has a rating {float(r[row])} in row {row}, outside the rating scale "
            f"[{lo:g}, {hi:g}]; rescale the ratings or pass scale=(low, high) to the baseline"
        )
    return r


def _check_damping(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _group_mean(index: Tensor, values: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Per-group sums and counts ``(groups,)`` of ``values`` grouped by ``index``."""
    sums = torch.zeros(groups, dtype=_F64).index_add_(0, index, values)
    counts = torch.bincount(index, minlength=groups).to(_F64)
    return sums, counts


class RatingBaseline(ABC):
    """A rating predictor fitted on training ratings and adapted to each new user's support set.

    Subclasses implement ``_fit``, ``_adapt`` and ``_item_terms``; this class validates inputs,
    handles unknown items and clips predictions to ``scale``.
    """

    loss_name: Literal["mse"] = "mse"
    inner_steps: int = 0
    """No adaptation steps: ``adapt_trace`` returns the one adapted state for every count."""

    def __init__(self, scale: tuple[float, float] = (1.0, 5.0)) -> None:
        lo, hi = (float(s) for s in scale)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"scale must be (low, high) with low < high, got {scale!r}")
        self.scale = (lo, hi)
        self.global_mean: float | None = None
        """``μ``, the mean training rating (``None`` before ``fit``)."""
        self.num_features: int | None = None
        self.num_items: int | None = None
        """One more than the largest item id seen by ``fit``: ids ``>=`` this are unknown."""

    # ----------------------------------------------------------------- public interface

    def fit(self, x: Tensor, y: Tensor, users: Tensor) -> Self:
        """Fit on all training ratings: ``x (R, F)`` int64, ``y (R, 1)``, ``users (R,)`` int64.

        ``users`` holds each row's user index (``>= 0``; only the factorisation uses it).
        Returns ``self``.
        """
        x = _check_x("x", x)
        r = _check_y("y", y, x.shape[0], self.scale)
        if r.numel() == 0:
            raise TaskShapeError("fit needs at least one training rating; x and y are empty")
        if not isinstance(users, Tensor) or users.dtype != torch.int64 or users.dim() != 1:
            raise TaskShapeError(
                "users must be a 1-D int64 tensor (R,) with each rating's user index; got "
                + (
                    f"dtype {users.dtype} and shape {tuple(users.shape)}"
                    if isinstance(users, Tensor)
                    else type(users).__name__
                )
            )
        if users.shape[0] != x.shape[0]:
            raise TaskShapeError(
                f"users has {users.shape[0]} entries for {x.shape[0]} ratings; give one user "
                "index per row of x"
            )
        if (users < 0).any():
            raise TaskShapeError("users has a negative user index; user indices are >= 0")
        items = x[:, 0].to("cpu")
        self.global_mean = float(r.mean())
        self.num_features = int(x.shape[1])
        self.num_items = int(items.max()) + 1
        self._fit(items, r, users.to("cpu"))
        return self

    def adapt(
        self, support_x: Tensor, support_y: Tensor, steps: int | None = None
    ) -> BaselineState:
        """Adapt to one new user's support ratings ``(S, F)``, ``(S, 1)`` (``S = 0`` allowed).

        ``steps`` is accepted for :meth:`metamap.core.Learner.adapt`'s call shape and ignored.
        """
        self._require_fit()
        x = self._check_rows("support_x", support_x)
        r = _check_y("support_y", support_y, x.shape[0], self.scale)
        state = self._adapt(self._known(x[:, 0].to("cpu")), r)
        state.support_size = int(r.numel())
        state.example_shape = (int(x.shape[1]),)
        return state

    def adapt_trace(
        self, support_x: Tensor, support_y: Tensor, steps: Sequence[int]
    ) -> dict[int, BaselineState]:
        """The one adapted state under every step count (a baseline has no steps)."""
        state = self.adapt(support_x, support_y)
        return {k: state for k in steps}

    def predict_tasks(self, batch: TaskBatch, steps: int | None = None) -> Tensor:
        """Each user of ``batch`` adapted to and their query rows predicted ``(B, Q, 1)``, user
        by user (NaN-target support rows are padding, left out)."""
        return predict_each(self, batch, steps)

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Predicted ratings ``(N, 1)`` float32 for query rows ``x (N, F)``, clipped to
        ``scale``."""
        self._require_fit()
        if not isinstance(state, BaselineState):
            raise TypeError(
                f"{type(self).__name__}.predict needs the BaselineState its adapt returned, "
                f"got {type(state).__name__}"
            )
        x = self._check_rows("x", x)
        bias, factors = self._item_terms(self._known(x[:, 0].to("cpu")))
        pu = state.user_factors.to(_F64)
        if pu.shape != (factors.shape[1],):
            raise TaskShapeError(
                f"state has {tuple(pu.shape)} user factors but this baseline uses "
                f"{factors.shape[1]}; use the state adapt returned on this baseline"
            )
        assert self.global_mean is not None
        pred = self.global_mean + state.user_bias + bias + factors @ pu
        lo, hi = self.scale
        return pred.clamp(lo, hi).to(device=x.device, dtype=torch.float32).unsqueeze(1)

    # ----------------------------------------------------------------- subclass hooks

    @abstractmethod
    def _fit(self, items: Tensor, r: Tensor, users: Tensor) -> None:
        """Fit on item ids ``(R,)``, float64 ratings ``(R,)``, user indices ``(R,)`` (CPU).

        ``self.global_mean`` and ``self.num_items`` are set already."""

    @abstractmethod
    def _adapt(self, items: Tensor, r: Tensor) -> BaselineState:
        """The state for support item ids ``(S,)`` (unknown ones mapped to 0) and ratings."""

    @abstractmethod
    def _item_terms(self, items: Tensor) -> tuple[Tensor, Tensor]:
        """Item deviations from ``μ`` ``(N,)`` and factors ``(N, K)`` (float64) for item ids
        ``(N,)`` with unknown ones mapped to 0 (deviation 0, factors 0)."""

    # ----------------------------------------------------------------- helpers

    def _require_fit(self) -> None:
        if self.global_mean is None:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted: call fit(x, y, users) on the training "
                "ratings before adapt or predict"
            )

    def _check_rows(self, name: str, x: Tensor) -> Tensor:
        x = _check_x(name, x)
        if x.shape[1] != self.num_features:
            raise TaskShapeError(
                f"{name} has {x.shape[1]} columns but fit saw {self.num_features}; give rows "
                "laid out like the training ratings (item id in column 0)"
            )
        return x

    def _known(self, items: Tensor) -> Tensor:
        """Item ids with every id unknown at fit (``>= num_items``) mapped to 0."""
        assert self.num_items is not None
        return torch.where(items < self.num_items, items, torch.zeros_like(items))


class GlobalMean(RatingBaseline):
    """``r̂ = μ``: the mean of all training ratings, for every user and item."""

    def _fit(self, items: Tensor, r: Tensor, users: Tensor) -> None:
        pass

    def _adapt(self, items: Tensor, r: Tensor) -> BaselineState:
        return BaselineState()

    def _item_terms(self, items: Tensor) -> tuple[Tensor, Tensor]:
        return torch.zeros(items.shape[0], dtype=_F64), torch.zeros(items.shape[0], 0, dtype=_F64)


def _item_deviation(items: Tensor, r: Tensor, mu: float, groups: int, damping: float) -> Tensor:
    """Damped item deviations ``b_i = Σ (r − μ) / (n_i + λ)`` ``(groups,)``; 0 for item 0 and
    items without ratings."""
    sums, counts = _group_mean(items, r - mu, groups)
    dev = torch.where(counts > 0, sums / (counts + damping).clamp_min(1e-300), 0.0)
    dev[0] = 0.0
    return dev


class ItemMean(RatingBaseline):
    """Damped item mean ``(n_i · mean_i + λ · μ) / (n_i + λ) = μ + Σ (r − μ) / (n_i + λ)``.

    ``damping = λ`` shrinks rarely rated items towards ``μ`` (``λ = 0``: the plain item mean).
    Unknown items get ``μ``. Not personalised: ``adapt`` ignores the support ratings.
    """

    def __init__(self, damping: float = 0.0, scale: tuple[float, float] = (1.0, 5.0)) -> None:
        super().__init__(scale)
        self.damping = _check_damping("damping", damping)
        self.item_deviation: Tensor | None = None

    def _fit(self, items: Tensor, r: Tensor, users: Tensor) -> None:
        assert self.global_mean is not None and self.num_items is not None
        self.item_deviation = _item_deviation(
            items, r, self.global_mean, self.num_items, self.damping
        )

    def _adapt(self, items: Tensor, r: Tensor) -> BaselineState:
        return BaselineState()

    def _item_terms(self, items: Tensor) -> tuple[Tensor, Tensor]:
        assert self.item_deviation is not None
        return self.item_deviation[items], torch.zeros(items.shape[0], 0, dtype=_F64)


class ItemUserBias(ItemMean):
    """``r̂ = μ + b_i + b_u``, Koren's (2010) baseline predictor, the user bias from the support.

    ``b_i = Σ_{R(i)} (r − μ) / (n_i + λ_i)`` on the training ratings (``item_damping = λ_i``);
    for a new user ``b_u = Σ_{support} (r − μ − b_i) / (S + λ_u)`` (``user_damping = λ_u``).
    Both dampings 0: the plain item mean plus the user's mean residual. Empty support: ``b_u = 0``.
    """

    def __init__(
        self,
        item_damping: float = 0.0,
        user_damping: float = 0.0,
        scale: tuple[float, float] = (1.0, 5.0),
    ) -> None:
        super().__init__(item_damping, scale)
        self.item_damping = self.damping
        self.user_damping = _check_damping("user_damping", user_damping)

    def _adapt(self, items: Tensor, r: Tensor) -> BaselineState:
        assert self.global_mean is not None and self.item_deviation is not None
        if r.numel() == 0:
            return BaselineState()
        residual = r - self.global_mean - self.item_deviation[items]
        return BaselineState(user_bias=float(residual.sum()) / (r.numel() + self.user_damping))


def _incidence(index: Tensor, other: Tensor, groups: int, others: int) -> Tensor:
    """The ratings as a sparse ``(groups, others)`` count matrix: entry ``(g, o)`` counts the rows
    with ``index == g`` and ``other == o`` (a user's rated items, or an item's raters)."""
    pairs = torch.stack([index, other])
    ones = torch.ones(index.numel(), dtype=_F64)
    return torch.sparse_coo_tensor(pairs, ones, (groups, others), check_invariants=True).coalesce()


def _ridge_by_group(
    incidence: Tensor, index: Tensor, other: Tensor, features: Tensor, target: Tensor, reg: float
) -> Tensor:
    """Per-group ridge solutions ``w_g = (Σ z zᵀ + reg·I)⁻¹ Σ z t`` ``(groups, D)``.

    Row ``r`` belongs to group ``index[r]`` and has ``z_r = (1, features[other[r]])``
    (``features: (others, D − 1)``, the other side's factors), target ``target[r]``.
    ``incidence`` is :func:`_incidence` of ``index`` and ``other``: each group's normal matrix
    ``Σ z zᵀ`` is its row of the incidence matrix times the other side's outer products
    ``(others, D²)``, one sparse product instead of an outer product per rating (15× faster
    on MovieLens-100K, measured; no ``(R, D, D)`` temporary for millions of ratings).
    """
    z = torch.cat([torch.ones(len(features), 1, dtype=_F64), features], 1)
    d = z.shape[1]
    outer = (z.unsqueeze(2) * z.unsqueeze(1)).reshape(len(z), d * d)
    a = torch.sparse.mm(incidence, outer).reshape(-1, d, d) + reg * torch.eye(d, dtype=_F64)
    b = torch.zeros(len(a), d, dtype=_F64).index_add_(0, index, z[other] * target.unsqueeze(1))
    w: Tensor = torch.linalg.solve(a, b)
    return w


class MatrixFactorization(RatingBaseline):
    """Biased matrix factorisation ``r̂ = μ + b_u + b_i + p_uᵀ q_i`` by alternating least squares.

    Minimises, over the training ratings ``R`` with ``μ`` fixed to the mean rating,

        Σ_{(u,i) ∈ R} (r_ui − μ − b_u − b_i − p_uᵀ q_i)²
            + reg · Σ_u (b_u² + ‖p_u‖²) + reg · Σ_i (b_i² + ‖q_i‖²)

    (Koren, Bell & Volinsky 2009) by alternating exact ridge solves for every user's
    ``(b_u, p_u)`` with items fixed and every item's ``(b_i, q_i)`` with users fixed (ALS; Zhou et
    al. 2008, here with the plain, unweighted ``reg·I``). Item factors start as
    ``N(0, 0.1²)`` from a generator seeded with ``seed``; ``iterations`` user-then-item sweeps.
    ``history`` holds the objective after each sweep (non-increasing: each solve is exact).

    Fold-in of a new user (``adapt``): with ``b_i``, ``q_i`` fixed, ``(b_u, p_u)`` minimises
    ``Σ_support (r − μ − b_i − b_u − p_uᵀ q_i)² + reg · (b_u² + ‖p_u‖²)``, i.e.
    ``w = (ZᵀZ + reg·I)⁻¹ Zᵀ(r − μ − b_i)`` with rows ``z = (1, q_i)`` ``(S, K+1)`` — the same
    solve as ALS's user step. Unknown items have ``q_i = 0``, ``b_i = 0`` (they still inform
    ``b_u``); an empty support gives ``b_u = 0``, ``p_u = 0``.
    """

    def __init__(
        self,
        factors: int = 10,
        reg: float = 1.0,
        iterations: int = 15,
        seed: int = 0,
        scale: tuple[float, float] = (1.0, 5.0),
    ) -> None:
        super().__init__(scale)
        if isinstance(factors, bool) or not isinstance(factors, int) or factors < 1:
            raise ValueError(f"factors must be a positive integer, got {factors!r}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        reg = float(reg)
        if not (math.isfinite(reg) and reg > 0):
            raise ValueError(
                f"reg must be a finite number > 0 (it keeps every ridge solve well-posed, also "
                f"for users and items with few ratings), got {reg}"
            )
        self.factors = factors
        self.reg = reg
        self.iterations = iterations
        self.seed = int(seed)
        self.item_bias: Tensor | None = None
        """``b_i`` ``(num_items,)`` float64 (0 for item 0 and items without ratings)."""
        self.item_factors: Tensor | None = None
        """``q_i`` ``(num_items, factors)`` float64 (0 for item 0 and items without ratings)."""
        self.user_bias: Tensor | None = None
        """Training users' ``b_u`` ``(num_users,)``, for diagnostics (not used to predict)."""
        self.user_factors: Tensor | None = None
        """Training users' ``p_u`` ``(num_users, factors)``, for diagnostics."""
        self.history: list[float] = []

    def _fit(self, items: Tensor, r: Tensor, users: Tensor) -> None:
        assert self.global_mean is not None and self.num_items is not None
        n_items, n_users, k = self.num_items, int(users.max()) + 1, self.factors
        gen = torch.Generator().manual_seed(self.seed)
        q = 0.1 * torch.randn(n_items, k, generator=gen, dtype=_F64)
        bi = torch.zeros(n_items, dtype=_F64)
        rated = torch.bincount(items, minlength=n_items) > 0
        rated[0] = False
        q[~rated] = 0.0
        resid = r - self.global_mean
        by_user = _incidence(users, items, n_users, n_items)
        by_item = _incidence(items, users, n_items, n_users)
        self.history = []
        for _ in range(self.iterations):
            # Users: (b_u, p_u) given items, target r − μ − b_i, rows (1, q_i).
            w_user = _ridge_by_group(by_user, users, items, q, resid - bi[items], self.reg)
            bu, p = w_user[:, 0], w_user[:, 1:]
            # Items: (b_i, q_i) given users, target r − μ − b_u, rows (1, p_u). Item 0 (unknown)
            # stays at 0, as do items without ratings (their solve is 0 already).
            w_item = _ridge_by_group(by_item, items, users, p, resid - bu[users], self.reg)
            w_item[~rated] = 0.0
            bi, q = w_item[:, 0].contiguous(), w_item[:, 1:].contiguous()
            err = resid - bu[users] - bi[items] - (p[users] * q[items]).sum(1)
            penalty = bu.pow(2).sum() + p.pow(2).sum() + bi.pow(2).sum() + q.pow(2).sum()
            self.history.append(float(err.pow(2).sum() + self.reg * penalty))
        self.item_bias, self.item_factors = bi, q
        self.user_bias, self.user_factors = bu, p

    def _adapt(self, items: Tensor, r: Tensor) -> BaselineState:
        assert self.global_mean is not None
        bias, q = self._item_terms(items)
        z = torch.cat([torch.ones(r.numel(), 1, dtype=_F64), q], 1)
        target = r - self.global_mean - bias
        a = z.T @ z + self.reg * torch.eye(self.factors + 1, dtype=_F64)
        w = torch.linalg.solve(a, z.T @ target)
        return BaselineState(user_bias=float(w[0]), user_factors=w[1:].clone())

    def _item_terms(self, items: Tensor) -> tuple[Tensor, Tensor]:
        assert self.item_bias is not None and self.item_factors is not None
        return self.item_bias[items], self.item_factors[items]


class Tuned(NamedTuple):
    """What :func:`tune` found: the best keyword arguments, their validation MAE and the
    baseline fitted with them (no need to fit it again)."""

    params: dict[str, Any]
    val_mae: float
    model: RatingBaseline


def tune(
    baseline_factory: Callable[..., RatingBaseline],
    grid: Mapping[str, Sequence[Any]],
    fit_data: tuple[Tensor, Tensor, Tensor],
    val_tasks: Sequence[Task],
) -> Tuned:
    """Grid search: the keyword arguments of ``baseline_factory`` with the lowest validation MAE.

    For every combination in the product of ``grid`` (e.g. ``{"damping": [0, 5, 25]}``; an empty
    grid is the one combination ``{}``) a fresh ``baseline_factory(**params)`` is fitted on
    ``fit_data = (x, y, users)`` (the training users' ratings) and scored on ``val_tasks``: the
    mean over validation users of each user's query MAE after adapting to its support set.
    Returns ``(best params, its validation MAE, the baseline fitted with them)``; ties go to the
    combination listed first.

    Test users must never enter here — neither in ``val_tasks`` nor in ``fit_data`` — so that
    the hyperparameters are chosen without seeing the users they are reported on. Validation
    users should be disjoint from the training users too, to score cold-start adaptation.
    """
    if not val_tasks:
        raise ValueError("tune needs at least one validation task (user) to score on")
    keys = list(grid)
    for key in keys:
        if len(grid[key]) == 0:
            raise ValueError(f"grid[{key!r}] is empty; give at least one value to try")
    best: Tuned | None = None
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        model = baseline_factory(**params).fit(*fit_data)
        per_user = evaluate_users(model, val_tasks, ks=())
        mae = math.fsum(d["mae"] for d in per_user) / len(per_user)
        if best is None or mae < best.val_mae:
            best = Tuned(params, mae, model)
    assert best is not None
    return best
