"""CUB-200-2011 from a tiny archive in the official CUB_200_2011.tgz layout (and its folder)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metamap.data.cub import cub, cub_split_classes
from metamap.errors import DataError

CLASSES = [f"{i:03d}.Bird_{chr(64 + i)}" for i in range(1, 9)]  # 8 classes, ids 1..8


def make_cub(root: Path, per_class: int = 2, corrupt: str | None = None) -> Path:
    """root/CUB_200_2011/{classes,images,image_class_labels}.txt + images/; returns the folder."""
    base = root / "CUB_200_2011"
    images, labels = [], []
    image_id = 0
    for c, name in enumerate(CLASSES, 1):
        (base / "images" / name).mkdir(parents=True)
        for k in range(per_class):
            image_id += 1
            rel = f"{name}/{name[4:]}_{k:04d}.jpg"
            Image.new("RGB", (50, 40), (30 * c, 10 * k, 200)).save(base / "images" / rel)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
    if corrupt:
        (base / "images" / corrupt).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (base / "classes.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(CLASSES, 1)))
    (base / "images.txt").write_text("\n".join(reversed(images)) + "\n")  # order must not matter
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "attributes.txt").write_text("1 has_bill_shape::curved\n")  # as in the official tgz
    return base


def make_tgz(folder_root: Path, path: Path, drop: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for f in sorted(folder_root.rglob("*")):
            rel = f.relative_to(folder_root).as_posix()
            if f.is_file() and rel != drop:
                tf.add(f, rel)
    return path


def test_chen_split_rule() -> None:
    parts = {s: cub_split_classes(range(1, 201), s) for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [100, 50, 50]
    assert set().union(*parts.values()) == set(range(1, 201))
    assert parts["train"][:3] == [1, 3, 5] and parts["val"][:3] == [2, 6, 10]
    assert parts["test"][:3] == [4, 8, 12] and parts["test"][-1] == 200
    both = cub_split_classes(range(1, 201), "trainval")
    assert both == sorted(parts["train"] + parts["val"]) and len(both) == 150


def test_archive_and_folder_give_the_same_split(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_cub(tmp_path / "src")
    tgz = make_tgz(tmp_path / "src", tmp_path / "CUB_200_2011.tgz")
    ds = cub("train", root=tgz, image_size=16, cache_dir=cache_dir)
    assert list(ds.class_names) == [CLASSES[i] for i in (0, 2, 4, 6)]
    assert ds.images.shape == (8, 3, 16, 16) and isinstance(ds.images, np.memmap)
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert ds.sources[2] == f"images/{CLASSES[2]}/Bird_C_0000.jpg"
    assert abs(int(ds.images[2, 0, 8, 8]) - 90) <= 3  # class id 3 → red 90
    with monkeypatch.context() as m:
        m.setattr("PIL.Image.open", lambda *a, **k: pytest.fail("decoded again"))
        m.setattr("metamap.data.cache.sha256_file", lambda *a: pytest.fail("re-hashed"))
        again = cub("train", root=tmp_path, image_size=16, cache_dir=cache_dir)  # holds the tgz
    assert (np.asarray(again.images) == np.asarray(ds.images)).all()
    from_folder = cub("train", root=folder, image_size=16, cache_dir=cache_dir)
    assert (np.asarray(from_folder.images) == np.asarray(ds.images)).all()
    assert list(from_folder.sources) == list(ds.sources)
    val = cub("val", root=tgz, image_size=16, cache_dir=cache_dir)
    test = cub("test", root=tgz, image_size=16, cache_dir=cache_dir)
    assert list(val.class_names) == [CLASSES[1], CLASSES[5]]
    assert list(test.class_names) == [CLASSES[3], CLASSES[7]]
    both = cub("trainval", root=tgz, image_size=16, cache_dir=cache_dir)  # train ∪ val
    assert list(both.class_names) == [CLASSES[i] for i in (0, 1, 2, 4, 5, 6)]
    for part in (ds, val):
        for k, name in enumerate(part.class_names):
            mine = np.asarray(both.images)[both.labels == list(both.class_names).index(name)]
            assert (mine == np.asarray(part.images)[part.labels == k]).all()


def test_environment_variable_and_custom_split_lists(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_cub(tmp_path / "src")
    monkeypatch.setenv("METAMAP_CUB", str(tmp_path / "src"))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text(f"{CLASSES[7]}\n{CLASSES[0]}\n")
    ds = cub("train", splits_root=lists, image_size=8, cache_dir=cache_dir)
    assert list(ds.class_names) == [CLASSES[7], CLASSES[0]] and len(ds) == 4
    (lists / "val.txt").write_text(f"{CLASSES[2]}\n{CLASSES[0]}\n")  # one class in both lists
    both = cub("trainval", splits_root=lists, image_size=8, cache_dir=cache_dir)
    assert list(both.class_names) == [CLASSES[7], CLASSES[0], CLASSES[2]] and len(both) == 6
    (lists / "val.txt").write_text("999.Dodo\n")
    with pytest.raises(DataError, match=r"unknown CUB classes: 999\.Dodo"):
        cub("val", splits_root=lists, cache_dir=cache_dir)
    with pytest.raises(DataError, match=r"test\.txt not found"):
        cub("test", splits_root=lists, cache_dir=cache_dir)


def test_errors_name_the_file(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError, match=r"CUB_200_2011\.tgz.*METAMAP_CUB"):
        cub("train", cache_dir=cache_dir)
    with pytest.raises(DataError, match="not found at root="):
        cub("train", root=tmp_path / "nowhere", cache_dir=cache_dir)
    bad = f"{CLASSES[0]}/Bird_A_0001.jpg"
    make_cub(tmp_path / "src", corrupt=bad)
    tgz = make_tgz(tmp_path / "src", tmp_path / "corrupt.tgz")
    with pytest.raises(DataError, match=rf"corrupt\.tgz:CUB_200_2011/images/{bad}"):
        cub("train", root=tgz, cache_dir=cache_dir)
    with pytest.raises(DataError, match=bad):
        cub("train", root=tmp_path / "src", cache_dir=cache_dir)
    missing = f"CUB_200_2011/images/{CLASSES[2]}/Bird_C_0001.jpg"
    make_cub(tmp_path / "good")
    tgz = make_tgz(tmp_path / "good", tmp_path / "incomplete.tgz", drop=missing)
    with pytest.raises(DataError, match=r"lacks 1 images listed in images\.txt"):
        cub("train", root=tgz, cache_dir=cache_dir)
    not_cub = tmp_path / "other.tgz"
    with tarfile.open(not_cub, "w:gz") as tf:
        tf.addfile(tarfile.TarInfo("readme.txt"), io.BytesIO(b""))
    with pytest.raises(DataError, match=r"lacks classes\.txt"):
        cub("train", root=not_cub, cache_dir=cache_dir)
    assert not list(cache_dir.glob("*.npy"))
