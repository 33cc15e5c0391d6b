"""Input checks shared by every learner's public entry points, run before any work.

Each function raises :class:`~metamap.errors.TaskShapeError` with a message that names the
tensor (``support_x``, ``support_y``, ``x``, …), says what is wrong and how to fix it. They
read the tensors only: no random draws, no BatchNorm statistics, nothing that could change a
result. Each costs at most a few reductions over its tensor (:func:`check_finite` sums the
tensor and counts the bad values only when the sum is not finite), so they also run on every
training batch (:meth:`MetaLearner.check_batch <metamap.learners.MetaLearner.check_batch>`).

:meth:`MetaLearner.check_task <metamap.learners.MetaLearner.check_task>` (from ``adapt``) and
:meth:`MetaLearner.check_query <metamap.learners.MetaLearner.check_query>` (from ``predict``)
call them; :mod:`metamap.features` reuses :func:`check_finite`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor, nn

from metamap.errors import TaskShapeError
from metamap.models.shapes import (
    InputShape,
    describe_input_shape,
    input_dtype_of,
    input_shape_of,
)

__all__ = [
    "check_classes",
    "check_examples",
    "check_finite",
    "check_fits_model",
    "check_input_shape",
    "check_label_shape",
    "check_same_length",
    "check_step_counts",
]


def check_examples(x: object, name: str) -> Tensor:
    """``x`` if it is a tensor with a non-empty leading dimension of examples ``(N, ...)``."""
    if not isinstance(x, Tensor):
        raise TaskShapeError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}; convert it with "
            "torch.as_tensor(...)"
        )
    if x.dim() == 0:
        raise TaskShapeError(
            f"{name} is a scalar; give a tensor whose first dimension indexes the examples"
        )
    if x.shape[0] == 0:
        raise TaskShapeError(f"{name} is empty (shape {tuple(x.shape)}): give at least one example")
    return x


def check_same_length(x: Tensor, y: Tensor, x_name: str, y_name: str) -> None:
    """``x`` and ``y`` hold the same number of examples (their first dimensions agree)."""
    nx, ny = int(x.shape[0]), (int(y.shape[0]) if y.dim() else 1)
    if y.dim() == 0 or nx != ny:
        raise TaskShapeError(
            f"{x_name} has {nx} examples but {y_name} has "
            f"{'a scalar' if y.dim() == 0 else f'{ny} targets'} (shapes {tuple(x.shape)} and "
            f"{tuple(y.shape)}): give exactly one target per example"
        )


def check_finite(x: Tensor, name: str) -> None:
    """No NaN or infinite value in a floating-point ``x`` (other dtypes pass).

    Fast path: one sum (a NaN or ±inf anywhere makes it non-finite); only then are the bad
    values counted (a finite sum that overflows just costs the exact count).
    """
    if not (x.is_floating_point() or x.is_complex()) or x.numel() == 0:
        return
    with torch.no_grad():
        if bool(torch.isfinite(x.detach().sum())):
            return
        nan = int(torch.isnan(x).sum())
        inf = int(torch.isinf(x).sum())
    if nan == inf == 0:
        return
    parts = [f"{nan} NaN value{'s' * (nan != 1)}"] * bool(nan)
    parts += [f"{inf} infinite value{'s' * (inf != 1)} (±inf)"] * bool(inf)
    raise TaskShapeError(
        f"{name} contains {' and '.join(parts)} (of {x.numel()}); every value must be finite: "
        "drop those examples, or replace the values (e.g. torch.nan_to_num) before passing them"
    )


def check_input_shape(
    x: Tensor, expected: InputShape, name: str, label: str, what: str = "the model"
) -> None:
    """Examples of ``x`` ``(N, *shape)`` have the ``expected`` per-example shape (``None``: any
    size). ``label`` says what ``x`` is in the message ("support inputs", "inputs")."""
    got = tuple(x.shape[1:])
    if len(got) == len(expected) and all(
        e is None or e == g for e, g in zip(expected, got, strict=True)
    ):
        return
    raise TaskShapeError(
        f"{label} of shape {tuple(x.shape)} do not fit {what}, which takes "
        f"{describe_input_shape(expected)}: {_difference(got, expected, name)}"
    )


def _difference(got: tuple[int, ...], expected: InputShape, name: str) -> str:
    """What differs between the per-example shapes ``got`` and ``expected``, and the fix."""
    if len(got) != len(expected):
        return (
            f"{name} has examples of {len(got)} dimension(s) {got}, the model takes "
            f"{len(expected)}; reshape the inputs to {describe_input_shape(expected)}"
        )
    if len(expected) == 1:
        return f"{name} has {got[0]} features per example, the model was built for {expected[0]}"
    if len(expected) == 3:
        c, h, w = expected
        fixes = []
        if c is not None and got[0] != c:
            fixes.append(
                f"{name} has {got[0]} channel(s), the model was built for {c} (convert the "
                f"images to {'greyscale' if c == 1 else f'{c} channels'}, as in training)"
            )
        if (h is not None and got[1] != h) or (w is not None and got[2] != w):
            fixes.append(
                f"{name} has images of {got[1]}×{got[2]} pixels, the model was built for "
                f"{h}×{w} (resize them to the training size)"
            )
        if fixes:
            return "; ".join(fixes)
    return f"{name} has examples of shape {got}, the model was built for {expected}"


def check_fits_model(x: Tensor, model: nn.Module, name: str, label: str) -> None:
    """``x`` ``(N, ...)`` can be fed to ``model``: floating point, of the dtype and on the device
    of its parameters, of the per-example shape it declares (:func:`input_shape_of`)."""
    p = next(model.parameters(), None)
    declared = input_dtype_of(model)
    if declared is not None:  # e.g. int64 feature indices into embeddings
        if x.dtype != declared:
            raise TaskShapeError(
                f"{name} has dtype {x.dtype} but the model takes {declared} inputs (feature "
                f"indices); convert with x.to({declared})"
            )
    elif not x.is_floating_point():
        raise TaskShapeError(
            f"{name} has dtype {x.dtype}; inputs must be floating point (convert with "
            f"x.to({p.dtype if p is not None else torch.get_default_dtype()}); images as floats)"
        )
    if declared is None and p is not None and x.dtype != p.dtype:
        raise TaskShapeError(
            f"{name} is {x.dtype} but the model's parameters are {p.dtype}: convert the inputs "
            f"(x.to({p.dtype})) or the learner (learner.to({x.dtype}))"
        )
    if p is not None and x.device != p.device:
        raise TaskShapeError(
            f"{name} is on {x.device} but the model is on {p.device}: move the inputs with "
            f"x.to('{p.device}')"
        )
    expected = input_shape_of(model)
    if expected is not None:
        check_input_shape(x, expected, name, label)


def check_label_shape(y: Tensor, name: str) -> None:
    """``y`` holds one task's class labels, one per example: shape ``(N,)``."""
    if y.dim() != 1:
        hint = f"{name}.reshape(-1)" if y.numel() == y.shape[0] else f"{name}.argmax(-1)"
        raise TaskShapeError(
            f"{name} must hold one class index per example, shape (N,); got shape "
            f"{tuple(y.shape)}: give the labels as a 1-D tensor (e.g. {hint})"
        )


def check_classes(y: Tensor, name: str) -> None:
    """Every task of class labels ``(S,)`` (or ``(B, S)``) has at least 2 distinct classes."""
    if y.dim() not in (1, 2) or y.shape[-1] == 0:
        return  # the label checks name the shape problem
    rows = y.reshape(-1, y.shape[-1])
    single = (rows == rows[:, :1]).all(dim=-1)
    if not bool(single.any()):
        return
    b = int(single.nonzero()[0, 0])
    which = f"{name} of task {b}" if y.dim() == 2 else name
    raise TaskShapeError(
        f"{which} has a single class (every label is {int(rows[b, 0])}): a classification "
        "support set needs at least 2 classes (a 1-way task is meaningless for a cross-entropy "
        "head: it predicts that one class whatever the input); add examples of other classes"
    )


def check_step_counts(steps: Sequence[object]) -> None:
    """Every entry of ``steps`` is a non-negative integer count of adaptation steps."""
    if any(isinstance(k, bool) or not isinstance(k, Integral) or k < 0 for k in steps):
        raise ValueError(
            f"step counts must be non-negative integers, got {list(steps)}; give whole numbers "
            "of adaptation steps"
        )
