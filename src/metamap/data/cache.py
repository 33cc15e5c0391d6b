"""Decode once, then memory-map: the on-disk cache every image loader goes through.

A dataset is decoded into one uint8 ``.npy`` file of shape ``(N, C, H, W)`` plus a small JSON
sidecar (labels, class names, source file names, loader metadata). Both are written to a temporary
file in the cache folder and renamed into place (``os.replace`` is atomic), the ``.npy`` first, so
an interrupted build leaves no half-written cache behind. Opening a cache is
``np.load(mmap_mode="r")``: no decoding, no copy, pages read on demand.

The file names carry a *key*, the sha256 of the source's checksum and of every preprocessing
parameter (image size, colour mode, resampling filter, ...), so a changed source or a changed
parameter gets a new cache instead of a stale one. Sources are check-summed as

* an archive: the sha256 of its bytes (memoised in ``checksums.json`` under the cache folder by
  path, size and modification time, so a 1 GB archive is hashed once, not on every open; the MD5
  a pinned archive is checked against is memoised there too);
* a folder: the sha256 of the sorted list of ``(relative path, size, mtime)`` of its files.

The cache folder is the ``cache_dir`` argument, else the environment variable ``METAMAP_CACHE``,
else ``~/.cache/metamap``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from metamap.data.dataset import ImageClassDataset
from metamap.errors import DataError
from metamap.fileio import atomic_write

__all__ = [
    "CACHE_ENV",
    "FORMAT",
    "FORMAT_VERSION",
    "CachePlan",
    "CachedImages",
    "atomic_write",
    "cache_key",
    "cached_images",
    "file_checksum",
    "folder_fingerprint",
    "resolve_cache_dir",
    "sha256_file",
]

CACHE_ENV = "METAMAP_CACHE"
FORMAT = "metamap-image-cache"
FORMAT_VERSION = 1
_CHECKSUMS = "checksums.json"

log = logging.getLogger(__name__)


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$METAMAP_CACHE``, else ``~/.cache/metamap``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "metamap"


def sha256_file(path: str | os.PathLike[str], *, chunk_size: int = 1 << 20) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks."""
    return _hash_file(path, "sha256", chunk_size)


def _hash_file(path: str | os.PathLike[str], algorithm: str, chunk_size: int = 1 << 20) -> str:
    h = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


_ALGORITHMS = ("sha256", "md5")


