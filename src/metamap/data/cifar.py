"""CIFAR-FS and FC100: few-shot splits of CIFAR-100 (Krizhevsky 2009), from its *binary* archive.

* **CIFAR-FS** (Bertinetto, Henriques, Torr & Vedaldi 2019, "Meta-learning with differentiable
  closed-form solvers", ICLR): the 100 fine classes split at random into 64 train, 16 val and 20
  test classes. The class names of each split are embedded below (:data:`CIFAR_FS_SPLITS`), as
  in the authors' split files; ``splits_root`` may name a folder with ``train.txt``/``val.txt``/
  ``test.txt`` (one class name a line) to use other lists.
* **FC100** (Oreshkin, Rodríguez & Lacoste 2018, "TADAM", NeurIPS): split by the 20 superclasses —
  12 train, 4 val, 4 test (:data:`FC100_SPLITS`), i.e. 60 / 20 / 20 fine classes — so that test
  classes are semantically far from training classes.

Both use all 600 images of each class (the 500 training and 100 test images of CIFAR-100), at
their native 32×32 RGB. The source is the official ``cifar-100-binary.tar.gz``
(https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz): ``train.bin``/``test.bin`` are
records of 1 coarse-label byte, 1 fine-label byte and 3,072 pixel bytes (1,024 red, then green,
then blue, each 32×32 row-major), and ``coarse_label_names.txt``/``fine_label_names.txt`` name the
labels. It is read directly, never unpickled (the "python version" of CIFAR is a pickle, which
can run arbitrary code on load, and is not supported). Each split is decoded once into its own
cache file, keyed by the archive's sha256.

An archive found on disk (given by ``root``, or downloaded earlier into the cache) is checked
against the pinned :data:`CIFAR100_BINARY_MD5` before it is read, like a download; the MD5 is
memoised in the cache folder's ``checksums.json``, so the 160 MB archive is hashed once, not on
every run. ``verify=False`` (in a config, ``data.verify_checksums: false``) skips the check, for
your own modified copy. An extracted ``cifar-100-binary/`` folder is not checked.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import PositiveInt

from metamap.data.cache import (
    CachePlan,
    cache_key,
    cached_images,
    file_checksum,
    resolve_cache_dir,
)
from metamap.data.dataset import ClassSplit, ImageClassDataset, split_parts
from metamap.data.download import download_url, verify_file
from metamap.data.registry import DatasetSection, register_dataset
from metamap.errors import DataError

__all__ = [
    "CIFAR100_BINARY_MD5",
    "CIFAR100_BINARY_SHA256",
    "CIFAR100_BINARY_URL",
    "CIFAR100_ENV",
    "CIFAR_FS_SPLITS",
    "FC100_SPLITS",
    "Cifar100",
    "CifarFSData",
    "FC100Data",
    "cifar_fs",
    "fc100",
    "read_cifar100_binary",
]

CIFAR100_ENV = "METAMAP_CIFAR100"
CIFAR100_BINARY_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz"
CIFAR100_BINARY_SHA256: str | None = None
"""``None``: the publisher gives no sha256 (that of a download is logged). The archive is pinned
by :data:`CIFAR100_BINARY_MD5`, and its records are checked too (sizes, label ranges, names)."""
CIFAR100_BINARY_MD5 = "03b5dce01913d631647c71ecec9e9cb8"
"""MD5 of the binary archive, as listed on https://www.cs.toronto.edu/~kriz/cifar.html."""
_ARCHIVE = "cifar-100-binary.tar.gz"
_RECORD = 2 + 3 * 32 * 32


