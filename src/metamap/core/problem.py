"""The problem protocol: what differs between kinds of tasks, so the trainer does not have to.

A *problem* owns, for one kind of task:

* how a batch of tasks is drawn (from the trainer's explicit ``torch.Generator``, so a resumed
  run draws the same ones);
* how one outer update is computed: :meth:`Problem.meta_step` returns a
  :class:`~metamap.core.MetaStep` whose gradients an optimizer applies, or (``applied=True``)
  one that has already changed the parameters itself — an outer update that is not an optimizer
  step, such as TRPO's constrained step;
* how validation and evaluation score, with which :attr:`~Problem.metric`, and whether higher is
  better.

The trainer keeps only the loop, checkpoints, resume, schedules, logging and progress.

Today's kinds (:mod:`metamap.train.problems`): regression families, N-way K-shot image
episodes, Meta-Dataset's variable-way episodes, and supervised pre-training. The protocol is
written so that the next two kinds fit without touching the trainer:

* **Users as tasks** (cold-start recommendation). A task's ``support_x`` holds int64 feature
  indices (a user and the items they rated, with side features) and ``support_y`` the ratings;
  users have different numbers of ratings, so ``meta_step`` draws a list of
  :class:`~metamap.core.Task` of different lengths and averages per-task meta-gradients
  (:func:`~metamap.learners.ragged_meta_gradients`), with no padding entering a loss; the metric
  is MAE or RMSE (lower is better) and evaluation adds ranking metrics.
* **Environments as tasks** (meta-reinforcement learning). A task is an environment's
  parameters; its support data are rollouts of the current policy, and its *query* data are
  rollouts of the *adapted* policy, so they exist only inside ``meta_step``, which samples them
  after adapting. The outer update may be TRPO's (conjugate gradient and a line search on the
  meta-objective), which ``meta_step`` performs itself and reports with ``applied=True``; the
  metric is the mean return after adaptation (higher is better).

``tests/train/test_problems.py`` holds a small problem of each of those two shapes (a real one:
toy users with variable-length integer features, and a bandit family whose query rewards come
from the adapted policy), trained by the unchanged :class:`~metamap.train.Trainer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from metamap.core.learner import Learner, MetaStep

__all__ = ["Problem"]


class Problem(Protocol):
    """One kind of task, as the trainer, the evaluation and the CLI see it."""

    metric: str
    """What validation and evaluation report: ``"accuracy"``, ``"mse"``, ``"return"``, ..."""
    higher_is_better: bool

    def prepare(self) -> None:
        """Load what drawing tasks and validating need, raising any mistake in the config or
        the data now (the trainer calls it before it touches the run folder); building a
        problem does no I/O."""
        ...

    def meta_step(self, learner: Learner, generator: torch.Generator) -> MetaStep:
        """Draw a batch of tasks from ``generator`` and compute one outer update of
        ``learner``: its meta-gradients, or the update itself (``applied=True``)."""
        ...

    def validate(self, learner: Learner) -> float:
        """The mean :attr:`metric` on the fixed validation tasks (after the trained number of
        inner steps)."""
        ...

    def evaluate(self, learner: Learner, steps: Sequence[int] | None = None) -> dict[str, Any]:
        """Scores on the fixed test tasks, as JSON-ready values (``metamap eval``): under
        ``"scores"``, ``{label: {"<inner steps>": {"mean", "ci95", "n", "nonfinite",
        "values"}}}``, each task's score in ``values``. ``steps``: the inner-step counts to
        score after (default: the run's own, as ``metamap eval`` reports them); ``metamap
        explain`` asks for a longer adaptation curve."""
        ...
