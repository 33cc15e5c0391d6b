"""Turning what a user hands the feature extractor into image tensors of the model's shape.

Accepted: a tensor or NumPy array of images ``(N, C, H, W)`` (or ``(N, H, W)`` for one channel;
uint8 in 0…255 or floating point in [0, 1]), an :class:`~metamap.data.ImageClassDataset`, one
image file, a list of image files, a folder of images (unlabelled), a folder with one
sub-folder of images per class (labelled by sub-folder name), or a map-style
``torch.utils.data.Dataset`` of ``(image, label)`` pairs such as torchvision's ``ImageFolder``
(:func:`~metamap.data.from_torch_dataset`; its images are decoded like files).

Which pixels get the model's inversion (:attr:`InputSpec.invert`): files, folders and torch
``Dataset`` s are raw, so they get it. Tensors and arrays are taken as the model's input already
(inverted, not yet normalised). An :class:`~metamap.data.ImageClassDataset` records whether its
loader inverted its pixels (``inverted``: metamap's Omniglot loaders always do,
:func:`~metamap.data.image_folder` with ``invert=True``), and :func:`dataset_pixels` puts either
kind in the model's form.

Tensors must already have the model's shape (a clear :class:`TaskShapeError` says which shape
otherwise), and float images must be finite and in [0, 1] (:func:`check_pixels` says which
range it found). Files are converted to the model's colour mode and resized to its size (as the
datasets are), and :attr:`LoadedImages.converted` counts how many needed it, so that callers can
say so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any, TypeAlias, get_args

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from metamap.data import ImageClassDataset, from_torch_dataset
from metamap.data.images import (
    IMAGE_EXTENSIONS,
    Resample,
    class_folders,
    decode_image,
    list_images,
)
from metamap.errors import DataError, TaskShapeError
from metamap.learners.checks import check_finite
from metamap.train import RunConfig
from metamap.train.build import preprocessing

__all__ = [
    "PIXEL_TOLERANCE",
    "ImageSource",
    "InputSpec",
    "LoadedImages",
    "as_image_tensor",
    "check_pixels",
    "dataset_pixels",
    "decode_torch_dataset",
    "input_spec",
    "load_image_files",
    "replace_spec",
]


@dataclass(frozen=True)
class InputSpec:
    """The images a backbone takes and how an image file becomes one: the model's preprocessing.

    ``channels`` × ``image_size`` × ``image_size`` pixels, decoded from a file in colour mode
    ``L`` (1 channel) or ``RGB`` (3), resized with the ``resample`` filter, and inverted
    (``255 - pixel``) when ``invert``, as the training data were (Omniglot: bright strokes on
    black); then, as floats in [0, 1], normalised per channel with ``mean``/``std`` when given,
    inside the extractor (and its exports). :func:`input_spec` reads it from a run config, so
    it travels with every checkpoint; :meth:`to_dict` is what exports record.
    """

    channels: int
    image_size: int
    resample: Resample = "lanczos"
    invert: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``mode`` added for readers)."""
        return {**asdict(self), "mode": self.mode}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        """The spec :meth:`to_dict` (or a dataset section's ``preprocessing()``) describes."""
        mean, std = data.get("mean"), data.get("std")
        return cls(
            channels=int(data["channels"]),
            image_size=int(data["image_size"]),
            resample=data.get("resample", "lanczos"),
            invert=bool(data.get("invert", False)),
            mean=None if mean is None else tuple(float(v) for v in mean),
            std=None if std is None else tuple(float(v) for v in std),
        )

    def preprocessing(self) -> str:
        """The decoding and normalisation in words, for messages and ``repr``."""
        steps = [f"{self.mode} {self.image_size}×{self.image_size} ({self.resample})"]
        steps += ["inverted"] * self.invert
        if self.mean is not None:
            steps.append(f"normalised mean {list(self.mean)} std {list(self.std or ())}")
        return ", ".join(steps)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def __str__(self) -> str:
        return f"{self.channels}×{self.image_size}×{self.image_size} ({self.mode})"


@dataclass
class LoadedImages:
    """Decoded images ``(N, C, H, W)`` uint8 with their files and (for class folders) labels."""

    images: npt.NDArray[np.uint8]
    files: list[str]
    labels: npt.NDArray[np.int64] | None = None
    class_names: list[str] = field(default_factory=list)
    converted: int = 0
    """How many files had another size or colour mode and were converted."""


ImageSource: TypeAlias = (
    Tensor
    | npt.NDArray[np.generic]
    | ImageClassDataset
    | LoadedImages
    | Dataset[Any]
    | str
    | os.PathLike[str]
    | Sequence[str | os.PathLike[str]]
)


def _decode(paths: Sequence[Path], spec: InputSpec) -> tuple[npt.NDArray[np.uint8], int]:
    out = np.empty((len(paths), *spec.shape), dtype=np.uint8)
    converted = 0
    size = (spec.image_size, spec.image_size)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:  # header only: the original size and mode
                converted += int(im.size != size or im.mode != spec.mode)
        except Exception:  # decode_image below names the file and the problem
            pass
        out[i] = decode_image(
            p,
            spec.image_size,
            spec.mode,  # type: ignore[arg-type]
            resample=spec.resample,
            invert=spec.invert,
        )
    return out, converted


