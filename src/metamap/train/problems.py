"""Today's problems (:class:`~metamap.core.problem.Problem`): what differs between kinds of task.

* :class:`RegressionProblem` — a regression family (sinusoid, linear, polynomial): batches of
  equal-shaped tasks; validation on fixed tasks of the same family; metric MSE.
* :class:`EpisodeProblem` — N-way K-shot image episodes of the training classes, augmented;
  validation on fixed episodes of the validation classes; metric accuracy.
* :class:`MetaDatasetProblem` — Meta-Dataset's variable-way, variable-shot episodes (Triantafillou
  et al. 2020), which do not stack: per-task meta-gradients, averaged.
* :class:`PretrainProblem` — supervised pre-training on batches of labelled training images (the
  pre-train + fine-tune baseline); validated on episodes like the others.

Every problem draws from the generator it is handed, in the order the trainer drew in before
problems existed, so runs (and their resumes) replay bit for bit. Data are loaded on first use,
so building a problem does no I/O. Each is registered in :data:`PROBLEMS` under the name a
``task`` section's ``problem()`` gives (``pretrain`` is named by its learner);
:func:`build_problem` builds the one a config names, so a new kind of task brings its problem
with :func:`register_problem` and the trainer does not change;
evaluation (``metamap eval``) is the same for all four: :func:`~metamap.train.protocol.
evaluate_run` on the test split.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar, cast

import torch
from torch import Tensor

from metamap.core import MetaStep, TaskBatch
from metamap.core.learner import Learner
from metamap.core.problem import Problem
from metamap.errors import ConfigError
from metamap.learners import MetaLearner, ragged_meta_gradients
from metamap.models import Baseline
from metamap.tasks import EpisodeSampler, ImageAugment, MetaDatasetSampler, RegressionTasks
from metamap.train.build import (
    build_episodes,
    build_metadataset,
    build_regression,
    build_run_learner,
    dtype_of,
)
from metamap.train.config import RunConfig
from metamap.train.evaluate import evaluate_scores, summarize

__all__ = [
    "PROBLEMS",
    "VAL_CHUNK",
    "VAL_SEED_OFFSET",
    "EpisodeProblem",
    "MetaDatasetProblem",
    "PretrainProblem",
    "RegressionProblem",
    "RunProblem",
    "SupervisedLearner",
    "build_problem",
    "from_config",
    "register_problem",
]

VAL_SEED_OFFSET = 10_000
"""Validation tasks use ``seed + VAL_SEED_OFFSET``: disjoint from training and evaluation."""

VAL_CHUNK = 100
"""Validation episodes materialised at a time: 600 mini-ImageNet episodes at once would be 4 GB."""


class RunProblem(Problem, Protocol):
    """A problem built from a run config: :class:`~metamap.core.problem.Problem`, and the size
    of the supervised classifier it trains where it trains one (``None``: none)."""

    def base_classes(self) -> int | None: ...

    def baseline(self) -> Baseline | None:
        """A baseline predictor fitted on the training data that the network may start from
        (:class:`~metamap.models.Baseline`; ``None``: none). May load the training data."""
        ...

    def check_evaluation(self, learner: Learner) -> None:
        """Raise now if :meth:`evaluate` would fail (before a long training)."""
        ...


PROBLEMS: dict[str, Callable[[RunConfig], RunProblem]] = {}
"""Every registered problem, by the name a ``task`` section (``TaskSection.problem``) or a
learner (``LearnerSection.problem``) gives: a callable (a class) that builds it from the run
config without loading anything."""

P = TypeVar("P", bound=Callable[[RunConfig], RunProblem])


def register_problem(name: str) -> Callable[[P], P]:
    """Class decorator: register a problem under ``name`` (the same name twice is an error)."""

    def add(problem: P) -> P:
        if name in PROBLEMS and PROBLEMS[name] is not problem:
            raise TypeError(f"problem {name!r} is registered twice")
        PROBLEMS[name] = problem
        return problem

    return add


class SupervisedLearner(Learner, Protocol):
    """A learner trained on labelled batches: images ``(N, C, H, W)`` and classes ``(N,)``."""

    def supervised_gradients(self, x: Tensor, y: Tensor) -> MetaStep: ...


class _FixedTasksProblem:
    """What the problems share: the run's config, device and dtype, and validation on a fixed
    set of tasks (the subclass says which, ``VAL_CHUNK`` at a time) after the trained number
    of inner steps."""

    metric: str
    higher_is_better: bool

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.device = torch.device(cfg.train.device)
        self.dtype = dtype_of(cfg)
        a = cfg.data.augment
        self.augment = ImageAugment(a.padding, a.flip, a.jitter)

    def base_classes(self) -> int | None:
        """The size of a supervised classifier over the training classes, for learners that
        train one (``None``: this problem trains none)."""
        return None

    def baseline(self) -> Baseline | None:
        """None: image episodes and regression families start from the network's own init."""
        return None

    def check_evaluation(self, learner: Learner) -> None:
        from metamap.train.protocol import check_evaluation

        check_evaluation(self.cfg, learner)  # type: ignore[arg-type]

    def validation_chunks(self) -> Iterator[TaskBatch]:
        raise NotImplementedError

    def validate(self, learner: Learner) -> float:
        k = learner.inner_steps
        scores: list[float] = []
        for chunk in self.validation_chunks():
            scores += evaluate_scores(learner, chunk, [k])[k]  # type: ignore[arg-type]
        return summarize(scores).mean

    def evaluate(self, learner: Learner, steps: Sequence[int] | None = None) -> dict[str, Any]:
        from metamap.train.protocol import evaluate_run  # the test split, built on demand

        progress = self.cfg.train.progress
        return evaluate_run(self.cfg, learner, progress, steps)  # type: ignore[arg-type]


