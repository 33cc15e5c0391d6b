"""Archives and local files: extraction limits checked before writing, and official files found
on disk checked against the same pinned checksums as downloads (``verify=False`` /
``data.verify_checksums: false`` for one's own modified copy)."""

from __future__ import annotations

import hashlib
import importlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from test_data_archive import make_tar, make_zip
from test_data_cifar import make_cifar
from test_data_omniglot import make_omniglot, vinyals_lists, zip_sets

from metamap.data.archive import extract_archive
from metamap.data.cifar import CIFAR100_BINARY_MD5, cifar_fs, fc100
from metamap.data.download import verify_file
from metamap.data.omniglot import (
    OMNIGLOT_MD5,
    VINYALS_SHA256,
    omniglot,
    omniglot_images,
)
from metamap.errors import DataError
from metamap.train import load_config, parse_config
from metamap.train.build import load_images

archive_mod = importlib.import_module("metamap.data.archive")
omniglot_mod = importlib.import_module("metamap.data.omniglot")
cifar_mod = importlib.import_module("metamap.data.cifar")
cache_mod = importlib.import_module("metamap.data.cache")

MiB = 1 << 20
OMNIGLOT_CONFIG = (
    Path(__file__).resolve().parents[2] / "configs" / "omniglot" / "protonet-5w1s.yaml"
)


