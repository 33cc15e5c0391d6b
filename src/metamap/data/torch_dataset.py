"""Any PyTorch ``Dataset`` of ``(image, label)`` pairs as an :class:`ImageClassDataset`.

:func:`from_torch_dataset` reads a map-style ``torch.utils.data.Dataset`` (``len(dataset)`` and
``dataset[i]``) whose samples are ``(image, label)`` pairs — ``torchvision.datasets.ImageFolder``,
``CIFAR100``, ``Omniglot``, a ``Subset`` of one, or your own class — into the uint8
``(N, C, H, W)`` arrays episode samplers (:class:`metamap.tasks.EpisodeSampler`) and feature
extractors take. An image may be

* a PIL image, of any mode: converted to grey (``channels=1``) or RGB (``channels=3``), as
  :func:`~metamap.data.image_folder` converts files;
* a uint8 numpy array ``(H, W)`` or ``(H, W, C)`` (as PIL and OpenCV give them);
* a tensor ``(C, H, W)`` or ``(H, W)``, uint8 or floating point in ``[0, 1]`` (what
  ``transforms.ToTensor`` gives; floats are rounded to the nearest of 256 levels).

Arrays and tensors are taken with their channels: all must have ``channels`` of them. Every image
is resized to ``image_size`` with the ``resample`` filter (Lanczos: antialiased, as the loaders of
files do) unless it has that size already. Give images *before* normalisation (no
``transforms.Normalize``): the network's normalisation is applied by metamap.

Labels must be integers (Python, numpy or a one-element integer tensor); any set of values is
remapped in increasing order to ``0 … K - 1``. Class names come from ``class_names`` (indexed by
the dataset's own labels), else from the dataset's ``classes`` (torchvision's datasets have it,
also through ``Subset``), else the label values. File paths of ``ImageFolder``-like datasets
(``samples``) are kept as ``sources``.

The images are decoded into memory once per call (no on-disk cache, unlike
:func:`~metamap.data.image_folder`, whose cache is keyed by the folder's files): for a large
folder of images, ``image_folder`` is the faster way in.

A run config names a dataset of this kind with ``data.name: torch`` (:class:`TorchData`).
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import field_validator

from metamap.data.dataset import ClassSplit, ImageClassDataset
from metamap.data.folder import SplitFractions, class_split
from metamap.data.images import RESAMPLE_FILTERS, Resample, parse_size
from metamap.data.registry import DatasetSection, register_dataset
from metamap.errors import DataError
from metamap.section import own_error

__all__ = ["MapDataset", "TorchData", "from_torch_dataset", "import_object"]


class MapDataset(Protocol):
    """A map-style dataset: ``len(dataset)`` samples, ``dataset[i]`` the ``i``-th
    (``torch.utils.data.Dataset`` subclasses, torchvision's datasets, a list)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Any: ...


def _tensor_type() -> Any:
    """``torch.Tensor`` if torch is imported (it always is where a tensor exists), else ``None``."""
    torch = sys.modules.get("torch")
    return None if torch is None else torch.Tensor


def _is_tensor(x: Any) -> bool:
    tensor = _tensor_type()
    return tensor is not None and isinstance(x, tensor)


def from_torch_dataset(
    dataset: MapDataset,
    *,
    image_size: int | Sequence[int],
    channels: Literal[1, 3],
    name: str | None = None,
    class_names: Sequence[str] | None = None,
    resample: Resample = "lanczos",
    progress: bool = False,
) -> ImageClassDataset:
    """The ``(image, label)`` samples of a map-style ``dataset`` as an :class:`ImageClassDataset`
    of ``channels × image_size`` uint8 images and labels ``0 … K - 1`` (see the module's text).

    ``name`` (default: the dataset's class name) names it in messages and in episodes;
    ``class_names[label]`` names the dataset's class ``label``. Raises :class:`DataError` naming
    the sample at fault for anything that is not an ``(image, label)`` pair, a label that is not
    an integer, an image of another kind, channel count or range, and for an empty dataset.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {resample!r}")
    hw = parse_size(image_size)
    label = name or type(dataset).__name__
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(
            f"{label}: a map-style dataset is needed (len(dataset) and dataset[i], as "
            "torch.utils.data.Dataset subclasses and torchvision's datasets have); an "
            "IterableDataset cannot be read: collect its samples into a list first"
        ) from None
    if n == 0:
        raise DataError(f"{label} is empty: it has no (image, label) samples")
    from metamap.progress import progress_bar

    images = np.empty((n, channels, *hw), dtype=np.uint8)
    raw: list[int] = []
    first: tuple[int, int] | None = None  # (sample, channels) of the first array or tensor
    for i in progress_bar(range(n), desc=label, disable=not progress, unit="img"):
        sample = dataset[i]
        if not isinstance(sample, tuple | list) or len(sample) != 2:
            kind = type(sample).__name__
            size = f" of length {len(sample)}" if isinstance(sample, tuple | list) else ""
            raise DataError(
                f"{label}[{i}] is a {kind}{size}, not an (image, label) pair: the dataset's "
                "samples must be (image, label), as torchvision's classification datasets give"
            )
        image, target = sample
        raw.append(_label(target, label, i))
        pixels = _pixels(image, f"{label}[{i}]")
        if isinstance(pixels, np.ndarray):  # an array or a tensor: taken with its channels
            own = int(pixels.shape[2])
            if first is None:
                first = (i, own)
            if own != first[1]:
                raise DataError(
                    f"{label}[{i}] is an image of {own} channel(s) but {label}[{first[0]}] has "
                    f"{first[1]}: every image of a dataset must have the same channels"
                )
            if own != channels:
                raise DataError(
                    f"{label}[{i}] is an image of {own} channel(s) but channels={channels} was "
                    f"asked: pass channels={own} (arrays and tensors are taken with their "
                    "channels; only PIL images are converted)"
                )
        images[i] = _converted(pixels, channels, hw, resample)
    values = np.asarray(raw, dtype=np.int64)
    kept, labels = np.unique(values, return_inverse=True)
    names = _class_names(dataset, kept, class_names, label)
    return ImageClassDataset(
        images,
        labels.astype(np.int64).reshape(-1),
        names,
        _sources(dataset, n),
        name=label,
    )


def _label(target: Any, dataset: str, i: int) -> int:
    """The integer class index ``target``, else :class:`DataError`."""
    value: Any = target
    if _is_tensor(target):
        if target.numel() != 1 or target.is_floating_point() or target.is_complex():
            value = None
        else:
            value = target.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise DataError(
            f"{dataset}[{i}] has label {_short(target)} ({type(target).__name__}): labels must "
            "be integer class indices; map class names or one-hot targets to indices (e.g. "
            "with the dataset's target_transform)"
        )
    return int(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _pixels(image: Any, where: str) -> Image.Image | npt.NDArray[np.uint8]:
    """A PIL image as it is, an array or tensor as ``(H, W, C)`` uint8; :class:`DataError` for
    anything else."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        return _numpy_hwc(image, where)
    if _is_tensor(image):
        return _tensor_hwc(image, where)
    raise DataError(
        f"{where} has an image of type {type(image).__name__}: images must be PIL images, "
        "uint8 numpy arrays (H, W[, C]) or tensors (C, H, W)"
    )


def _converted(
    pixels: Image.Image | npt.NDArray[np.uint8], channels: int, hw: tuple[int, int], resample: str
) -> npt.NDArray[np.uint8]:
    """``(C, H, W)`` uint8 at size ``hw``: a PIL image converted to grey or RGB (``channels``),
    an ``(H, W, C)`` array (of ``channels`` already) transposed, each resized if it differs."""
    if isinstance(pixels, np.ndarray):
        if pixels.shape[:2] == hw:
            return np.ascontiguousarray(pixels.transpose(2, 0, 1))
        return _resized(Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels), hw, resample)
    img, mode = pixels, "L" if channels == 1 else "RGB"
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode != mode:
        img = img.convert(mode)
    return _resized(img, hw, resample)