CIFAR_FS_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "dolphin", "seal", "aquarium_fish", "ray", "trout", "orchid", "sunflower", "tulip",
        "bottle", "bowl", "can", "cup", "plate", "apple", "mushroom", "orange", "pear", "clock",
        "keyboard", "chair", "couch", "bee", "caterpillar", "cockroach", "bear", "lion", "tiger",
        "wolf", "bridge", "castle", "house", "road", "skyscraper", "cloud", "forest", "mountain",
        "elephant", "kangaroo", "porcupine", "possum", "raccoon", "skunk", "lobster", "spider",
        "boy", "girl", "dinosaur", "lizard", "snake", "turtle", "hamster", "mouse", "rabbit",
        "shrew", "squirrel", "oak_tree", "palm_tree", "pine_tree", "willow_tree", "bus", "train",
        "lawn_mower", "streetcar", "tank",
    ),
    "val": (
        "beaver", "otter", "flatfish", "shark", "lamp", "television", "beetle", "butterfly",
        "sea", "camel", "cattle", "crab", "crocodile", "maple_tree", "motorcycle", "tractor",
    ),
    "test": (
        "whale", "poppy", "rose", "sweet_pepper", "telephone", "bed", "table", "wardrobe",
        "leopard", "plain", "chimpanzee", "fox", "snail", "worm", "baby", "man", "woman",
        "bicycle", "pickup_truck", "rocket",
    ),
}  # fmt: skip
CIFAR_FS_SPLITS["trainval"] = CIFAR_FS_SPLITS["train"] + CIFAR_FS_SPLITS["val"]
"""CIFAR-FS classes (Bertinetto et al. 2019): 64 / 16 / 20 CIFAR-100 fine class names;
``trainval`` is train and val together (80), for final models trained on both."""

FC100_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "fish", "flowers", "food_containers", "fruit_and_vegetables",
        "household_electrical_devices", "household_furniture", "large_man-made_outdoor_things",
        "large_natural_outdoor_scenes", "reptiles", "trees", "vehicles_1", "vehicles_2",
    ),
    "val": (
        "large_carnivores", "large_omnivores_and_herbivores", "non-insect_invertebrates",
        "small_mammals",
    ),
    "test": ("aquatic_mammals", "insects", "medium_mammals", "people"),
}  # fmt: skip
FC100_SPLITS["trainval"] = FC100_SPLITS["train"] + FC100_SPLITS["val"]
"""FC100 superclasses (Oreshkin et al. 2018): 12 / 4 / 4 CIFAR-100 coarse class names;
``trainval`` is train and val together (16 superclasses, 80 classes)."""


def _howto(where: str) -> str:
    return (
        f"CIFAR-100 (binary version) not found {where}. Pass download=True to fetch "
        f"{CIFAR100_BINARY_URL} into the cache folder, or download it yourself and pass "
        f"root=<the .tar.gz, the folder holding it, or its extracted cifar-100-binary/ folder> "
        f"(or set {CIFAR100_ENV}). The pickled 'python version' is not supported"
    )


def _locate(
    root: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    download: bool,
    verify: bool = True,
) -> Path:
    """The archive (checked against its pins if ``verify``), or an extracted folder holding
    train.bin etc. (not checked)."""
    cache = resolve_cache_dir(cache_dir)
    cached = cache / "downloads" / _ARCHIVE
    if root is not None:
        base, where = Path(root).expanduser(), f"at root={str(root)!r}"
    elif os.environ.get(CIFAR100_ENV):
        base = Path(os.environ[CIFAR100_ENV]).expanduser()
        where = f"at {CIFAR100_ENV}={str(base)!r}"
    else:
        base, where = cached, f"(no root= given, {CIFAR100_ENV} unset, not in {cached})"
    for candidate in (base, base / _ARCHIVE, base / "cifar-100-binary"):
        if candidate.is_file():
            if verify:
                verify_file(
                    candidate,
                    CIFAR100_BINARY_SHA256,
                    CIFAR100_BINARY_MD5,
                    what="CIFAR-100 binary archive",
                    cache_dir=cache,
                )
            return candidate
        if (candidate / "train.bin").is_file():
            return candidate
    if download:
        return download_url(
            CIFAR100_BINARY_URL, cached, CIFAR100_BINARY_SHA256, md5=CIFAR100_BINARY_MD5
        )
    raise DataError(_howto(where))


def _names(text: bytes, what: str, source: Path) -> list[str]:
    names = [line.strip() for line in text.decode("utf-8").splitlines() if line.strip()]
    if not names:
        raise DataError(f"{source}: {what} is empty")
    return names