def deflated_zip(path: Path, members: dict[str, bytes]) -> Path:
    """A compressed zip (``make_zip`` stores its members uncompressed)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def contents(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- extraction limits ---------------------------------------------------------------------------


def test_a_zip_over_max_bytes_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    z = deflated_zip(tmp_path / "zeros.zip", {"a.bin": bytes(3 * MiB), "b.bin": bytes(MiB)})
    assert z.stat().st_size < 50_000  # 4 MiB of zeros deflate to a few KB
    with pytest.raises(DataError) as e:
        extract_archive(z, tmp_path / "out", max_bytes=MiB)
    msg = str(e.value)
    assert str(z) in msg and "4.0 MiB (4,194,304 bytes)" in msg
    assert "max_bytes=1,048,576" in msg and "extract_archive(..., max_bytes=<more>)" in msg
    assert not (tmp_path / "out").exists()  # not even the target folder
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="max_bytes"):
        extract_archive(z, existing, max_bytes=MiB)
    assert contents(existing) == {"keep.txt": b"mine"}


def test_a_tar_over_max_bytes_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    t = make_tar(tmp_path / "zeros.tgz", [("a.bin", bytes(MiB)), ("b.bin", bytes(MiB))])
    with pytest.raises(DataError) as e:
        extract_archive(t, tmp_path / "out", max_bytes=MiB + 1)
    msg = str(e.value)
    assert str(t) in msg and "at least 2.0 MiB" in msg and "max_bytes=1,048,577" in msg
    assert not (tmp_path / "out").exists()


def test_too_many_entries_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    members = {f"d/f{i:02d}.txt": b"x" for i in range(10)}
    z = make_zip(tmp_path / "many.zip", {"d/": b"", **members})
    with pytest.raises(DataError) as e:
        extract_archive(z, tmp_path / "out", max_entries=10)
    msg = str(e.value)
    assert "many.zip" in msg and "holds 11 entries" in msg and "max_entries=10" in msg
    assert "extract_archive(..., max_entries=<more>)" in msg
    t = make_tar(tmp_path / "many.tgz", list(members.items()))
    with pytest.raises(DataError, match=r"many\.tgz: it holds at least 10 entries.*max_entries=9"):
        extract_archive(t, tmp_path / "out", max_entries=9)
    assert not (tmp_path / "out").exists()


def test_a_zip_bomb_is_refused_by_its_expansion_ratio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_mod, "_RATIO_FLOOR", MiB)  # the default floor is 64 MiB
    z = deflated_zip(tmp_path / "bomb.zip", {"zeros.bin": bytes(4 * MiB)})
    with pytest.raises(DataError) as e:
        extract_archive(z, tmp_path / "out")  # well within max_bytes
    msg = str(e.value)
    assert "bomb.zip" in msg and "max_ratio=100" in msg and "zip bomb" in msg
    assert not (tmp_path / "out").exists()
    out = extract_archive(z, tmp_path / "out", max_ratio=1e6)
    assert (out / "zeros.bin").stat().st_size == 4 * MiB
    small = deflated_zip(tmp_path / "small.zip", {"zeros.bin": bytes(MiB // 2)})
    assert extract_archive(small, tmp_path / "small")  # below the floor: ratio not checked


def test_archives_within_the_limits_extract_identically(tmp_path: Path) -> None:
    members = {"top/a.bin": bytes(range(256)) * 40, "top/sub/b.txt": b"hello", "c.txt": b""}
    total = sum(len(v) for v in members.values())
    z = deflated_zip(tmp_path / "ok.zip", members)
    out = extract_archive(z, tmp_path / "zip", max_bytes=total, max_entries=len(members))
    assert contents(out) == members
    t = make_tar(tmp_path / "ok.tgz", list(members.items()))
    out = extract_archive(t, tmp_path / "tar", max_bytes=total, max_entries=len(members))
    assert contents(out) == members


def test_limits_must_be_positive(tmp_path: Path) -> None:
    z = make_zip(tmp_path / "a.zip", {"a": b"a"})
    for bad in ({"max_bytes": 0}, {"max_entries": -1}, {"max_ratio": 0.0}):
        with pytest.raises(ValueError, match="must be positive"):
            extract_archive(z, tmp_path / "out", **bad)  # type: ignore[arg-type]


def test_a_zip_member_larger_than_its_header_says_is_stopped_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    z = make_zip(tmp_path / "liar.zip", {"ok.txt": b"fine", "big.bin": b"y" * 5})
    real_open = zipfile.ZipFile.open

    def lying_open(self: zipfile.ZipFile, name: zipfile.ZipInfo, *a: object, **k: object):
        if isinstance(name, zipfile.ZipInfo) and name.filename == "big.bin":
            return io.BytesIO(b"y" * (3 * MiB))  # the stream goes on past the declared 5 bytes
        return real_open(self, name, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", lying_open)
    with pytest.raises(DataError) as e:
        extract_archive(z, tmp_path / "out")
    msg = str(e.value)
    assert "liar.zip" in msg and "'big.bin' unpacks to more than the 5 bytes" in msg
    assert not (tmp_path / "out" / "big.bin").exists()  # the partial file is removed


def test_a_crafted_zip_whose_central_directory_lies_is_refused(tmp_path: Path) -> None:
    """The central directory says 10 bytes where the member holds 100: refused, nothing left."""
    z = make_zip(tmp_path / "crafted.zip", {"big.bin": b"z" * 100})
    raw = bytearray(z.read_bytes())
    cd = raw.rindex(b"PK\x01\x02")  # central directory header: uncompressed size at +24
    assert int.from_bytes(raw[cd + 24 : cd + 28], "little") == 100
    raw[cd + 24 : cd + 28] = (10).to_bytes(4, "little")
    z.write_bytes(bytes(raw))
    assert zipfile.ZipFile(z).infolist()[0].file_size == 10
    with pytest.raises(DataError, match=r"crafted\.zip"):
        extract_archive(z, tmp_path / "out")
    assert contents(tmp_path / "out") == {}


# -- local files checked against the pins ----------------------------------------------------


def test_verify_file_names_the_file_and_both_hashes(tmp_path: Path, cache_dir: Path) -> None:
    f = tmp_path / "thing.bin"
    f.write_bytes(b"not the official bytes")
    md5 = hashlib.md5(f.read_bytes()).hexdigest()
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    assert verify_file(f, what="thing") == f  # nothing pinned: nothing to check
    assert verify_file(f, sha, md5, what="thing", cache_dir=cache_dir) == f
    with pytest.raises(DataError) as e:
        verify_file(f, "0" * 64, md5, what="example file")
    msg = str(e.value)
    assert f"the example file {f} is not the official file" in msg
    assert f"expected sha256 {'0' * 64}, got {sha}" in msg and "expected md5" not in msg
    assert "delete it" in msg and "download=True" in msg
    assert "verify=False" in msg and "data.verify_checksums: false" in msg


def test_a_local_omniglot_zip_with_wrong_bytes_is_refused(tmp_path: Path, cache_dir: Path) -> None:
    blobs = zip_sets(make_omniglot(tmp_path / "omni"), tmp_path / "zips")
    with pytest.raises(DataError) as e:
        omniglot_images(tmp_path / "zips", cache_dir=cache_dir)
    msg = str(e.value)
    zip_path = tmp_path / "zips" / "images_background.zip"
    actual = hashlib.md5(blobs["images_background"]).hexdigest()
    assert f"Omniglot zip {zip_path} is not the official file" in msg
    assert f"expected md5 {OMNIGLOT_MD5['images_background']}, got {actual}" in msg
    assert "verify=False" in msg and "data.verify_checksums: false" in msg
    assert not (cache_dir / "omniglot" / "images_background").exists()  # nothing extracted
    full = omniglot_images(tmp_path / "zips", cache_dir=cache_dir, verify=False)
    assert len(full) == 21


def test_a_local_omniglot_zip_with_the_pinned_bytes_is_accepted(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blobs = zip_sets(make_omniglot(tmp_path / "omni"), tmp_path / "zips")
    md5s = {s: hashlib.md5(data).hexdigest() for s, data in blobs.items()}
    monkeypatch.setattr(omniglot_mod, "OMNIGLOT_MD5", md5s)
    assert len(omniglot_images(tmp_path / "zips", cache_dir=cache_dir)) == 21


def test_a_vinyals_list_beside_the_data_with_wrong_bytes_is_refused(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    omni = make_omniglot(tmp_path / "omni")  # its lists are not the official ones
    listed = omni / "splits" / "vinyals" / "train.txt"
    actual = hashlib.sha256(listed.read_bytes()).hexdigest()
    with monkeypatch.context() as m, pytest.raises(DataError) as e:
        m.setattr("PIL.Image.open", lambda *a, **k: pytest.fail("decoded before the check"))
        omniglot("train", root=omni, cache_dir=cache_dir)
    msg = str(e.value)
    assert f"Vinyals split list {listed} is not the official file" in msg
    assert f"expected sha256 {VINYALS_SHA256['train']}, got {actual}" in msg
    assert omniglot("train", root=omni, cache_dir=cache_dir, verify=False).num_classes == 3
    # lists given by splits_root are the user's own: never checked
    assert omniglot("train", root=omni, splits_root=listed.parent, cache_dir=cache_dir)
    sums = {s: hashlib.sha256(text).hexdigest() for s, text in vinyals_lists().items()}
    monkeypatch.setattr(omniglot_mod, "VINYALS_SHA256", sums)
    assert omniglot("train", root=omni, cache_dir=cache_dir).num_episode_classes == 12


def test_a_vinyals_list_in_the_cache_is_checked_too(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    omni = make_omniglot(tmp_path / "omni")
    cached = cache_dir / "omniglot" / "splits" / "vinyals"
    cached.mkdir(parents=True)
    (omni / "splits" / "vinyals" / "val.txt").rename(cached / "val.txt")
    with pytest.raises(DataError, match=rf"Vinyals split list {cached / 'val.txt'} is not"):
        omniglot("val", root=omni, cache_dir=cache_dir)
    assert omniglot("val", root=omni, cache_dir=cache_dir, verify=False).num_classes == 1


def test_a_local_cifar_archive_with_wrong_bytes_is_refused(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_cifar(tmp_path / "cifar-100-binary.tar.gz")
    actual = hashlib.md5(archive.read_bytes()).hexdigest()
    for loader in (cifar_fs, fc100):
        with pytest.raises(DataError) as e:
            loader("train", root=tmp_path, cache_dir=cache_dir)
        msg = str(e.value)
        assert f"CIFAR-100 binary archive {archive} is not the official file" in msg
        assert f"expected md5 {CIFAR100_BINARY_MD5}, got {actual}" in msg
    assert not list(cache_dir.glob("*.npy"))  # nothing decoded
    assert cifar_fs("train", root=archive, cache_dir=cache_dir, verify=False).num_classes == 64
    # pinned: accepted, and its MD5 is memoised like its sha256 (hashed once, not every run)
    monkeypatch.setattr(cifar_mod, "CIFAR100_BINARY_MD5", actual)
    assert fc100("test", root=archive, cache_dir=cache_dir).num_classes == 20
    with monkeypatch.context() as m:
        m.setattr(cache_mod, "_hash_file", lambda *a: pytest.fail("hashed again"))
        m.setattr(cache_mod, "sha256_file", lambda *a: pytest.fail("hashed again"))
        assert fc100("test", root=archive, cache_dir=cache_dir).num_classes == 20
    # an extracted folder is not an archive: not checked
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    monkeypatch.setattr(cifar_mod, "CIFAR100_BINARY_MD5", CIFAR100_BINARY_MD5)
    assert cifar_fs("test", root=tmp_path / "x", cache_dir=cache_dir).num_classes == 20


def test_a_config_turns_the_check_off_with_data_verify_checksums(
    tmp_path: Path, cache_dir: Path
) -> None:
    archive = make_cifar(tmp_path / "cifar-100-binary.tar.gz")
    cifar = [
        "task.family=episodes",
        "data.name=cifar_fs",
        f"data.root={archive}",
        f"data.cache_dir={cache_dir}",
        "data.image_size=32",
        "data.channels=3",
        "model.name=conv4",
    ]
    with pytest.raises(DataError, match=r"data\.verify_checksums: false"):
        load_images(load_config(None, cifar), "train")
    off = load_config(None, [*cifar, "data.verify_checksums=false"])
    assert load_images(off, "train").num_classes == 64
    fc = load_config(None, [*cifar, "data.name=fc100", "data.verify_checksums=false"])
    assert load_images(fc, "test").num_classes == 20
    omni = make_omniglot(tmp_path / "omni")
    data = [f"data.root={omni}", f"data.cache_dir={cache_dir}"]
    with pytest.raises(DataError, match="Vinyals split list"):
        load_images(load_config(OMNIGLOT_CONFIG, data), "train")
    cfg = load_config(OMNIGLOT_CONFIG, [*data, "data.verify_checksums=false"])
    assert load_images(cfg, "train").num_episode_classes == 12  # type: ignore[attr-defined]


def test_verify_checksums_does_not_change_the_fingerprint() -> None:
    ep = {"task": {"family": "episodes"}, "model": {"name": "conv4"}}
    a = parse_config(ep)
    assert a.data.verify_checksums is True
    off = parse_config({**ep, "data": {"verify_checksums": False}})
    assert a.fingerprint() == off.fingerprint()
    extra = {"task": {"family": "episodes", "sampler": "metadataset"}, "model": {"name": "conv4"}}
    domains = {"extra_domains": [{"name": "omniglot", "verify_checksums": False}]}
    b = parse_config({**extra, "learner": {"name": "protonet"}, **domains})
    c = parse_config(
        {**extra, "learner": {"name": "protonet"}, "extra_domains": [{"name": "omniglot"}]}
    )
    assert b.fingerprint() == c.fingerprint()
