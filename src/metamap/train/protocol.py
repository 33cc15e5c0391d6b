"""The evaluation protocol of a run: fixed tasks per shot count, scores per inner-step count."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from metamap.data import OneShotRun
from metamap.errors import CheckpointError, ConfigError
from metamap.learners import MetaLearner
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
    ``train.device=cpu`` evaluates a GPU-trained checkpoint on a CPU-only machine.
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
        learner = build_run_learner(cfg, base)
    except ConfigError:
        raise
    except ValueError as e:
        raise CheckpointError(f"checkpoint {str(path)!r}: {e}") from None
    try:
        learner.load_state_dict(state["learner"])
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match the model its config describes: "
            f"{str(e).splitlines()[0]}"
        ) from None
    return cfg, learner, state


def _chunks(cfg: RunConfig, shots: int) -> Iterator[TaskBatch]:
    e = cfg.eval
    dist = build_tasks(cfg, "test", queries=e.queries, ways=e.ways, shots=shots)
    yield from dist.fixed_task_chunks(e.tasks, e.seed, _CHUNK, shots=shots)


def evaluate_run(cfg: RunConfig, learner: MetaLearner) -> dict[str, Any]:
    """``{"<shots>-shot": {"<steps>": {"mean", "ci95", "n"}}}`` on ``cfg.eval``'s fixed tasks."""
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
    steps = e.steps if learner.inner_steps else [0]
    for shots in e.shots:
        scores: dict[int, list[float]] = {k: [] for k in steps}
        for chunk in _chunks(cfg, shots):
            for k, values in evaluate_scores(learner, chunk, steps).items():
                scores[k] += values
        results["scores"][f"{shots}-shot"] = {
            str(k): {"mean": s.mean, "ci95": s.ci95, "n": s.n, "nonfinite": s.nonfinite}
            for k, s in ((k, summarize(v)) for k, v in scores.items())
        }
    if e.metadataset_tasks:
        results["meta_dataset"] = evaluate_meta_dataset(cfg, learner)
    return results


def evaluate_meta_dataset(cfg: RunConfig, learner: MetaLearner) -> dict[str, Any]:
    """Accuracy on ``eval.metadataset_tasks`` fixed Meta-Dataset episodes of the test split
    (:func:`~metamap.train.build.build_metadataset`), with the episodes' mean ways, support size
    and queries per class; with several domains also per domain (``by_domain``: Meta-Dataset
    reports each test dataset on its own). Episodes are materialised 100 at a time."""
    e, t = cfg.eval, cfg.task.episodes()
    sampler = build_metadataset(cfg, "test")
    episodes = sampler.fixed_episodes(e.metadataset_tasks, e.seed)
    values: list[float] = []
    for start in range(0, len(episodes), _CHUNK):
        tasks = [sampler.task_from_episode(ep) for ep in episodes[start : start + _CHUNK]]
        values += evaluate_scores(learner, tasks, [0])[0]
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
    test images the queries. Humans: 4.5% error (Lake et al. 2015).
    """
    p = next(learner.parameters())
    errors = []
    for run in runs:
        sx = torch.from_numpy(run.train_images).to(p.device, p.dtype) / 255.0
        qx = torch.from_numpy(run.test_images).to(p.device, p.dtype) / 255.0
        sy = torch.arange(len(sx), device=p.device)
        state = learner.adapt(sx, sy)
        with torch.no_grad():
            pred = learner.predict(state, qx).argmax(-1).cpu()
        errors.append(float((pred != torch.from_numpy(run.answers)).float().mean()))
    s = summarize(errors)
    return {"error": s.mean, "ci95": s.ci95, "runs": s.n, "per_run": list(s.values)}
