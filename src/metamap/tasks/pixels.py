"""uint8 image tensors for episode samplers: storage, per-class index tables, conversion.

The samplers (:mod:`metamap.tasks.episodes`, :mod:`metamap.tasks.metadataset`) keep a dataset's
``(N, C, H, W)`` uint8 images in one tensor, find a class's images through a padded index table,
and convert only the gathered images to float32, optionally normalised, ``(x/255 - mean) / std``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from metamap.errors import TaskShapeError

__all__ = [
    "IN_MEMORY_LIMIT_BYTES",
    "Normalize",
    "class_index_table",
    "images_as_tensor",
    "normalization",
    "rotate_groups",
    "to_float",
]

IN_MEMORY_LIMIT_BYTES = 2 * 1024**3
"""With ``in_memory=None``, datasets up to this size are copied into RAM (Omniglot at 28×28 is
about 25 MB, mini-ImageNet at 84×84 about 1.3 GB); larger ones are read from their memmap."""

Normalize = tuple[Sequence[float], Sequence[float]]
"""``(mean, std)`` per channel (or one value for all channels), applied to pixels in [0, 1]."""


def images_as_tensor(images: npt.NDArray[np.uint8], in_memory: bool | None = None) -> Tensor:
    """The ``(N, C, H, W)`` uint8 images as a CPU tensor that episode samplers index into.

    ``in_memory=True`` copies them into a contiguous tensor (fast gathers); ``False`` wraps the
    array without copying — for a ``numpy.memmap`` the pages are then read on demand; ``None``
    copies when the array is at most :data:`IN_MEMORY_LIMIT_BYTES`. The result is never written
    to (a read-only memmap is wrapped as is).
    """
    if in_memory is None:
        in_memory = images.nbytes <= IN_MEMORY_LIMIT_BYTES
    if in_memory:
        return torch.from_numpy(np.array(images, dtype=np.uint8, order="C", copy=True))
    with warnings.catch_warnings():
        # torch warns that a read-only array is wrapped as a writable tensor; samplers only read.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.asarray(images))


def class_index_table(labels: npt.NDArray[np.int64], num_classes: int) -> tuple[Tensor, Tensor]:
    """A padded per-class index table: ``(table (num_classes, max_count), counts (num_classes,))``.

    ``table[c, :counts[c]]`` are the (sorted) indices of class ``c``'s images; the padding is 0
    and must be masked with ``counts``.
    """
    lab = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))
    counts = torch.bincount(lab, minlength=num_classes)[:num_classes]
    width = max(int(counts.max()) if num_classes else 0, 1)
    order = torch.argsort(lab, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(width)
    valid = slot.unsqueeze(0) < counts.unsqueeze(1)
    pos = (starts.unsqueeze(1) + slot.unsqueeze(0)).clamp(max=max(len(order) - 1, 0))
    table = torch.where(valid, order[pos] if len(order) else torch.zeros_like(pos), 0)
    return table, counts


def normalization(normalize: Normalize | None, channels: int) -> tuple[Tensor, Tensor] | None:
    """``(scale, shift)`` of shape ``(C, 1, 1)`` with ``x/255`` normalised ``= x*scale + shift``."""
    if normalize is None:
        return None
    try:
        mean, std = normalize
        m = torch.as_tensor([float(v) for v in mean], dtype=torch.float64)
        s = torch.as_tensor([float(v) for v in std], dtype=torch.float64)
    except (TypeError, ValueError) as exc:
        raise TaskShapeError(
            f"normalize must be (mean, std), each a sequence of numbers, got {normalize!r}"
        ) from exc
    for name, t in (("mean", m), ("std", s)):
        if t.numel() not in (1, channels):
            raise TaskShapeError(
                f"normalize {name} has {t.numel()} values but the images have {channels} "
                "channel(s); give one value per channel or a single value"
            )
    if not bool(torch.all(s > 0)) or not bool(torch.all(torch.isfinite(m))):
        raise TaskShapeError(f"normalize std must be positive and mean finite, got {normalize!r}")
    scale = (1.0 / (255.0 * s)).expand(channels).to(torch.float32).reshape(channels, 1, 1)
    shift = (-m / s).expand(channels).to(torch.float32).reshape(channels, 1, 1)
    return scale, shift


def to_float(dst: Tensor, src: Tensor, norm: tuple[Tensor, Tensor] | None) -> Tensor:
    """Copy uint8 ``src`` into float32 ``dst`` (same shape, any strides) and scale it in place."""
    dst.copy_(src)
    if norm is None:
        dst.div_(255.0)
    else:
        dst.mul_(norm[0]).add_(norm[1])
    return dst


def rotate_groups(x: Tensor, rot: Tensor, ks: Sequence[int]) -> None:
    """Rotate ``x[i]`` (``(n, …, H, W)``) in place by ``rot[i]`` quarter turns (counter-clockwise).

    One ``torch.rot90(…, dims=(-2, -1))`` per angle in ``ks`` over all items with that angle.
    """
    for k in ks:
        sel = torch.nonzero(rot == k).squeeze(1)
        if sel.numel():
            x.index_copy_(0, sel, torch.rot90(x.index_select(0, sel), k, dims=(-2, -1)))
