"""A run folder: its layout, its lock, and what it already holds.

:class:`RunPaths` names the files :class:`~metamap.train.Trainer` writes. :class:`RunLock` is an
exclusive lock on the folder, held by one process for its whole life in the folder: a second
trainer on the same folder is refused, naming the holder's PID. It is an advisory ``flock`` on
``<run>/.lock``, which the kernel releases when the holder exits however it exits (a SIGKILL
included), so a stale lock file from a killed process never blocks a resume. POSIX only
(``fcntl``); where it is missing the lock is a no-op, said once in a warning.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from metamap.errors import RunLockedError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "RunPaths"]


@dataclass(frozen=True)
class RunPaths:
    """The files of a run in ``out_dir``: the layout :class:`~metamap.train.Trainer` (and
    ``metamap train``) writes, for code that reads a finished run (plots, evaluation) without
    building a trainer."""

    out_dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def last(self) -> Path:
        """The resumable checkpoint: learner, optimizer, schedule, sampler RNG and step."""
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        """The weights with the best validation score (a whole resumable state, too)."""
        return self.checkpoints / "best.pt"

    def result(self, checkpoint: Literal["best", "last"]) -> Path:
        """The weights that are the run's result, by ``eval.checkpoint``: ``best`` or ``last``."""
        return {"best": self.best, "last": self.last}[checkpoint]

    @property
    def metrics(self) -> Path:
        """The metrics log (JSON lines: step, loss, lr, time, validation)."""
        return self.out_dir / "metrics.jsonl"

    @property
    def config(self) -> Path:
        """The config the run was started with (YAML)."""
        return self.out_dir / "config.yaml"

    @property
    def evaluation(self) -> Path:
        """``metamap train --eval``'s scores (JSON)."""
        return self.out_dir / "eval.json"

    @property
    def lock(self) -> Path:
        return self.out_dir / ".lock"

    def results(self) -> list[Path]:
        """The files that hold work of an earlier run: checkpoints, a non-empty metrics log,
        scores. A run folder with any of them is never overwritten implicitly."""
        files = [self.last, self.best, self.evaluation]
        found = [p for p in files if p.is_file()]
        if self.metrics.is_file() and self.metrics.stat().st_size > 0:
            found.append(self.metrics)
        return found

    def outputs(self) -> list[Path]:
        """What a deliberate restart (``--restart``) discards: the results and the config copy."""
        files = dict.fromkeys((*self.results(), self.metrics, self.config))
        return [p for p in files if p.is_file()]


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(path.read_text().strip() or "x")
        return f"process {pid}"
    return "another process"


class RunLock:
    """Exclusive, process-lifetime lock on a run folder (a context manager).

    ``acquire`` creates the folder if needed, then takes the lock without waiting; if another
    process holds it, :class:`~metamap.errors.RunLockedError` names that process. The lock file
    keeps the holder's PID for that message; it is left in place on release (removing it would
    race with a process that has just opened it).
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.paths = RunPaths(Path(out_dir))
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self) -> RunLock:
        if self._file is not None:
            return self
        path = self.paths.lock
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")  # noqa: SIM115 - held open for the life of the lock
        if fcntl is None:  # pragma: no cover - Windows
            warnings.warn("run folders are not locked on this platform", stacklevel=2)
        else:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                raise RunLockedError(
                    f"run folder {str(self.paths.out_dir)!r} is in use by {_holder(path)} "
                    f"(it holds {str(path)!r}); wait for it to finish, stop it, or choose "
                    "another --out"
                ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is None:
            return
        if fcntl is not None:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
