"""mini- and tiered-ImageNet built from a tiny fake ImageNet training folder plus split lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metamap.data.miniimagenet import mini_imagenet, synset_files, tiered_imagenet
from metamap.errors import DataError

SYNSETS = [f"n0000000{i}" for i in range(1, 7)]
IDS = [3, 20, 100, 7, 1000]  # numeric order 3, 7, 20, 100, 1000 differs from text order


def colour(s: int, image_id: int) -> tuple[int, int, int]:
    return (40 * s, (image_id * 37) % 256, 128)


def make_imagenet(root: Path) -> Path:
    for s, synset in enumerate(SYNSETS):
        (root / synset).mkdir(parents=True)
        for image_id in IDS:
            img = Image.new("RGB", (40 + s, 30), colour(s, image_id))
            img.save(root / synset / f"{synset}_{image_id}.JPEG", quality=95)
    return root


def make_mini_csvs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rows = {
        "train": [(SYNSETS[0], i) for i in (1, 2, 3)] + [(SYNSETS[1], i) for i in (5, 4)],
        "val": [(SYNSETS[2], i) for i in (1, 2)],
        "test": [(SYNSETS[3], i) for i in (1, 2)],
    }
    for split, items in rows.items():
        lines = ["filename,label"] + [f"{s}{i:08d}.jpg,{s}" for s, i in items]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def imagenet(tmp_path: Path) -> Path:
    return make_imagenet(tmp_path / "imagenet")


def test_mini_imagenet_maps_csv_names_to_numerically_sorted_files(
    imagenet: Path, tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert synset_files(imagenet, SYNSETS[0])[1] == [f"{SYNSETS[0]}_{i}.JPEG" for i in sorted(IDS)]
    splits = make_mini_csvs(tmp_path / "ravi")
    ds = mini_imagenet("train", imagenet_root=imagenet, splits_root=splits, cache_dir=cache_dir)
    assert ds.images.shape == (5, 3, 84, 84) and isinstance(ds.images, np.memmap)
    assert list(ds.class_names) == SYNSETS[:2] and ds.labels.tolist() == [0, 0, 0, 1, 1]
    s0, s1 = SYNSETS[:2]
    assert list(ds.sources) == [
        f"{s0}/{s0}_3.JPEG",
        f"{s0}/{s0}_7.JPEG",
        f"{s0}/{s0}_20.JPEG",
        f"{s1}/{s1}_1000.JPEG",
        f"{s1}/{s1}_100.JPEG",
    ]
    pixel = ds.images[1, :, 40, 40].astype(int)  # synset 0, index 2 = id 7
    assert np.abs(pixel - colour(0, 7)).max() <= 3
    monkeypatch.setenv("METAMAP_IMAGENET", str(imagenet))
    monkeypatch.setenv("METAMAP_MINIIMAGENET_SPLITS", str(splits))
    with monkeypatch.context() as m:
        m.setattr("PIL.Image.open", lambda *a, **k: pytest.fail("decoded again"))
        again = mini_imagenet("train", cache_dir=cache_dir)
    assert (np.asarray(again.images) == np.asarray(ds.images)).all()
    small = mini_imagenet("val", image_size=16, cache_dir=cache_dir, draft=False)
    assert small.images.shape == (2, 3, 16, 16) and list(small.class_names) == [SYNSETS[2]]
    # trainval: train.csv then val.csv, image for image
    both = mini_imagenet("trainval", cache_dir=cache_dir)
    val = mini_imagenet("val", cache_dir=cache_dir)
    assert list(both.class_names) == SYNSETS[:3] and both.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert list(both.sources) == [*ds.sources, *val.sources]
    assert (np.asarray(both.images) == np.concatenate([ds.images, val.images])).all()


def test_train_subfolder_layout_is_accepted(tmp_path: Path, cache_dir: Path) -> None:
    make_imagenet(tmp_path / "ilsvrc" / "train")
    splits = make_mini_csvs(tmp_path / "ravi")
    ds = mini_imagenet(
        "test", imagenet_root=tmp_path / "ilsvrc", splits_root=splits, cache_dir=cache_dir
    )
    assert ds.sources[0] == f"train/{SYNSETS[3]}/{SYNSETS[3]}_3.JPEG"


def test_mini_imagenet_errors(imagenet: Path, tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError, match=r"METAMAP_IMAGENET.*n01532829_1234\.JPEG"):
        mini_imagenet("train", cache_dir=cache_dir)
    with pytest.raises(DataError, match="METAMAP_MINIIMAGENET_SPLITS"):
        mini_imagenet("train", imagenet_root=imagenet, cache_dir=cache_dir)
    bad = tmp_path / "bad"
    bad.mkdir()
    kw = {"imagenet_root": imagenet, "splits_root": bad, "cache_dir": cache_dir}
    (bad / "train.csv").write_text(f"filename,label\n{SYNSETS[0]}00000009.jpg,{SYNSETS[0]}\n")
    with pytest.raises(DataError, match=r"train\.csv:2: .*asks for image 9 .* has 5 images"):
        mini_imagenet("train", **kw)
    (bad / "train.csv").write_text(f"filename,label\n{SYNSETS[0]}00000001.jpg,{SYNSETS[1]}\n")
    with pytest.raises(DataError, match=r"train\.csv:2: expected '<synset><index>\.jpg"):
        mini_imagenet("train", **kw)
    (bad / "train.csv").write_text("filename,label\nn0999999900000001.jpg,n09999999\n")
    with pytest.raises(DataError, match="synset n09999999 not found"):
        mini_imagenet("train", **kw)
    with pytest.raises(DataError, match=r"val\.csv not found"):
        mini_imagenet("val", **kw)


def test_tiered_imagenet_takes_every_image_of_each_class(
    imagenet: Path, tmp_path: Path, cache_dir: Path
) -> None:
    lists = tmp_path / "tiered"
    lists.mkdir()
    (lists / "train.csv").write_text(
        f"{SYNSETS[0]},n09000001\n{SYNSETS[4]},n09000001\n{SYNSETS[2]},n09000002\n"
    )
    ds = tiered_imagenet(
        "train", imagenet_root=imagenet, splits_root=lists, image_size=8, cache_dir=cache_dir
    )
    assert list(ds.class_names) == [SYNSETS[0], SYNSETS[4], SYNSETS[2]]
    assert ds.images.shape == (15, 3, 8, 8) and np.bincount(ds.labels).tolist() == [5, 5, 5]
    assert ds.sources[5] == f"{SYNSETS[4]}/{SYNSETS[4]}_3.JPEG"
    (lists / "val.csv").write_text(f"{SYNSETS[1]},n09000003\n")
    both = tiered_imagenet(
        "trainval", imagenet_root=imagenet, splits_root=lists, image_size=8, cache_dir=cache_dir
    )
    assert list(both.class_names) == [SYNSETS[0], SYNSETS[4], SYNSETS[2], SYNSETS[1]]
    assert (np.asarray(both.images[:15]) == np.asarray(ds.images)).all() and len(both) == 20
    (lists / "val.csv").write_text(f"{SYNSETS[2]},n09000002\n")  # also in train.csv
    with pytest.raises(DataError, match=r"val\.csv:1: class n00000003 is listed twice"):
        tiered_imagenet("trainval", imagenet_root=imagenet, splits_root=lists, cache_dir=cache_dir)
    (lists / "val.csv").write_text(f"{SYNSETS[0]},n09000001\n{SYNSETS[0]},n09000001\n")
    with pytest.raises(DataError, match="listed twice"):
        tiered_imagenet("val", imagenet_root=imagenet, splits_root=lists, cache_dir=cache_dir)
    (lists / "test.csv").write_text("banana,n09000001\n")
    with pytest.raises(DataError, match=r"test\.csv:1: expected '<class synset>,<category"):
        tiered_imagenet("test", imagenet_root=imagenet, splits_root=lists, cache_dir=cache_dir)
