"""Atomic, safe checkpoints.

A checkpoint is written to a temporary file in the same folder, flushed to disk and renamed over
the old one (``os.replace`` is atomic), so a run killed at any moment leaves either the old or the
new checkpoint, never a torn one. Loading uses ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary unpickling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from metamap.errors import CheckpointError
from metamap.fileio import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]

FORMAT = "metamap-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (tensors and plain containers) to ``path``."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    return atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (safely, on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or holding objects we refuse to unpickle
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {type(e).__name__}: {str(e).splitlines()[0]}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a metamap checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {state.get('format_version')}; "
            f"this metamap reads version {FORMAT_VERSION}"
        )
    return state
