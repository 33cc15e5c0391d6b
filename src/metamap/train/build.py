"""Build tasks, models and learners from a :class:`~metamap.train.config.RunConfig`."""

from __future__ import annotations

import torch
from torch import nn

from metamap.learners import ANIL, FOMAML, MAML, GradientLearner, MetaSGD, Reptile
from metamap.learners.functional import LossName
from metamap.models import MLP, Conv4
from metamap.tasks import LinearTasks, PolynomialTasks, RegressionTasks, SinusoidTasks
from metamap.train.config import LearnerConfig, ModelConfig, RunConfig, TaskConfig

__all__ = ["build_learner", "build_model", "build_tasks", "dtype_of", "from_config"]


def build_tasks(cfg: TaskConfig, queries: int | None = None) -> RegressionTasks:
    q = cfg.queries if queries is None else queries
    if cfg.family == "sinusoid":
        return SinusoidTasks(cfg.shots, q, noise_std=cfg.noise_std)
    if cfg.family == "linear":
        return LinearTasks(cfg.shots, q, noise_std=cfg.noise_std)
    return PolynomialTasks(cfg.shots, q, degree=cfg.degree, noise_std=cfg.noise_std)


def build_model(cfg: ModelConfig, seed: int) -> nn.Module:
    """The base network, initialised from ``seed`` (without touching the global RNG)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.name == "mlp":
            return MLP(1, 1, cfg.hidden)
        return Conv4(cfg.ways, cfg.in_channels, cfg.width, cfg.image_size, cfg.batch_norm)


def build_learner(cfg: LearnerConfig, model: nn.Module, loss: LossName) -> GradientLearner:
    lr = cfg.inner_lr
    if cfg.name in ("maml", "fomaml", "anil"):
        first_order = cfg.first_order or cfg.name == "fomaml"
        cls = ANIL if cfg.name == "anil" else MAML
        return cls(model, loss, cfg.inner_steps, lr, cfg.learn_inner_lr, first_order, cfg.batching)
    scalar = lr[0] if isinstance(lr, list) else lr
    if cfg.name == "metasgd":
        return MetaSGD(model, loss, cfg.inner_steps, scalar, cfg.first_order, cfg.batching)
    return Reptile(model, loss, cfg.inner_steps, scalar, cfg.batching)


def dtype_of(cfg: RunConfig) -> torch.dtype:
    return torch.float64 if cfg.train.dtype == "float64" else torch.float32


def from_config(cfg: RunConfig) -> tuple[RegressionTasks, GradientLearner]:
    """The task distribution and the learner (on the configured device and dtype)."""
    if cfg.model.name != "mlp":
        raise NotImplementedError(
            "image tasks are not wired into the trainer yet; use model.name=mlp with a "
            "regression family"
        )
    tasks = build_tasks(cfg.task)
    learner = build_learner(cfg.learner, build_model(cfg.model, cfg.seed), "mse")
    _ = FOMAML  # the registry name 'fomaml' maps to MAML(first_order=True)
    return tasks, learner.to(device=cfg.train.device, dtype=dtype_of(cfg))
