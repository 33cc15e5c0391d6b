"""The evaluation protocol of a run: fixed tasks per shot count, scores per inner-step count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metamap.errors import CheckpointError, ConfigError
from metamap.learners import GradientLearner
from metamap.tasks import RegressionTasks
from metamap.train.build import build_tasks, from_config
from metamap.train.checkpoint import load_checkpoint
from metamap.train.config import RunConfig, parse_config
from metamap.train.evaluate import evaluate

__all__ = ["evaluate_run", "learner_from_checkpoint"]


def learner_from_checkpoint(path: str | Path) -> tuple[RunConfig, GradientLearner, dict[str, Any]]:
    """Rebuild the run's config and learner from a checkpoint and load its weights."""
    state = load_checkpoint(path)
    try:
        cfg = parse_config(state["config"])
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} holds no usable config: {e}") from None
    _, learner = from_config(cfg)
    try:
        learner.load_state_dict(state["learner"])
    except RuntimeError as e:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match the model its config describes: "
            f"{str(e).splitlines()[0]}"
        ) from None
    return cfg, learner, state


def evaluate_run(cfg: RunConfig, learner: GradientLearner) -> dict[str, Any]:
    """``{"<shots>-shot": {"<steps>": {"mean", "ci95", "n"}}}`` on ``cfg.eval``'s fixed tasks."""
    e = cfg.eval
    tasks: RegressionTasks = build_tasks(cfg.task, queries=e.queries)
    results: dict[str, Any] = {
        "metric": "mse" if learner.loss_name == "mse" else "accuracy",
        "tasks": e.tasks,
        "queries": e.queries,
        "seed": e.seed,
        "scores": {},
    }
    for shots in e.shots:
        fixed = tasks.fixed_tasks(e.tasks, e.seed, shots=shots)
        summary = evaluate(learner, fixed, e.steps)
        results["scores"][f"{shots}-shot"] = {
            str(k): {"mean": s.mean, "ci95": s.ci95, "n": s.n, "nonfinite": s.nonfinite}
            for k, s in summary.items()
        }
    return results
