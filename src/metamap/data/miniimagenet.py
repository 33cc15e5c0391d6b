"""mini-ImageNet and tiered-ImageNet, built from your own ImageNet (ILSVRC-2012) training folder.

ImageNet cannot be redistributed, so both datasets are *built* from the user's copy of the
ILSVRC-2012 training images — one folder per synset, ``<imagenet>/n01532829/n01532829_1234.JPEG``
(also accepted: ``<imagenet>/train/n01532829/...``) — given by ``imagenet_root=`` or the environment
variable ``METAMAP_IMAGENET``, plus the published split lists (not shipped with metamap).

* **mini-ImageNet** (Vinyals et al. 2016; the split of Ravi & Larochelle 2017): 64 / 16 / 20
  classes × 600 images, resized to 84×84. The split CSVs (``train.csv``/``val.csv``/``test.csv``,
  header ``filename,label``, rows like ``n0153282900000005.jpg,n01532829``) come from
  ``splits_root=`` or ``METAMAP_MINIIMAGENET_SPLITS``. **File-name mapping:** the first 9
  characters of a CSV file name are the synset; the rest (before the extension) is the
  **1-based index** of the image in that synset's files **sorted by their numeric ImageNet id**
  (the number after ``_`` in ``n01532829_1234.JPEG``; ids sort numerically, not as text). This
  is the mapping of the widely used generator (github.com/yaoyao-liu/mini-imagenet-tools), which
  reproduces the original images.
* **tiered-ImageNet** (Ren et al. 2018, "Meta-learning for semi-supervised few-shot
  classification", ICLR): 608 classes grouped into 34 high-level categories, split 20 / 6 / 8
  categories (351 / 97 / 160 classes), all training images of each class (~1,300), 84×84. The
  class lists (``train.csv``/``val.csv``/``test.csv``, rows ``<class synset>,<category synset>``,
  as in github.com/renmengye/few-shot-ssl-public) come from ``splits_root=`` or
  ``METAMAP_TIEREDIMAGENET_SPLITS``.

Images are decoded as RGB and resized directly to ``image_size`` (default 84×84, aspect ratio not
kept, as in both papers) with Lanczos; with ``draft=True`` (default) the JPEG decoder first
downscales by a power of two (never below the target size), several times faster for a
negligible difference. Each split is decoded once into its own cache file (60,000 images are
~1.3 GB at 84×84; the tiered-ImageNet training split ~9 GB), keyed by the listed files'
sizes/modification times, the split list and the preprocessing.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
from typing_extensions import Unpack

from metamap.data.cache import CachePlan, cache_key, cached_images, folder_fingerprint
from metamap.data.dataset import ClassSplit, ImageClassDataset, split_parts
from metamap.data.images import DecodeOptions, Decoding, image_names
from metamap.data.registry import DatasetSection, register_dataset
from metamap.errors import DataError

__all__ = [
    "IMAGENET_ENV",
    "MINI_IMAGENET_SPLITS_ENV",
    "TIERED_IMAGENET_SPLITS_ENV",
    "MiniImageNetData",
    "TieredImageNetData",
    "mini_imagenet",
    "synset_files",
    "tiered_imagenet",
]

IMAGENET_ENV = "METAMAP_IMAGENET"
MINI_IMAGENET_SPLITS_ENV = "METAMAP_MINIIMAGENET_SPLITS"
TIERED_IMAGENET_SPLITS_ENV = "METAMAP_TIEREDIMAGENET_SPLITS"

_SPLITS = ("train", "val", "trainval", "test")
_SYNSET = re.compile(r"n\d{8}")
_MINI_NAME = re.compile(r"(n\d{8})(\d+)\.[A-Za-z]+")
_LAYOUT = "<imagenet>/<synset>/<synset>_<id>.JPEG (e.g. <imagenet>/n01532829/n01532829_1234.JPEG)"


def _imagenet_root(imagenet_root: str | os.PathLike[str] | None) -> Path:
    if imagenet_root is not None:
        root, where = Path(imagenet_root).expanduser(), f"imagenet_root={str(imagenet_root)!r}"
    elif os.environ.get(IMAGENET_ENV):
        root = Path(os.environ[IMAGENET_ENV]).expanduser()
        where = f"{IMAGENET_ENV}={str(root)!r}"
    else:
        raise DataError(
            "no ImageNet folder given: pass imagenet_root= or set "
            f"{IMAGENET_ENV} to your ILSVRC-2012 training images, laid out as {_LAYOUT}. "
            "ImageNet cannot be downloaded automatically (image-net.org requires an account)"
        )
    if not root.is_dir():
        raise DataError(f"ImageNet folder {where} does not exist; expected {_LAYOUT}")
    return root


def _splits_root(
    splits_root: str | os.PathLike[str] | None, env: str, what: str, source: str
) -> Path:
    if splits_root is not None:
        return Path(splits_root).expanduser()
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    raise DataError(
        f"no {what} split lists given: pass splits_root= or set {env} to a folder holding "
        f"train.csv, val.csv and test.csv ({source}); they are not shipped with metamap"
    )


def _id_key(name: str) -> tuple[int, int, str]:
    stem = name.rsplit(".", 1)[0]
    tail = stem.rsplit("_", 1)[-1]
    return (0, int(tail), name) if tail.isdigit() else (1, 0, name)


def synset_files(imagenet_root: str | os.PathLike[str], synset: str) -> tuple[str, list[str]]:
    """``(folder relative to imagenet_root, file names sorted by numeric ImageNet id)``."""
    root = Path(imagenet_root)
    for rel in (synset, f"train/{synset}"):
        if (root / rel).is_dir():
            names = sorted(image_names(root / rel), key=_id_key)
            if not names:
                raise DataError(f"ImageNet synset folder {root / rel} holds no images")
            return rel, names
    raise DataError(
        f"synset {synset} not found in the ImageNet folder {root}: expected {root / synset}/ "
        f"(layout {_LAYOUT}). Is it the ILSVRC-2012 *training* set, fully extracted?"
    )


def _read_csv(path: Path, what: str) -> tuple[str, list[list[str]]]:
    if not path.is_file():
        raise DataError(f"{what} split list {path} not found")
    text = path.read_text(encoding="utf-8")
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataError(f"{what} split list {path} is empty")
    return hashlib.sha256(text.encode()).hexdigest(), rows


def _build(
    name: str,
    root: Path,
    files: list[str],
    labels: list[int],
    class_names: list[str],
    extra_key: dict[str, object],
    meta: dict[str, object],
    d: Decoding,
) -> ImageClassDataset:
    hw, resample, draft = d.size, d.resample, d.draft
    paths = [os.path.join(root, f) for f in files]
    key = cache_key(
        source=folder_fingerprint(root, paths),
        loader=name,
        size=hw,
        mode="RGB",
        resample=resample,
        draft=draft,
        **extra_key,
    )

    def plan() -> CachePlan:
        def fill(out: npt.NDArray[np.uint8]) -> None:
            d.decode(paths, out, name)

        return CachePlan(
            labels=np.asarray(labels, dtype=np.int64),
            class_names=class_names,
            sources=files,
            image_shape=(3, *hw),
            fill=fill,
            meta=meta,
        )

    return cached_images(name, key, plan, d.cache_dir).dataset


def mini_imagenet(
    split: ClassSplit = "train",
    *,
    imagenet_root: str | os.PathLike[str] | None = None,
    splits_root: str | os.PathLike[str] | None = None,
    **decoding: Unpack[DecodeOptions],
) -> ImageClassDataset:
    """mini-ImageNet (Ravi & Larochelle 2017 split): 64 / 16 / 20 classes × 600, 3×84×84 uint8;
    ``trainval`` is train and val (80 classes), for final models trained on both.

    Classes are the synsets in the order they first appear in the CSV; images in CSV order.
    ``decoding``: :class:`~metamap.data.images.Decoding`'s fields (``image_size=84``, ...).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    root = _imagenet_root(imagenet_root)
    lists = _splits_root(
        splits_root,
        MINI_IMAGENET_SPLITS_ENV,
        "mini-ImageNet",
        "Ravi & Larochelle's CSVs, e.g. from github.com/twitter/meta-learning-lstm",
    )
    listing: dict[str, tuple[str, list[str]]] = {}
    label_of: dict[str, int] = {}
    class_names: list[str] = []
    files: list[str] = []
    labels: list[int] = []
    digests: list[str] = []
    paths = [lists / f"{p}.csv" for p in split_parts(split)]
    for path in paths:
        digest, rows = _read_csv(path, "mini-ImageNet")
        digests.append(digest)
        if [c.strip() for c in rows[0]] == ["filename", "label"]:
            rows = rows[1:]
        if not rows:
            raise DataError(f"mini-ImageNet split list {path} lists no images")
        for n, row in enumerate(rows, 2):
            m = _MINI_NAME.fullmatch(row[0].strip()) if len(row) == 2 else None
            if m is None or m.group(1) != row[1].strip():
                raise DataError(
                    f"{path}:{n}: expected '<synset><index>.jpg,<synset>' (e.g. "
                    f"'n0153282900000005.jpg,n01532829'), got {','.join(row)!r}"
                )
            synset, index = m.group(1), int(m.group(2))
            if synset not in listing:
                listing[synset] = synset_files(root, synset)
                label_of[synset] = len(class_names)
                class_names.append(synset)
            folder, names = listing[synset]
            if not 1 <= index <= len(names):
                raise DataError(
                    f"{path}:{n}: {row[0]} asks for image {index} of synset {synset}, which has "
                    f"{len(names)} images in {root / folder}; is the synset folder complete?"
                )
            files.append(f"{folder}/{names[index - 1]}")
            labels.append(label_of[synset])
    return _build(
        f"mini-imagenet-{split}",
        root,
        files,
        labels,
        class_names,
        {"split_csv": digests[0] if len(digests) == 1 else digests},
        {"split_csv": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths]},
        Decoding(**decoding),
    )


