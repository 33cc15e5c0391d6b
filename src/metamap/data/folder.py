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

import numpy as np
import numpy.typing as npt

from metamap.data.cache import CachePlan, cache_key, cached_images, folder_fingerprint
from metamap.data.dataset import ImageClassDataset
from metamap.data.images import (
    IMAGE_EXTENSIONS,
    Mode,
    Resample,
    class_folders,
    decode_images,
    list_images,
    parse_size,
)
from metamap.errors import DataError

__all__ = ["image_folder"]

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
