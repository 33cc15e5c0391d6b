"""Training and evaluation: configs, the resumable trainer, checkpoints, metrics."""

from metamap.train.build import (
    build_episodes,
    build_learner,
    build_model,
    build_regression,
    build_tasks,
    describe,
)
from metamap.train.checkpoint import load_checkpoint, save_checkpoint
from metamap.train.cold_start import ColdStartProblem
from metamap.train.config import (
    EvalConfig,
    LearnerConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    apply_overrides,
    load_config,
    parse_config,
)
from metamap.train.evaluate import Summary, evaluate, summarize
from metamap.train.meta_rl import MetaRLProblem
from metamap.train.metrics import MetricsLog, read_metrics
from metamap.train.problems import (
    PROBLEMS,
    RunProblem,
    build_problem,
    from_config,
    register_problem,
)
from metamap.train.protocol import (
    check_evaluation,
    evaluate_meta_dataset,
    evaluate_run,
    lake_one_shot_error,
    learner_from_checkpoint,
)
from metamap.train.rundir import RunLock, RunPaths
from metamap.train.schedule import lr_factor, schedule_mismatch
from metamap.train.trainer import Trainer, TrainResult, check_run_folder, check_time_budget

__all__ = [
    "PROBLEMS",
    "ColdStartProblem",
    "EvalConfig",
    "LearnerConfig",
    "MetaRLProblem",
    "MetricsLog",
    "ModelConfig",
    "RunConfig",
    "RunLock",
    "RunPaths",
    "RunProblem",
    "Summary",
    "TaskConfig",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_overrides",
    "build_episodes",
    "build_learner",
    "build_model",
    "build_problem",
    "build_regression",
    "build_tasks",
    "check_evaluation",
    "check_run_folder",
    "check_time_budget",
    "describe",
    "evaluate",
    "evaluate_meta_dataset",
    "evaluate_run",
    "from_config",
    "lake_one_shot_error",
    "learner_from_checkpoint",
    "load_checkpoint",
    "load_config",
    "lr_factor",
    "parse_config",
    "read_metrics",
    "register_problem",
    "save_checkpoint",
    "schedule_mismatch",
    "summarize",
]
