"""Users as tasks: cold-start recommendation on MovieLens (MeLU's protocol).

A new user rates a few items (the support set D^tr) and the system must predict their other
ratings (the query set D^ts): a meta-learner maps those few ratings to a personalised model
(Lee, Im, Jang, Cho & Chung, "MeLU: Meta-Learned User Preference Estimator for Cold-Start
Recommendation", KDD 2019, §3-4).

**Rows.** One rated item is one row of int64 categorical features, :data:`COLUMNS`: the item id
(``0`` for an item the model never saw in training: a cold item), its release year (offset from
1900, ``0`` unknown), the user's gender, age group, occupation and zip-code prefix (``0``
unknown), then one 0/1 flag per genre. A task holds ``support_x: (S, F)`` int64,
``support_y: (S, 1)`` float32 stars, ``query_x: (Q, F)``, ``query_y: (Q, 1)``; users rate
different numbers of items, so ``S`` differs between tasks: a batch is padded with NaN
targets that the ``masked_mse`` loss leaves out (:func:`pad_tasks`).

**Split** (:func:`cold_start_split`). Users with ``min_ratings``-``max_ratings`` ratings (13-100,
as in MeLU) are shuffled with ``split_seed`` and cut into ``folds`` folds: fold ``fold`` is
tested, the next one validates, the rest train, so 5 folds × 3 seeds give every user a turn as a
test user under three shuffles. Items are cut into folds the same way; the item-cold scenarios
hold fold ``fold`` of the items out of training (MeLU's "new items"):

* ``user_cold`` — new users, known items: train on the training users' ratings, test on the
  test users' ratings;
* ``item_cold`` — known users, new items: train on every user's ratings of the known items, test
  on the test users' ratings of the held-out items;
* ``user_item_cold`` — new users and new items: train on the training users' ratings of known
  items, test on the test users' ratings of held-out items.

**Test tasks** (:meth:`UserTasks.fixed_tasks`). Each user's ratings are shuffled once by a
generator seeded from the split seed and the user (or ordered by time, ``query: latest``);
the query set is ``queries`` of them (10), and the support set is the first ``S`` of the rest, so
support sizes 5, 10, 20 and "all the rest" see the same query items with nested support sets. A
user with fewer other ratings than ``S`` is left out of that support size (the count is
reported), never padded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator
from torch import Tensor

from metamap.data.movielens import MAX_ITEM_ID, MovieLens, load_movielens
from metamap.errors import ConfigError, TaskShapeError
from metamap.tasks.distribution import make_generator
from metamap.tasks.registry import TaskLoss, TaskSection, register_task
from metamap.tasks.task import Task, TaskBatch, pad_tasks

__all__ = [
    "COLUMNS",
    "ColdStartSplit",
    "ColdStartTask",
    "Scenario",
    "UserTasks",
    "cold_start_split",
    "encode_ratings",
    "feature_sizes",
    "pad_tasks",
]

Scenario = Literal["user_cold", "item_cold", "user_item_cold"]
COLUMNS = ("item", "year", "gender", "age", "occupation", "zip")
"""The categorical columns of a rating row, before one 0/1 column per genre."""
YEARS = 111
"""Release years 1901-2010 as 1-110 (offset from 1900), 0 unknown."""
GENRES = {"100k": 19, "1m": 18}


def feature_sizes(variant: str) -> tuple[int, ...]:
    """How many values each column of a ``variant`` row takes (item ids 0..max, years, gender,
    age groups, occupations, zip prefixes, then 2 for each genre flag)."""
    return (MAX_ITEM_ID[variant] + 1, YEARS, 3, 8, 22, 11) + (2,) * GENRES[variant]


def encode_ratings(data: MovieLens, rows: Tensor, known_items: Tensor | None = None) -> Tensor:
    """Rows ``(N, F)`` int64 for the ratings at indices ``rows``; an item outside
    ``known_items`` (a bool mask over item positions) gets id 0."""
    user, item = data.user[rows], data.item[rows]
    return encode_items(data, item, user, known_items)


def encode_items(
    data: MovieLens,
    item: Tensor,
    user: Tensor | None,
    known_items: Tensor | None = None,
    demographics: Tensor | None = None,
) -> Tensor:
    """Rows for item positions ``item: (N,)`` and user positions ``user: (N,)`` — or, for a user
    not in the data (``user=None``: a new user of :mod:`metamap.recommend`), the codes
    ``demographics: (4,)`` of gender, age group, occupation and zip prefix (default: all 0,
    unknown)."""
    ids = data.item_ids[item]
    if known_items is not None:
        ids = torch.where(known_items[item], ids, torch.zeros_like(ids))
    year = torch.where(data.year[item] > 0, (data.year[item] - 1900).clamp(1, YEARS - 1), 0)
    if user is not None:
        u = torch.stack([data.gender, data.age, data.occupation, data.zip_prefix], 1)[user]
    elif demographics is not None:
        u = demographics.to(torch.long).reshape(1, 4).expand(len(item), 4)
    else:
        u = torch.zeros(len(item), 4, dtype=torch.long)
    return torch.cat([ids[:, None], year[:, None], u, data.genres[item].long()], 1)


@dataclass(frozen=True)
class ColdStartSplit:
    """Which users train, validate and test, which items are known to training, and the
    rating indices each role's tasks are drawn from."""

    train_users: Tensor
    val_users: Tensor
    test_users: Tensor
    known_items: Tensor
    """``(I,)`` bool: items whose ratings training may see."""
    train_rows: Tensor
    """Indices of the ratings training sees (the pooled baselines fit on exactly these)."""
    scenario: str