def _resized(img: Image.Image, hw: tuple[int, int], resample: str) -> npt.NDArray[np.uint8]:
    if img.size != (hw[1], hw[0]):
        img = img.resize((hw[1], hw[0]), RESAMPLE_FILTERS[resample])
    arr = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))


def _numpy_hwc(image: npt.NDArray[Any], where: str) -> npt.NDArray[np.uint8]:
    """An ``(H, W, C)`` uint8 view of a numpy image ``(H, W)`` or ``(H, W, C)``."""
    shape = tuple(image.shape)
    if image.dtype != np.uint8:
        raise DataError(
            f"{where} has a numpy image of dtype {image.dtype}: numpy images must be uint8 "
            "(0…255), (H, W) or (H, W, C); give floats in [0, 1] as a (C, H, W) tensor"
        )
    if image.ndim == 2:
        return image[:, :, None]
    if image.ndim == 3 and shape[2] in (1, 3):
        return image
    hint = ""
    if image.ndim == 3 and shape[0] in (1, 3):
        hint = "; it looks like (C, H, W): transpose it to (H, W, C) or give it as a tensor"
    raise DataError(
        f"{where} has a numpy image of shape {shape}: numpy images must be (H, W) or (H, W, C) "
        f"with 1 or 3 channels{hint}"
    )


