"""Safe extraction of zip and tar archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ...).

A dataset archive comes from the internet, so it is checked before anything is written.

**Limits.** :func:`extract_archive` first reads the archive's listing (a zip's central directory;
every header of a tar) and refuses, with :class:`~metamap.errors.DataError` naming the archive,
the limit and what the archive would need, one that would unpack to more than ``max_bytes``
(default :data:`DEFAULT_MAX_BYTES`, 4 GiB), holds more than ``max_entries`` files and folders
(default :data:`DEFAULT_MAX_ENTRIES`, 100,000), or expands more than ``max_ratio`` times its size
on disk (default :data:`DEFAULT_MAX_RATIO`, 100×; checked above 64 MiB unpacked only) — a
"zip bomb". The real archives fit easily: Omniglot's zips hold ~20,000 entries and ~10 MB each,
CIFAR-100's ~160 MB, CUB-200-2011's ~12,000 files and ~1.2 GB, and image files barely
compress. Nothing is written when a limit refuses the archive. A zip member's header could lie
about its size, so the bytes actually written are counted too: a member that grows past its
declared size is stopped there, its partial file removed, and the archive refused.

**Paths.** Every member is checked before it is written: any member whose resolved destination
lies outside the target folder is refused — absolute paths (``/etc/passwd``, ``C:\\x``), ``..``
components that climb out, links whose target lies outside (tar symbolic and hard links; a member
written through an earlier link is caught too, since destinations are resolved with the links
already extracted) — and tar devices and FIFOs. Tar members are additionally extracted with
Python's ``"data"`` filter (PEP 706), which also drops set-uid bits and the like. Zip files never
create links (``zipfile`` writes a link's text as a regular file).
"""

from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from metamap.errors import DataError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_MAX_RATIO",
    "extract_archive",
    "is_archive",
]

DEFAULT_MAX_BYTES = 4 << 30
"""Most bytes an archive may unpack to (4 GiB): over 3× CUB-200-2011, the largest archive read."""
DEFAULT_MAX_ENTRIES = 100_000
"""Most members (files and folders) an archive may hold: over 4× an Omniglot zip."""
DEFAULT_MAX_RATIO = 100.0
"""Most an archive may expand (unpacked size / size on disk) once it unpacks to over 64 MiB;
archives of images expand less than 2×, a zip bomb ~1000×."""
_RATIO_FLOOR = 64 << 20  # below this unpacked size the ratio is not checked (small text files)
_CHUNK = 1 << 20

_HAS_FILTERS = hasattr(tarfile, "data_filter")  # PEP 706 extraction filters