def _folds(n: int, folds: int, g: torch.Generator) -> list[Tensor]:
    order = torch.randperm(n, generator=g)
    return [order[i::folds].sort().values for i in range(folds)]


def cold_start_split(
    data: MovieLens,
    scenario: Scenario = "user_cold",
    fold: int = 0,
    folds: int = 5,
    seed: int = 0,
    min_ratings: int = 13,
    max_ratings: int = 100,
    other_users: bool = False,
) -> ColdStartSplit:
    """The ``fold``-th of ``folds`` user (and item) folds under shuffle ``seed``.

    ``other_users``: the ratings of users outside ``min_ratings``-``max_ratings`` (never
    validated or tested) join the pooled training ratings (``train_rows``: what baselines fit
    on, and a network's starting point); they are not meta-training tasks."""
    if not 0 <= fold < folds:
        raise ConfigError(f"task.fold {fold} is not one of the {folds} folds (0..{folds - 1})")
    counts = torch.bincount(data.user, minlength=data.num_users)
    eligible = torch.nonzero((counts >= min_ratings) & (counts <= max_ratings)).flatten()
    if len(eligible) < folds:
        raise ConfigError(
            f"only {len(eligible)} users have {min_ratings}-{max_ratings} ratings: too few for "
            f"{folds} folds; widen task.min_ratings/max_ratings"
        )
    g = make_generator(seed)
    user_folds = [eligible[f] for f in _folds(len(eligible), folds, g)]
    item_folds = _folds(data.num_items, folds, g)
    test, val = user_folds[fold], user_folds[(fold + 1) % folds]
    train = torch.cat([u for i, u in enumerate(user_folds) if i not in (fold, (fold + 1) % folds)])
    known = torch.ones(data.num_items, dtype=torch.bool)
    if scenario != "user_cold":
        known[item_folds[fold]] = False
    trainers = torch.zeros(data.num_users, dtype=torch.bool)
    trainers[eligible if scenario == "item_cold" else train] = True
    if other_users:
        trainers[(counts < min_ratings) | (counts > max_ratings)] = True
    rows = torch.nonzero(trainers[data.user] & known[data.item]).flatten()
    return ColdStartSplit(train.sort().values, val, test, known, rows, scenario)