def load_image_files(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    spec: InputSpec,
    *,
    labelled: bool | None = None,
    skip_non_images: bool = False,
) -> LoadedImages:
    """Decode a file, a list of files, a folder of images or a folder of class folders.

    ``labelled=True`` requires class folders, ``False`` a flat folder; ``None`` accepts either.
    Raises :class:`DataError` naming the path for a missing path, an empty folder, a class
    folder with no images, a file that is not an image (in a folder: unless
    ``skip_non_images``, which leaves such files out; hidden files are always left out), or a
    folder mixing images and folders.
    """
    if not isinstance(source, str | os.PathLike):
        paths = [Path(p) for p in source]
        if not paths:
            raise DataError("no image files given")
        if labelled:
            raise DataError("a list of files has no class labels; give a folder of class folders")
        for p in paths:
            if not p.is_file():
                raise DataError(f"image file {str(p)!r} does not exist")
        images, converted = _decode(paths, spec)
        return LoadedImages(images, [str(p) for p in paths], converted=converted)
    root = Path(source).expanduser()
    if root.is_file():
        if labelled:
            raise DataError(f"{str(root)!r} is a file; give a folder with one folder per class")
        return load_image_files([root], spec, labelled=False)
    if not root.is_dir():
        raise DataError(f"{str(root)!r} does not exist; give an image file or a folder of images")
    if not any(not e.name.startswith(".") for e in root.iterdir()):
        raise DataError(f"folder {str(root)!r} is empty; put images (or class folders) in it")
    dirs = class_folders(root)  # the rule training applies too
    if not dirs:
        if labelled:
            raise DataError(
                f"{str(root)!r} holds images but no class folders; put each class's images in "
                "its own sub-folder (root/<class>/<image>)"
            )
        files = list_images(root, skip_non_images=skip_non_images)  # names any non-image file
        if not files:
            raise DataError(
                f"folder {str(root)!r} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        images, converted = _decode(files, spec)
        return LoadedImages(images, [str(p) for p in files], converted=converted)
    if labelled is False:
        raise DataError(f"{str(root)!r} holds folders; give a folder of images")
    files, labels = [], []
    for label, d in enumerate(dirs):
        imgs = list_images(d, skip_non_images=skip_non_images)
        if not imgs:
            raise DataError(
                f"class folder {str(d)!r} holds no images; add images "
                f"({', '.join(sorted(IMAGE_EXTENSIONS))}) or remove the folder"
            )
        files += imgs
        labels += [label] * len(imgs)
    images, converted = _decode(files, spec)
    return LoadedImages(
        images,
        [str(p) for p in files],
        np.asarray(labels, dtype=np.int64),
        [d.name for d in dirs],
        converted,
    )


def dataset_pixels(dataset: ImageClassDataset, spec: InputSpec) -> npt.NDArray[np.uint8]:
    """The uint8 images of ``dataset`` in the form the model takes: inverted where ``spec``
    inverts and they are not (``dataset.inverted``), inverted back where they are and ``spec``
    does not, else as they are."""
    images = np.asarray(dataset.images)
    return 255 - images if dataset.inverted != spec.invert else images


def decode_torch_dataset(dataset: Dataset[Any], spec: InputSpec) -> ImageClassDataset:
    """The ``(image, label)`` pairs of a map-style torch ``dataset`` (e.g. torchvision's
    ``ImageFolder``) decoded like files to ``spec``'s colour mode and size, with its labels and
    class names (:func:`~metamap.data.from_torch_dataset`); the pixels stay raw (not inverted)."""
    return from_torch_dataset(
        dataset,  # type: ignore[arg-type]  # from_torch_dataset refuses one without len
        image_size=spec.image_size,
        channels=1 if spec.channels == 1 else 3,
        resample=spec.resample,
    )


PIXEL_TOLERANCE = 1e-6
"""How far float pixels may stray outside [0, 1] (rounding) and still be accepted."""


def check_pixels(x: Tensor, name: str = "images", *, uint8: bool = True) -> None:
    """Floating-point pixels ``x`` are finite and in [0, 1] (uint8 passes as it is).

    Raises :class:`TaskShapeError` naming ``name``, the number of NaN/inf values or the range
    found, and the likely fix (divide 0…255 pixels by 255; pass images before normalisation).
    ``uint8=False`` where uint8 pixels are not an alternative (the scikit-learn transformer's
    ``X``, which it converts to float32): the message then does not suggest them.
    """
    if not x.is_floating_point() or x.numel() == 0:
        return
    check_finite(x, name)
    with torch.no_grad():
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if lo >= -PIXEL_TOLERANCE and hi <= 1 + PIXEL_TOLERANCE:
        return
    if lo >= 0 and hi <= 255:
        hint = "they look like 0…255 pixels: divide them by 255" + (
            ", or pass them as uint8" if uint8 else ""
        )
    elif lo < 0:
        hint = (
            "they look normalised (mean/std) or shifted: pass the images before normalisation, "
            "the extractor takes raw pixels"
        )
    else:
        hint = "rescale them to [0, 1]"
    alternative = " (or give uint8 pixels, 0…255)" if uint8 else ""
    raise TaskShapeError(
        f"{name} are floating point with values from {lo:.4g} to {hi:.4g}, outside [0, 1]; "
        f"float images must lie in [0, 1]{alternative}: {hint}"
    )


def as_image_tensor(
    images: Tensor | npt.NDArray[np.generic], spec: InputSpec, name: str = "images"
) -> Tensor:
    """Images ``(N, C, H, W)`` (or ``(N, H, W)`` with one channel) as a float32 tensor in [0, 1].

    uint8 is divided by 255; floating point must already be in [0, 1] and finite
    (:func:`check_pixels`). Any other shape, dtype or range raises :class:`TaskShapeError`
    naming ``name`` and what was expected.
    """
    if isinstance(images, np.ndarray):
        array = np.ascontiguousarray(images)
        if not array.flags.writeable:  # a dataset's read-only memory map: torch wants a copy
            array = array.copy()
        images = torch.from_numpy(array)
    if not isinstance(images, Tensor):
        raise TaskShapeError(f"{name} must be a tensor or an array, got {type(images).__name__}")
    x = images
    if x.dim() == 3 and spec.channels == 1:
        x = x.unsqueeze(1)
    if x.dim() != 4 or tuple(x.shape[1:]) != spec.shape:
        raise TaskShapeError(
            f"{name} have shape {tuple(x.shape)} but this backbone takes (N, {spec.channels}, "
            f"{spec.image_size}, {spec.image_size}) — {spec}{_mismatch(x, spec)}. Resize them, "
            "or pass the image files or a folder, which are converted and resized automatically"
        )
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 255.0
    if not x.is_floating_point():
        raise TaskShapeError(f"{name} must be uint8 (0…255) or floating point (0…1), got {x.dtype}")
    check_pixels(x, name)
    return x.to(torch.float32)


def _mismatch(x: Tensor, spec: InputSpec) -> str:
    """What differs from ``spec`` in 4-D images ``x`` (channels, size), for messages."""
    if x.dim() != 4:
        return ""
    out = []
    if x.shape[1] != spec.channels:
        out.append(f"{x.shape[1]} channel(s) instead of {spec.channels}")
    if tuple(x.shape[2:]) != (spec.image_size, spec.image_size):
        out.append(
            f"{x.shape[2]}×{x.shape[3]} pixels instead of {spec.image_size}×{spec.image_size}"
        )
    return f" ({', '.join(out)})" if out else ""


def input_spec(cfg: RunConfig) -> InputSpec:
    """The preprocessing of a run (:func:`metamap.train.build.preprocessing`): what its
    checkpoint's encoder takes and how files become it."""
    return InputSpec.from_dict(preprocessing(cfg))


_SPEC_FIELDS = ("channels", "image_size", "resample", "invert", "mean", "std")


def replace_spec(spec: InputSpec, changes: Mapping[str, Any]) -> InputSpec:
    """``spec`` with the fields in ``changes`` replaced (an explicit override of a model's
    preprocessing); an unknown field or a bad value raises :class:`TaskShapeError` naming it."""
    unknown = sorted(set(changes) - set(_SPEC_FIELDS))
    if unknown:
        raise TaskShapeError(
            f"unknown preprocessing field(s) {', '.join(unknown)}; the fields are "
            f"{', '.join(_SPEC_FIELDS)}"
        )
    merged = {**spec.to_dict(), **changes}
    if merged["resample"] not in get_args(Resample):
        raise TaskShapeError(
            f"resample {merged['resample']!r} is not a filter; use one of "
            f"{', '.join(get_args(Resample))}"
        )
    if (merged["mean"] is None) != (merged["std"] is None):
        raise TaskShapeError("give both mean and std, or neither")
    for key in ("channels", "image_size"):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise TaskShapeError(f"{key} must be a positive integer, got {value!r}")
    if not isinstance(merged["invert"], bool | np.bool_):
        raise TaskShapeError(
            f"invert must be true or false, got {merged['invert']!r} (e.g. --preprocess "
            "invert=false)"
        )
    for key in ("mean", "std"):
        values = merged[key]
        if values is not None and (
            isinstance(values, str)
            or not isinstance(values, Sequence | np.ndarray)
            or len(values) not in (1, merged["channels"])
            or not all(isinstance(v, Real) and not isinstance(v, bool) for v in values)
        ):
            raise TaskShapeError(
                f"{key} must be a list of numbers, one value or one per channel "
                f"({merged['channels']}), got {values!r} (e.g. --preprocess {key}=[0.5])"
            )
    try:
        return InputSpec.from_dict(merged)
    except (TypeError, ValueError) as e:
        raise TaskShapeError(f"bad preprocessing {dict(changes)}: {e}") from None
