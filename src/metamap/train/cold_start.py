"""Cold-start recommendation as a problem: each MovieLens user is a task (MeLU's protocol).

:class:`ColdStartProblem` draws ``train.meta_batch`` training users per outer step, each with a
fresh random query set of ``task.queries`` ratings and every other rating as support. Users rate
different numbers of items: the batch is padded with NaN targets (exactly
:func:`~metamap.core.pad_tasks` of the users, built in one gather by
:meth:`~metamap.tasks.users.UserTasks.sample_batch`) that the ``masked_mse`` loss leaves out, so
each user's loss is exactly its own MSE and the whole meta-batch runs as one vmapped call (6×
faster than a per-user loop here; padding 2.46× the rows, yet cheaper than 4 padded groups of
similar sizes, whose extra calls cost more than the padding they save: 0.156 against 0.127 s per
MAML step, measured).
Validation: MAE on the validation users' fixed tasks (support: all their other ratings) after
the trained number of inner steps; lower is better.

Evaluation (:func:`~metamap.recsys.metrics.evaluate_users`, the same for the meta-learners and
for every baseline of :mod:`metamap.recsys.baselines`): for each support size of
``task.supports``, each test user's fixed task is adapted to and their query ratings predicted;
MAE and RMSE (of the predictions clipped to the rating scale), nDCG@3 and nDCG@10 (of the
ranking by the predictions as made) per user
(:func:`~metamap.recsys.metrics.rating_metrics`), then mean ± 95% CI over users, with the
per-user values kept so that paired comparisons between methods can be made, and the number of
users whose adaptation diverged (a NaN or infinite prediction: the errors count an infinite
one as the scale's bound) beside each MAE (``"diverged"``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor
from tqdm import tqdm

from metamap.core import MetaStep, Task
from metamap.core.learner import Learner
from metamap.data.movielens import MovieLens
from metamap.errors import ConfigError
from metamap.models import Baseline
from metamap.progress import progress_bar
from metamap.recsys.baselines import ItemUserBias, MatrixFactorization
from metamap.recsys.metrics import evaluate_users
from metamap.tasks.users import (
    ColdStartSplit,
    ColdStartTask,
    UserTasks,
    encode_ratings,
)
from metamap.train.build import dtype_of
from metamap.train.config import RunConfig
from metamap.train.evaluate import summarize
from metamap.train.problems import VAL_SEED_OFFSET, register_problem

__all__ = ["FACTORS", "FACTOR_REG", "ITEM_DAMPING", "ColdStartProblem", "support_label"]

ITEM_DAMPING = 5.0
"""Ratings' worth of prior at the global mean in the item biases a network starts from."""
FACTORS, FACTOR_REG = 10, 5.0
"""The matrix factorisation whose item factors a network may start from (``model.item_factors``):
10 factors, ridge 5 (the values the benchmark's validation users chose for fold-in)."""


def support_label(support: int | None) -> str:
    """``"support 5"``, or ``"support all"`` for all the user's other ratings."""
    return f"support {'all' if support is None else support}"


