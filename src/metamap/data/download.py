"""Downloading a dataset file: sha256-verified, resumable, standard library only (``urllib``).

:func:`download_url` streams a URL into ``<dest>.part``. If a ``.part`` file is already there (an
earlier download was interrupted), it asks the server for the rest with an HTTP ``Range`` request
and appends; a server that ignores ranges sends the whole file, which then replaces the partial
one. A connection that drops mid-way is retried (resuming) a few times. When the file is complete
its sha256 is checked: on a mismatch the partial file is deleted and :class:`DataError` names the
file and both hashes; on a match the ``.part`` file is renamed to ``dest`` (atomically), so
``dest`` only ever exists complete and verified.

``md5`` pins a file by the MD5 its publisher gives where no sha256 is published (the CIFAR-100
page lists MD5s only; the Omniglot zips are known by the MD5s torchvision pins); both are
checked when both are given, and the sha256 of a file accepted by its MD5 alone is logged, so it
can be pinned. With neither, the file is "not pinned": accepted as downloaded, its sha256 logged.

:func:`verify_file` checks a file found on disk (an archive or list a user put under a data root,
or a download kept in the cache) against the same pins, before a loader uses it; loaders skip it
with ``verify=False`` (in a config, ``data.verify_checksums: false``) for a user's own modified
copy of an official file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from metamap.data.cache import file_checksum
from metamap.errors import DataError

__all__ = ["download_url", "verify_file"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def _digests(path: Path) -> dict[str, str]:
    """``{"sha256": ..., "md5": ...}`` of a file, in one pass."""
    hashes = {"sha256": hashlib.sha256(), "md5": hashlib.md5(usedforsecurity=False)}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            for h in hashes.values():
                h.update(chunk)
    return {k: h.hexdigest() for k, h in hashes.items()}


_HEX_DIGITS = {"sha256": 64, "md5": 32}


def _pins(sha256: str | None, md5: str | None) -> dict[str, str]:
    pins = {k: v.lower() for k, v in (("sha256", sha256), ("md5", md5)) if v}
    for k, v in pins.items():
        if not re.fullmatch(rf"[0-9a-f]{{{_HEX_DIGITS[k]}}}", v):
            raise ValueError(f"{k} must be {_HEX_DIGITS[k]} hex digits, got {v!r}")
    return pins


def _mismatches(digests: dict[str, str], pins: dict[str, str]) -> list[str]:
    return [f"expected {k} {v}, got {digests[k]}" for k, v in pins.items() if digests[k] != v]


def verify_file(
    path: str | os.PathLike[str],
    sha256: str | None = None,
    md5: str | None = None,
    *,
    what: str,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Check a local file against its pinned checksums (``sha256``, ``md5``: whichever are
    given; none: nothing to check); return its path.

    Raises :class:`DataError` naming the file (``what``: e.g. ``"Omniglot zip"``), the expected
    and actual hashes and the two ways out: delete it and download the official file again, or,
    for one's own modified copy, turn the check off (``verify=False``,
    ``data.verify_checksums: false``). With ``cache_dir``, each hash is memoised in its
    ``checksums.json`` (:func:`~metamap.data.cache.file_checksum`), so a large archive is hashed
    once, not on every run; without, both are computed in one pass.
    """
    path = Path(path)
    pins = _pins(sha256, md5)
    if not pins:
        return path
    digests: dict[str, str]
    try:
        if cache_dir is None:
            digests = _digests(path)
        else:
            with contextlib.suppress(OSError):  # the memo is only an accelerator
                Path(cache_dir).mkdir(parents=True, exist_ok=True)
            digests = {}
            if "sha256" in pins:
                digests["sha256"] = file_checksum(path, cache_dir)
            if "md5" in pins:
                digests["md5"] = file_checksum(path, cache_dir, algorithm="md5")
    except OSError as e:
        raise DataError(f"cannot read the {what} {path} to check it ({e})") from e
    wrong = _mismatches(digests, pins)
    if wrong:
        raise DataError(
            f"the {what} {path} is not the official file: {'; '.join(wrong)}. It is truncated, "
            "corrupt or another version: delete it and run again with download=True (in a "
            "config: data.download: true) to fetch the official file, or, if it is your own "
            "modified copy, pass verify=False (in a config: data.verify_checksums: false) to "
            "use it unchecked"
        )
    return path


def download_url(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    md5: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify its checksums (``sha256``,
    ``md5``: whichever are given), return ``dest``.

    If ``dest`` already exists and matches them (or none is given), nothing is downloaded. An
    existing ``dest`` that does not match is downloaded again. ``retries`` is the
    number of extra attempts (each resuming) after a network error or a short read; when they are
    used up, :class:`DataError` says so and the ``.part`` file is kept, so calling again resumes.
    """
    dest = Path(dest)
    pins = _pins(sha256, md5)
    if dest.is_file():
        if not pins or not _mismatches(_digests(dest), pins):
            return dest
        log.warning("%s does not match its checksum; downloading it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    last_error: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2.0**attempt, 10.0) * 0.1)
        try:
            complete = _fetch(url, part, timeout=timeout, progress=progress)
        except (OSError, http.client.HTTPException) as e:
            if isinstance(e, urllib.error.HTTPError) and e.code not in (
                408,
                429,
                500,
                502,
                503,
                504,
            ):
                raise DataError(
                    f"cannot download {url} to {dest}: HTTP {e.code} {e.reason}. Check the URL, "
                    "or download the file by hand and put it at that path"
                ) from e
            last_error = e
            continue
        if complete:
            break
        last_error = ConnectionError("the connection closed before the end of the file")
    else:
        raise DataError(
            f"cannot download {url} to {dest} after {retries + 1} attempts ({last_error}). "
            f"The partial download is kept at {part}: run again to resume, or download the file "
            "by hand and put it at that path"
        ) from last_error

    digests = _digests(part)
    wrong = _mismatches(digests, pins)
    if wrong:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise DataError(
            f"checksum mismatch for {dest.name} downloaded from {url}: {'; '.join(wrong)}. "
            "The partial download was removed; try again, and if it keeps failing the file at "
            "that URL has changed — download it by hand and check it"
        )
    if "sha256" not in pins:
        how = "md5 verified" if pins else "not pinned"
        log.info("%s downloaded (%s); sha256 %s", dest, how, digests["sha256"])
    os.replace(part, dest)
    return dest


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _fetch(url: str, part: Path, *, timeout: float, progress: bool) -> bool:
    """One attempt: append the rest of ``url`` to ``part``. True if the file is now complete."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "metamap"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the partial file is complete
            return True
        raise
    with response:
        status = getattr(response, "status", 200)
        total: int | None = None
        if status == 206:
            m = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if m is None or int(m.group(1)) != have:  # not the range we asked for: start over
                part.unlink(missing_ok=True)
                return False
            total = None if m.group(3) == "*" else int(m.group(3))
            mode = "ab"
        else:  # 200 (or a non-HTTP URL): the server sends the whole file
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            have = 0
            mode = "wb"
        from metamap.progress import progress_bar

        with (
            open(part, mode) as f,
            progress_bar(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=part.name[: -len(".part")],
                disable=not progress,
            ) as bar,
        ):
            shutil.copyfileobj(_Counting(response, bar.update), f, _CHUNK)
    size = part.stat().st_size
    return total is None or size >= total


class _Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class _Counting:
    """A read-only stream wrapper reporting the bytes read (for the progress bar)."""

    def __init__(self, stream: _Readable, report: Callable[[int], object]) -> None:
        self._stream = stream
        self._report = report

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._report(len(data))
        return data