@dataclass(frozen=True)
class Cifar100:
    """The CIFAR-100 records: training set (``num_train`` records) first, then the test set."""

    images: npt.NDArray[np.uint8]
    fine: npt.NDArray[np.int64]
    coarse: npt.NDArray[np.int64]
    fine_names: list[str]
    coarse_names: list[str]
    num_train: int

    def source(self, i: int) -> str:
        """Where record ``i`` comes from: ``"train.bin#<k>"`` or ``"test.bin#<k>"``."""
        return f"train.bin#{i}" if i < self.num_train else f"test.bin#{i - self.num_train}"


def read_cifar100_binary(source: str | os.PathLike[str]) -> Cifar100:
    """Read the binary version of CIFAR-100 (``cifar-100-binary.tar.gz`` or its folder).

    Images are ``(N, 3, 32, 32)`` uint8 (60,000 for the real data).
    """
    source = Path(source)
    wanted = ("train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt")
    files: dict[str, bytes] = {}
    try:
        if source.is_dir():
            for w in wanted:
                if (source / w).is_file():
                    files[w] = (source / w).read_bytes()
        else:
            with tarfile.open(source) as tf:
                for member in tf:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in wanted and base not in files:
                        f = tf.extractfile(member)
                        if f is not None:
                            files[base] = f.read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(
            f"cannot read {source} ({type(e).__name__}: {e}); it is corrupt or truncated, or not "
            "the binary version of CIFAR-100: download cifar-100-binary.tar.gz again"
        ) from e
    missing = [w for w in wanted if w not in files]
    if missing:
        raise DataError(
            f"{source} lacks {', '.join(missing)}: is it the *binary* version of CIFAR-100 "
            f"({CIFAR100_BINARY_URL})? The pickled python version is not supported"
        )
    fine_names = _names(files["fine_label_names.txt"], "fine_label_names.txt", source)
    coarse_names = _names(files["coarse_label_names.txt"], "coarse_label_names.txt", source)
    chunks = []
    for w in ("train.bin", "test.bin"):
        raw = files[w]
        if len(raw) % _RECORD:
            raise DataError(
                f"{source}: {w} is {len(raw)} bytes, not a whole number of {_RECORD}-byte "
                "records (1 coarse label, 1 fine label, 3,072 pixels); the file is truncated"
            )
        chunks.append(np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD))
    records = np.concatenate(chunks)
    coarse = records[:, 0].astype(np.int64)
    fine = records[:, 1].astype(np.int64)
    if len(records) and (fine.max() >= len(fine_names) or coarse.max() >= len(coarse_names)):
        raise DataError(f"{source}: labels out of range of the label name files; it is corrupt")
    images = records[:, 2:].reshape(-1, 3, 32, 32)
    return Cifar100(images, fine, coarse, fine_names, coarse_names, num_train=len(chunks[0]))


