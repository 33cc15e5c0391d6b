"""The evaluation protocol of a run: fixed tasks per shot count, scores per inner-step count."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from metamap.data import OneShotRun
from metamap.errors import CheckpointError, ConfigError
from metamap.learners import MetaLearner
from metamap.models.batchnorm import use_batch_statistics
from metamap.progress import progress_bar
from metamap.tasks import TaskBatch
from metamap.train.build import build_metadataset, build_run_learner, build_tasks, describe
from metamap.train.checkpoint import check_run_state, load_checkpoint
from metamap.train.config import RunConfig, apply_overrides, parse_config
from metamap.train.evaluate import evaluate_scores, summarize

__all__ = [
    "check_evaluation",
    "evaluate_meta_dataset",
    "evaluate_run",
    "lake_one_shot_error",
    "learner_from_checkpoint",
]

_CHUNK = 100


def learner_from_checkpoint(
    path: str | Path, overrides: Sequence[str] = ()
) -> tuple[RunConfig, MetaLearner, dict[str, Any]]:
    """Rebuild the run's config and learner from a checkpoint and load its weights.

    ``overrides`` (``section.key=value``) change the stored config before the learner is built:
    ``train.device=cpu`` evaluates a GPU-trained checkpoint on a CPU-only machine, and
    ``eval.batch_norm=transductive`` scores an inductive network with each episode's own
    BatchNorm statistics (:func:`~metamap.models.batchnorm.use_batch_statistics`).
    """
    state = load_checkpoint(path)
    check_run_state(state, path)
    stored = state["config"]
    try:  # the overrides may be what makes an older checkpoint's config valid today
        cfg = parse_config(apply_overrides(stored, overrides), legacy=True)
    except ConfigError as e:
        try:
            parse_config(stored, legacy=True)
        except ConfigError:
            raise CheckpointError(f"checkpoint {str(path)!r} holds no usable config: {e}") from None
        raise  # a bad override is the caller's mistake: ConfigError, not CheckpointError
    weights = state["learner"]
    head = weights.get("classifier.weight")
    base = int(head.shape[0]) if isinstance(head, torch.Tensor) else None
    try:
        learner = build_run_learner(cfg, base, pretrained=False)  # the checkpoint's weights
    except ConfigError:
        raise
    except ValueError as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: {e}") from None
    try:
        learner.load_state_dict(state["learner"])
    except RuntimeError as e:
        why = _mismatch(learner.state_dict(), state["learner"]) or str(e).splitlines()[0]
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match the model its config describes: {why} "
            "(an override changed the task's inputs or outputs, or the network, that the "
            "weights were trained for?)"
        ) from None
    if cfg.eval.batch_norm == "transductive":
        use_batch_statistics(learner)
    return cfg, learner, state


def _mismatch(expected: dict[str, torch.Tensor], got: dict[str, Any]) -> str:
    """The first differences between the state a config builds and a checkpoint's, named:
    tensors of other shapes (e.g. a policy's input layer when the observations differ), then
    missing and unexpected entries."""
    shapes = [
        f"{k} is {tuple(v.shape)} in the checkpoint, {tuple(expected[k].shape)} here"
        for k, v in got.items()
        if k in expected and isinstance(v, torch.Tensor) and v.shape != expected[k].shape
    ]
    missing = [f"{k} is missing" for k in expected if k not in got]
    unexpected = [f"{k} is not in this model" for k in got if k not in expected]
    found = [*shapes, *missing, *unexpected]
    return "; ".join(found[:3]) + (f" (and {len(found) - 3} more)" if len(found) > 3 else "")


def _chunks(cfg: RunConfig, shots: int) -> Iterator[TaskBatch]:
    e = cfg.eval
    dist = build_tasks(cfg, "test", queries=e.queries, ways=e.ways, shots=shots)
    yield from dist.fixed_task_chunks(e.tasks, e.seed, _CHUNK, shots=shots)


def _bar(total: int, progress: bool) -> tqdm[Any]:
    return progress_bar(
        total=total, desc="evaluating", unit="task", disable=not progress, dynamic_ncols=True,
        leave=False,
    )  # fmt: skip


def evaluate_run(
    cfg: RunConfig,
    learner: MetaLearner,
    progress: bool = False,
    steps: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Scores on ``cfg.eval``'s fixed tasks: under ``"scores"``, ``{"<shots>-shot": {"<steps>":
    {"mean", "ci95", "n", "nonfinite", "values"}}}`` (``values``: each task's score, in task
    order, so that the interval can be recomputed), and ``"meta_dataset"``
    (:func:`evaluate_meta_dataset`) when ``eval.metadataset_tasks`` asks for it.

    ``progress`` shows a progress bar of the tasks scored (on stderr); ``steps`` replaces
    ``eval.steps`` (a learner without inner steps reports its one mapping under 0)."""
    e = cfg.eval
    results: dict[str, Any] = {
        "protocol": describe(cfg),
        "metric": "mse" if learner.loss_name == "mse" else "accuracy",
        "ways": e.ways or cfg.task.episodes().ways if cfg.task.images else None,
        "tasks": e.tasks,
        "queries": e.queries,
        "seed": e.seed,
        "scores": {},
    }
    steps = sorted(set(e.steps if steps is None else steps)) if learner.inner_steps else [0]
    with _bar(len(e.shots) * e.tasks + e.metadataset_tasks, progress) as bar:
        for shots in e.shots:
            bar.set_postfix_str(f"{shots}-shot", refresh=False)
            scores: dict[int, list[float]] = {k: [] for k in steps}
            for chunk in _chunks(cfg, shots):
                for k, values in evaluate_scores(learner, chunk, steps, bar.update).items():
                    scores[k] += values
            results["scores"][f"{shots}-shot"] = {
                str(k): summarize(v).to_dict() for k, v in scores.items()
            }
        if e.metadataset_tasks:
            bar.set_postfix_str("Meta-Dataset", refresh=False)
            results["meta_dataset"] = _meta_dataset(cfg, learner, bar.update)
    return results


def evaluate_meta_dataset(
    cfg: RunConfig, learner: MetaLearner, progress: bool = False
) -> dict[str, Any]:
    """Accuracy on ``eval.metadataset_tasks`` fixed Meta-Dataset episodes of the test split
    (:func:`~metamap.train.build.build_metadataset`), with the episodes' mean ways, support size
    and queries per class; with several domains also per domain (``by_domain``: Meta-Dataset
    reports each test dataset on its own). ``values`` holds each episode's accuracy, in episode
    order (and ``domains``, with several domains, each episode's domain index), so that every
    interval can be recomputed. Episodes are materialised 100 at a time; ``progress`` shows a
    progress bar (on stderr)."""
    with _bar(cfg.eval.metadataset_tasks, progress) as bar:
        return _meta_dataset(cfg, learner, bar.update)


def _meta_dataset(
    cfg: RunConfig, learner: MetaLearner, on_task: Callable[[], object]
) -> dict[str, Any]:
    e, t = cfg.eval, cfg.task.episodes()
    sampler = build_metadataset(cfg, "test")
    episodes = sampler.fixed_episodes(e.metadataset_tasks, e.seed)
    values: list[float] = []
    for start in range(0, len(episodes), _CHUNK):
        tasks = [sampler.task_from_episode(ep) for ep in episodes[start : start + _CHUNK]]
        values += evaluate_scores(learner, tasks, [0], on_task)[0]
    s = summarize(values)
    n = len(episodes)
    by_domain: list[dict[str, Any]] = []
    for d, data in enumerate(sampler.domains):
        mine = [v for v, ep in zip(values, episodes, strict=True) if ep.domain == d]
        m = summarize(mine) if mine else None
        by_domain.append(
            {
                "name": data.name,
                "tasks": len(mine),
                "mean": m.mean if m else None,
                "ci95": m.ci95 if m else None,
            }
        )
    return {
        "tasks": s.n,
        "seed": e.seed,
        "min_ways": t.min_ways,
        "max_ways": t.max_ways,
        "hierarchy": t.hierarchy,
        "mean_ways": sum(ep.ways for ep in episodes) / n,
        "mean_support": sum(int(ep.shots.sum()) for ep in episodes) / n,
        "mean_queries_per_class": sum(ep.queries for ep in episodes) / n,
        "mean": s.mean,
        "ci95": s.ci95,
        "nonfinite": s.nonfinite,
        "by_domain": by_domain if len(by_domain) > 1 else None,
        "values": s.to_dict()["values"],
        "domains": [ep.domain for ep in episodes] if len(by_domain) > 1 else None,
    }


def check_evaluation(cfg: RunConfig, learner: MetaLearner) -> None:
    """Raise now if :func:`evaluate_run` would fail on ``cfg.eval``, e.g. before a long training.

    Scores the first fixed test task of each shot count, so that more shots + queries than a test
    class holds, more ways than the test split has, or ways a fixed-size head cannot take, fail
    here with the error the evaluation would give. The learner's weights and buffers and the
    global random state are as they were afterwards.
    """
    e = cfg.eval
    steps = [max(e.steps)] if learner.inner_steps else [0]
    weights = copy.deepcopy(learner.state_dict())
    with torch.random.fork_rng(devices=[]):
        try:
            for shots in e.shots:
                dist = build_tasks(cfg, "test", queries=e.queries, ways=e.ways, shots=shots)
                evaluate_scores(learner, dist.fixed_tasks(1, e.seed, shots=shots), steps)
            if e.metadataset_tasks:
                evaluate_scores(learner, build_metadataset(cfg, "test").fixed_tasks(1, e.seed), [0])
        finally:
            learner.load_state_dict(weights)


def lake_one_shot_error(learner: MetaLearner, runs: Sequence[OneShotRun]) -> dict[str, Any]:
    """Error rate on Lake et al.'s 20 within-alphabet 20-way one-shot runs (Science 2015).

    Each run is one task: the 20 training images (one per class) are the support set and the 20
    test images the queries. Humans: 4.5% error (Lake et al. 2015). The learner is in evaluation
    mode, as in every other evaluation: an inductive network normalises with its running
    statistics. The figure is a one-shot one only if no run image was trained on
    (:func:`~metamap.data.omniglot_runs.run_images_seen`).
    """
    p = next(learner.parameters())
    errors = []
    was_training = learner.training
    learner.eval()
    try:
        for run in runs:
            sx = torch.from_numpy(run.train_images).to(p.device, p.dtype) / 255.0
            qx = torch.from_numpy(run.test_images).to(p.device, p.dtype) / 255.0
            sy = torch.arange(len(sx), device=p.device)
            state = learner.adapt(sx, sy)
            with torch.no_grad():
                pred = learner.predict(state, qx).argmax(-1).cpu()
            errors.append(float((pred != torch.from_numpy(run.answers)).float().mean()))
    finally:
        learner.train(was_training)
    s = summarize(errors)
    return {"error": s.mean, "ci95": s.ci95, "runs": s.n, "per_run": list(s.values)}
