"""Files a command writes: atomic replacement, checks of output paths before work starts, and
clean-up of the temporaries an interrupted write leaves behind.

A file is written to a temporary file in the same folder, flushed to disk and renamed over the
target (``os.replace`` is atomic), so a process killed at any moment leaves either the old file or
the new one, never a torn one. The temporary is named ``.<name>.<random>.tmp``; a kill between
its creation and the rename leaves it behind, and :func:`remove_stale_temporaries` removes such
files from a folder that the caller holds exclusively (a run folder under its lock).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from metamap.errors import OutputPathError

__all__ = [
    "TEMP_SUFFIX",
    "atomic_write",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "remove_stale_temporaries",
]

TEMP_SUFFIX = ".tmp"
"""Suffix of :func:`atomic_write`'s temporaries (``.<name>.<random>.tmp``)."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write ``path`` through ``write(f)`` on a temporary file, then rename it into place.

    The temporary file is removed if ``write`` fails; the rename is made durable by syncing the
    folder where the platform allows it. The file gets the permissions ``open`` would give it
    (``0666`` less the umask), not the temporary's owner-only ``0600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with contextlib.suppress(AttributeError, OSError):  # mkstemp's 0600 -> what open() gives
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return path


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``os.umask`` can
    only be read by setting it, for a moment, for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write` of UTF-8 ``text``."""
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data))


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries of interrupted :func:`atomic_write` calls in ``folder`` (not below).

    Only for a folder no other process writes to at the same time (a run folder whose lock the
    caller holds): a temporary of a live writer would be deleted too. Returns what was deleted.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    gone = []
    for p in root.glob(f".*{TEMP_SUFFIX}"):
        if p.is_file() and not p.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                gone.append(p)
    return gone


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists; raises if an ancestor is not a folder."""
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path(".")  # pragma: no cover - the root always exists


def _probe_writable(folder: Path, what: str, target: Path) -> None:
    """Create and delete a file in ``folder``: the only check that holds for root, read-only
    mounts and pseudo file systems alike (``os.access`` says yes to root everywhere)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".metamap-probe-", suffix=TEMP_SUFFIX, dir=folder)
    except OSError as e:
        raise OutputPathError(
            f"{what} {str(target)!r} cannot be written: folder {str(folder)!r} is not writable "
            f"({e.strerror}); choose another location"
        ) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _check_path(path: str | os.PathLike[str] | None, what: str) -> Path:
    if path is None or not str(path).strip():
        raise OutputPathError(f"{what} is empty; give a path, e.g. {what} runs/my-run")
    p = Path(path).expanduser()
    existing = _nearest_existing(p)
    if existing != p and not existing.is_dir():
        raise OutputPathError(
            f"{what} {str(p)!r} lies under {str(existing)!r}, which is a file, not a folder; "
            "choose another location"
        )
    return p


def check_output_dir(path: str | os.PathLike[str] | None, what: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be (or is) a folder this process can write in.

    Refuses, with :class:`~metamap.errors.OutputPathError` naming the path and the fix: an empty
    path, an existing file, a path under a file, and a folder that cannot be written. Creates
    nothing: an existing folder is left byte-for-byte as it was.
    """
    p = _check_path(path, what)
    if p.exists() and not p.is_dir():
        raise OutputPathError(
            f"{what} {str(p)!r} is an existing file, but a folder is expected; choose a folder "
            "name (it is created if missing)"
        )
    _probe_writable(_nearest_existing(p), what, p)
    return p


def check_output_file(
    path: str | os.PathLike[str] | None, what: str = "--out", suffixes: Sequence[str] = ()
) -> Path:
    """Check, before any work, that the file ``path`` can be written (an existing file is
    replaced, atomically, when the work is done).

    Refuses an empty path, an existing folder, a path under a file, a folder that cannot be
    written, and (where ``suffixes`` are given) another suffix. Creates nothing.
    """
    p = _check_path(path, what)
    if p.is_dir() or str(path).endswith(("/", os.sep)):
        raise OutputPathError(
            f"{what} {str(p)!r} is a folder, but a file is expected; give a file name, e.g. "
            f"{p / ('result' + (suffixes[0] if suffixes else '.json'))}"
        )
    if suffixes and p.suffix.lower() not in suffixes:
        raise OutputPathError(f"{what} must end in {' or '.join(suffixes)}, got {str(p)!r}")
    _probe_writable(_nearest_existing(p.parent), what, p)
    return p
