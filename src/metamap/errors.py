"""Errors raised for user mistakes: each names what is wrong and how to fix it.

Each class carries the exit status the ``metamap`` command ends with when it is raised
(``exit_code``): 2 for a mistake in what was given (arguments, config, data, checkpoint, output
path), 3 for a run that diverged, 75 (``EX_TEMPFAIL``) for a run folder another process is using.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MetamapError",
    "NonFiniteAdaptationError",
    "NonFiniteLossError",
    "NonFiniteRolloutError",
    "OutputPathError",
    "RunFolderError",
    "RunLockedError",
    "TaskShapeError",
]


class MetamapError(Exception):
    """Base class of every error metamap raises on purpose."""

    exit_code: int = 2
    """The status ``metamap`` exits with (2: a mistake in what was given)."""


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


class OutputPathError(MetamapError, ValueError):
    """An output path is empty, of the wrong kind (a file for a folder, or the reverse), under a
    file, or not writable; raised before any work starts."""


class RunFolderError(MetamapError, RuntimeError):
    """A run folder holds results that a command would overwrite without being asked to."""


class RunLockedError(MetamapError, RuntimeError):
    """Another process is training into the same run folder (it holds the folder's lock)."""

    exit_code = 75  # EX_TEMPFAIL: try again when the other process has finished


class NonFiniteRolloutError(MetamapError, FloatingPointError):
    """A policy gave NaN or infinite actions, or an environment NaN or infinite observations or
    rewards, during a rollout."""

    exit_code = 3


class NonFiniteAdaptationError(MetamapError, FloatingPointError):
    """A trained model's adaptation to one task diverged: its predictions hold NaN or infinite
    values (a product refuses to rank or return them)."""

    exit_code = 3


class NonFiniteLossError(MetamapError, FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""

    exit_code = 3

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

    def __reduce__(self) -> tuple[type[NonFiniteLossError], tuple[int, float, str | None]]:
        """Picklable with its arguments (a worker process's error reaches its parent intact)."""
        return (type(self), (self.step, self.value, self.checkpoint))
