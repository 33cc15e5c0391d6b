"""Safe extraction of zip and tar archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ...).

A dataset archive comes from the internet, so every member is checked before it is written:
:func:`extract_archive` refuses, with :class:`~metamap.errors.DataError` naming the archive and
the member, any member whose resolved destination lies outside the target folder — absolute
paths (``/etc/passwd``, ``C:\\x``), ``..`` components that climb out, links whose target lies
outside (tar symbolic and hard links; a member written through an earlier link is caught too,
since destinations are resolved with the links already extracted) — and tar devices and FIFOs.
Tar members are additionally extracted with Python's ``"data"`` filter (PEP 706), which also drops
set-uid bits and the like. Zip files never create links (``zipfile`` writes a link's text as a
regular file).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from metamap.errors import DataError

__all__ = ["extract_archive", "is_archive"]

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


def extract_archive(archive: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Extract the zip or tar file ``archive`` into the folder ``target`` (created); return it.

    Raises :class:`DataError` if the archive is unreadable or any member would escape ``target``;
    members checked before the offending one may already have been written.
    """
    archive = Path(archive)
    root_path = Path(target)
    root_path.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(root_path))
    if not archive.is_file():
        raise DataError(f"archive {archive} does not exist")
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, root)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, root)
        else:
            raise DataError(
                f"{archive} is neither a zip nor a tar archive; it may be truncated or an HTML "
                "error page: download it again"
            )
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        if _HAS_FILTERS and isinstance(e, tarfile.FilterError):
            raise DataError(f"refusing to extract {archive}: {e}") from e
        raise DataError(
            f"cannot extract {archive} ({type(e).__name__}: {e}); the archive is corrupt or "
            "truncated: download it again"
        ) from e
    return root_path


def _extract_zip(archive: Path, root: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            dest = _check_name(archive, root, info.filename)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not _inside(root, dest.parent):  # pragma: no cover - zip cannot make links
                raise DataError(f"refusing to extract {archive}: {info.filename!r} escapes {root}")
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)


def _extract_tar(archive: Path, root: Path) -> None:
    with tarfile.open(archive) as tf:
        for member in tf:
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
