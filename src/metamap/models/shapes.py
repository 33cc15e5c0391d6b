"""The input shape a network was built for, recorded on it so that callers can check inputs.

A model knows the shape of one example it takes: ``(C, H, W)`` for Conv-4 (its image size is
fixed by the head), ``(C, None, None)`` for a ResNet-12 built without an image size (any
``H, W ≥ 16`` runs), ``(in_features,)`` for an MLP. ``None`` marks a dimension of any size.

The shape is stored as the plain attribute ``input_shape`` on the model *and* on its ``body``,
since the encoder learners and the feature extractor receive the body alone. It is not part of
the ``state_dict``; it survives ``copy.deepcopy`` and pickling, but not slicing a
``nn.Sequential`` (``body[:-1]`` is a new module that declares nothing), which callers then
treat as "shape unknown".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import torch
from torch import nn

__all__ = [
    "InputShape",
    "describe_input_shape",
    "input_dtype_of",
    "input_shape_of",
    "set_input_dtype",
    "set_input_shape",
]

InputShape: TypeAlias = tuple[int | None, ...]
"""Shape of one example (no batch dimension); ``None`` where any size is accepted."""


def set_input_shape(module: nn.Module, shape: Sequence[int | None]) -> None:
    """Record on ``module`` (as ``module.input_shape``) the shape of one example it takes."""
    module.__dict__["input_shape"] = tuple(shape)


def input_shape_of(module: nn.Module) -> InputShape | None:
    """The per-example shape ``module`` declares in ``input_shape``, or ``None`` if it does not."""
    shape = module.__dict__.get("input_shape")
    return None if shape is None else tuple(shape)


def set_input_dtype(module: nn.Module, dtype: torch.dtype) -> None:
    """Record that ``module`` takes inputs of ``dtype`` (e.g. ``torch.long``: feature indices
    into embeddings, as a recommender's users and items), not floating point of its parameters'
    dtype (the default)."""
    module.__dict__["input_dtype"] = dtype


def input_dtype_of(module: nn.Module) -> torch.dtype | None:
    """The input dtype ``module`` declares (``None``: floating point, its parameters' dtype)."""
    dtype = module.__dict__.get("input_dtype")
    return dtype if isinstance(dtype, torch.dtype) else None


def describe_input_shape(shape: InputShape) -> str:
    """``(N, 1, 28, 28)``-style text for a batch of ``shape`` examples (``H``/``W``/``*`` for
    dimensions of any size)."""
    names = ("H", "W") if len(shape) == 3 else ()
    parts = ["N"]
    for i, d in enumerate(shape):
        if d is not None:
            parts.append(str(d))
        elif names and i >= 1:
            parts.append(names[i - 1])
        else:
            parts.append("*")
    return f"({', '.join(parts)})"
