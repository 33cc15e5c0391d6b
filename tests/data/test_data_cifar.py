"""CIFAR-FS and FC100 from a small archive in the exact CIFAR-100 *binary* format."""

from __future__ import annotations

import hashlib
import importlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from metamap.data.cifar import CIFAR_FS_SPLITS, FC100_SPLITS, cifar_fs, fc100
from metamap.errors import DataError

cifar_mod = importlib.import_module("metamap.data.cifar")

SUPERCLASSES = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
COARSE = sorted(SUPERCLASSES)  # CIFAR-100 label order is alphabetical
FINE = sorted(f for fs in SUPERCLASSES.values() for f in fs)
COARSE_OF = {f: COARSE.index(c) for c, fs in SUPERCLASSES.items() for f in fs}


def records(per_class: int, offset: int) -> bytes:
    out = bytearray()
    for k in range(per_class):
        for fine_id, name in enumerate(FINE):
            pixels = np.empty((3, 32, 32), np.uint8)
            pixels[0], pixels[1], pixels[2] = fine_id, COARSE_OF[name], offset + k
            pixels[0, 0, 1] = 7  # one marked pixel: checks the row-major layout
            out += bytes([COARSE_OF[name], fine_id]) + pixels.tobytes()
    return bytes(out)


def make_cifar(
    path: Path, train_bin: bytes | None = None, folder: str = "cifar-100-binary"
) -> Path:
    files = {
        "train.bin": records(2, 0) if train_bin is None else train_bin,
        "test.bin": records(1, 100),
        "fine_label_names.txt": ("\n".join(FINE) + "\n\n").encode(),
        "coarse_label_names.txt": ("\n".join(COARSE) + "\n").encode(),
    }
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(autouse=True)
def _synthetic_archives_are_not_pinned() -> Iterator[None]:
    """The archives here are synthetic, not the official bytes: the check of a local archive
    against its pinned MD5 is tested in test_data_local_checks.py, and skipped here (a
    MonkeyPatch of its own: a test's monkeypatch.undo() leaves it in place)."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(cifar_mod, "verify_file", lambda path, *a, **k: Path(path))
        yield


def test_split_constants_partition_cifar100() -> None:
    parts = ("train", "val", "test")
    assert [len(CIFAR_FS_SPLITS[s]) for s in parts] == [64, 16, 20]
    assert sorted(sum((CIFAR_FS_SPLITS[s] for s in parts), ())) == FINE
    assert [len(FC100_SPLITS[s]) for s in parts] == [12, 4, 4]
    assert sorted(sum((FC100_SPLITS[s] for s in parts), ())) == COARSE
    for splits in (CIFAR_FS_SPLITS, FC100_SPLITS):
        assert set(splits["trainval"]) == set(splits["train"]) | set(splits["val"])


def images_by_class(ds: object) -> dict[str, list[bytes]]:
    """Each class's images (as bytes, in order): what a split holds, whatever its label order."""
    from metamap.data import ImageClassDataset

    assert isinstance(ds, ImageClassDataset)
    out: dict[str, list[bytes]] = {}
    for image, label in zip(np.asarray(ds.images), ds.labels.tolist(), strict=True):
        out.setdefault(ds.class_names[label], []).append(image.tobytes())
    return out


@pytest.mark.parametrize("loader", [cifar_fs, fc100])
def test_trainval_holds_the_train_and_val_classes_with_their_images(
    tmp_path: Path, cache_dir: Path, loader: object
) -> None:
    """``trainval`` (final models trained on train and val) is the union of the two splits,
    image for image, and shares no class with test."""
    assert callable(loader)
    archive = make_cifar(tmp_path / "c.tar.gz")
    train, val, test, both = (
        images_by_class(loader(s, root=archive, cache_dir=cache_dir))
        for s in ("train", "val", "test", "trainval")
    )
    assert both == {**train, **val} and len(both) == 80
    assert not set(both) & set(test)


