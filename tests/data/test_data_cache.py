"""The decode-once cache: built once, memory-mapped after, rebuilt when stale or broken."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from metamap.data import cache as cache_mod
from metamap.data.cache import (
    CachePlan,
    cache_key,
    cached_images,
    file_checksum,
    folder_fingerprint,
    resolve_cache_dir,
)
from metamap.errors import DataError


def plan_of(n: int = 6, calls: list[int] | None = None, fail: bool = False):
    def plan() -> CachePlan:
        if calls is not None:
            calls.append(1)

        def fill(out: npt.NDArray[np.uint8]) -> None:
            for i in range(n):
                if fail and i == n // 2:
                    raise RuntimeError("decoder crashed")
                out[i] = i

        return CachePlan(
            labels=np.arange(n, dtype=np.int64) % 2,
            class_names=["even", "odd"],
            sources=[f"img{i}.png" for i in range(n)],
            image_shape=(1, 3, 4),
            fill=fill,
            meta={"answer": 42},
        )

    return plan


def test_resolve_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert resolve_cache_dir(tmp_path / "x") == tmp_path / "x"
    assert resolve_cache_dir() == Path(os.environ["HOME"]) / ".cache" / "metamap"
    monkeypatch.setenv("METAMAP_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir() == tmp_path / "env"


def test_built_once_then_memory_mapped(cache_dir: Path) -> None:
    calls: list[int] = []
    first = cached_images("toy", cache_key(a=1), plan_of(calls=calls), cache_dir)
    assert first.built and calls == [1]
    again = cached_images("toy", cache_key(a=1), plan_of(calls=calls), cache_dir)
    assert not again.built and calls == [1]  # plan (listing + decoding) not called again
    ds = again.dataset
    assert isinstance(ds.images, np.memmap) and not ds.images.flags.writeable
    assert ds.images.shape == (6, 1, 3, 4)
    assert [int(ds.images[i].max()) for i in range(6)] == list(range(6))
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1] and list(ds.class_names) == ["even", "odd"]
    assert ds.sources[5] == "img5.png" and again.meta == {"answer": 42}
    # another key (other source or preprocessing): another cache
    assert cached_images("toy", cache_key(a=2), plan_of(calls=calls), cache_dir).built
    assert len(list(cache_dir.glob("toy-*.npy"))) == 2


def test_broken_cache_is_rebuilt(cache_dir: Path) -> None:
    calls: list[int] = []
    c = cached_images("toy", "k" * 64, plan_of(calls=calls), cache_dir)
    c.path.write_bytes(c.path.read_bytes()[:100])  # truncated .npy
    assert cached_images("toy", "k" * 64, plan_of(calls=calls), cache_dir).built
    c.path.with_suffix(".json").write_text("{not json")
    assert cached_images("toy", "k" * 64, plan_of(calls=calls), cache_dir).built
    assert calls == [1, 1, 1]


def test_a_failed_build_leaves_nothing_behind(cache_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="decoder crashed"):
        cached_images("toy", "f" * 64, plan_of(fail=True), cache_dir)
    assert list(cache_dir.iterdir()) == []


def test_empty_dataset_is_refused(cache_dir: Path) -> None:
    with pytest.raises(DataError, match="no images"):
        cached_images("toy", "e" * 64, plan_of(n=0), cache_dir)


def test_unwritable_cache_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="METAMAP_CACHE"):
        cached_images("toy", "u" * 64, plan_of(), blocker / "cache")


def test_folder_fingerprint_sees_every_change(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    f1, f2 = tmp_path / "a" / "1.png", tmp_path / "a" / "2.png"
    f1.write_bytes(b"1")
    f2.write_bytes(b"22")
    base = folder_fingerprint(tmp_path, [f1, f2])
    assert folder_fingerprint(tmp_path, [f2, f1]) == base  # order-independent
    assert folder_fingerprint(tmp_path, [f1]) != base
    f2.write_bytes(b"223")
    assert folder_fingerprint(tmp_path, [f1, f2]) != base
    os.utime(f1, ns=(1, 1))
    changed = folder_fingerprint(tmp_path, [f1, f2])
    os.utime(f1, ns=(2, 2))
    assert folder_fingerprint(tmp_path, [f1, f2]) != changed


def test_file_checksum_is_memoised(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "archive.tgz"
    f.write_bytes(b"abc")
    digest = file_checksum(f, cache_dir)
    assert digest == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

    def boom(*args: object, **kwargs: object) -> str:
        raise AssertionError("hashed again")

    monkeypatch.setattr(cache_mod, "sha256_file", boom)
    assert file_checksum(f, cache_dir) == digest  # memo hit: not read
    f.write_bytes(b"abcd")
    monkeypatch.undo()
    assert file_checksum(f, cache_dir) != digest  # size/mtime changed: hashed again


def test_a_full_disk_is_a_clear_error(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, offset: int, size: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DataError, match="not enough free space in the cache folder"):
        cached_images("toy", "d" * 64, plan_of(), cache_dir)
    assert list(cache_dir.iterdir()) == []
