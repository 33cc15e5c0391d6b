"""Errors raised for user mistakes: each names what is wrong and how to fix it."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MetamapError",
    "NonFiniteLossError",
    "TaskShapeError",
]


class MetamapError(Exception):
    """Base class of every error metamap raises on purpose."""


class TaskShapeError(MetamapError, ValueError):
    """A task's tensors have the wrong rank, shape, dtype or label range."""


class ConfigError(MetamapError, ValueError):
    """A configuration file or override is missing, unknown or ill-typed."""


class CheckpointError(MetamapError, RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to another configuration."""


class DataError(MetamapError, RuntimeError):
    """A dataset is missing, corrupt, fails its checksum, or is laid out differently than expected.

    The message names the file or folder at fault and says how to fix it (where to get the data,
    which environment variable or argument points at it, what layout is expected).
    """


class NonFiniteLossError(MetamapError, FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""

    def __init__(self, step: int, value: float, checkpoint: str | None) -> None:
        where = f"; the last good checkpoint is {checkpoint}" if checkpoint else ""
        super().__init__(
            f"non-finite meta-loss ({value}) at step {step}{where}. "
            "Lower the meta learning rate or the inner learning rate, or enable gradient clipping "
            "(train.grad_clip)."
        )
        self.step = step
        self.value = value
        self.checkpoint = checkpoint