def test_cifar_fs_from_the_binary_archive(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_cifar(tmp_path / "cifar-100-binary.tar.gz")
    ds = cifar_fs("train", root=archive, cache_dir=cache_dir)
    assert ds.num_classes == 64 and ds.images.shape == (192, 3, 32, 32)
    assert list(ds.class_names) == sorted(CIFAR_FS_SPLITS["train"])  # fine-label order
    assert isinstance(ds.images, np.memmap)
    assert np.bincount(ds.labels).tolist() == [3] * 64
    first = FINE.index(ds.class_names[0])
    img = ds.images[0]
    assert (img[0, 0, 0], img[0, 0, 1], img[1, 5, 5]) == (first, 7, COARSE_OF[FINE[first]])
    assert sorted(int(ds.images[i, 2, 9, 9]) for i in range(3)) == [0, 1, 100]  # train + test
    assert ds.sources[0] == f"train.bin#{first}"
    # re-opened from the cache: the archive is neither hashed nor parsed again
    monkeypatch.setattr(cifar_mod, "read_cifar100_binary", lambda *a: pytest.fail("re-read"))
    monkeypatch.setattr("metamap.data.cache.sha256_file", lambda *a: pytest.fail("re-hashed"))
    again = cifar_fs("train", root=tmp_path, cache_dir=cache_dir)  # the folder holding it
    assert (np.asarray(again.images) == np.asarray(ds.images)).all()
    monkeypatch.undo()
    assert cifar_fs("val", root=archive, cache_dir=cache_dir).num_classes == 16
    assert cifar_fs("test", root=archive, cache_dir=cache_dir).num_classes == 20


def test_fc100_splits_by_superclass(tmp_path: Path, cache_dir: Path) -> None:
    archive = make_cifar(tmp_path / "c.tar.gz")
    seen: set[str] = set()
    for split, n in (("train", 60), ("val", 20), ("test", 20)):
        ds = fc100(split, root=archive, cache_dir=cache_dir)
        assert ds.num_classes == n and len(ds) == 3 * n
        supers = {COARSE[int(c)] for c in np.asarray(ds.images[:, 1, 0, 0])}
        assert supers == set(FC100_SPLITS[split])
        seen |= set(ds.class_names)
    assert seen == set(FINE)


def test_extracted_folder_environment_and_custom_lists(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_cifar(tmp_path / "c.tar.gz")
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    monkeypatch.setenv("METAMAP_CIFAR100", str(tmp_path / "x"))
    assert cifar_fs("test", cache_dir=cache_dir).num_classes == 20
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("apple\nwhale\n")
    ds = cifar_fs("train", splits_root=lists, cache_dir=cache_dir)
    assert list(ds.class_names) == ["apple", "whale"]
    (lists / "val.txt").write_text("rose\n")
    both = cifar_fs("trainval", splits_root=lists, cache_dir=cache_dir)
    assert list(both.class_names) == ["apple", "rose", "whale"]  # fine-label order
    (lists / "val.txt").write_text("apple\nunicorn\n")
    with pytest.raises(DataError, match="unicorn not among the CIFAR-100 fine label names"):
        cifar_fs("val", splits_root=lists, cache_dir=cache_dir)


def test_errors_name_the_file_and_the_fix(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError, match=r"cifar-100-binary\.tar\.gz.*METAMAP_CIFAR100"):
        cifar_fs("train", cache_dir=cache_dir)
    cut = make_cifar(tmp_path / "cut.tar.gz", train_bin=records(1, 0)[:-10])
    with pytest.raises(DataError, match=r"train\.bin is .* not a whole number of 3074-byte"):
        cifar_fs("train", root=cut, cache_dir=cache_dir)
    pickled = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(pickled, "w:gz") as tf:
        info = tarfile.TarInfo("cifar-100-python/train")
        tf.addfile(info, io.BytesIO(b""))
    with pytest.raises(DataError, match=r"lacks train\.bin.*pickled python version is not"):
        fc100("train", root=pickled, cache_dir=cache_dir)
    assert not list(cache_dir.glob("*.npy"))


def test_download_true(tmp_path: Path, cache_dir: Path, http_server, monkeypatch) -> None:
    blob = make_cifar(tmp_path / "c.tar.gz").read_bytes()
    monkeypatch.setattr(cifar_mod, "CIFAR100_BINARY_URL", http_server.serve("/c.tgz", blob))
    with pytest.raises(DataError, match="expected md5 03b5dce0"):  # not the real archive
        fc100("test", cache_dir=cache_dir, download=True)
    monkeypatch.setattr(cifar_mod, "CIFAR100_BINARY_MD5", hashlib.md5(blob).hexdigest())
    assert fc100("test", cache_dir=cache_dir, download=True).num_classes == 20
    assert (cache_dir / "downloads" / "cifar-100-binary.tar.gz").read_bytes() == blob


def test_configs_name_cifar_fs_and_fc100(tmp_path: Path, cache_dir: Path) -> None:
    """`data.name: cifar_fs` / `fc100` in a run config reach these loaders (train, val, test)."""
    from metamap.train import Trainer, build_tasks, load_config

    archive = make_cifar(tmp_path / "cifar-100-binary.tar.gz")
    over = [
        "task.family=episodes",
        "data.name=cifar_fs",
        f"data.root={archive}",
        f"data.cache_dir={cache_dir}",
        "data.image_size=32",
        "data.channels=3",
        "task.ways=5",
        "task.shots=1",
        "task.queries=1",
        "model.name=conv4",
        "model.width=4",
        "learner.name=protonet",
        "train.steps=2",
        "train.val_every=2",
        "train.val_tasks=2",
        "train.progress=false",
    ]
    cfg = load_config(None, over)
    t = Trainer(cfg, tmp_path / "run")
    assert t.fit().step == 2
    assert t.problem.tasks.num_classes == 64
    assert build_tasks(cfg, "test").num_classes == 20  # type: ignore[attr-defined]
    fc = load_config(None, [*over, "data.name=fc100"])
    assert build_tasks(fc, "train").num_classes == 60  # type: ignore[attr-defined]
    final = load_config(None, [*over, "data.train_split=trainval", "eval.checkpoint=last"])
    assert build_tasks(final, "train").num_classes == 80  # type: ignore[attr-defined]
    from metamap.errors import ConfigError

    with pytest.raises(ConfigError, match="3×32×32"):
        load_config(None, [*over, "data.image_size=84"])
