"""Your own images: a folder with one sub-folder per class, decoded once into the cache.

Layout::

    root/
      <class A>/img001.png, img002.jpg, ...
      <class B>/...

Classes are the sub-folders, sorted by name (label ``i`` is the ``i``-th), images inside each
class sorted by file name. Every image is converted to ``mode`` and resized to ``image_size`` (see
:mod:`metamap.data.images`), and the result is cached (see :mod:`metamap.data.cache`), keyed by
the folder's file list, sizes and modification times plus the preprocessing parameters: editing
the folder triggers a new decode, opening it again does not.

This is the "bring your own data" entry point for few-shot classification, in the form the
standard benchmarks (e.g. mini-ImageNet, Vinyals et al. 2016) are distributed in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from metamap.data.cache import CachePlan, cache_key, cached_images, folder_fingerprint
from metamap.data.dataset import ClassSplit, ImageClassDataset
from metamap.data.images import (
    IMAGE_EXTENSIONS,
    Mode,
    Resample,
    class_folders,
    decode_images,
    list_images,
    parse_size,
)
from metamap.data.registry import DatasetSection, register_dataset
from metamap.errors import DataError

__all__ = ["FolderData", "class_split", "image_folder"]

_LAYOUT = (
    "expected one sub-folder per class, each holding that class's images: "
    "root/<class name>/<image>.png|.jpg|..."
)


def image_folder(
    root: str | os.PathLike[str],
    image_size: int | Sequence[int] = 84,
    mode: Mode = "RGB",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    resample: Resample = "lanczos",
    invert: bool = False,
    skip_non_images: bool = False,
    progress: bool = False,
) -> ImageClassDataset:
    """Decode (once) and open a class-per-sub-folder image dataset.

    Raises :class:`DataError` if ``root`` is missing, has no class folders, a class folder is
    empty, holds non-image entries (unless ``skip_non_images=True``) or holds a corrupt image.
    """
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise DataError(f"image folder {str(root_path)!r} does not exist; {_LAYOUT}")
    class_dirs = class_folders(root_path)
    if not class_dirs:
        stray = [p.name for p in root_path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS][:3]
        hint = f" (found images directly in it: {', '.join(stray)}, ...)" if stray else ""
        raise DataError(f"{str(root_path)!r} has no class folders{hint}; {_LAYOUT}")
    files: list[Path] = []
    labels: list[int] = []
    for label, d in enumerate(class_dirs):
        imgs = list_images(d, skip_non_images=skip_non_images)
        if not imgs:
            raise DataError(
                f"class folder {str(d)!r} holds no images; add images or remove the folder"
            )
        files += imgs
        labels += [label] * len(imgs)
    hw = parse_size(image_size)
    channels = 1 if mode == "L" else 3
    key = cache_key(
        source=folder_fingerprint(root_path, files),
        loader="image_folder",
        size=hw,
        mode=mode,
        resample=resample,
        invert=invert,
    )

    def plan() -> CachePlan:
        def fill(out: npt.NDArray[np.uint8]) -> None:
            decode_images(
                files,
                out,
                hw,
                mode,
                resample=resample,
                invert=invert,
                progress=progress,
                desc=root_path.name,
            )

        return CachePlan(
            labels=np.asarray(labels, dtype=np.int64),
            class_names=[d.name for d in class_dirs],
            sources=[f.relative_to(root_path).as_posix() for f in files],
            image_shape=(channels, *hw),
            fill=fill,
            meta={"root": str(root_path.resolve())},
        )

    return cached_images(f"folder-{root_path.name}", key, plan, cache_dir).dataset


def class_split(
    full: ImageClassDataset, split: str, fractions: Sequence[float], seed: int = 0
) -> ImageClassDataset:
    """A seeded split of ``full``'s classes into train/val/test by ``fractions`` (disjoint
    classes; ``trainval`` is train and val together), relabelled ``0 … n - 1``."""
    parts = ("train", "val", "trainval", "test")
    if split not in parts:
        raise DataError(f"a folder dataset has splits {'/'.join(parts)}, not {split!r}")
    n = full.num_classes
    perm = np.random.default_rng(seed).permutation(n)
    a = round(fractions[0] * n)
    b = a + round(fractions[1] * n)
    chosen = np.sort(
        dict(zip(parts, (perm[:a], perm[a:b], perm[:b], perm[b:]), strict=True))[split]
    )
    if chosen.size < 2:
        raise DataError(
            f"the folder {full.name!r} has {n} classes: too few for a {split} split of "
            f"{tuple(fractions)}; add classes or change data.split_fractions"
        )
    keep = np.isin(full.labels, chosen)
    remap = np.full(n, -1, dtype=np.int64)
    remap[chosen] = np.arange(chosen.size)
    return ImageClassDataset(
        np.asarray(full.images[keep]),
        remap[full.labels[keep]],
        [full.class_names[i] for i in chosen],
        [s for s, k in zip(full.sources, keep, strict=True) if k] if full.sources else (),
        name=f"{full.name}:{split}",
    )


@register_dataset
class FolderData(DatasetSection):
    """``data.name: folder``: your own images, ``root/<class>/<image>`` (:func:`image_folder`),
    decoded to ``channels`` and ``image_size``; the classes are split into train/val/test by a
    seeded permutation in the proportions ``split_fractions``."""

    name: Literal["folder"] = "folder"
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    protocol: Literal["folder", "vinyals"] | None = None
    """Not used: older versions named a folder's split ``protocol: folder`` (and stored
    ``vinyals``, the Omniglot default, when none was given); kept so those configs and runs
    load and resume as they were."""

    def load(self, split: ClassSplit) -> ImageClassDataset:
        if self.root is None:
            raise DataError(
                "data.name 'folder' needs data.root: a folder with one sub-folder per class"
            )
        mode: Mode = "L" if self.channels == 1 else "RGB"
        full = image_folder(self.root, self.image_size, mode, self.cache_dir)
        return class_split(full, split, self.split_fractions)

    def split_note(self) -> str:
        return " (folder split)"
