"""download_url against a local HTTP server: verification, resume (Range), retries, mismatch."""

from __future__ import annotations

import hashlib
import importlib
import random
from pathlib import Path

import pytest

from metamap.data.download import download_url
from metamap.errors import DataError

DATA = random.Random(0).randbytes(200_000)  # the same bytes (and test ids) in every process
SHA = hashlib.sha256(DATA).hexdigest()


def test_downloads_verifies_and_renames(http_server, tmp_path: Path) -> None:
    url = http_server.serve("/f.bin", DATA)
    dest = download_url(url, tmp_path / "f.bin", SHA)
    assert dest.read_bytes() == DATA
    assert not (tmp_path / "f.bin.part").exists()
    # already there and verified: no second request
    download_url(url, dest, SHA)
    assert len(http_server.state.requests) == 1


def test_resumes_a_partial_file_with_a_range_request(http_server, tmp_path: Path) -> None:
    url = http_server.serve("/f.bin", DATA)
    (tmp_path / "f.bin.part").write_bytes(DATA[:50_000])
    download_url(url, tmp_path / "f.bin", SHA)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert http_server.state.requests[0]["Range"] == "bytes=50000-"
    assert http_server.state.bytes_sent == len(DATA) - 50_000


def test_a_dropped_connection_is_resumed_by_the_retry(http_server, tmp_path: Path) -> None:
    url = http_server.serve("/f.bin", DATA)
    http_server.state.cut_next = 30_000
    download_url(url, tmp_path / "f.bin", SHA, retries=1)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert [r.get("Range") for r in http_server.state.requests] == [None, "bytes=30000-"]


def test_out_of_retries_keeps_the_part_file_and_the_next_call_resumes(
    http_server, tmp_path: Path
) -> None:
    url = http_server.serve("/f.bin", DATA)
    http_server.state.cut_next = 30_000
    with pytest.raises(DataError, match="run again to resume"):
        download_url(url, tmp_path / "f.bin", SHA, retries=0)
    assert (tmp_path / "f.bin.part").stat().st_size == 30_000
    assert not (tmp_path / "f.bin").exists()
    download_url(url, tmp_path / "f.bin", SHA, retries=0)
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert http_server.state.requests[-1]["Range"] == "bytes=30000-"


def test_a_server_ignoring_ranges_restarts_from_zero(http_server, tmp_path: Path) -> None:
    url = http_server.serve("/f.bin", DATA)
    http_server.state.ranges = False
    (tmp_path / "f.bin.part").write_bytes(b"junk" * 1000)
    download_url(url, tmp_path / "f.bin", SHA)
    assert (tmp_path / "f.bin").read_bytes() == DATA


def test_a_complete_part_file_is_finished_without_downloading(http_server, tmp_path: Path) -> None:
    url = http_server.serve("/f.bin", DATA)
    (tmp_path / "f.bin.part").write_bytes(DATA)
    download_url(url, tmp_path / "f.bin", SHA)  # the server answers 416
    assert (tmp_path / "f.bin").read_bytes() == DATA
    assert http_server.state.bytes_sent == 0


def test_checksum_mismatch_names_file_and_hashes_and_removes_the_partial(
    http_server, tmp_path: Path
) -> None:
    url = http_server.serve("/archive.zip", DATA)
    wrong = "0" * 64
    with pytest.raises(DataError) as e:
        download_url(url, tmp_path / "archive.zip", wrong)
    msg = str(e.value)
    assert "archive.zip" in msg and wrong in msg and SHA in msg
    assert not (tmp_path / "archive.zip.part").exists()
    assert not (tmp_path / "archive.zip").exists()


def test_a_stale_destination_is_downloaded_again(http_server, tmp_path: Path) -> None:
    url = http_server.serve("/f.bin", DATA)
    (tmp_path / "f.bin").write_bytes(b"old")
    download_url(url, tmp_path / "f.bin", SHA)
    assert (tmp_path / "f.bin").read_bytes() == DATA


def test_unpinned_download_is_accepted(http_server, tmp_path: Path) -> None:
    url = http_server.serve("/f.bin", DATA)
    assert download_url(url, tmp_path / "sub" / "f.bin", None).read_bytes() == DATA


def test_http_404_is_a_clear_error(http_server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"HTTP 404.*by hand"):
        download_url(http_server.base_url + "/missing", tmp_path / "x", None, retries=0)
    assert not (tmp_path / "x").exists()


MD5 = hashlib.md5(DATA).hexdigest()


def test_an_md5_pin_is_verified_alone_or_with_the_sha256(http_server, tmp_path: Path) -> None:
    url = http_server.serve("/f.bin", DATA)
    assert download_url(url, tmp_path / "a.bin", md5=MD5).read_bytes() == DATA
    assert download_url(url, tmp_path / "b.bin", SHA, md5=MD5.upper()).read_bytes() == DATA
    with pytest.raises(DataError) as e:
        download_url(url, tmp_path / "c.bin", SHA, md5="f" * 32)
    assert f"expected md5 {'f' * 32}, got {MD5}" in str(e.value) and "sha256" not in str(e.value)
    assert not (tmp_path / "c.bin.part").exists() and not (tmp_path / "c.bin").exists()
    (tmp_path / "d.bin").write_bytes(b"stale")
    download_url(url, tmp_path / "d.bin", md5=MD5)  # a stale file fails its md5: fetched again
    assert (tmp_path / "d.bin").read_bytes() == DATA


@pytest.mark.parametrize(("sha", "md5"), [("abc", None), (None, SHA), (None, "z" * 32)])
def test_a_malformed_pin_is_refused_before_downloading(
    sha: str | None, md5: str | None, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="hex digits"):
        download_url("http://127.0.0.1:9/never", tmp_path / "f", sha, md5=md5)


def test_the_official_archives_are_downloaded_with_their_md5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Omniglot and CIFAR-100 pass their pinned MD5s to the download."""
    cifar = importlib.import_module("metamap.data.cifar")
    omniglot = importlib.import_module("metamap.data.omniglot")

    calls: list[tuple[str, str | None]] = []

    def fake(url: str, dest: Path, sha256: str | None = None, *, md5: str | None = None) -> Path:
        calls.append((url, md5))
        raise DataError("stop here")

    monkeypatch.setattr(omniglot, "download_url", fake)
    monkeypatch.setattr(cifar, "download_url", fake)
    monkeypatch.delenv(omniglot.OMNIGLOT_ENV, raising=False)
    monkeypatch.delenv(cifar.CIFAR100_ENV, raising=False)
    with pytest.raises(DataError, match="stop here"):
        omniglot.omniglot_root(cache_dir=tmp_path, download=True)
    with pytest.raises(DataError, match="stop here"):
        cifar._locate(None, tmp_path, download=True)
    assert calls == [
        (omniglot.OMNIGLOT_URLS["images_background"], omniglot.OMNIGLOT_MD5["images_background"]),
        (cifar.CIFAR100_BINARY_URL, cifar.CIFAR100_BINARY_MD5),
    ]
    assert all(len(m or "") == 32 for _, m in calls)
