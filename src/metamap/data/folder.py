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

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator, PositiveFloat, model_validator

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
from metamap.section import own_error

__all__ = [
    "FolderData",
    "SplitFractions",
    "class_split",
    "folder_split_classes",
    "image_folder",
    "select_classes",
]

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

    dataset = cached_images(f"folder-{root_path.name}", key, plan, cache_dir).dataset
    return dataclasses.replace(dataset, inverted=invert)


def _whole(fractions: tuple[float, float, float]) -> tuple[float, float, float]:
    """``fractions`` if they add up to 1: the split cuts the classes at the first two, so a
    third that does not make up the rest would be silently replaced by the remainder."""
    total = sum(fractions)
    if not math.isclose(total, 1.0, rel_tol=0.0, abs_tol=1e-6):
        raise own_error(
            f"the train, val and test fractions of the classes must add up to 1, got "
            f"{list(fractions)} (sum {total:g}); e.g. [0.6, 0.2, 0.2]"
        )
    return fractions


SplitFractions = Annotated[
    tuple[PositiveFloat, PositiveFloat, PositiveFloat], AfterValidator(_whole)
]
"""A ``split_fractions`` setting: the positive fractions of the classes in train, val and test,
adding up to 1."""


def _cuts(n: int, fractions: Sequence[float]) -> tuple[int, int]:
    """Where the seeded permutation of ``n`` classes is cut into train | val | test."""
    a = round(fractions[0] * n)
    return a, a + round(fractions[1] * n)


def _sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    a, b = _cuts(n, fractions)
    return a, b - a, n - b


def folder_split_classes(
    class_names: Sequence[str],
    fractions: Sequence[float],
    lists: Mapping[str, Sequence[str] | None] | None = None,
    seed: int = 0,
) -> dict[str, list[int]]:
    """The class indices of a folder's ``train``, ``val``, ``trainval`` and ``test`` splits:
    the classes named in ``lists`` (``{"train": [...], "val": [...], "test": [...]}``; all
    three or none), else a seeded permutation of the classes cut in the proportions
    ``fractions``. Raises :class:`DataError` for unknown or repeated names, classes in two
    lists, and splits with fewer than 2 classes, saying what would work."""
    n = len(class_names)
    if lists and any(v is not None for v in lists.values()):
        index = {c: i for i, c in enumerate(class_names)}
        out: dict[str, list[int]] = {}
        for part in ("train", "val", "test"):
            names = list(lists.get(part) or [])
            unknown = [c for c in names if c not in index]
            if unknown:
                raise DataError(
                    f"data.{part}_classes names {', '.join(map(repr, unknown[:5]))}, which "
                    f"is not a class folder; the classes are {', '.join(class_names[:10])}"
                    + (" …" if n > 10 else "")
                )
            out[part] = sorted({index[c] for c in names})
        twice = set(out["train"]) & set(out["test"]) | set(out["val"]) & set(out["test"])
        twice |= set(out["train"]) & set(out["val"])
        if twice:
            shown = ", ".join(repr(class_names[i]) for i in sorted(twice)[:5])
            raise DataError(f"class(es) {shown} are in two of data.train/val/test_classes")
    else:
        perm = np.random.default_rng(seed).permutation(n)
        a, b = _cuts(n, fractions)
        out = {"train": sorted(perm[:a]), "val": sorted(perm[a:b]), "test": sorted(perm[b:])}
    out["trainval"] = sorted(out["train"] + out["val"])
    small = {k: len(v) for k, v in out.items() if len(v) < 2 and k != "trainval"}
    if small:
        sizes = ", ".join(f"{k} {len(out[k])}" for k in ("train", "val", "test"))
        need = next((m for m in range(n + 1, 10_000) if min(_sizes(m, fractions)) >= 2), None)
        more = f"at least {need}" if need else "more"
        how = (
            "name the classes of each split with data.train_classes, data.val_classes and "
            "data.test_classes, or"
            if not lists or all(v is None for v in lists.values())
            else "change the lists, or"
        )
        raise DataError(
            f"a folder of {n} classes split {sizes} leaves the {' and '.join(small)} "
            f"split(s) with fewer than 2 classes (an episode needs 2 ways at least): {how} "
            f"add class folders ({more} give every split 2 classes at split_fractions "
            f"{list(fractions)}); episodes of N ways need N classes in the split they are "
            "drawn from"
        )
    return {k: [int(i) for i in v] for k, v in out.items()}


def select_classes(full: ImageClassDataset, chosen: Sequence[int], split: str) -> ImageClassDataset:
    """The images of classes ``chosen`` of ``full``, relabelled ``0 … len(chosen) - 1``."""
    keep = np.isin(full.labels, chosen)
    remap = np.full(full.num_classes, -1, dtype=np.int64)
    remap[list(chosen)] = np.arange(len(chosen))
    return ImageClassDataset(
        np.asarray(full.images[keep]),
        remap[full.labels[keep]],
        [full.class_names[i] for i in chosen],
        [s for s, k in zip(full.sources, keep, strict=True) if k] if full.sources else (),
        name=f"{full.name}:{split}",
        inverted=full.inverted,
    )