class UserTasks:
    """One role's users (train, val or test) as tasks: their ratings in the scenario (known
    items for training, held-out items for the item-cold tests) encoded once.

    ``needed`` is the fewest ratings a user must have there to be a task (queries + 1 support
    rating); users with fewer are dropped and counted in :attr:`dropped`.
    """

    def __init__(
        self,
        data: MovieLens,
        users: Tensor,
        rows: Tensor,
        known_items: Tensor,
        queries: int = 10,
        query: Literal["random", "latest"] = "random",
    ) -> None:
        self.data, self.queries, self.query = data, queries, query
        in_role = torch.zeros(data.num_users, dtype=torch.bool)
        in_role[users] = True
        mine = rows[in_role[data.user[rows]]]  # only this role's users' ratings are encoded
        owner = data.user[mine]
        # each user's ratings, as indices into ``mine`` in their order there
        per_user = torch.split(
            torch.argsort(owner, stable=True),
            torch.bincount(owner, minlength=data.num_users).tolist(),
        )
        self.users: list[int] = []
        self._rows: list[Tensor] = []
        self.dropped = 0
        for u in users.tolist():
            if len(per_user[u]) < queries + 1:
                self.dropped += 1
                continue
            self.users.append(u)
            self._rows.append(per_user[u])
        if not self.users:
            raise TaskShapeError(
                f"no user has {queries + 1} or more ratings in this role and scenario; lower "
                "task.queries or use another scenario"
            )
        self.x = encode_ratings(data, mine, known_items)
        self.y = data.rating[mine][:, None]
        self.timestamp = data.timestamp[mine]

    def __len__(self) -> int:
        return len(self.users)

    def _cut(self, rows: Tensor, support: int | None) -> tuple[Tensor, Tensor]:
        """A user's ratings ``rows`` in order cut into the query rows (the first ``queries``)
        and the support rows (the first ``support`` of the others; ``None``: all)."""
        rest = rows[self.queries :]
        return rows[: self.queries], rest if support is None else rest[:support]

    def _params(self, i: int) -> dict[str, float]:
        """A task's ``params``: user ``i``'s id."""
        return {"user": float(self.data.user_ids[self.users[i]])}

    def _task(self, i: int, rows: Tensor, support: int | None) -> Task:
        """User ``i``'s task from their ratings ``rows`` in order (:meth:`_cut`)."""
        q, s = self._cut(rows, support)
        return Task(self.x[s], self.y[s], self.x[q], self.y[q], params=self._params(i))

    def _draw(
        self, n: int, generator: torch.Generator, min_support: int | None
    ) -> list[tuple[int, Tensor, int | None]]:
        """``n`` users drawn with replacement: each one's index, ratings in a fresh random
        order and support size (``None``: all but the queries)."""
        picks = torch.randint(len(self.users), (n,), generator=generator).tolist()
        out = []
        for p in picks:
            rows = self._rows[p]
            rows = rows[torch.randperm(len(rows), generator=generator)]
            size = None
            if min_support is not None:
                rest = len(rows) - self.queries
                lo = min(min_support, rest)
                size = int(torch.randint(lo, rest + 1, (), generator=generator))
            out.append((p, rows, size))
        return out

    def sample(
        self, n: int, generator: torch.Generator, min_support: int | None = None
    ) -> list[Task]:
        """``n`` users drawn with replacement, each with a fresh random query set of
        ``queries`` ratings and every other rating as support (ragged); with ``min_support``,
        a support size drawn uniformly from ``min_support`` to all the others, so that the
        model is trained for the small support sets it is tested on."""
        draws = self._draw(n, generator, min_support)
        return [self._task(p, rows, size) for p, rows, size in draws]

    def sample_batch(
        self, n: int, generator: torch.Generator, min_support: int | None = None
    ) -> TaskBatch:
        """The users :meth:`sample` draws (the same draws from ``generator``), as one padded
        batch, exactly :func:`pad_tasks` of them, gathered in one indexing per tensor instead
        of task by task (a training step's 32 users in 1.6 ms rather than 4.5 ms, profiled)."""
        draws = self._draw(n, generator, min_support)
        cuts = [self._cut(rows, size) for _, rows, size in draws]
        pad = len(self.x)  # the index of the padding row: zero features, a NaN rating
        lengths = torch.tensor([len(s) for _, s in cuts])
        index = torch.full((n, int(lengths.max())), pad, dtype=torch.long)
        index[torch.arange(index.shape[1]) < lengths[:, None]] = torch.cat([s for _, s in cuts])
        queries = torch.stack([q for q, _ in cuts])
        x, y = self._padded
        users = [self._params(p) for p, _, _ in draws]
        return TaskBatch(x[index], y[index], x[queries], y[queries], params=users)

    @functools.cached_property
    def _padded(self) -> tuple[Tensor, Tensor]:
        """The rows and ratings with one padding row after them (zeros, NaN)."""
        x = torch.cat([self.x, self.x.new_zeros((1, self.x.shape[1]))])
        y = torch.cat([self.y, self.y.new_full((1, 1), float("nan"))])
        return x, y

    def _ordered(self, i: int, seed: int) -> Tensor:
        rows = self._rows[i]
        if self.query == "latest":  # the newest ratings are the queries, the support before
            order = torch.argsort(-self.timestamp[rows].double(), stable=True)
            return rows[order]
        g = make_generator(seed * 100_003 + self.users[i])
        return rows[torch.randperm(len(rows), generator=g)]

    def fixed_tasks(self, seed: int, support: int | None = None) -> tuple[list[Task], list[int]]:
        """Each user's fixed test task (``support`` ratings; ``None``: all the others) and the
        users that have that many (those without are left out)."""
        tasks, users = [], []
        for i, u in enumerate(self.users):
            rows = self._ordered(i, seed)
            if support is not None and len(rows) - self.queries < support:
                continue
            tasks.append(self._task(i, rows, support))
            users.append(u)
        return tasks, users


