"""What a meta-learner does on a task, in numbers that can be plotted.

* :func:`project_episode` — a 2-D PCA projection of an episode's embeddings with the class
  prototypes (mean support embeddings), as in the t-SNE / PCA figures of metric-learning papers.
* :func:`adaptation_profile` — for gradient-based learners: the query metric and loss after each
  number of inner steps (mean ± 95% CI over tasks) and the per-parameter size of the adaptation
  ``‖θ_k − θ_0‖`` (Raghu et al. 2020 use it to show that MAML's body barely moves: feature reuse).
* :func:`per_task_scores` — the distribution of query losses and metrics over tasks: the mean
  hides hard tasks.
* :func:`adaptation_gains` — for any kind of task (users, environments too), from a problem's
  evaluation: on how many test tasks adapting helped, and by how much.

Everything takes tensors (tasks, images) and returns plain arrays; :mod:`metamap.viz.explain`
draws them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from metamap.features.extractor import FeatureExtractor
from metamap.learners import MetaLearner
from metamap.learners.functional import loss_function, metric_function
from metamap.learners.protonet import class_means
from metamap.tasks import Task, TaskBatch
from metamap.train.evaluate import Summary, summarize

__all__ = [
    "AdaptationProfile",
    "Projection",
    "adaptation_gains",
    "adaptation_profile",
    "per_task_scores",
    "project_episode",
]


@dataclass(frozen=True)
class Projection:
    """2-D coordinates of support ``(S, 2)`` and query ``(Q, 2)`` embeddings and of the class
    prototypes ``(W, 2)``; ``explained`` is the variance ratio of the two components."""

    support: npt.NDArray[np.float64]
    support_y: npt.NDArray[np.int64]
    query: npt.NDArray[np.float64]
    query_y: npt.NDArray[np.int64]
    prototypes: npt.NDArray[np.float64]
    explained: tuple[float, float]


def project_episode(extractor: FeatureExtractor, task: Task) -> Projection:
    """PCA (fitted on the episode's support and query embeddings) of one classification task."""
    zs = extractor.embed(task.support_x, batch_size=len(task.support_x)).double()
    zq = extractor.embed(task.query_x, batch_size=len(task.query_x)).double()
    ys, yq = task.support_y.cpu(), task.query_y.cpu()
    ways = int(ys.max()) + 1
    protos = class_means(zs, F.one_hot(ys, ways).to(zs))
    z = torch.cat([zs, zq])
    mean = z.mean(0)
    _, s, v = torch.linalg.svd(z - mean, full_matrices=False)
    basis = v[:2].T  # (D, 2)
    var = s.pow(2)
    ratio = (var[:2] / var.sum()).tolist() if float(var.sum()) > 0 else [0.0, 0.0]
    ratio += [0.0] * (2 - len(ratio))

    def proj(a: Tensor) -> npt.NDArray[np.float64]:
        out = (a - mean) @ basis
        if out.shape[1] < 2:  # a 1-D feature space: pad the second axis
            out = torch.cat([out, torch.zeros(len(out), 2 - out.shape[1], dtype=out.dtype)], 1)
        arr: npt.NDArray[np.float64] = out.numpy()
        return arr

    return Projection(
        proj(zs), ys.numpy(), proj(zq), yq.numpy(), proj(protos), (ratio[0], ratio[1])
    )


@dataclass(frozen=True)
class AdaptationProfile:
    """Query metric and loss after each inner-step count, and ``‖θ_k − θ_0‖`` per parameter.

    ``delta_norms[name][i]`` is the mean over tasks of the adaptation's L2 norm for parameter
    ``name`` after ``steps[i]`` steps (zero for parameters the inner loop leaves alone, e.g. the
    body under ANIL).
    """

    steps: list[int]
    metric_name: str
    metric: list[Summary]
    loss: list[Summary]
    delta_norms: dict[str, list[float]]


def adaptation_profile(
    learner: MetaLearner, tasks: TaskBatch, steps: Sequence[int]
) -> AdaptationProfile:
    """Adapt to every task for ``max(steps)`` inner steps and measure along the way."""
    steps = sorted(set(int(k) for k in steps))
    p = next(learner.parameters())
    tasks = tasks.to(p.device, p.dtype)
    loss_fn, metric_fn = loss_function(learner.loss_name), metric_function(learner.loss_name)
    theta0 = {k: v.detach() for k, v in learner.model.named_parameters()}
    metric: dict[int, list[float]] = {k: [] for k in steps}
    loss: dict[int, list[float]] = {k: [] for k in steps}
    norms: dict[str, np.ndarray] = {k: np.zeros(len(steps)) for k in theta0}
    was_training = learner.training
    learner.eval()
    try:
        for task in tasks:
            states = learner.adapt_trace(task.support_x, task.support_y, steps)
            with torch.no_grad():
                for i, k in enumerate(steps):
                    pred = learner.predict(states[k], task.query_x)
                    metric[k].append(float(metric_fn(pred, task.query_y)))
                    loss[k].append(float(loss_fn(pred, task.query_y)))
                    for name, t0 in theta0.items():
                        norms[name][i] += float((states[k].params[name] - t0).norm())
    finally:
        learner.train(was_training)
    n = len(tasks)
    return AdaptationProfile(
        steps,
        "mse" if learner.loss_name == "mse" else "accuracy",
        [summarize(metric[k]) for k in steps],
        [summarize(loss[k]) for k in steps],
        {name: (v / n).tolist() for name, v in norms.items()},
    )


def per_task_scores(
    learner: MetaLearner, tasks: TaskBatch, steps: int | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Query loss and metric of each task ``(B,)``, ``(B,)`` after ``steps`` inner steps (the
    trained number by default; ignored by learners without inner steps)."""
    p = next(learner.parameters())
    tasks = tasks.to(p.device, p.dtype)
    loss_fn, metric_fn = loss_function(learner.loss_name), metric_function(learner.loss_name)
    k = learner.inner_steps if steps is None else steps
    losses, metrics = [], []
    was_training = learner.training
    learner.eval()
    try:
        for task in tasks:
            state = learner.adapt_trace(task.support_x, task.support_y, [k])[k]
            with torch.no_grad():
                pred = learner.predict(state, task.query_x)
                losses.append(float(loss_fn(pred, task.query_y)))
                metrics.append(float(metric_fn(pred, task.query_y)))
    finally:
        learner.train(was_training)
    return np.asarray(losses), np.asarray(metrics)


def adaptation_gains(
    scores: Mapping[str, Mapping[str, Mapping[str, Any]]], higher_is_better: bool
) -> dict[str, dict[str, Any]]:
    """Per label of an evaluation's ``scores`` (``{label: {"<steps>": {"values": [...]}}}``, as
    every problem's ``evaluate`` returns them): each test task's metric before adapting (0
    steps) against after the most steps scored. Returns ``{label: {"steps", "tasks",
    "improved", "worse", "gain"}}``: the counts of tasks whose metric got better or worse (a
    task that is not finite on either side counts as neither) and the mean change in the
    direction of better (positive: adapting helped). Labels without a 0-step score are left
    out."""
    gains: dict[str, dict[str, Any]] = {}
    for label, by_step in scores.items():
        steps = sorted(int(k) for k in by_step)
        if "0" not in by_step or len(steps) < 2:
            continue
        before = np.asarray(by_step["0"]["values"], dtype=np.float64)
        after = np.asarray(by_step[str(steps[-1])]["values"], dtype=np.float64)
        change = (after - before) * (1.0 if higher_is_better else -1.0)
        finite = np.isfinite(change)
        gains[label] = {
            "steps": steps[-1],
            "tasks": int(change.size),
            "improved": int((change[finite] > 0).sum()),
            "worse": int((change[finite] < 0).sum()),
            "gain": float(change[finite].mean()) if finite.any() else float("nan"),
        }
    return gains