def is_archive(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a zip or tar file (any compression ``tarfile`` reads)."""
    p = Path(path)
    return p.is_file() and (zipfile.is_zipfile(p) or tarfile.is_tarfile(p))


def _inside(root: Path, path: str | os.PathLike[str]) -> bool:
    real = os.path.realpath(path)
    return real == str(root) or real.startswith(str(root) + os.sep)


def _check_name(archive: Path, root: Path, name: str) -> Path:
    refuse = f"refusing to extract {archive}: member {name!r}"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        raise DataError(f"{refuse} has an absolute path. The archive is malformed or malicious")
    dest = root.joinpath(*PurePosixPath(posix).parts)
    if not _inside(root, dest):
        raise DataError(
            f"{refuse} would be written outside {root} (through '..' or a link). The archive is "
            "malformed or malicious"
        )
    return dest


def _human(n: int) -> str:
    """``n`` bytes in the largest binary unit up to GiB: ``"1.5 GiB"``."""
    units = ("bytes", "KiB", "MiB", "GiB")
    k, x = 0, float(n)
    while x >= 1024 and k < len(units) - 1:
        x, k = x / 1024, k + 1
    return f"{n} bytes" if k == 0 else f"{x:.1f} {units[k]}"


class _Limits:
    """The limits of one extraction, and the check of a (possibly partial) listing."""

    def __init__(self, archive: Path, max_bytes: int, max_entries: int, max_ratio: float) -> None:
        for name, value in (
            ("max_bytes", max_bytes),
            ("max_entries", max_entries),
            ("max_ratio", max_ratio),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self.archive = archive
        self.size = archive.stat().st_size
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_ratio = max_ratio

    def check(self, entries: int, total: int, *, partial: bool = False) -> None:
        """Refuse if ``entries`` members unpacking to ``total`` bytes break a limit (``partial``:
        the listing was not read to its end, so the archive holds at least that)."""
        refuse = f"refusing to extract {self.archive}"
        trust = "If you trust the archive, raise the limit: extract_archive(..., {}=<more>)"
        least = "at least " if partial else ""
        if entries > self.max_entries:
            raise DataError(
                f"{refuse}: it holds {least}{entries:,} entries (files and folders), more than "
                f"the limit max_entries={self.max_entries:,}. " + trust.format("max_entries")
            )
        if total > self.max_bytes:
            raise DataError(
                f"{refuse}: it would unpack to {least}{_human(total)} ({total:,} bytes), more "
                f"than the limit max_bytes={self.max_bytes:,} ({_human(self.max_bytes)}). "
                + trust.format("max_bytes")
            )
        if total > _RATIO_FLOOR and total > self.max_ratio * self.size:
            raise DataError(
                f"{refuse}: it would unpack to {least}{_human(total)} from {_human(self.size)} "
                f"on disk, a {total / max(self.size, 1):,.0f}× expansion, more than the limit "
                f"max_ratio={self.max_ratio:g} (archives of images expand less than 2×); this is "
                "how a 'zip bomb' looks. " + trust.format("max_ratio")
            )


def extract_archive(
    archive: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> Path:
    """Extract the zip or tar file ``archive`` into the folder ``target`` (created); return it.

    Raises :class:`DataError` if the archive is unreadable, breaks a limit (``max_bytes``
    unpacked bytes, ``max_entries`` files and folders, ``max_ratio`` unpacked size / size on disk:
    checked on the listing, before anything is written, not even ``target``), has a zip member
    larger than its header declares (stopped there; its partial file is removed), or has a member
    that would escape ``target`` (members checked before that one may already have been written).
    """
    archive = Path(archive)
    root_path = Path(target)
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist")
    limits = _Limits(archive, max_bytes, max_entries, max_ratio)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                limits.check(len(infos), sum(i.file_size for i in infos))
                _extract_zip(archive, zf, infos, _make_root(root_path))
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = _tar_listing(tf, limits)
                _extract_tar(archive, tf, members, _make_root(root_path))
        else:
            raise DataError(
                f"{archive} is neither a zip nor a tar archive; it may be truncated or an HTML "
                "error page: download it again"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        if _HAS_FILTERS and isinstance(e, tarfile.FilterError):
            raise DataError(f"refusing to extract {archive}: {e}") from e
        raise DataError(
            f"cannot extract {archive} ({type(e).__name__}: {e}); the archive is corrupt or "
            "truncated: download it again"
        ) from e
    return root_path


def _make_root(target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    return Path(os.path.realpath(target))


def _extract_zip(
    archive: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], root: Path
) -> None:
    for info in infos:
        dest = _check_name(archive, root, info.filename)
        if info.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(root, dest.parent):  # pragma: no cover - zip cannot make links
            raise DataError(f"refusing to extract {archive}: {info.filename!r} escapes {root}")
        try:
            _copy_member(archive, zf, info, dest)
        except BaseException:
            dest.unlink(missing_ok=True)  # no partial file is left behind
            raise


def _copy_member(archive: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    """Write one zip member, counting its bytes: never more than its header declares."""
    written = 0
    with zf.open(info) as src, open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise DataError(
                    f"refusing to extract {archive}: member {info.filename!r} unpacks to more "
                    f"than the {info.file_size:,} bytes its header declares, so the limits "
                    "checked on the headers do not hold; the archive is malformed or malicious. "
                    "Extraction stopped there and the partial file was removed"
                )
            out.write(chunk)


def _tar_listing(tf: tarfile.TarFile, limits: _Limits) -> list[tarfile.TarInfo]:
    """Every member header, read before anything is written, stopping at the first broken limit
    (so a tar bomb is neither decompressed to its end nor listed whole in memory)."""
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tf:
        members.append(member)
        if member.isfile():
            total += member.size
        limits.check(len(members), total, partial=True)
    return members


def _extract_tar(
    archive: Path, tf: tarfile.TarFile, members: list[tarfile.TarInfo], root: Path
) -> None:
    for member in members:
        dest = _check_name(archive, root, member.name)
        refuse = f"refusing to extract {archive}: member {member.name!r}"
        if member.issym():
            link = member.linkname.replace("\\", "/")
            if link.startswith("/") or not _inside(root, dest.parent / link):
                raise DataError(
                    f"{refuse} is a symbolic link to {member.linkname!r}, outside {root}. "
                    "The archive is malformed or malicious"
                )
        elif member.islnk():
            if not _inside(root, root / member.linkname):
                raise DataError(
                    f"{refuse} is a hard link to {member.linkname!r}, outside {root}. "
                    "The archive is malformed or malicious"
                )
        elif not (member.isfile() or member.isdir()):
            raise DataError(
                f"{refuse} is a device or FIFO, which a dataset never needs. The archive is "
                "malformed or malicious"
            )
        if _HAS_FILTERS:
            tf.extract(member, root, filter="data")
        else:  # pragma: no cover - Python < 3.10.12 / 3.11.4: the checks above only
            tf.extract(member, root)
