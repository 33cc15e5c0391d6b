"""The in-memory form every image dataset is decoded into once: uint8 images and int labels.

``images`` is a ``(N, C, H, W)`` uint8 array — usually a read-only ``numpy.memmap`` of the cache
file, so that opening a decoded dataset costs no decoding and little memory — and ``labels`` is
``(N,)`` int64 with values in ``[0, len(class_names))``. Episode samplers
(:mod:`metamap.tasks.episodes`) index into these arrays; learners never see files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["ClassSplit", "ImageClassDataset", "split_parts"]

ClassSplit = Literal["train", "val", "trainval", "test"]
"""A dataset's class split; ``trainval`` is train and val together, for final models."""


def split_parts(split: str) -> tuple[str, ...]:
    """The published splits (and their lists) a split is made of: ``trainval`` is ``train``
    then ``val``; any other split is itself."""
    return ("train", "val") if split == "trainval" else (split,)


@dataclass(frozen=True)
class ImageClassDataset:
    """Labelled images: ``images (N, C, H, W) uint8``, ``labels (N,) int64``, class names.

    ``sources`` optionally names the file each image came from (for error messages, exports).
    ``inverted``: the loader stored ``255 − value`` (Omniglot's loaders, ``image_folder(...,
    invert=True)``), so the feature tools do not invert these pixels again.
    """

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]
    class_names: Sequence[str]
    sources: Sequence[str] = field(default_factory=tuple)
    name: str = "images"
    inverted: bool = False

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(
                f"{self.name}: images must be a (N, C, H, W) uint8 array, got "
                f"{self.images.dtype} of shape {self.images.shape}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name}: {self.labels.shape[0]} labels for {self.images.shape[0]} images"
            )
        if len(self.labels) and (
            self.labels.min() < 0 or self.labels.max() >= len(self.class_names)
        ):
            raise ValueError(f"{self.name}: labels must lie in [0, {len(self.class_names)})")
        if self.sources and len(self.sources) != self.images.shape[0]:
            raise ValueError(f"{self.name}: {len(self.sources)} sources for {len(self)} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)

    def episode_classes(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
        """``(rotations, base)`` where episodes draw from derived classes (Omniglot's rotated
        characters: class ``c`` is dataset class ``base[c]`` turned ``rotations[c]`` quarter
        turns); ``None`` when episode classes are the dataset's classes."""
        return None

    def class_indices(self) -> list[npt.NDArray[np.int64]]:
        """For each class, the indices of its images (sorted)."""
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(self.num_classes + 1))
        return [order[bounds[c] : bounds[c + 1]].astype(np.int64) for c in range(self.num_classes)]