def _split_dataset(
    name: str,
    classes_of: str,
    split: str,
    *,
    root: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    download: bool,
    verify: bool,
    wanted: Sequence[str],
    listing: str,
) -> ImageClassDataset:
    source = _locate(root, cache_dir, download, verify=verify)
    if source.is_file():
        cache = resolve_cache_dir(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        checksum = file_checksum(source, cache)
    else:
        checksum = "dir:" + ",".join(
            f"{w}:{(source / w).stat().st_size}:{(source / w).stat().st_mtime_ns}"
            for w in ("train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt")
            if (source / w).is_file()
        )
    key = cache_key(source=checksum, loader=name, split=split, classes=list(wanted))

    def plan() -> CachePlan:
        data = read_cifar100_binary(source)
        label_names = data.fine_names if classes_of == "fine" else data.coarse_names
        unknown = [w for w in wanted if w not in label_names]
        if unknown:
            raise DataError(
                f"{listing}: {', '.join(unknown)} not among the CIFAR-100 {classes_of} label "
                f"names of {source}"
            )
        by = data.fine if classes_of == "fine" else data.coarse
        keep = np.isin(by, [label_names.index(w) for w in wanted])
        fine_ids = np.unique(data.fine[keep])  # the split's classes, in fine-label order
        if not len(fine_ids):
            raise DataError(f"{source}: no images of the {name} {split} classes")
        position = np.full(len(data.fine_names), -1, dtype=np.int64)
        position[fine_ids] = np.arange(len(fine_ids))
        labels_all = position[data.fine]
        order = np.flatnonzero(labels_all >= 0)
        order = order[np.argsort(labels_all[order], kind="stable")]
        superclass = {int(f): int(c) for f, c in zip(data.fine, data.coarse, strict=True)}

        def fill(out: npt.NDArray[np.uint8]) -> None:
            out[:] = data.images[order]

        return CachePlan(
            labels=labels_all[order],
            class_names=[data.fine_names[i] for i in fine_ids.tolist()],
            sources=[data.source(i) for i in order.tolist()],
            image_shape=(3, 32, 32),
            fill=fill,
            meta={"superclasses": [data.coarse_names[superclass[i]] for i in fine_ids.tolist()]},
        )

    return cached_images(f"{name}-{split}", key, plan, cache_dir).dataset


def _read_list(splits_root: Path, split: str) -> tuple[str, ...]:
    path = splits_root / f"{split}.txt"
    if not path.is_file():
        raise DataError(
            f"split list {path} not found: splits_root must hold train.txt, val.txt and test.txt "
            "with one CIFAR-100 fine class name a line"
        )
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    names = tuple(n for n in names if n)
    if not names:
        raise DataError(f"split list {path} is empty")
    return names


def cifar_fs(
    split: ClassSplit = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    splits_root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    verify: bool = True,
) -> ImageClassDataset:
    """CIFAR-FS (Bertinetto et al. 2019): 64 / 16 / 20 classes × 600 images, 3×32×32 uint8.

    ``trainval``: the 80 classes of train and val. Classes are in CIFAR-100 fine-label
    (alphabetical) order. ``verify=False`` reads an archive found on disk without checking it
    against :data:`CIFAR100_BINARY_MD5` (your own modified copy; downloads are always checked).
    """
    if split not in CIFAR_FS_SPLITS:
        raise ValueError(f"split must be one of {sorted(CIFAR_FS_SPLITS)}, got {split!r}")
    if splits_root is not None:
        parts = split_parts(split)
        wanted = sum((_read_list(Path(splits_root).expanduser(), p) for p in parts), ())
        listing = " + ".join(str(Path(splits_root) / f"{p}.txt") for p in parts)
    else:
        wanted, listing = CIFAR_FS_SPLITS[split], "CIFAR_FS_SPLITS"
    return _split_dataset(
        "cifar-fs",
        "fine",
        split,
        root=root,
        cache_dir=cache_dir,
        download=download,
        verify=verify,
        wanted=wanted,
        listing=listing,
    )


def fc100(
    split: ClassSplit = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    verify: bool = True,
) -> ImageClassDataset:
    """FC100 (Oreshkin et al. 2018): the fine classes of 12 / 4 / 4 superclasses (60 / 20 / 20);
    ``trainval``: train and val (80).

    Classes are in CIFAR-100 fine-label order; image data and ``verify`` as :func:`cifar_fs`.
    """
    if split not in FC100_SPLITS:
        raise ValueError(f"split must be one of {sorted(FC100_SPLITS)}, got {split!r}")
    return _split_dataset(
        "fc100",
        "coarse",
        split,
        root=root,
        cache_dir=cache_dir,
        download=download,
        verify=verify,
        wanted=FC100_SPLITS[split],
        listing="FC100_SPLITS",
    )


class _CifarData(DatasetSection):
    """What CIFAR-FS and FC100 share: 3×32×32 images from the CIFAR-100 binary archive."""

    channels: Literal[1, 3] = 3
    image_size: PositiveInt = 32

    colour: ClassVar[bool | None] = True
    image_sizes: ClassVar[tuple[int, ...]] = (32,)


@register_dataset
class CifarFSData(_CifarData):
    """``data.name: cifar_fs``: :func:`cifar_fs` (``splits_root``: optional class lists)."""

    name: Literal["cifar_fs"] = "cifar_fs"

    loader = staticmethod(cifar_fs)
    keywords = ("root", "splits_root", "cache_dir", "download", "verify")


@register_dataset
class FC100Data(_CifarData):
    """``data.name: fc100``: :func:`fc100` (its split is by superclass; no lists)."""

    name: Literal["fc100"] = "fc100"

    loader = staticmethod(fc100)
    keywords = ("root", "cache_dir", "download", "verify")
