""":mod:`metamap.fileio`: an atomic write leaves the old file or the new one, and the file it
leaves has the permissions a plain ``open`` would give it (the umask's), not the owner-only
mode of its temporary, so run folders shared with a group stay readable."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from metamap.fileio import atomic_write, atomic_write_text


@pytest.fixture()
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_the_file_gets_the_permissions_of_the_umask(tmp_path: Path, umask: None, mask: int) -> None:
    os.umask(mask)
    path = atomic_write_text(tmp_path / "eval.json", "{}\n")
    plain = tmp_path / "plain.json"
    plain.write_text("{}\n")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = atomic_write_text(tmp_path / "config.yaml", "old\n")

    def half(f: object) -> None:
        raise KeyboardInterrupt  # killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
