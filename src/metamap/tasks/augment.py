"""Training-time image augmentation of whole episodes, batched and seeded.

MetaOptNet (Lee, Maji, Ravichandran & Soatto, CVPR 2019, after Gidaris & Komodakis 2018) trains
on augmented episodes: every support and query image gets a random crop of the zero-padded
image (``RandomCrop(size, padding=8)`` on mini-ImageNet, ``padding=4`` on CIFAR-FS/FC100), colour
jitter (brightness, contrast and saturation factors each drawn from ``U[1 − j, 1 + j]``, j = 0.4)
and a horizontal flip with probability ½. Here those transforms run on the batch of float images
at once, every draw from the caller's :class:`torch.Generator` (so a resumed run replays them
exactly). Jitter is applied in a fixed order (brightness, contrast, saturation) where torchvision
shuffles it per image; saturation does nothing to one-channel images.

Shapes: images ``(..., C, H, W)`` with values in ``[0, 1]`` (before any normalisation) → the same
shape. Validation and test episodes are never augmented.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from metamap.tasks.task import Task, TaskBatch

__all__ = ["ImageAugment"]

_Sets = TypeVar("_Sets", Task, TaskBatch)

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 grey, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class ImageAugment:
    """Random crop after ``padding`` zero pixels per side, ``flip`` left-right with p = ½,
    and colour ``jitter`` j (factors in ``[1 − j, 1 + j]``). All off by default."""

    padding: int = 0
    flip: bool = False
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be ≥ 0, got {self.padding}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")

    @property
    def enabled(self) -> bool:
        return self.padding > 0 or self.flip or self.jitter > 0

    def __call__(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Augment each image of ``images (..., C, H, W)`` independently."""
        if not self.enabled:
            return images
        lead, (c, h, w) = images.shape[:-3], images.shape[-3:]
        x = images.reshape(-1, c, h, w)
        if self.padding:
            x = _random_crop(x, self.padding, generator)
        if self.jitter:
            x = _jitter(x, self.jitter, generator)
        if self.flip:
            mirror = torch.rand(len(x), generator=generator) < 0.5
            x = torch.where(mirror.to(x.device)[:, None, None, None], x.flip(-1), x)
        return x.reshape(*lead, c, h, w)

    def task(self, task: Task, generator: torch.Generator) -> Task:
        """The same task with every support and query image augmented (one task of its own
        shape, e.g. a Meta-Dataset episode)."""
        return self._sets(task, generator)

    def batch(self, tasks: TaskBatch, generator: torch.Generator) -> TaskBatch:
        """The same tasks with every support and query image augmented."""
        return self._sets(tasks, generator)

    def _sets(self, tasks: _Sets, generator: torch.Generator) -> _Sets:
        if not self.enabled:
            return tasks
        support_x = self(tasks.support_x, generator)  # support first: the draws' order is fixed
        return replace(tasks, support_x=support_x, query_x=self(tasks.query_x, generator))


def _random_crop(x: Tensor, pad: int, g: torch.Generator) -> Tensor:
    """An ``H × W`` window at a uniform offset in ``[0, 2·pad]²`` of each zero-padded image."""
    n, _c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (n, 1, w)
    idx = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2).contiguous()


def _grey(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    luma = x.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (x * luma).sum(dim=1, keepdim=True)


def _jitter(x: Tensor, j: float, g: torch.Generator) -> Tensor:
    """Brightness, contrast, saturation, each a factor ``U[1 − j, 1 + j]``, clamped to [0, 1]."""
    n = len(x)
    b, c, s = ((1 - j + 2 * j * torch.rand(n, generator=g)).to(x) for _ in range(3))
    x = (x * b[:, None, None, None]).clamp(0, 1)
    mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
    x = (mean + c[:, None, None, None] * (x - mean)).clamp(0, 1)
    if x.shape[1] > 1:
        grey = _grey(x)
        x = (grey + s[:, None, None, None] * (x - grey)).clamp(0, 1)
    return x