def _tensor_hwc(image: Any, where: str) -> npt.NDArray[np.uint8]:
    """An ``(H, W, C)`` uint8 array of a tensor image ``(C, H, W)`` or ``(H, W)``."""
    import torch

    x = image.detach().cpu()
    shape = tuple(x.shape)
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        hint = ""
        if x.dim() == 3 and x.shape[-1] in (1, 3):
            hint = "; it looks like (H, W, C): permute it to (C, H, W)"
        raise DataError(
            f"{where} has a tensor image of shape {shape}: tensor images must be (C, H, W) with "
            f"1 or 3 channels, or (H, W){hint}"
        )
    if x.is_floating_point():
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
        if not (lo >= 0.0 and hi <= 1.0):  # also refuses NaN
            hint = (
                "they look like 0…255 pixels: divide them by 255, or give uint8"
                if lo >= 0 and hi <= 255
                else "they look normalised: give images before transforms.Normalize (metamap "
                "applies the network's normalisation)"
            )
            raise DataError(
                f"{where} has a float image with values in [{lo:g}, {hi:g}]: float images must "
                f"lie in [0, 1]; {hint}"
            )
        x = (x.to(torch.float64) * 255.0).round().to(torch.uint8)
    elif x.dtype != torch.uint8:
        raise DataError(
            f"{where} has a tensor image of dtype {x.dtype}: tensor images must be uint8 "
            "(0…255) or floating point in [0, 1]"
        )
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())


def _unwrap(dataset: Any, n: int) -> tuple[Any, npt.NDArray[np.int64]]:
    """The dataset under any ``Subset`` s, and the index there of each of ``dataset``'s samples."""
    index = np.arange(n, dtype=np.int64)
    torch = sys.modules.get("torch")
    subset = None if torch is None else torch.utils.data.Subset
    while subset is not None and isinstance(dataset, subset):
        try:
            index = np.asarray(dataset.indices, dtype=np.int64)[index]
        except (TypeError, ValueError, IndexError):
            break
        dataset = dataset.dataset
    return dataset, index


def _class_names(
    dataset: Any,
    kept: npt.NDArray[np.int64],
    given: Sequence[str] | None,
    label: str,
) -> list[str]:
    """The name of each kept label value (in increasing order)."""
    if given is not None:
        outside = [int(v) for v in kept if not 0 <= v < len(given)]
        if outside:
            raise DataError(
                f"{label}: class_names has {len(given)} names but the labels include "
                f"{outside[:5]}: class_names[label] must name every label"
            )
        return [str(given[int(v)]) for v in kept]
    base, _ = _unwrap(dataset, 0)
    classes = getattr(base, "classes", None)
    if (
        isinstance(classes, Sequence)
        and not isinstance(classes, str)
        and int(kept[0]) >= 0
        and int(kept[-1]) < len(classes)
    ):
        return [str(classes[int(v)]) for v in kept]
    return [str(int(v)) for v in kept]


def _sources(dataset: Any, n: int) -> list[str]:
    """The file of each sample where the dataset lists them (``ImageFolder.samples``), else
    nothing."""
    base, index = _unwrap(dataset, n)
    samples = getattr(base, "samples", None)
    if not isinstance(samples, Sequence) or not len(samples):
        return []
    try:
        paths = [samples[int(j)][0] for j in index]
    except (TypeError, IndexError, KeyError):
        return []
    return [str(p) for p in paths] if all(isinstance(p, str) for p in paths) else []


