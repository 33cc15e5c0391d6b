"""Decoding one image file into a ``(C, H, W)`` uint8 array, with Pillow.

An image is opened, converted to the requested colour mode (``"L"``: one grey channel, ``"RGB"``:
three), resized to the requested ``(H, W)`` — directly, without keeping the aspect ratio, as the
few-shot benchmarks do (mini-ImageNet and CUB at 84×84, Ravi & Larochelle 2017; Omniglot at 28×28,
Vinyals et al. 2016, Santoro et al. 2016) — and optionally inverted (``255 - value``). Resizing
uses Lanczos by default, i.e. with antialiasing; the filter is a parameter and part of every cache
key.

A file Pillow cannot read or decode raises :class:`~metamap.errors.DataError` naming the file.
:func:`list_images` lists a folder's image files (by extension) and refuses — naming them — any
other files, unless ``skip_non_images=True``; hidden files (``.DS_Store``, ...) are always skipped.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from metamap.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESAMPLE_FILTERS",
    "DecodeOptions",
    "Decoding",
    "Mode",
    "Resample",
    "class_folders",
    "decode_image",
    "decode_images",
    "image_names",
    "list_images",
    "parse_size",
]

Mode = Literal["L", "RGB"]
Resample = Literal["lanczos", "bilinear", "bicubic", "box", "nearest"]

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)

RESAMPLE_FILTERS: dict[str, Image.Resampling] = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "nearest": Image.Resampling.NEAREST,
}


class DecodeOptions(TypedDict, total=False):
    """How a loader of photographs (mini/tiered-ImageNet, CUB) decodes them, as keyword
    arguments: the fields of :class:`Decoding`."""

    image_size: int | Sequence[int]
    resample: Resample
    draft: bool
    cache_dir: str | os.PathLike[str] | None
    progress: bool


@dataclass(frozen=True)
class Decoding:
    """How a loader of photographs decodes them: resized to ``image_size`` (``84`` or ``(H, W)``)
    with the ``resample`` filter, JPEGs decoded at a reduced size first when ``draft`` (much
    faster, nearly the same pixels), cached under ``cache_dir`` (default ``$METAMAP_CACHE`` or
    ``~/.cache/metamap``), with a progress bar when ``progress``. All but ``cache_dir`` and
    ``progress`` are part of the cache key."""

    image_size: int | Sequence[int] = 84
    resample: Resample = "lanczos"
    draft: bool = True
    cache_dir: str | os.PathLike[str] | None = None
    progress: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return parse_size(self.image_size)

    def decode(self, paths: Sequence[str], out: npt.NDArray[np.uint8], desc: str) -> None:
        """Decode the photographs at ``paths`` into ``out`` ``(N, 3, H, W)`` as RGB
        (:func:`decode_images`), ``desc`` naming them on the progress bar."""
        decode_images(
            paths,
            out,
            self.size,
            "RGB",
            resample=self.resample,
            draft=self.draft,
            progress=self.progress,
            desc=desc,
        )


def parse_size(size: int | Sequence[int]) -> tuple[int, int]:
    """``28`` → ``(28, 28)``; ``(H, W)`` → ``(H, W)``. Sizes must be positive."""
    hw = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"image size must be a positive int or (height, width), got {size!r}")
    return hw[0], hw[1]


def _check(mode: str, resample: str) -> None:
    if mode not in ("L", "RGB"):
        raise ValueError(f"mode must be 'L' or 'RGB', got {mode!r}")
    if resample not in RESAMPLE_FILTERS:
        raise ValueError(f"resample must be one of {sorted(RESAMPLE_FILTERS)}, got {resample!r}")


def decode_image(
    source: str | os.PathLike[str] | bytes,
    size: int | Sequence[int] | None,
    mode: Mode = "L",
    *,
    resample: Resample = "lanczos",
    invert: bool = False,
    draft: bool = False,
    name: str | None = None,
) -> npt.NDArray[np.uint8]:
    """Decode an image file (or its bytes) into a ``(C, H, W)`` uint8 array.

    ``size`` is ``(H, W)`` or an int for a square, or ``None`` to keep the image's size.
    ``draft=True`` lets the JPEG decoder downscale by a power of two while decoding (never below
    ``size``), which makes large photos several times faster to decode at a tiny cost in
    fidelity; it does nothing for other formats. ``name`` names the image in error messages
    (defaults to the path). Unreadable or corrupt images raise :class:`DataError`.
    """
    _check(mode, resample)
    hw = parse_size(size) if size is not None else None
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    fp: str | os.PathLike[str] | io.BytesIO = (
        io.BytesIO(source) if isinstance(source, bytes) else source
    )
    try:
        with Image.open(fp) as im:
            if draft and hw is not None and im.format == "JPEG":
                im.draft(mode, (hw[1], hw[0]))
            im.load()
            img: Image.Image = im
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            if img.mode != mode:
                img = img.convert(mode)
            if hw is not None and img.size != (hw[1], hw[0]):
                img = img.resize((hw[1], hw[0]), RESAMPLE_FILTERS[resample])
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError as e:
        raise DataError(f"image file {label} does not exist") from e
    except UnidentifiedImageError as e:
        raise DataError(
            f"{label} is not an image Pillow can read (not an image file, or its header is "
            "corrupt); remove it or replace it with a valid image"
        ) from e
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(
            f"cannot decode image {label} ({type(e).__name__}: {e}); the file is corrupt or "
            "truncated: replace it (re-download or re-extract the dataset)"
        ) from e
    chw = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    if invert:
        chw = 255 - chw
    return np.ascontiguousarray(chw, dtype=np.uint8)


def decode_images(
    paths: Sequence[str | os.PathLike[str]],
    out: npt.NDArray[np.uint8],
    size: int | Sequence[int],
    mode: Mode = "L",
    *,
    resample: Resample = "lanczos",
    invert: bool = False,
    draft: bool = False,
    progress: bool = False,
    desc: str = "decoding",
    on_image: Callable[[int], None] | None = None,
) -> None:
    """Decode ``paths[i]`` into ``out[i]`` (``out``: ``(N, C, H, W)`` uint8, e.g. a cache file).

    ``progress=True`` shows a tqdm bar. ``on_image(i)`` is called after each image (tests use it
    to count decodes).
    """
    if out.shape[0] != len(paths):
        raise ValueError(f"{len(paths)} paths for an output of {out.shape[0]} images")
    from metamap.progress import progress_bar

    for i, path in enumerate(progress_bar(paths, desc=desc, disable=not progress, unit="img")):
        out[i] = decode_image(path, size, mode, resample=resample, invert=invert, draft=draft)
        if on_image is not None:
            on_image(i)


def class_folders(root: str | os.PathLike[str]) -> list[Path]:
    """The class sub-folders of ``root`` (hidden ones skipped), sorted by name.

    The one rule for a class-per-folder tree, shared by training (:func:`~metamap.data.
    image_folder`) and the feature tools (``metamap extract``/``fewshot``): an image file
    directly beside class folders belongs to no class, so it is refused (:class:`DataError`
    naming it) rather than silently dropped by one tool and labelled by another; other files
    there (a README, a licence, a CSV of splits) are ignored by both.
    """
    root = Path(root)
    dirs, loose = [], []
    with os.scandir(root) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                dirs.append(root / entry.name)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                loose.append(entry.name)
    if dirs and loose:
        loose.sort()
        shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        raise DataError(
            f"{str(root)!r} mixes class folders with image files directly in it ({shown}), "
            "which belong to no class: move each into its class's folder, or out of the tree"
        )
    return sorted(dirs, key=lambda p: p.name)


def list_images(folder: str | os.PathLike[str], *, skip_non_images: bool = False) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name.

    Files are recognised by extension (:data:`IMAGE_EXTENSIONS`, case-insensitive). Hidden files
    (name starting with ``.``) are ignored. Any other entry — a non-image file or a sub-folder —
    raises :class:`DataError` naming it, unless ``skip_non_images=True``.
    """
    folder = Path(folder)
    return [folder / name for name in image_names(folder, skip_non_images=skip_non_images)]


def image_names(folder: str | os.PathLike[str], *, skip_non_images: bool = False) -> list[str]:
    """Like :func:`list_images`, but the sorted file *names* (fast: no ``Path`` objects)."""
    names: list[str] = []
    others: list[str] = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                names.append(entry.name)
            else:
                others.append(entry.name + ("/" if entry.is_dir() else ""))
    if others and not skip_non_images:
        others.sort()
        shown = ", ".join(repr(o) for o in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        raise DataError(
            f"{os.fspath(folder)!r} holds entries that are not image files: {shown}{more}. An "
            f"image folder may hold only images ({', '.join(sorted(IMAGE_EXTENSIONS))}); remove "
            "them, or skip them: --skip-non-images on the command line, data.skip_non_images: "
            "true in a config, skip_non_images=True to image_folder or load_image_files in Python"
        )
    names.sort()
    return names