@register_problem("regression")
class RegressionProblem(_FixedTasksProblem):
    """Tasks of a regression family; validated on fixed tasks of the same family."""

    metric, higher_is_better = "mse", False

    @functools.cached_property
    def tasks(self) -> RegressionTasks:
        return build_regression(self.cfg)

    def prepare(self) -> None:
        self.tasks  # noqa: B018 - built (and checked) now
        self._validation_tasks  # noqa: B018

    def meta_step(self, learner: Learner, generator: torch.Generator) -> MetaStep:
        batch = self.tasks.sample(self.cfg.train.meta_batch, generator)
        return learner.meta_gradients(batch.to(self.device, self.dtype))

    def validation_chunks(self) -> Iterator[TaskBatch]:
        yield self._validation_tasks

    @functools.cached_property
    def _validation_tasks(self) -> TaskBatch:
        return self.tasks.fixed_tasks(self.cfg.train.val_tasks, self.cfg.seed + VAL_SEED_OFFSET)


@register_problem("episodes")
class EpisodeProblem(_FixedTasksProblem):
    """N-way K-shot episodes of the training classes, augmented as ``data.augment`` says.

    Validation: ``train.val_tasks`` fixed episodes of the validation classes, with the training
    shots and queries and the *test* ways (``eval.ways``, default ``task.ways``), so a run trained
    with more ways than the validation split has classes still validates, on the protocol it is
    tested on. Only the episodes' indices are kept between validations.
    """

    metric, higher_is_better = "accuracy", True

    @functools.cached_property
    def tasks(self) -> EpisodeSampler:
        return build_episodes(self.cfg, "train")

    def prepare(self) -> None:
        self.tasks  # noqa: B018 - the training split, loaded and checked now
        self._validation_plan  # noqa: B018 - the validation split and its fixed episodes

    def meta_step(self, learner: Learner, generator: torch.Generator) -> MetaStep:
        batch = self.tasks.sample(self.cfg.train.meta_batch, generator)
        batch = self.augment.batch(batch.to(self.device, self.dtype), generator)
        return learner.meta_gradients(batch)

    @functools.cached_property
    def _validation_plan(self) -> Callable[[int, int], TaskBatch]:
        cfg = self.cfg
        val = build_episodes(cfg, "val", ways=cfg.eval.ways or cfg.task.episodes().ways)
        plan = val.fixed_episode_indices(cfg.train.val_tasks, cfg.seed + VAL_SEED_OFFSET)
        return lambda start, stop: val.episodes_from_plan(plan, start, stop)

    def validation_chunks(self) -> Iterator[TaskBatch]:
        n = self.cfg.train.val_tasks
        for start in range(0, n, VAL_CHUNK):
            yield self._validation_plan(start, min(start + VAL_CHUNK, n))


@register_problem("metadataset")
class MetaDatasetProblem(EpisodeProblem):
    """Meta-Dataset's episodes for training (they differ in ways and shots, so the meta-gradient
    is the mean of per-episode ones); N-way K-shot validation, comparable between runs."""

    def prepare(self) -> None:
        self.sampler  # noqa: B018 - the training domains, loaded and checked now
        self._validation_plan  # noqa: B018

    @functools.cached_property
    def sampler(self) -> MetaDatasetSampler:
        return build_metadataset(self.cfg, "train")

    def meta_step(self, learner: Learner, generator: torch.Generator) -> MetaStep:
        episodes = self.sampler.sample(self.cfg.train.meta_batch, generator)
        tasks = [self.augment.task(e.to(self.device, self.dtype), generator) for e in episodes]
        return ragged_meta_gradients(learner, tasks)  # type: ignore[arg-type]


@register_problem("pretrain")
class PretrainProblem(EpisodeProblem):
    """Batches of ``train.batch_size`` training images labelled with their class among all
    training classes (rotations included); validated on episodes."""

    def base_classes(self) -> int:
        """The training classes (rotations included): loads the training split."""
        return self.tasks.num_classes

    def meta_step(self, learner: Learner, generator: torch.Generator) -> MetaStep:
        """One supervised step of a learner that names this problem (``learner.problem``), so
        has :class:`SupervisedLearner`'s ``supervised_gradients``."""
        x, y = self.tasks.sample_labelled(self.cfg.train.batch_size, generator)
        x = self.augment(x.to(self.device, self.dtype), generator)
        return cast(SupervisedLearner, learner).supervised_gradients(x, y.to(self.device))


def from_config(cfg: RunConfig) -> tuple[RunProblem, MetaLearner]:
    """The run's problem (prepared: its data loaded and checked) and learner (on the
    configured device and dtype)."""
    problem = build_problem(cfg)
    problem.prepare()
    return problem, build_run_learner(cfg, problem.base_classes(), baseline=problem.baseline())


def build_problem(cfg: RunConfig) -> RunProblem:
    """The registered problem that trains this run (nothing is loaded until it is used): the
    learner's own (``pretrain`` trains on labelled batches whatever the tasks), else the one
    its ``task`` section names."""
    name = cfg.learner.problem or cfg.task.problem()
    if name not in PROBLEMS:
        raise ConfigError(
            f"task.family {cfg.task.family!r} is trained by problem {name!r}, which is not "
            f"registered (registered: {', '.join(sorted(PROBLEMS))}); import the module that "
            "registers it before loading the config"
        )
    return PROBLEMS[name](cfg)