_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def import_object(path: str) -> Any:
    """The object ``"package.module:attribute"`` names (the attribute may be dotted), imported
    with :mod:`importlib`; :class:`DataError` saying why not."""
    if not _IMPORT_PATH.match(path):
        raise DataError(f"{path!r} is not an import path: write 'package.module:attribute'")
    module_name, attribute = path.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise DataError(
            f"cannot import {module_name!r} (for {path!r}): {type(e).__name__}: {e}. The module "
            "must be importable by the Python that runs metamap: install it, or add its folder "
            "to PYTHONPATH (PYTHONPATH=. metamap train ... for a module beside you)"
        ) from e
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise DataError(f"{path!r}: {getattr(obj, '__name__', obj)!r} has no {part!r}")
        obj = getattr(obj, part)
    return obj


def _is_dataset(obj: Any) -> bool:
    """A map-style dataset object (not a class, not a function)."""
    return not isinstance(obj, type) and hasattr(obj, "__getitem__") and hasattr(obj, "__len__")


@functools.lru_cache(maxsize=1)
def _whole(path: str, image_size: int, channels: Literal[1, 3]) -> ImageClassDataset:
    """The one dataset ``path`` names, converted once per process (each split is a part)."""
    obj = import_object(path)
    name = path.split(":")[1]
    return from_torch_dataset(obj, image_size=image_size, channels=channels, name=name)


@register_dataset
class TorchData(DatasetSection):
    """``data.name: torch``: a PyTorch ``Dataset`` of ``(image, label)`` pairs that
    ``dataset`` names by import path (:func:`from_torch_dataset`), converted to ``channels``
    and ``image_size``.

    ``dataset: "package.module:attribute"`` names either

    * a function ``f(split) -> Dataset`` returning the dataset of one class split, called with
      ``"train"``, ``"val"``, ``"test"`` and, only where ``data.train_split`` asks for it,
      ``"trainval"`` (train and val together, e.g. ``ConcatDataset([f("train"), f("val")])``);
    * or one ``Dataset`` of every class, whose classes are split into train/val/test by a seeded
      permutation in the proportions ``split_fractions``, as a folder's are.

    The module must be importable by the Python that runs metamap (installed, or on
    ``PYTHONPATH``).
    """

    name: Literal["torch"] = "torch"
    dataset: str | None = None
    """``"package.module:attribute"``: a function of the split name returning a ``Dataset``,
    or one ``Dataset`` whose classes are split by ``split_fractions``."""
    split_fractions: SplitFractions = (0.6, 0.2, 0.2)
    """Only where ``dataset`` names one ``Dataset``: the fractions of its classes in train,
    val and test."""

    @field_validator("dataset")
    @classmethod
    def _import_path(cls, value: str | None) -> str | None:
        if value is not None and not _IMPORT_PATH.match(value):
            raise own_error(f"expected an import path 'package.module:attribute', got {value!r}")
        return value

    def load(self, split: ClassSplit, progress: bool = False) -> ImageClassDataset:
        if self.dataset is None:
            raise DataError(
                "data.name 'torch' needs data.dataset: 'package.module:attribute', a function "
                "of the split name returning a Dataset of (image, label) pairs, or one Dataset"
            )
        obj = import_object(self.dataset)
        if _is_dataset(obj):
            whole = _whole(self.dataset, self.image_size, self.channels)
            return class_split(whole, split, self.split_fractions)
        if not callable(obj):
            raise DataError(
                f"data.dataset {self.dataset!r} names a value of type {type(obj).__name__}: it "
                "must name a function of the split name returning a Dataset, or a Dataset"
            )
        factory: Callable[[str], Any] = obj
        made = factory(split)
        if not _is_dataset(made):
            raise DataError(
                f"data.dataset {self.dataset!r} returned a value of type {type(made).__name__} "
                f"for split {split!r}: it must return a map-style Dataset of (image, label) pairs"
            )
        name = f"{self.dataset.split(':')[1]}:{split}"
        return from_torch_dataset(
            made, image_size=self.image_size, channels=self.channels, name=name, progress=progress
        )

    def split_note(self) -> str:
        if self.dataset is None:
            return ""
        return f" ({self.dataset})"