@register_task
class ColdStartTask(TaskSection):
    """``task: {family: movielens}`` — each MovieLens user is a task (MeLU's protocol)."""

    family: Literal["movielens"] = "movielens"
    loss: ClassVar[TaskLoss] = "masked_mse"
    variant: Literal["100k", "1m"] = "100k"
    root: str | None = None
    """The extracted archive or the zip (else ``$METAMAP_MOVIELENS``); MovieLens's licence
    forbids redistribution: metamap ships no copy."""
    download: bool = False
    """Download the official GroupLens archive (checked against its published MD5)."""
    cache_dir: str | None = None
    scenario: Scenario = "user_cold"
    folds: PositiveInt = 5
    fold: NonNegativeInt = 0
    split_seed: NonNegativeInt = 0
    min_ratings: PositiveInt = 13
    max_ratings: PositiveInt = 100
    other_users: bool = False
    """Users outside ``min_ratings``-``max_ratings`` (100K: 361 users with more than 100
    ratings, most of the ratings): dropped, as MeLU does (``false``), or their ratings join the
    pooled training data — what the baselines fit, and the network's starting point — never as
    validation or test users (``true``)."""
    queries: PositiveInt = 10
    query: Literal["random", "latest"] = "random"
    """The query ratings: ``random`` (MeLU) or each user's ``latest`` (a time-ordered split)."""
    supports: list[PositiveInt | None] = Field(default_factory=lambda: [5, 10, 20, None])
    """Support sizes evaluated (``null``: all the user's other ratings)."""
    train_min_support: PositiveInt | None = None
    """Training users' support size: ``null``, all their other ratings (MeLU); ``k``, drawn
    uniformly from ``k`` to all of them for each user each time."""

    unfingerprinted: ClassVar[tuple[str, ...]] = ("root", "download", "cache_dir")

    @model_validator(mode="after")
    def _ranges(self) -> ColdStartTask:
        if self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} is not one of the {self.folds} folds")
        if self.min_ratings > self.max_ratings:
            raise ValueError("min_ratings is larger than max_ratings")
        if self.min_ratings <= self.queries:
            raise ValueError(
                f"min_ratings ({self.min_ratings}) must exceed queries ({self.queries}): a user "
                "needs at least one support rating"
            )
        return self

    def problem(self) -> str:
        return "cold_start"

    def vocabulary(self) -> tuple[int, ...]:
        return feature_sizes(self.variant)

    def multi_hot(self) -> tuple[int, ...]:
        return tuple(range(len(COLUMNS), len(self.vocabulary())))

    def describe(self) -> str:
        return f"MovieLens-{self.variant.upper()} {self.scenario.replace('_', '-')}"

    def load(self) -> MovieLens:
        return load_movielens(
            self.variant, self.root, download=self.download, cache_dir=self.cache_dir
        )

    def split(self, data: MovieLens) -> ColdStartSplit:
        return cold_start_split(
            data,
            self.scenario,
            self.fold,
            self.folds,
            self.split_seed,
            self.min_ratings,
            self.max_ratings,
            self.other_users,
        )

    def roles(self, data: MovieLens, split: ColdStartSplit) -> dict[str, UserTasks]:
        """The train, val and test users as :class:`UserTasks` in this scenario."""
        everything = torch.arange(data.num_ratings)
        held_out = ~split.known_items[data.item]
        eval_rows = everything if self.scenario == "user_cold" else everything[held_out]
        make = functools.partial(UserTasks, data, queries=self.queries, query=self.query)
        return {
            "train": make(
                split.train_users
                if self.scenario != "item_cold"
                else torch.cat([split.train_users, split.val_users, split.test_users]),
                split.train_rows,
                split.known_items,
            ),
            "val": make(split.val_users, eval_rows, split.known_items),
            "test": make(split.test_users, eval_rows, split.known_items),
        }
