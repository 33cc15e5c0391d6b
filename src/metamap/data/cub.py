"""CUB-200-2011 (Wah, Branson, Welinder, Perona & Belongie 2011): 200 bird species, 11,788 photos.

Read from the official ``CUB_200_2011.tgz`` — directly, without extracting it — or from its
extracted folder, given by ``root=`` or the environment variable ``METAMAP_CUB``. The layout used
is the official one::

    CUB_200_2011/classes.txt              "<class id> <class name>" ("1 001.Black_footed_Albatross")
    CUB_200_2011/images.txt               "<image id> <path under images/>"
    CUB_200_2011/image_class_labels.txt   "<image id> <class id>"
    CUB_200_2011/images/<class name>/<file>.jpg

**Few-shot split** (100 / 50 / 50 classes): the split of Hilliard et al. (2018) as implemented by
Chen et al. (2019, "A Closer Look at Few-shot Classification", ``write_CUB_filelist.py``) and used
by most later work: with classes in class-id order and ``i = id - 1``, class ``i`` is *train* if
``i % 2 == 0``, *val* if ``i % 4 == 1``, *test* if ``i % 4 == 3`` — interleaved, not contiguous
blocks of ids. ``splits_root=`` may instead name a folder with ``train.txt``/``val.txt``/
``test.txt`` listing class names (``001.Black_footed_Albatross``), one a line.

Images are whole photos (bounding boxes unused), decoded as RGB and resized directly to
``image_size`` (default 84×84) with Lanczos, JPEG draft decoding allowed (see
:mod:`metamap.data.images`); each split is cached once, keyed by the archive's sha256 (or the
folder's file sizes/modification times), the class lists and the preprocessing.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt
from typing_extensions import Unpack

from metamap.data.cache import (
    CachePlan,
    cache_key,
    cached_images,
    file_checksum,
    folder_fingerprint,
    resolve_cache_dir,
)
from metamap.data.dataset import ClassSplit, ImageClassDataset, split_parts
from metamap.data.images import DecodeOptions, Decoding, Resample, decode_image
from metamap.data.registry import DatasetSection, register_dataset
from metamap.errors import DataError

__all__ = ["CUB_ENV", "CubData", "cub", "cub_split_classes"]

CUB_ENV = "METAMAP_CUB"
_SPLITS = ("train", "val", "trainval", "test")
_META = ("classes.txt", "images.txt", "image_class_labels.txt")
_HOWTO = (
    "Get CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ and pass "
    f"root=<the .tgz, the folder holding it, or the extracted CUB_200_2011/ folder> (or set "
    f"{CUB_ENV}); the folder must hold classes.txt, images.txt, image_class_labels.txt and "
    "images/<class name>/*.jpg"
)


def cub_split_classes(class_ids: Sequence[int], split: str) -> list[int]:
    """The class ids of ``split`` under the Hilliard et al. / Chen et al. (2019) rule;
    ``trainval`` is train and val together."""
    rule = {"train": (2, 0), "val": (4, 1), "test": (4, 3)}
    if split == "trainval":
        ids = list(class_ids)
        return sorted({c for part in split_parts(split) for c in cub_split_classes(ids, part)})
    if split not in rule:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    mod, rem = rule[split]
    return [c for c in sorted(class_ids) if (c - 1) % mod == rem]


def _locate(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        base, where = Path(root).expanduser(), f"at root={str(root)!r}"
    elif os.environ.get(CUB_ENV):
        base = Path(os.environ[CUB_ENV]).expanduser()
        where = f"at {CUB_ENV}={str(base)!r}"
    else:
        raise DataError(f"CUB-200-2011 location not given. {_HOWTO}")
    for c in (base, base / "CUB_200_2011", base / "CUB_200_2011.tgz"):
        if (c.is_dir() and (c / "images.txt").is_file()) or c.is_file():
            return c
    raise DataError(f"CUB-200-2011 not found {where}. {_HOWTO}")


def _table(text: str, name: str, source: Path) -> list[tuple[int, str]]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        first, _, rest = line.strip().partition(" ")
        if not first.isdigit() or not rest:
            raise DataError(f"{source}: {name}:{n}: expected '<id> <value>', got {line!r}")
        rows.append((int(first), rest.strip()))
    if not rows:
        raise DataError(f"{source}: {name} is empty")
    return rows


def _archive_texts(archive: Path) -> tuple[str, dict[str, str]]:
    """(the member prefix, e.g. "CUB_200_2011/", and the metadata files' text)."""
    texts: dict[str, str] = {}
    prefix = None
    with tarfile.open(archive) as tf:
        for member in tf:
            head, _, base = member.name.rpartition("/")
            if member.isfile() and base in _META and (prefix is None or head + "/" == prefix):
                f = tf.extractfile(member)
                if f is not None:
                    texts[base] = f.read().decode("utf-8")
                    prefix = head + "/" if head else ""
            if len(texts) == len(_META):
                break
    missing = [m for m in _META if m not in texts]
    if missing or prefix is None:
        raise DataError(f"{archive} lacks {', '.join(missing)}: is it CUB_200_2011.tgz? {_HOWTO}")
    return prefix, texts


def cub(
    split: ClassSplit = "train",
    *,
    root: str | os.PathLike[str] | None = None,
    splits_root: str | os.PathLike[str] | None = None,
    **decoding: Unpack[DecodeOptions],
) -> ImageClassDataset:
    """CUB-200-2011, few-shot split (100 / 50 / 50 classes), ``(N, 3, H, W)`` uint8.

    ``trainval``: train and val (150 classes). Classes are in class-id order (with
    ``splits_root``, in list order), images in image-id order. ``decoding``:
    :class:`~metamap.data.images.Decoding`'s fields (``image_size=84``, ...).
    """
    d = Decoding(**decoding)
    resample, draft, progress, cache_dir = d.resample, d.draft, d.progress, d.cache_dir
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    source = _locate(root)
    listed: list[str] | None = None
    if splits_root is not None:
        listed = []
        for part in split_parts(split):
            path = Path(splits_root).expanduser() / f"{part}.txt"
            if not path.is_file():
                raise DataError(
                    f"split list {path} not found: splits_root must hold train.txt, val.txt and "
                    "test.txt naming CUB classes (e.g. 001.Black_footed_Albatross), one a line"
                )
            text = path.read_text(encoding="utf-8")
            listed += [ln.strip() for ln in text.splitlines() if ln.strip()]
        listed = list(dict.fromkeys(listed))  # a class listed twice is one class
    hw = d.size
    params = {"split": split, "classes": listed, "size": hw, "resample": resample, "draft": draft}
    if source.is_dir():
        texts = {
            m: (source / m).read_text(encoding="utf-8") for m in _META if (source / m).is_file()
        }
        missing = [m for m in _META if m not in texts]
        if missing:
            raise DataError(f"{source} lacks {', '.join(missing)}. {_HOWTO}")
        classes, files, labels = _select(texts, source, split, listed)
        paths = [os.path.join(source, "images", f) for f in files]
        meta_paths = [os.path.join(source, m) for m in _META]
        key = cache_key(
            source=folder_fingerprint(source, paths + meta_paths), loader="cub", **params
        )

        def plan() -> CachePlan:
            def fill(out: npt.NDArray[np.uint8]) -> None:
                d.decode(paths, out, "cub")

            return _plan(classes, files, labels, hw, fill, source)

    else:
        cache = resolve_cache_dir(cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        key = cache_key(source=file_checksum(source, cache), loader="cub", **params)

        def plan() -> CachePlan:
            try:
                prefix, texts = _archive_texts(source)
            except (tarfile.TarError, EOFError, OSError) as e:
                raise DataError(
                    f"cannot read {source} ({type(e).__name__}: {e}); it is corrupt or "
                    f"truncated. {_HOWTO}"
                ) from e
            classes, files, labels = _select(texts, source, split, listed)

            def fill(out: npt.NDArray[np.uint8]) -> None:
                _decode_from_archive(source, prefix, files, out, hw, resample, draft, progress)

            return _plan(classes, files, labels, hw, fill, source)

    return cached_images(f"cub-{split}", key, plan, cache_dir).dataset


def _plan(
    classes: list[str],
    files: list[str],
    labels: list[int],
    hw: tuple[int, int],
    fill: Callable[[npt.NDArray[np.uint8]], None],
    source: Path,
) -> CachePlan:
    return CachePlan(
        labels=np.asarray(labels, dtype=np.int64),
        class_names=classes,
        sources=[f"images/{f}" for f in files],
        image_shape=(3, *hw),
        fill=fill,
        meta={"source": str(source)},
    )


def _decode_from_archive(
    archive: Path,
    prefix: str,
    files: list[str],
    out: npt.NDArray[np.uint8],
    hw: tuple[int, int],
    resample: Resample,
    draft: bool,
    progress: bool,
) -> None:
    """One pass over the tar stream, decoding the listed images into ``out`` as they come."""
    from metamap.progress import progress_bar

    wanted = {f"{prefix}images/{f}": i for i, f in enumerate(files)}
    done = np.zeros(len(files), dtype=bool)
    try:
        with (
            tarfile.open(archive) as tf,
            progress_bar(total=len(files), desc="cub", unit="img", disable=not progress) as bar,
        ):
            for member in tf:
                i = wanted.get(member.name)
                f = tf.extractfile(member) if i is not None and member.isfile() else None
                if i is None or f is None:
                    continue
                out[i] = decode_image(
                    f.read(),
                    hw,
                    "RGB",
                    resample=resample,
                    draft=draft,
                    name=f"{archive}:{member.name}",
                )
                done[i] = True
                bar.update()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(
            f"cannot read {archive} ({type(e).__name__}: {e}); it is corrupt or truncated: "
            "download it again"
        ) from e
    if not done.all():
        absent = [files[i] for i in np.flatnonzero(~done)[:3].tolist()]
        raise DataError(
            f"{archive} lacks {int((~done).sum())} images listed in images.txt, e.g. "
            f"{', '.join(absent)}; the archive is incomplete: download it again"
        )


def _select(
    texts: dict[str, str], source: Path, split: str, listed: list[str] | None
) -> tuple[list[str], list[str], list[int]]:
    """(class names, image paths under images/, labels) of the split."""
    class_table = _table(texts["classes.txt"], "classes.txt", source)
    names = dict(class_table)
    images = dict(_table(texts["images.txt"], "images.txt", source))
    image_class = {
        i: int(c) if c.isdigit() else -1
        for i, c in _table(texts["image_class_labels.txt"], "image_class_labels.txt", source)
    }
    if listed is None:
        ids = cub_split_classes(list(names), split)
    else:
        by_name = {n: i for i, n in names.items()}
        unknown = [n for n in listed if n not in by_name]
        if unknown:
            raise DataError(f"the {split} list names unknown CUB classes: {', '.join(unknown[:5])}")
        ids = [by_name[n] for n in listed]
    position = {c: k for k, c in enumerate(ids)}
    chosen = sorted((position[image_class[i]], i) for i in images if image_class.get(i) in position)
    missing = [i for i in images if i not in image_class]
    if missing:
        raise DataError(
            f"{source}: image_class_labels.txt has no class for image ids {missing[:5]}"
        )
    if not chosen:
        raise DataError(f"{source}: no images of the CUB {split} classes")
    return [names[c] for c in ids], [images[i] for _, i in chosen], [p for p, _ in chosen]


@register_dataset
class CubData(DatasetSection):
    """``data.name: cub``: :func:`cub` from ``root`` (the folder or archive), colour images
    resized to ``image_size``."""

    name: Literal["cub"] = "cub"
    channels: Literal[1, 3] = 3

    colour: ClassVar[bool | None] = True

    loader = staticmethod(cub)
    keywords = ("root", "splits_root", "image_size", "cache_dir", "progress")
