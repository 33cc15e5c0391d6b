"""Rating baselines on a synthetic low-rank ratings matrix, against direct computations.

The data: 200 users × 100 items, ``r = 3.2 + b_u + b_i + p_uᵀ q_i + noise`` with rank-3 factors,
rounded and clipped to 1..5. Each user rates 40 random items. Users 0..149 are training users;
each of the 50 test users is a task with 20 support and 20 query ratings.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from metamap.core import Task
from metamap.errors import TaskShapeError
from metamap.recsys import (
    BaselineState,
    GlobalMean,
    ItemMean,
    ItemUserBias,
    MatrixFactorization,
    NotFittedError,
    RatingBaseline,
    evaluate_users,
    paired_difference,
    tune,
)

Ratings = tuple[Tensor, Tensor, Tensor]


def synthetic(
    seed: int = 0,
    users: int = 200,
    items: int = 100,
    rank: int = 3,
    per_user: int = 40,
    n_train: int = 150,
    support: int = 20,
) -> tuple[Ratings, list[Task]]:
    g = torch.Generator().manual_seed(seed)
    p = 0.8 * torch.randn(users, rank, generator=g)
    q = 0.8 * torch.randn(items, rank, generator=g)
    bu = 0.5 * torch.randn(users, generator=g)
    bi = 0.5 * torch.randn(items, generator=g)
    noise = 0.3 * torch.randn(users, items, generator=g)
    full = (3.2 + bu[:, None] + bi[None] + p @ q.T + noise).round().clamp(1, 5)
    rated = [torch.randperm(items, generator=g)[:per_user] for _ in range(users)]

    def rows(u: int) -> tuple[Tensor, Tensor]:
        ids = rated[u] + 1  # item ids 1..items; 0 is "unknown"
        side = torch.randint(0, 4, ids.shape, generator=g)  # a side feature, ignored
        return torch.stack([ids, side], 1), full[u, rated[u]].unsqueeze(1)

    train = [rows(u) for u in range(n_train)]
    fit_data = (
        torch.cat([x for x, _ in train]),
        torch.cat([y for _, y in train]),
        torch.arange(n_train).repeat_interleave(per_user),
    )
    tasks = []
    for u in range(n_train, users):
        x, y = rows(u)
        tasks.append(Task(x[:support], y[:support], x[support:], y[support:]))
    return fit_data, tasks


@pytest.fixture(scope="module")
def data() -> tuple[Ratings, list[Task]]:
    return synthetic()


def query_mae(model: RatingBaseline, tasks: list[Task]) -> list[float]:
    return [d["mae"] for d in evaluate_users(model, tasks, ks=())]


def test_baselines_improve_in_the_expected_order(data: tuple[Ratings, list[Task]]) -> None:
    fit_data, tasks = data
    maes = {
        name: query_mae(model.fit(*fit_data), tasks)
        for name, model in [
            ("global", GlobalMean()),
            ("item", ItemMean(damping=5.0)),
            ("bias", ItemUserBias(item_damping=5.0, user_damping=2.0)),
            ("mf", MatrixFactorization(factors=3, reg=2.0, iterations=15, seed=0)),
        ]
    }
    mean = {k: sum(v) / len(v) for k, v in maes.items()}
    assert mean["global"] > mean["item"] > mean["bias"] > mean["mf"]
    # On rank-3 data with 20 support ratings, the folded-in factorisation is much better than
    # the biases alone, paired over the same users, not just on average.
    gain = paired_difference(maes["bias"], maes["mf"])
    assert gain.excludes_zero and gain.mean > 0.2
    # Personalising with the user bias helps significantly too.
    assert paired_difference(maes["item"], maes["bias"]).excludes_zero


def test_predictions_are_float32_column_clipped_to_the_scale(
    data: tuple[Ratings, list[Task]],
) -> None:
    fit_data, tasks = data
    model = MatrixFactorization(factors=3, reg=2.0, iterations=5).fit(*fit_data)
    for task in tasks:
        pred = model.predict(model.adapt(task.support_x, task.support_y), task.query_x)
        assert pred.shape == (task.query_x.shape[0], 1) and pred.dtype == torch.float32
        assert pred.min() >= 1.0 and pred.max() <= 5.0
    # A user who gives every support item a 5 gets predictions clipped at 5, not above.
    sx = tasks[0].support_x
    state = model.adapt(sx, torch.full((sx.shape[0], 1), 5.0))
    assert model.predict(state, tasks[0].query_x).max() == 5.0
    # Another scale: ratings 1..5 lie within (0, 10), predictions within it too.
    wide = ItemUserBias(scale=(0.0, 10.0)).fit(*fit_data)
    pred = wide.predict(wide.adapt(sx, torch.full((sx.shape[0], 1), 5.0)), tasks[0].query_x)
    assert pred.min() >= 0.0 and pred.max() <= 10.0


def test_zero_damping_reproduces_plain_means() -> None:
    # Items 1, 2, 3 (item 3 never rated in training); x's second column is ignored.
    x = torch.tensor([[1, 0], [1, 1], [2, 0], [2, 0], [2, 1], [0, 0]])
    y = torch.tensor([[4.0], [5.0], [1.0], [2.0], [3.0], [3.0]])
    users = torch.tensor([0, 1, 0, 1, 2, 2])
    mu = 18 / 6  # the item-0 (unknown) row counts towards μ only
    query = torch.tensor([[1, 0], [2, 0], [3, 0], [0, 0], [7, 0]])
    plain = ItemMean(damping=0).fit(x, y, users)
    assert plain.global_mean == mu
    state = plain.adapt(query[:0], torch.zeros(0, 1))
    # Item 1: (4 + 5)/2; item 2: (1 + 2 + 3)/3; item 3, id 0 and id 7 > max id: μ.
    assert plain.predict(state, query).squeeze(1).tolist() == [4.5, 2.0, mu, mu, mu]
    # Damped: item 1 with λ = 2: (2·4.5 + 2·3)/(2 + 2) = 3.75.
    assert ItemMean(damping=2).fit(x, y, users).predict(state, query[:1]).item() == 3.75

    bias = ItemUserBias(item_damping=0, user_damping=0).fit(x, y, users)
    # Support: item 1 rated 5 (residual 5 − 4.5), item 2 rated 3 (3 − 2), an unknown item rated
    # 4 (4 − μ): b_u = (0.5 + 1 + 1)/3 — the user's mean residual.
    sx = torch.tensor([[1, 0], [2, 0], [0, 0]])
    st = bias.adapt(sx, torch.tensor([[5.0], [3.0], [4.0]]))
    assert st.user_bias == pytest.approx(2.5 / 3)
    expected = torch.tensor([4.5, 2.0, mu]) + 2.5 / 3
    torch.testing.assert_close(bias.predict(st, query[:3]).squeeze(1), expected.clamp(1, 5))
    # User damping λ_u = 1: b_u = 2.5 / (3 + 1).
    damped = ItemUserBias(user_damping=1.0).fit(x, y, users)
    assert damped.adapt(sx, torch.tensor([[5.0], [3.0], [4.0]])).user_bias == pytest.approx(0.625)


def test_fold_in_equals_a_direct_ridge_solve(data: tuple[Ratings, list[Task]]) -> None:
    fit_data, tasks = data
    reg = 1.5
    model = MatrixFactorization(factors=4, reg=reg, iterations=6, seed=3).fit(*fit_data)
    assert model.item_bias is not None and model.item_factors is not None
    assert model.global_mean is not None
    # The support of a test user plus an unknown item (id 0) and an id beyond the training ids.
    task = tasks[0]
    sx = torch.cat([task.support_x, torch.tensor([[0, 1], [1000, 2]])])
    sy = torch.cat([task.support_y, torch.tensor([[5.0], [1.0]])])
    state = model.adapt(sx, sy)

    ids = sx[:, 0]
    known = ids < model.item_bias.shape[0]
    safe = torch.where(known, ids, 0)
    q = torch.where(known[:, None], model.item_factors[safe], 0.0)
    b = torch.where(known, model.item_bias[safe], 0.0)
    assert b[-2:].eq(0).all() and q[-2:].eq(0).all()  # unknown items: q = 0, b_i = 0
    z = torch.cat([torch.ones(len(ids), 1, dtype=torch.float64), q], 1)
    t = sy.squeeze(1).double() - model.global_mean - b
    w = torch.linalg.solve(z.T @ z + reg * torch.eye(5, dtype=torch.float64), z.T @ t)
    assert state.user_bias == pytest.approx(float(w[0]), abs=1e-10)
    torch.testing.assert_close(state.user_factors, w[1:], atol=1e-10, rtol=0)
    # And the prediction is μ + b_u + b_i + p_uᵀ q_i.
    qx = task.query_x
    manual = (
        model.global_mean + w[0] + model.item_bias[qx[:, 0]] + model.item_factors[qx[:, 0]] @ w[1:]
    )
    torch.testing.assert_close(
        model.predict(state, qx).squeeze(1), manual.clamp(1, 5).float(), atol=1e-5, rtol=0
    )


def test_als_objective_never_increases_and_fits_training_users(
    data: tuple[Ratings, list[Task]],
) -> None:
    fit_data, _ = data
    model = MatrixFactorization(factors=3, reg=2.0, iterations=10).fit(*fit_data)
    h = model.history
    assert len(h) == 10
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(h))
    assert h[-1] < 0.5 * h[0]
    # Folding in a training user from all its ratings recovers (nearly) its ALS parameters: the
    # fold-in is ALS's user step with the final items.
    x, y, users = fit_data
    state = model.adapt(x[users == 7], y[users == 7])
    assert model.user_factors is not None
    assert torch.dist(state.user_factors, model.user_factors[7]) < 0.1
    # Each sweep ends with the items' step: every rated item's (b_i, q_i) is exactly the ridge
    # solve over its ratings, rows (1, p_u), target r − μ − b_u (built here rating by rating).
    assert model.item_bias is not None and model.item_factors is not None
    assert model.user_bias is not None and model.global_mean is not None
    items, r = x[:, 0], y.squeeze(1).double()
    for item in items.unique()[:5].tolist():
        mine = items == item
        z = torch.cat([torch.ones(int(mine.sum()), 1), model.user_factors[users[mine]]], 1)
        target = r[mine] - model.global_mean - model.user_bias[users[mine]]
        w = torch.linalg.solve(z.T @ z + 2.0 * torch.eye(4, dtype=z.dtype), z.T @ target)
        torch.testing.assert_close(model.item_bias[item], w[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(model.item_factors[item], w[1:], rtol=0, atol=1e-10)


def test_same_seed_same_model_other_seed_other_factors(data: tuple[Ratings, list[Task]]) -> None:
    fit_data, tasks = data

    def fitted(seed: int) -> MatrixFactorization:
        return MatrixFactorization(factors=3, reg=2.0, iterations=4, seed=seed).fit(*fit_data)

    a, b, c = fitted(11), fitted(11), fitted(12)
    assert a.item_factors is not None and b.item_factors is not None
    assert c.item_factors is not None
    assert torch.equal(a.item_factors, b.item_factors) and a.history == b.history
    t = tasks[0]
    pa = a.predict(a.adapt(t.support_x, t.support_y), t.query_x)
    pb = b.predict(b.adapt(t.support_x, t.support_y), t.query_x)
    assert torch.equal(pa, pb)
    assert not torch.allclose(a.item_factors, c.item_factors)


def test_empty_support_is_the_non_personalised_prediction(
    data: tuple[Ratings, list[Task]],
) -> None:
    fit_data, tasks = data
    qx = tasks[0].query_x
    empty_x, empty_y = qx[:0], torch.zeros(0, 1)
    bias = ItemUserBias(user_damping=0.0).fit(*fit_data)
    st = bias.adapt(empty_x, empty_y)
    assert st.user_bias == 0.0 and st.support_size == 0
    item = ItemMean().fit(*fit_data)
    torch.testing.assert_close(bias.predict(st, qx), item.predict(item.adapt(empty_x, empty_y), qx))

    mf = MatrixFactorization(factors=3, reg=2.0, iterations=3).fit(*fit_data)
    st = mf.adapt(empty_x, empty_y)
    assert st.user_bias == 0.0 and torch.equal(st.user_factors, torch.zeros(3, dtype=torch.float64))
    assert mf.global_mean is not None and mf.item_bias is not None
    expected = (mf.global_mean + mf.item_bias[qx[:, 0]]).clamp(1, 5).float()
    torch.testing.assert_close(mf.predict(st, qx).squeeze(1), expected)


def test_tune_picks_the_lowest_validation_mae(data: tuple[Ratings, list[Task]]) -> None:
    fit_data, tasks = data
    val = tasks[:25]  # validation users; tasks[25:] would be the test users, never seen here
    grid = {"item_damping": [0.0, 5.0], "user_damping": [0.0, 3.0, 100.0]}
    best, mae, fitted = tune(ItemUserBias, grid, fit_data, val)
    scores = {
        (i, u): sum(query_mae(ItemUserBias(i, u).fit(*fit_data), val)) / len(val)
        for i in grid["item_damping"]
        for u in grid["user_damping"]
    }
    winner = min(scores, key=lambda k: scores[k])
    assert best == {"item_damping": winner[0], "user_damping": winner[1]}
    assert mae == pytest.approx(scores[winner])
    # The winner comes back fitted: the same predictions as fitting it again.
    again = ItemUserBias(*winner).fit(*fit_data)
    assert query_mae(fitted, val) == query_mae(again, val)
    # A near-useless damping (b_u ≈ 0) loses to the others.
    assert best["user_damping"] != 100.0
    # An empty grid is the default parameters.
    best0, mae0, _ = tune(GlobalMean, {}, fit_data, val)
    assert best0 == {} and mae0 == pytest.approx(
        sum(query_mae(GlobalMean().fit(*fit_data), val)) / 25
    )
    with pytest.raises(ValueError, match="empty"):
        tune(ItemMean, {"damping": []}, fit_data, val)
    with pytest.raises(ValueError, match="validation task"):
        tune(ItemMean, {"damping": [1.0]}, fit_data, [])


FACTORIES: list[Callable[[], RatingBaseline]] = [
    GlobalMean,
    ItemMean,
    ItemUserBias,
    lambda: MatrixFactorization(factors=2, iterations=2),
]
IDS = ["global", "item", "bias", "mf"]


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
def test_adapt_and_predict_before_fit_are_refused(factory: Callable[[], RatingBaseline]) -> None:
    model = factory()
    x, y = torch.tensor([[1, 0]]), torch.tensor([[3.0]])
    with pytest.raises(NotFittedError, match=r"call fit\(x, y, users\)"):
        model.adapt(x, y)
    with pytest.raises(NotFittedError, match="not fitted"):
        model.predict(BaselineState(), x)


@pytest.mark.parametrize("factory", FACTORIES, ids=IDS)
def test_bad_inputs_are_refused_with_the_fix(factory: Callable[[], RatingBaseline]) -> None:
    x = torch.tensor([[1, 0], [2, 1], [1, 1]])
    y = torch.tensor([[3.0], [4.0], [5.0]])
    users = torch.tensor([0, 0, 1])
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: factory().fit(x.float(), y, users), "int64"),
        (lambda: factory().fit(x[:, 0], y, users), "2-D int64"),
        (lambda: factory().fit(x, y[:2], users), r"one rating per row of x, shape \(3, 1\)"),
        (lambda: factory().fit(x, y.long(), users), "floating point"),
        (lambda: factory().fit(x, y * 2, users), r"rating 6.0 in row 0, outside .*\[1, 5\]"),
        (lambda: factory().fit(x, y - 3, users), r"rating 0.0 in row 0.*scale=\(low, high\)"),
        (lambda: factory().fit(-x, y, users), "negative item id"),
        (lambda: factory().fit(x, y, users[:2]), "one user index per row"),
        (lambda: factory().fit(x, y, users.float()), "users must be a 1-D int64"),
        (lambda: factory().fit(x, y, -users), "negative user index"),
        (lambda: factory().fit(x[:0], y[:0], users[:0]), "at least one training rating"),
    ]
    for call, match in cases:
        with pytest.raises(TaskShapeError, match=match):
            call()
    model = factory().fit(x, y, users)
    with pytest.raises(TaskShapeError, match="outside the rating scale"):
        model.adapt(x, y + 1)
    with pytest.raises(TaskShapeError, match=r"shape \(3, 1\)"):
        model.adapt(x, y[:1])
    with pytest.raises(TaskShapeError, match="negative item id"):
        model.adapt(-x, y)
    with pytest.raises(TaskShapeError, match="3 columns but fit saw 2"):
        model.adapt(torch.cat([x, x[:, :1]], 1), y)
    state = model.adapt(x, y)
    with pytest.raises(TaskShapeError, match="int64"):
        model.predict(state, x.int())
    with pytest.raises(TypeError, match="BaselineState"):
        model.predict(object(), x)  # type: ignore[arg-type]
    # Unknown ids (0, larger than any training id) are not errors.
    assert model.predict(state, torch.tensor([[0, 0], [99, 0]])).shape == (2, 1)
    # The Learner call shape: a steps keyword is accepted and ignored; a trace repeats the state.
    again = model.adapt(x, y, steps=5)
    assert again.user_bias == state.user_bias
    assert torch.equal(again.user_factors, state.user_factors)
    trace = model.adapt_trace(x, y, [0, 3])
    assert list(trace) == [0, 3] and trace[0] is trace[3]
    assert trace[0].user_bias == state.user_bias


def test_hyperparameters_are_checked() -> None:
    with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
        ItemMean(damping=-1.0)
    with pytest.raises(ValueError, match="user_damping"):
        ItemUserBias(user_damping=float("nan"))
    with pytest.raises(ValueError, match="reg must be a finite number > 0"):
        MatrixFactorization(reg=0.0)
    with pytest.raises(ValueError, match="factors must be a positive integer"):
        MatrixFactorization(factors=0)
    with pytest.raises(ValueError, match="iterations must be a positive integer"):
        MatrixFactorization(iterations=0)
    with pytest.raises(ValueError, match="low < high"):
        GlobalMean(scale=(5.0, 1.0))
    with pytest.raises(TaskShapeError, match="user factors"):
        x, y = torch.tensor([[1]]), torch.tensor([[3.0]])
        mf = MatrixFactorization(factors=2, iterations=1).fit(x, y, torch.tensor([0]))
        mf.predict(BaselineState(), x)
