"""Users as tasks (:mod:`metamap.tasks.users`): the cold-start split, the fixed test tasks, and
padded batches of ragged users, on a synthetic MovieLens-100K folder (tests/movielens_fake.py);
plus one check of the split and of the baselines on the real 100K where it is present.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from metamap.core import Task
from metamap.data.movielens import MovieLens, load_movielens
from metamap.errors import ConfigError, TaskShapeError
from metamap.learners import MAML
from metamap.learners.functional import loss_function
from metamap.models import MeLU
from metamap.recsys import ItemMean, ItemUserBias, evaluate_users, paired_difference
from metamap.tasks import stack_tasks
from metamap.tasks.users import (
    COLUMNS,
    ColdStartTask,
    UserTasks,
    cold_start_split,
    encode_ratings,
    feature_sizes,
    pad_tasks,
)
from metamap.train import load_config, parse_config
from movielens_fake import write_fake_100k

SHARED = Path(os.environ.get("METAMAP_SHARED_DATA", Path(__file__).parents[2] / "../shared/data"))
REAL_100K = SHARED / "ml-100k"
CONFIG = Path(__file__).parents[2] / "configs" / "movielens" / "melu.yaml"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> MovieLens:
    tmp = tmp_path_factory.mktemp("movielens")
    return load_movielens("100k", write_fake_100k(tmp / "ml-100k"), cache_dir=tmp / "cache")


def counts(data: MovieLens) -> Counter[int]:
    """Ratings per user position, counted from the rating list itself."""
    return Counter(data.user.tolist())


def section(**kw: object) -> ColdStartTask:
    return ColdStartTask.model_validate({"family": "movielens", **kw})


# ---- the split ----------------------------------------------------------------------------


def test_the_folds_partition_the_eligible_users(data: MovieLens) -> None:
    n = counts(data)
    eligible = {u for u, c in n.items() if 13 <= c <= 100}
    # the synthetic data have users below and above the range: they are never in a split
    assert any(c < 13 for c in n.values()) and any(c > 100 for c in n.values())
    assert len(eligible) == 60
    partitions = []
    for seed in (0, 1):
        tested: Counter[int] = Counter()
        validated: Counter[int] = Counter()
        for fold in range(5):
            s = cold_start_split(data, fold=fold, seed=seed)
            train, val, test = (set(t.tolist()) for t in (s.train_users, s.val_users, s.test_users))
            assert len(train) == len(s.train_users)  # no user twice
            assert not (train & val) and not (train & test) and not (val & test)
            assert train | val | test == eligible
            assert len(test) == len(val) == 12 and len(train) == 36
            assert s.known_items.all()  # user-cold: every item is known
            # training rows are exactly the training users' ratings
            assert set(data.user[s.train_rows].tolist()) == train
            assert len(s.train_rows) == sum(n[u] for u in train)
            tested.update(test)
            validated.update(val)
            again = cold_start_split(data, fold=fold, seed=seed)  # deterministic
            assert torch.equal(again.test_users, s.test_users)
            assert torch.equal(again.train_rows, s.train_rows)
        assert set(tested) == eligible and set(tested.values()) == {1}  # each tested once
        assert set(validated) == eligible and set(validated.values()) == {1}
        partitions.append(cold_start_split(data, fold=0, seed=seed).test_users.tolist())
    assert partitions[0] != partitions[1]  # the seed reshuffles


def test_other_users_join_the_pooled_training_ratings_only(data: MovieLens) -> None:
    n = counts(data)
    others = {u for u, c in n.items() if not 13 <= c <= 100}
    plain = cold_start_split(data, fold=1, seed=0)
    more = cold_start_split(data, fold=1, seed=0, other_users=True)
    # the same users train, validate and test; the others' ratings are added to the pool
    for a, b in zip(
        (plain.train_users, plain.val_users, plain.test_users),
        (more.train_users, more.val_users, more.test_users),
        strict=True,
    ):
        assert torch.equal(a, b)
    pooled = set(data.user[more.train_rows].tolist())
    assert pooled == set(plain.train_users.tolist()) | others
    assert set(data.user[plain.train_rows].tolist()) == set(plain.train_users.tolist())
    assert len(more.train_rows) == len(plain.train_rows) + sum(n[u] for u in others)
    assert not pooled & (set(more.val_users.tolist()) | set(more.test_users.tolist()))
    # ... but they are no meta-training task
    roles = section(other_users=True).roles(data, more)
    assert set(roles["train"].users) == set(plain.train_users.tolist())


def test_other_users_off_keeps_the_fingerprint_of_runs_made_before_the_option() -> None:
    cfg = load_config(CONFIG, ["task.root=/somewhere"])
    stored = cfg.model_dump(mode="json")
    del stored["task"]["other_users"]
    assert parse_config(stored, legacy=True).fingerprint() == cfg.fingerprint()
    on = load_config(CONFIG, ["task.other_users=true"])
    assert on.fingerprint() != cfg.fingerprint()


def test_the_split_bounds_are_the_configured_ones(data: MovieLens) -> None:
    n = counts(data)
    s = [cold_start_split(data, fold=f, min_ratings=25, max_ratings=35) for f in range(5)]
    users = set().union(*(set(x.test_users.tolist()) for x in s))
    assert users == {u for u, c in n.items() if 25 <= c <= 35}
    with pytest.raises(ConfigError, match="too few for 5 folds"):
        cold_start_split(data, min_ratings=101, max_ratings=104)
    with pytest.raises(ConfigError, match=r"task\.fold 5 is not one of the 5 folds"):
        cold_start_split(data, fold=5)


@pytest.mark.parametrize("scenario", ["item_cold", "user_item_cold"])
def test_item_cold_scenarios_hold_items_out_of_training(data: MovieLens, scenario: str) -> None:
    held_out_folds = []
    for fold in range(5):
        s = cold_start_split(data, scenario, fold=fold)  # type: ignore[arg-type]
        held = ~s.known_items
        held_out_folds.append(set(torch.nonzero(held).flatten().tolist()))
        assert 0 < int(held.sum()) < data.num_items
        assert s.known_items[data.item[s.train_rows]].all()  # no held-out item is trained on
        trainers = set(data.user[s.train_rows].tolist())
        everyone = {*s.train_users.tolist(), *s.val_users.tolist(), *s.test_users.tolist()}
        if scenario == "item_cold":  # known users: every eligible user's known-item ratings
            assert trainers == everyone
        else:  # new users and new items: the training users' known-item ratings only
            assert trainers == set(s.train_users.tolist())
        want = [i for i in range(data.num_ratings) if s.known_items[data.item[i]]]
        want = [i for i in want if int(data.user[i]) in trainers]
        assert s.train_rows.tolist() == want
        # the tasks: training rows all known (an id), test rows all held out (id 0, unknown)
        sec = section(scenario=scenario, fold=fold, queries=2)
        roles = sec.roles(data, s)
        for t in roles["train"].fixed_tasks(0)[0]:
            assert (t.support_x[:, 0] > 0).all() and (t.query_x[:, 0] > 0).all()
        for role in ("val", "test"):
            tasks, users = roles[role].fixed_tasks(0)
            assert tasks
            for t, u in zip(tasks, users, strict=True):
                assert (t.support_x[:, 0] == 0).all() and (t.query_x[:, 0] == 0).all()
                mine = int((held[data.item] & (data.user == u)).sum())
                assert t.shots + len(t.query_x) == mine  # exactly the user's held-out ratings
            # users without queries + 1 held-out ratings are dropped, and counted
            role_users = (s.val_users if role == "val" else s.test_users).tolist()
            have = [u for u in role_users if int((held[data.item] & (data.user == u)).sum()) >= 3]
            assert users == have and roles[role].dropped == len(role_users) - len(have)
    assert set().union(*held_out_folds) == set(range(data.num_items))  # the item folds cover
    assert sum(len(h) for h in held_out_folds) == data.num_items  # and do not overlap


def test_user_cold_tasks_hold_each_users_every_rating(data: MovieLens) -> None:
    n = counts(data)
    s = cold_start_split(data)
    roles = section().roles(data, s)
    assert len(roles["train"]) == 36 and roles["test"].dropped == 0
    tasks, users = roles["test"].fixed_tasks(3)
    assert sorted(users) == sorted(s.test_users.tolist())
    for t, u in zip(tasks, users, strict=True):
        assert t.shots + len(t.query_x) == n[u] and len(t.query_x) == 10
        assert t.params["user"] == float(data.user_ids[u])
        # the rows are the user's ratings: item ids, ratings and user features as encoded
        ids = data.item_ids[data.item[data.user == u]].tolist()
        assert sorted(torch.cat([t.support_x[:, 0], t.query_x[:, 0]]).tolist()) == sorted(ids)
        assert (t.support_x[:, 2:6] == t.support_x[0, 2:6]).all()  # one user's features
        by_item = {
            int(data.item_ids[data.item[i]]): float(data.rating[i])
            for i in torch.nonzero(data.user == u).flatten().tolist()
        }
        for x, y in ((t.support_x, t.support_y), (t.query_x, t.query_y)):
            assert [by_item[int(i)] for i in x[:, 0]] == y.flatten().tolist()
        assert t.support_x.dtype == torch.int64 and t.support_y.dtype == torch.float32
        assert t.support_x.shape[1] == len(feature_sizes("100k")) == len(COLUMNS) + 19
        assert (t.support_x < torch.tensor(feature_sizes("100k"))).all()


def test_encode_ratings_columns(data: MovieLens) -> None:
    rows = torch.arange(data.num_ratings)
    x = encode_ratings(data, rows)
    assert torch.equal(x[:, 0], data.item_ids[data.item])
    year = data.year[data.item]
    assert torch.equal(x[:, 1], torch.where(year > 0, year - 1900, 0))
    assert (x[year == 0, 1] == 0).all() and (year == 0).any()
    assert torch.equal(x[:, 2], data.gender[data.user])
    assert torch.equal(x[:, 5], data.zip_prefix[data.user])
    assert torch.equal(x[:, 6:].bool(), data.genres[data.item])
    known = torch.zeros(data.num_items, dtype=torch.bool)
    known[::2] = True
    cold = encode_ratings(data, rows, known)
    assert torch.equal(cold[:, 0], torch.where(known[data.item], x[:, 0], 0))
    assert torch.equal(cold[:, 1:], x[:, 1:])


# ---- fixed test tasks ---------------------------------------------------------------------


def test_fixed_tasks_are_deterministic_and_nested(data: MovieLens) -> None:
    n = counts(data)
    test = section().roles(data, cold_start_split(data))["test"]
    sizes: dict[int | None, tuple[list[Task], list[int]]] = {
        k: test.fixed_tasks(11, k) for k in (5, 10, 20, None)
    }
    every = sizes[None][1]
    assert len(every) == len(test)
    for k in (5, 10, 20):
        tasks, users = sizes[k]
        # a user with fewer than k ratings besides the 10 queries is left out, never padded
        assert users == [u for u in every if n[u] - 10 >= k]
        for t, u in zip(tasks, users, strict=True):
            full = sizes[None][0][every.index(u)]
            assert t.shots == k
            assert torch.equal(t.query_x, full.query_x) and torch.equal(t.query_y, full.query_y)
            assert torch.equal(t.support_x, full.support_x[:k])  # nested support sets
            assert torch.equal(t.support_y, full.support_y[:k])
    assert len(sizes[20][1]) < len(every)  # some users have too few for 20: the test bites
    assert len(sizes[5][1]) == len(every)
    # deterministic; another seed draws other query sets
    again = test.fixed_tasks(11, 10)[0]
    assert all(torch.equal(a.query_x, b.query_x) for a, b in zip(again, sizes[10][0], strict=True))
    other = test.fixed_tasks(12, 10)[0]
    assert any(not torch.equal(a.query_x, b.query_x) for a, b in zip(other, again, strict=True))


def test_query_latest_takes_each_users_newest_ratings(data: MovieLens) -> None:
    when = {
        (int(data.user_ids[data.user[i]]), int(data.item_ids[data.item[i]])): int(data.timestamp[i])
        for i in range(data.num_ratings)
    }
    test = section(query="latest").roles(data, cold_start_split(data))["test"]
    for seed in (0, 5):
        tasks, _ = test.fixed_tasks(seed, None)
        for t in tasks:
            uid = int(t.params["user"])
            q = sorted(when[uid, int(i)] for i in t.query_x[:, 0])
            s = [when[uid, int(i)] for i in t.support_x[:, 0]]
            mine = sorted(v for (u, _), v in when.items() if u == uid)
            assert q == mine[-10:]  # the ten newest are the queries
            assert max(s) < min(q)  # all of the support came before
        if seed == 0:
            first = tasks
    # the time order does not depend on the seed
    assert all(torch.equal(a.support_x, b.support_x) for a, b in zip(first, tasks, strict=True))
    five = test.fixed_tasks(0, 5)[0]
    assert all(len(t.support_x) == 5 for t in five)


def test_sample_draws_ragged_users_with_the_minimum_support(data: MovieLens) -> None:
    train = section().roles(data, cold_start_split(data))["train"]
    g = torch.Generator().manual_seed(0)
    full = train.sample(20, g)
    assert len({t.shots for t in full}) > 1 and all(len(t.query_x) == 10 for t in full)
    small = train.sample(40, g, min_support=5)
    assert min(t.shots for t in small) >= 5 and len({t.shots for t in small}) > 3
    with pytest.raises(TaskShapeError, match=r"no user has 11 or more"):
        UserTasks(data, cold_start_split(data).test_users, torch.arange(0), torch.ones(1).bool())


@pytest.mark.parametrize("min_support", [None, 5])
def test_sample_batch_is_the_padded_sample(data: MovieLens, min_support: int | None) -> None:
    train = section().roles(data, cold_start_split(data))["train"]
    tasks = train.sample(16, torch.Generator().manual_seed(3), min_support)
    batch = train.sample_batch(16, torch.Generator().manual_seed(3), min_support)
    expected = pad_tasks(tasks)
    for a, b in zip(batch.tensors(), expected.tensors(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(-1.0), b.nan_to_num(-1.0))
    assert batch.support_y.isnan().any()  # ragged: some rows are padding
    assert [dict(p) for p in batch.params] == [dict(p) for p in expected.params]


def test_the_section_refuses_ranges_that_cannot_work() -> None:
    with pytest.raises(ValueError, match=r"min_ratings \(10\) must exceed queries \(10\)"):
        section(min_ratings=10)
    with pytest.raises(ValueError, match="fold 5 is not one of the 5 folds"):
        section(fold=5)
    with pytest.raises(ValueError, match="larger than max_ratings"):
        section(min_ratings=50, max_ratings=40)


# ---- padded batches -------------------------------------------------------------------------


def ragged(data: MovieLens, count: int = 6) -> list[Task]:
    """Test users' fixed tasks, ragged in support size; two of them with fewer queries too."""
    tasks = section().roles(data, cold_start_split(data))["test"].fixed_tasks(0)[0][:count]
    short = [
        Task(t.support_x, t.support_y, t.query_x[:6], t.query_y[:6], t.params) for t in tasks[:2]
    ]
    return short + tasks[2:]


