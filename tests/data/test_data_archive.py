"""Safe extraction: normal archives work; crafted archives that escape the target are refused."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from metamap.data.archive import extract_archive, is_archive
from metamap.errors import DataError


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tf.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tf.addfile(info, io.BytesIO(m[1]))
    return path


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_zip_and_tar_extract(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "a.zip", {"top/": b"", "top/x/y.txt": b"hello", "top/../z.txt": b"z"})
    assert is_archive(z)
    out = extract_archive(z, tmp_path / "out_zip")
    assert (out / "top" / "x" / "y.txt").read_bytes() == b"hello"
    assert (out / "z.txt").read_bytes() == b"z"  # '..' that stays inside is fine
    t = make_tar(tmp_path / "a.tgz", [("top/x/y.txt", b"hello"), link("top/alias.txt", "x/y.txt")])
    out = extract_archive(t, tmp_path / "out_tar")
    assert (out / "top" / "x" / "y.txt").read_bytes() == b"hello"
    assert (out / "top" / "alias.txt").read_bytes() == b"hello"  # a link inside is fine


@pytest.mark.parametrize(
    "name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt"]
)
def test_zip_members_escaping_are_refused(tmp_path: Path, name: str) -> None:
    z = make_zip(tmp_path / "bad.zip", {"ok.txt": b"ok", name: b"evil"})
    with pytest.raises(DataError, match=r"refusing to extract .*bad\.zip.*evil\.txt"):
        extract_archive(z, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/metamap-evil.txt"])
def test_tar_members_escaping_are_refused(tmp_path: Path, name: str) -> None:
    t = make_tar(tmp_path / "bad.tar.gz", [(name, b"evil")])
    with pytest.raises(DataError, match="refusing to extract"):
        extract_archive(t, tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/metamap-evil.txt").exists()


@pytest.mark.parametrize("target", ["../../outside", "/etc", "sub/../../.."])
def test_tar_symlinks_pointing_outside_are_refused(tmp_path: Path, target: str) -> None:
    t = make_tar(tmp_path / "bad.tgz", [link("data/link", target)])
    with pytest.raises(DataError, match="symbolic link"):
        extract_archive(t, tmp_path / "out")


def test_writing_through_an_escaping_link_is_impossible(tmp_path: Path) -> None:
    (tmp_path / "victim").mkdir()
    t = make_tar(tmp_path / "bad.tgz", [link("d", "../victim"), ("d/pwned.txt", b"x")])
    with pytest.raises(DataError):
        extract_archive(t, tmp_path / "out")
    assert not (tmp_path / "victim" / "pwned.txt").exists()


def test_tar_hardlinks_outside_and_devices_are_refused(tmp_path: Path) -> None:
    t = make_tar(tmp_path / "hard.tgz", [link("h", "../../etc/passwd", tarfile.LNKTYPE)])
    with pytest.raises(DataError, match="hard link"):
        extract_archive(t, tmp_path / "out")
    dev = tarfile.TarInfo("dev")
    dev.type = tarfile.CHRTYPE
    t = make_tar(tmp_path / "dev.tgz", [dev])
    with pytest.raises(DataError, match="device or FIFO"):
        extract_archive(t, tmp_path / "out2")


def test_corrupt_or_unknown_archives_are_clear_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"<html>not found</html>")
    assert not is_archive(junk)
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        extract_archive(junk, tmp_path / "out")
    good = make_tar(tmp_path / "t.tgz", [("a.bin", bytes(range(256)) * 400)])
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.tgz"):
        extract_archive(cut, tmp_path / "out3")
    with pytest.raises(DataError, match="does not exist"):
        extract_archive(tmp_path / "nope.zip", tmp_path / "out4")