def class_split(
    full: ImageClassDataset,
    split: str,
    fractions: Sequence[float],
    seed: int = 0,
    lists: Mapping[str, Sequence[str] | None] | None = None,
) -> ImageClassDataset:
    """Split ``split`` (``train``, ``val``, ``trainval``, ``test``) of a folder's classes
    (:func:`folder_split_classes`), relabelled ``0 … n - 1``."""
    parts = ("train", "val", "trainval", "test")
    if split not in parts:
        raise DataError(f"a folder dataset has splits {'/'.join(parts)}, not {split!r}")
    chosen = folder_split_classes(full.class_names, fractions, lists, seed)[split]
    return select_classes(full, chosen, split)


@register_dataset
class FolderData(DatasetSection):
    """``data.name: folder``: your own images, ``root/<class>/<image>`` (:func:`image_folder`),
    decoded to ``channels`` and ``image_size``; the classes are split into train/val/test by a
    seeded permutation in the proportions ``split_fractions``."""

    name: Literal["folder"] = "folder"
    split_fractions: SplitFractions = (0.6, 0.2, 0.2)
    train_classes: list[str] | None = None
    """The class folders to train on (with ``val_classes`` and ``test_classes``, instead of
    the seeded ``split_fractions`` split); ``metamap train`` prints the split it uses."""
    val_classes: list[str] | None = None
    test_classes: list[str] | None = None
    invert: bool = False
    """Store ``255 - pixel`` (dark drawings on a light background become bright on black, as
    Omniglot is trained)."""
    skip_non_images: bool = False
    """Leave out files that are not images (``Thumbs.db``, ``notes.txt``) instead of refusing
    the folder; hidden files (``.DS_Store``) are always left out."""
    mean: tuple[float, ...] | None = None
    """Per-channel mean subtracted from pixels in [0, 1] (with ``std``; one value, or one per
    channel), in training and by every feature tool."""
    std: tuple[PositiveFloat, ...] | None = None
    """Per-channel standard deviation pixels in [0, 1] are divided by (with ``mean``)."""
    protocol: Literal["folder", "vinyals"] | None = None
    """Not used: older versions named a folder's split ``protocol: folder`` (and stored
    ``vinyals``, the Omniglot default, when none was given); kept so those configs and runs
    load and resume as they were."""

    def load(self, split: ClassSplit, progress: bool = False) -> ImageClassDataset:
        if self.root is None:
            raise DataError(
                "data.name 'folder' needs data.root: a folder with one sub-folder per class"
            )
        full = self._whole(self.root, progress)
        return class_split(full, split, self.split_fractions, lists=self.class_lists())

    def _whole(self, root: str, progress: bool = False) -> ImageClassDataset:
        """Every class folder of ``root``, decoded as this section says."""
        mode: Mode = "L" if self.channels == 1 else "RGB"
        return image_folder(
            root,
            self.image_size,
            mode,
            self.cache_dir,
            invert=self.invert,
            skip_non_images=self.skip_non_images,
            progress=progress,
        )

    def split_summary(self) -> str:
        if self.root is None:
            return ""
        full = self._whole(self.root)
        parts = folder_split_classes(full.class_names, self.split_fractions, self.class_lists())
        how = (
            "data.*_classes"
            if self.class_lists()
            else f"split_fractions {list(self.split_fractions)}"
        )

        def show(part: str) -> str:
            names = [full.class_names[i] for i in parts[part]]
            return f"{part} {len(names)} ({', '.join(names[:6])}{' …' if len(names) > 6 else ''})"

        return f"folder classes by {how}: " + "; ".join(show(p) for p in ("train", "val", "test"))

    def class_lists(self) -> dict[str, list[str] | None] | None:
        """The explicit class lists, or ``None`` for the ``split_fractions`` split."""
        lists = {"train": self.train_classes, "val": self.val_classes, "test": self.test_classes}
        return lists if any(v is not None for v in lists.values()) else None

    def preprocessing(self) -> dict[str, Any]:
        return {
            **super().preprocessing(),
            "invert": self.invert,
            "mean": self.mean,
            "std": self.std,
        }

    @model_validator(mode="after")
    def _normalisation(self) -> FolderData:
        given = [k for k in ("train", "val", "test") if getattr(self, f"{k}_classes") is not None]
        if given and len(given) != 3:
            missing = [f"{k}_classes" for k in ("train", "val", "test") if k not in given]
            raise own_error(
                f"give all three class lists; {', '.join(missing)} missing", given[0] + "_classes"
            )
        if (self.mean is None) != (self.std is None):
            raise own_error("give both mean and std, or neither", "mean")
        for key, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, self.channels):
                raise own_error(
                    f"{len(values)} values for {self.channels} channel(s): give one value, or "
                    "one per channel",
                    key,
                )
        return self

    def split_note(self) -> str:
        return " (folder split)"