def tiered_imagenet(
    split: ClassSplit = "train",
    *,
    imagenet_root: str | os.PathLike[str] | None = None,
    splits_root: str | os.PathLike[str] | None = None,
    **decoding: Unpack[DecodeOptions],
) -> ImageClassDataset:
    """tiered-ImageNet (Ren et al. 2018): 351 / 97 / 160 classes, all their images, 3×84×84;
    ``trainval`` is train and val (448 classes).

    Classes are the synsets in CSV order; the category of each class is in the cache sidecar.
    ``decoding``: :class:`~metamap.data.images.Decoding`'s fields (``image_size=84``, ...).
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    root = _imagenet_root(imagenet_root)
    lists = _splits_root(
        splits_root,
        TIERED_IMAGENET_SPLITS_ENV,
        "tiered-ImageNet",
        "rows '<class synset>,<category synset>', e.g. from github.com/renmengye/"
        "few-shot-ssl-public, fewshot/data/tiered_imagenet_split/",
    )
    class_names: list[str] = []
    categories: list[str] = []
    files: list[str] = []
    labels: list[int] = []
    digests: list[str] = []
    paths = [lists / f"{p}.csv" for p in split_parts(split)]
    for path in paths:
        digest, rows = _read_csv(path, "tiered-ImageNet")
        digests.append(digest)
        if len(rows) > 1 and not _SYNSET.fullmatch(rows[0][0].strip()):
            rows = rows[1:]  # a header line
        for n, row in enumerate(rows, 1):
            synset = row[0].strip()
            if not _SYNSET.fullmatch(synset) or len(row) < 2:
                raise DataError(
                    f"{path}:{n}: expected '<class synset>,<category synset>' (e.g. "
                    f"'n02099267,n02098550'), got {','.join(row)!r}"
                )
            if synset in class_names:
                raise DataError(f"{path}:{n}: class {synset} is listed twice")
            folder, names = synset_files(root, synset)
            labels += [len(class_names)] * len(names)
            files += [f"{folder}/{name}" for name in names]
            class_names.append(synset)
            categories.append(row[1].strip())
    return _build(
        f"tiered-imagenet-{split}",
        root,
        files,
        labels,
        class_names,
        {"split_csv": digests[0] if len(digests) == 1 else digests},
        {
            "split_csv": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths],
            "categories": categories,
        },
        Decoding(**decoding),
    )


class _ImageNetData(DatasetSection):
    """What mini- and tiered-ImageNet share: ``root`` is an ImageNet train folder,
    ``splits_root`` the split CSVs; colour images resized to ``image_size``."""

    channels: Literal[1, 3] = 3

    colour: ClassVar[bool | None] = True
    keywords = ("imagenet_root", "splits_root", "image_size", "cache_dir", "progress")


@register_dataset
class MiniImageNetData(_ImageNetData):
    """``data.name: mini_imagenet``: :func:`mini_imagenet`."""

    name: Literal["mini_imagenet"] = "mini_imagenet"
    loader = staticmethod(mini_imagenet)


@register_dataset
class TieredImageNetData(_ImageNetData):
    """``data.name: tiered_imagenet``: :func:`tiered_imagenet`."""

    name: Literal["tiered_imagenet"] = "tiered_imagenet"
    loader = staticmethod(tiered_imagenet)