def file_checksum(
    path: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    *,
    algorithm: Literal["sha256", "md5"] = "sha256",
) -> str:
    """:func:`sha256_file` (or the MD5 with ``algorithm="md5"``), memoised in
    ``cache_dir/checksums.json`` by path, size and mtime.

    A file whose size or modification time changed is hashed again. The memo is only an
    accelerator: if it cannot be read or written, the hash is simply recomputed.
    """
    if algorithm not in _ALGORITHMS:
        raise ValueError(f"algorithm must be one of {_ALGORITHMS}, got {algorithm!r}")
    path = Path(path).resolve()
    st = path.stat()
    memo_path = Path(cache_dir) / _CHECKSUMS
    memo: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        loaded = json.loads(memo_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            memo = loaded
    entry = memo.get(str(path))
    if not (
        isinstance(entry, dict)
        and entry.get("size") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
    ):
        entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if isinstance(entry.get(algorithm), str):
        return str(entry[algorithm])
    digest = sha256_file(path) if algorithm == "sha256" else _hash_file(path, algorithm)
    memo[str(path)] = {**entry, algorithm: digest}
    with contextlib.suppress(OSError):
        atomic_write(memo_path, lambda f: f.write(json.dumps(memo, indent=1).encode()))
    return digest


def folder_fingerprint(
    root: str | os.PathLike[str], files: Iterable[str | os.PathLike[str]]
) -> str:
    """The sha256 of the sorted ``(path relative to root, size, mtime_ns)`` of ``files``.

    Cheap (one ``stat`` per file, no reading) and sensitive to any added, removed, renamed,
    resized or rewritten file.
    """
    root_s = os.fspath(root).rstrip(os.sep) + os.sep
    rows = []
    for f in files:
        path = os.fspath(f)
        st = os.stat(path)
        rel = path[len(root_s) :] if path.startswith(root_s) else os.path.relpath(path, root)
        rows.append((rel.replace(os.sep, "/"), st.st_size, st.st_mtime_ns))
    h = hashlib.sha256()
    for rel, size, mtime in sorted(rows):
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def cache_key(**parts: Any) -> str:
    """The sha256 of the JSON of ``parts`` (sorted keys): source checksum + preprocessing."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class CachePlan:
    """What a loader knows before decoding: the labels, names and sources, and how to decode.

    ``fill(out)`` must write image ``i`` into ``out[i]`` for every ``i`` (``out`` is the
    ``(N, C, H, W)`` uint8 memory map of the cache file being written). ``meta`` is stored in the
    sidecar (JSON-serialisable values only) and given back on every open.
    """

    labels: npt.NDArray[np.int64]
    class_names: Sequence[str]
    sources: Sequence[str]
    image_shape: tuple[int, int, int]
    fill: Callable[[npt.NDArray[np.uint8]], None]
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CachedImages:
    """An opened cache: the dataset (images memory-mapped), its metadata and where it lives."""

    dataset: ImageClassDataset
    meta: dict[str, Any]
    path: Path
    built: bool
    """True when this call decoded the source (a cache miss), False when it only opened."""


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "images"


def cached_images(
    name: str,
    key: str,
    plan: Callable[[], CachePlan],
    cache_dir: str | os.PathLike[str] | None = None,
) -> CachedImages:
    """Open the cache ``name``/``key``, building it with ``plan()`` first if it is missing.

    ``plan`` is only called on a miss, so listing and decoding costs nothing once the cache
    exists. A cache that cannot be read (truncated, wrong shape, other format version) is rebuilt.
    """
    folder = resolve_cache_dir(cache_dir)
    stem = f"{_safe_name(name)}-{key[:20]}"
    npy, sidecar = folder / f"{stem}.npy", folder / f"{stem}.json"
    opened = _open(npy, sidecar, key, name)
    if opened is not None:
        return opened
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(
            f"cannot create the cache folder {str(folder)!r} ({e}); pass cache_dir= or set "
            f"{CACHE_ENV} to a writable folder"
        ) from e
    t0 = time.perf_counter()
    p = plan()
    labels = np.asarray(p.labels, dtype=np.int64)
    n = int(labels.shape[0])
    if n == 0:
        raise DataError(f"{name}: no images to cache")
    if len(p.sources) not in (0, n):
        raise ValueError(f"{name}: {len(p.sources)} sources for {n} images")
    shape = (n, *p.image_shape)

    def write_images(f: IO[bytes]) -> None:
        header = {"descr": "|u1", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        f.flush()
        offset = f.tell()
        _reserve(f, offset + int(np.prod(shape)), folder)
        out = np.memmap(f, dtype=np.uint8, mode="r+", offset=offset, shape=shape)
        try:
            p.fill(out)
            out.flush()
        finally:
            del out

    atomic_write(npy, write_images)
    seconds = time.perf_counter() - t0
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "key": key,
        "shape": list(shape),
        "build_seconds": round(seconds, 3),
        "class_names": list(p.class_names),
        "labels": labels.tolist(),
        "sources": list(p.sources),
        "meta": dict(p.meta),
    }
    atomic_write(sidecar, lambda f: f.write(json.dumps(doc).encode()))
    log.info("decoded %s: %d images in %.1f s -> %s", name, n, seconds, npy)
    opened = _open(npy, sidecar, key, name)
    if opened is None:  # pragma: no cover - only if the disk lies
        raise DataError(f"the cache {str(npy)!r} just written cannot be read back")
    return CachedImages(opened.dataset, opened.meta, opened.path, built=True)


def _reserve(f: IO[bytes], size: int, folder: Path) -> None:
    """Give the file its full size, allocating the blocks where possible.

    Writing into a memory map of a sparse file on a full disk kills the process (SIGBUS), so the
    space is reserved up front (``posix_fallocate``) and a full disk is a clear error instead.
    """
    try:
        os.posix_fallocate(f.fileno(), 0, size)
        return
    except AttributeError:  # pragma: no cover - not on this platform
        pass
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DataError(
                f"not enough free space in the cache folder {folder} for {size / 1e6:.0f} MB of "
                f"decoded images; free some space, or pass cache_dir= / set {CACHE_ENV} to "
                "another folder"
            ) from e
    f.truncate(size)  # file systems without fallocate


def _open(npy: Path, sidecar: Path, key: str, name: str) -> CachedImages | None:
    if not (npy.is_file() and sidecar.is_file()):
        return None
    try:
        doc = json.loads(sidecar.read_text(encoding="utf-8"))
        if (
            doc.get("format") != FORMAT
            or doc.get("format_version") != FORMAT_VERSION
            or doc.get("key") != key
        ):
            raise ValueError("sidecar of another format or key")
        images = np.load(npy, mmap_mode="r", allow_pickle=False)
        if images.dtype != np.uint8 or list(images.shape) != list(doc["shape"]):
            raise ValueError(f"image array {images.dtype} {images.shape} != sidecar {doc['shape']}")
        dataset = ImageClassDataset(
            images=images,
            labels=np.asarray(doc["labels"], dtype=np.int64),
            class_names=tuple(doc["class_names"]),
            sources=tuple(doc["sources"]),
            name=str(doc.get("name", name)),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("cache %s is unreadable (%s); rebuilding it", npy, e)
        return None
    meta = doc.get("meta") or {}
    return CachedImages(dataset, dict(meta), npy, built=False)