@register_problem("cold_start")
class ColdStartProblem:
    """Users as tasks: a ``task: {family: movielens}`` run."""

    metric, higher_is_better = "mae", False

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.section = cast(ColdStartTask, cfg.task)  # the task section that names this problem
        self.device = torch.device(cfg.train.device)
        self.dtype = dtype_of(cfg)

    def base_classes(self) -> None:
        return None

    @functools.cached_property
    def data(self) -> MovieLens:
        return self.section.load()

    @functools.cached_property
    def split(self) -> ColdStartSplit:
        return self.section.split(self.data)

    @functools.cached_property
    def roles(self) -> dict[str, UserTasks]:
        return self.section.roles(self.data, self.split)

    def training_ratings(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every rating training may see, pooled: rows ``(R, F)``, ratings ``(R, 1)`` and each
        row's user ``(R,)`` — what the non-meta-learned baselines fit on (encoded once)."""
        return self._training_ratings

    @functools.cached_property
    def _training_ratings(self) -> tuple[Tensor, Tensor, Tensor]:
        rows = self.split.train_rows
        x = encode_ratings(self.data, rows, self.split.known_items)
        return x, self.data.rating[rows][:, None], self.data.user[rows]

    def baseline(self) -> Baseline:
        """What a network may start from (``model.warm_start``), fitted once on the training
        ratings: Koren's baseline predictor (μ and item biases damped by ``ITEM_DAMPING``) and
        the item factors of a :class:`~metamap.recsys.MatrixFactorization` (``FACTORS``,
        ``FACTOR_REG``, seeded by the run's seed)."""
        return self._baseline

    @functools.cached_property
    def _baseline(self) -> Baseline:
        x, y, users = self.training_ratings()
        fitted = ItemUserBias(item_damping=ITEM_DAMPING).fit(x, y, users)
        vocabulary = self.section.vocabulary()[0]
        offsets = torch.zeros(vocabulary)
        known = fitted.item_deviation
        assert known is not None and fitted.global_mean is not None
        n = min(len(known), len(offsets))
        offsets[:n] = known[:n].float()
        mf = MatrixFactorization(FACTORS, FACTOR_REG, iterations=10, seed=self.cfg.seed)
        q = mf.fit(x, y, users).item_factors
        assert q is not None
        factors = torch.zeros(vocabulary, FACTORS)
        factors[: min(len(q), vocabulary)] = q[:vocabulary].float()
        return Baseline(float(fitted.global_mean), offsets, factors)

    def check_evaluation(self, learner: Learner) -> None:
        """Scores one test user at each support size (a size no test user has fails here)."""
        for support in self.section.supports:
            tasks, _ = self.fixed_tasks("test", support)
            if not tasks:
                raise ConfigError(
                    f"no test user has {support} ratings besides the {self.section.queries} "
                    f"queries: remove {support} from task.supports"
                )
            evaluate_users(learner, tasks[:1], scale=self.data.scale)

    def prepare(self) -> None:
        self.roles  # noqa: B018 - the data loaded, split and checked now

    def meta_step(self, learner: Learner, generator: torch.Generator) -> MetaStep:
        train = self.roles["train"]
        n, least = self.cfg.train.meta_batch, self.section.train_min_support
        return learner.meta_gradients(
            train.sample_batch(n, generator, least).to(self.device, self.dtype)
        )

    def fixed_tasks(self, role: str, support: int | None) -> tuple[list[Task], list[int]]:
        """The fixed tasks of ``role``'s users (``val``: seeded apart from the test users')."""
        seed = self.cfg.eval.seed + (VAL_SEED_OFFSET if role == "val" else 0)
        tasks, users = self.roles[role].fixed_tasks(seed, support)
        return [t.to(self.device, self.dtype) for t in tasks], users

    @functools.cached_property
    def _validation(self) -> list[Task]:
        return self.fixed_tasks("val", None)[0]

    def validate(self, learner: Learner) -> float:
        scores = evaluate_users(learner, self._validation, scale=self.data.scale)
        return summarize([s["mae"] for s in scores]).mean

    def evaluate(self, learner: Learner, steps: Sequence[int] | None = None) -> dict[str, Any]:
        """Scores of ``learner`` on the test users at every support size of ``task.supports``,
        after each count of ``steps`` inner steps (default: 0 and the trained number)."""
        steps = sorted({0, learner.inner_steps} if steps is None else set(steps))
        results: dict[str, Any] = {
            "protocol": self.describe(),
            "metric": "mae",
            "tasks": len(self.roles["test"]),
            "seed": self.cfg.eval.seed,
            "scores": {},
            "ranking": {},
        }
        bar = progress_bar(
            total=len(self.section.supports) * len(steps),
            desc="evaluating",
            unit="pass",
            disable=not self.cfg.train.progress,
            leave=False,
        )
        with bar:
            for support in self.section.supports:
                label = support_label(support)
                scores, ranking = self._evaluate_support(learner, support, steps, bar)
                results["scores"][label], results["ranking"][label] = scores, ranking
        return results

    def _evaluate_support(
        self, learner: Learner, support: int | None, steps: list[int], bar: tqdm[Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every test user with ``support`` support ratings, scored after each count of
        ``steps`` (one ``bar`` update each): the MAE summary per count, and the ranking
        metrics after the most steps."""
        tasks, users = self.fixed_tasks("test", support)
        by_step: dict[str, Any] = {}
        for k in steps:
            bar.set_postfix_str(f"{support_label(support)}, {k} steps", refresh=False)
            per_user = evaluate_users(learner, tasks, scale=self.data.scale, steps=k)
            by_step[str(k)] = {
                **summarize([u["mae"] for u in per_user]).to_dict(),
                "diverged": int(sum(u["diverged"] for u in per_user)),
            }
            bar.update(1)
        ranking: dict[str, Any] = {
            m: summarize([u[m] for u in per_user]).to_dict()
            for m in per_user[0]
            if m != "diverged"  # a count beside each MAE, not a ranking metric
        }
        ranking["users"] = [int(self.data.user_ids[u]) for u in users]
        return by_step, ranking

    def describe(self) -> str:
        s, m, lr = self.section, self.cfg.model, self.cfg.learner
        return (
            f"{s.describe()}, fold {s.fold}/{s.folds}, split seed {s.split_seed}, "
            f"{s.queries} query ratings per user ({s.query}), users with {s.min_ratings}-"
            f"{s.max_ratings} ratings; {m.describe()}; learner {lr.name}"
        )