def test_pad_tasks_pads_rows_with_zeros_and_targets_with_nan(data: MovieLens) -> None:
    tasks = ragged(data)
    assert len({t.shots for t in tasks}) > 2
    batch = pad_tasks(tasks)
    s, q = max(t.shots for t in tasks), max(len(t.query_x) for t in tasks)
    assert batch.support_x.shape == (len(tasks), s, tasks[0].support_x.shape[1])
    assert batch.query_y.shape == (len(tasks), q, 1) and q == 10
    for i, t in enumerate(tasks):
        for x, y, (bx, by) in (
            (t.support_x, t.support_y, (batch.support_x[i], batch.support_y[i])),
            (t.query_x, t.query_y, (batch.query_x[i], batch.query_y[i])),
        ):
            k = len(x)
            assert torch.equal(bx[:k], x) and torch.equal(by[:k], y)
            assert (bx[k:] == 0).all() and torch.isnan(by[k:]).all()
            assert not torch.isnan(by[:k]).any()
    assert [p["user"] for p in batch.params] == [t.params["user"] for t in tasks]
    with pytest.raises(TaskShapeError, match="at least one task"):
        pad_tasks([])


def test_masked_mse_of_a_padded_task_is_its_own_mse(data: MovieLens) -> None:
    tasks = ragged(data)
    batch = pad_tasks(tasks)
    masked = loss_function("masked_mse")
    g = torch.Generator().manual_seed(0)
    pred = 3 + torch.randn(batch.support_y.shape, generator=g, dtype=torch.float64)
    pred.requires_grad_(True)
    y = batch.support_y.double()
    per_task = torch.vmap(masked)(pred, y)
    want = torch.stack(
        [F.mse_loss(pred[i, : t.shots], t.support_y.double()) for i, t in enumerate(tasks)]
    )
    assert torch.allclose(per_task, want, rtol=1e-12, atol=0)
    assert torch.allclose(per_task.mean(), want.mean(), rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(per_task.mean(), pred)
    assert torch.isfinite(grad).all()  # NaN never reaches the gradient
    for i, t in enumerate(tasks):
        assert (grad[i, t.shots :] == 0).all() and (grad[i, : t.shots] != 0).all()
    # on unpadded targets it is the plain MSE
    t = tasks[0]
    plain = F.mse_loss(pred[0, : t.shots], t.support_y.double())
    assert torch.equal(masked(pred[0, : t.shots], t.support_y.double()), plain)


@pytest.mark.parametrize("batching", ["vmap", "loop"])
@pytest.mark.parametrize("adapt", [None, ["decision."]])
def test_maml_on_a_padded_batch_is_the_mean_over_users(
    data: MovieLens, batching: str, adapt: list[str] | None
) -> None:
    sec = section()
    torch.manual_seed(0)
    model = MeLU(sec.vocabulary(), sec.multi_hot(), dim=4, hidden=[8]).double()
    learner = MAML(model, "masked_mse", inner_steps=2, inner_lr=0.3, batching=batching)  # type: ignore[arg-type]
    if adapt:
        learner.adapt_only(adapt)
    tasks = [t.to("cpu", torch.float64) for t in ragged(data, 5)]
    padded = learner.meta_gradients(pad_tasks(tasks))
    alone = [learner.meta_gradients(stack_tasks([t])) for t in tasks]
    assert torch.allclose(padded.loss, torch.stack([a.loss for a in alone]).mean(), rtol=1e-10)
    assert padded.grads.keys() == alone[0].grads.keys()
    for k, g in padded.grads.items():
        mean = torch.stack([a.grads[k] for a in alone]).mean(0)
        assert torch.allclose(g, mean, rtol=1e-8, atol=1e-12), k
    assert all(torch.isfinite(g).all() for g in padded.grads.values())
    moved = [k for k, g in padded.grads.items() if g.abs().sum() > 0]
    assert "model.decision.0.weight" in moved and "model.item_bias.weight" in moved


# ---- the real MovieLens 100K ----------------------------------------------------------------


@pytest.mark.skipif(
    not (REAL_100K / "u.data").is_file(), reason=f"no MovieLens 100K at {REAL_100K}"
)
def test_real_100k_split_and_the_user_bias_baseline(tmp_path: Path) -> None:
    cfg = load_config(CONFIG, [f"task.root={REAL_100K}", f"task.cache_dir={tmp_path}"])
    sec = cfg.task
    assert isinstance(sec, ColdStartTask)
    data = sec.load()
    n = torch.bincount(data.user, minlength=data.num_users)
    assert int(((n >= 13) & (n <= 100)).sum()) == 582  # a fact of the data
    diffs_a: list[float] = []
    diffs_b: list[float] = []
    tested: list[int] = []
    for fold in range(sec.folds):
        part = sec.model_copy(update={"fold": fold})
        split = part.split(data)
        assert len(split.test_users) in (116, 117)
        tested += split.test_users.tolist()
        rows = split.train_rows
        x = encode_ratings(data, rows, split.known_items)
        y, users = data.rating[rows][:, None], data.user[rows]
        tasks, _ = part.roles(data, split)["test"].fixed_tasks(cfg.eval.seed, None)
        bias = ItemUserBias(item_damping=5, user_damping=5).fit(x, y, users)
        mean = ItemMean(damping=5).fit(x, y, users)
        diffs_a += [d["mae"] for d in evaluate_users(bias, tasks, ks=())]
        diffs_b += [d["mae"] for d in evaluate_users(mean, tasks, ks=())]
    assert len(tested) == len(set(tested)) == 582
    d = paired_difference(diffs_a, diffs_b)
    assert d.n == 582 and d.mean < 0 and d.excludes_zero, str(d)  # the user bias pays
