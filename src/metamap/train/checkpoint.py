"""Atomic, safe checkpoints.

A checkpoint is written to a temporary file in the same folder, flushed to disk and renamed over
the old one (``os.replace`` is atomic), so a run killed at any moment leaves either the old or the
new checkpoint, never a torn one. Loading uses ``torch.load(weights_only=True)``: tensors and plain
containers only, never arbitrary unpickling.

A file that cannot be used is refused with :class:`~metamap.errors.CheckpointError` saying which
case it is (missing, a folder, empty, not a PyTorch file, truncated, holding objects metamap will
not unpickle, another program's file, another format version), and a run's checkpoint is checked
whole before anything uses it (:func:`check_run_state`): its metadata present and well-typed, its
weights tensors and finite.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from metamap.errors import CheckpointError
from metamap.fileio import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "check_run_state", "load_checkpoint", "save_checkpoint"]

FORMAT = "metamap-checkpoint"
FORMAT_VERSION = 1

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_MAGIC = b"\x80"  # PyTorch's legacy format starts with a pickle protocol opcode
_FIX = "use another checkpoint of the run (checkpoints/best.pt or last.pt), or train again"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (tensors and plain containers) to ``path``."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    return atomic_write(path, lambda f: torch.save(payload, f))


def _what_is_wrong(path: Path) -> str | None:
    """Why ``path`` cannot be a checkpoint, from its bytes alone (``None``: it may be one)."""
    size = path.stat().st_size
    if size == 0:
        return "is empty (0 bytes): its write never finished"
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(_PICKLE_MAGIC):
        return (
            "is a PyTorch file in the legacy (pre-1.6) format, which metamap never writes: it is "
            "not a metamap checkpoint"
        )
    if head != _ZIP_MAGIC:
        return (
            "is not a PyTorch checkpoint (it is neither a zip archive nor a pickle: random "
            "bytes, or a file of another format)"
        )
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError):
        return f"is truncated or damaged ({size} bytes, not a complete archive)"
    if bad is not None:
        return f"is damaged (its member {bad!r} fails its CRC check)"
    return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (safely, on the CPU)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a folder; give a checkpoint file, e.g. "
            f"{str(path / 'checkpoints' / 'best.pt')!r}"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    wrong = _what_is_wrong(path)
    if wrong is not None:
        raise CheckpointError(f"checkpoint {str(path)!r} {wrong}; {_FIX}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds Python objects other than tensors and plain "
            "containers, which metamap refuses to unpickle (they could run code): it is not a "
            f"metamap checkpoint; {_FIX}"
        ) from None
    except Exception as e:  # damaged in a way the archive checks above did not see
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}): it is damaged; {_FIX}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a PyTorch file but not a metamap checkpoint (it has no "
            f"'format: {FORMAT}' marker); give a checkpoint written by metamap train"
        )
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint format version {state.get('format_version')}; "
            f"this metamap reads version {FORMAT_VERSION}"
        )
    return state


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _nonfinite(tensors: Mapping[str, Any]) -> str | None:
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(t.isfinite().all()):
            return name
    return None


def check_run_state(state: Mapping[str, Any], path: str | Path, resumable: bool = False) -> None:
    """Refuse a run checkpoint whose metadata is missing or mistyped, or whose weights are not
    all finite tensors, before anything is evaluated or trained from it.

    ``resumable``: also the optimizer, schedule and sampler states a resume needs.
    """
    where = f"checkpoint {str(path)!r}"
    expect: dict[str, tuple[type[Any], ...]] = {
        "config": (dict,),
        "fingerprint": (str,),
        "learner": (dict,),
    }
    if resumable:
        expect.update(optimizer=(dict,), scheduler=(dict,), generator=(torch.Tensor,))
    for key, types in expect.items():
        if key not in state:
            raise CheckpointError(f"{where} has no '{key}' entry: it is incomplete; {_FIX}")
        if not isinstance(state[key], types):
            got = type(state[key]).__name__
            raise CheckpointError(f"{where}: '{key}' is a {got}, not a {types[0].__name__}; {_FIX}")
    for key in ("step", "best_step"):
        value = state.get(key)
        if not _is_int(value) or value < 0:  # type: ignore[operator]
            raise CheckpointError(
                f"{where}: '{key}' must be a non-negative integer, got {value!r}; {_FIX}"
            )
    best = state.get("best_val")
    if isinstance(best, bool) or not isinstance(best, int | float) or math.isnan(best):
        raise CheckpointError(f"{where}: 'best_val' must be a number, got {best!r}; {_FIX}")
    for key in ("train_seconds", "train_cpu_seconds"):
        seconds = state.get(key, 0.0)
        if key == "train_cpu_seconds" and seconds is None:  # not counted by an older metamap
            continue
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise CheckpointError(f"{where}: '{key}' must be a number, got {seconds!r}")
    weights = state["learner"]
    odd = [k for k, v in weights.items() if not isinstance(v, torch.Tensor)]
    if odd or not weights:
        what = f"entries that are not tensors ({', '.join(map(str, odd[:3]))})" if odd else "none"
        raise CheckpointError(f"{where}: its learner weights hold {what}; {_FIX}")
    bad = _nonfinite(weights)
    if bad is not None:
        raise CheckpointError(
            f"{where} holds non-finite weights (NaN or infinity in {bad!r}), so every answer "
            f"from it would be NaN; {_FIX}"
        )
