"""Any PyTorch ``Dataset`` of ``(image, label)`` pairs as a source of episodes and of images:
:func:`from_torch_dataset` (PIL images, uint8 arrays, uint8 and float tensors; labels remapped;
class names and files kept), ``torchvision.datasets.ImageFolder`` giving exactly what
``image_folder`` gives, clear refusals of bad samples, and ``data.name: torch`` naming a dataset
by import path in a run config, trained on."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, IterableDataset, Subset, TensorDataset

from metamap.data import DATASETS, TorchData, from_torch_dataset, image_folder
from metamap.errors import ConfigError, DataError
from metamap.tasks import EpisodeSampler
from metamap.train import Trainer, load_config
from vision_support import import_vision


def torchvision() -> ModuleType:
    """torchvision, or the test skipped (tests/vision_support.py)."""
    return import_vision("torchvision")


def rgb(seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


# ---- what a sample may be ------------------------------------------------------------------------
def test_every_kind_of_image_becomes_uint8_chw_and_labels_are_remapped() -> None:
    a, b, c, d = rgb(0), rgb(1), rgb(2), rgb(3)
    samples = [
        (Image.fromarray(a), 10),  # PIL
        (b, np.int64(3)),  # numpy HWC uint8, numpy label
        (torch.from_numpy(c).permute(2, 0, 1), torch.tensor(7)),  # uint8 CHW tensor
        (torch.from_numpy(d).permute(2, 0, 1).float() / 255, 3),  # float CHW tensor in [0, 1]
    ]
    ds = from_torch_dataset(samples, image_size=8, channels=3, name="mixed")
    assert ds.name == "mixed" and ds.image_shape == (3, 8, 8) and ds.images.dtype == np.uint8
    for i, img in enumerate((a, b, c, d)):
        np.testing.assert_array_equal(ds.images[i], img.transpose(2, 0, 1))
    assert ds.labels.tolist() == [2, 0, 1, 0] and ds.labels.dtype == np.int64
    assert list(ds.class_names) == ["3", "7", "10"]


def test_images_are_resized_and_converted_as_files_are(tmp_path: Path) -> None:
    """A 20×20 image is resized to 8×8 with Lanczos, and a colour PIL image is made grey, as
    :func:`image_folder` does with files."""
    big = rgb(4, 20)
    path = tmp_path / "images" / "c" / "0.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(big).save(path)
    folder = image_folder(path.parents[1], 8, "L", tmp_path / "cache")
    ds = from_torch_dataset([(Image.fromarray(big), 0)], image_size=8, channels=1)
    np.testing.assert_array_equal(ds.images, folder.images)
    tensor = from_torch_dataset(
        [(torch.from_numpy(big).permute(2, 0, 1), 0)], image_size=(8, 8), channels=3
    )
    colour = image_folder(path.parents[1], 8, "RGB", tmp_path / "cache")
    np.testing.assert_array_equal(tensor.images, colour.images)


def test_grey_arrays_and_tensors_keep_their_one_channel() -> None:
    grey = np.random.default_rng(0).integers(0, 256, (6, 6), dtype=np.uint8)
    samples = [(grey, 0), (torch.from_numpy(grey), 1), (torch.from_numpy(grey)[None], 1)]
    ds = from_torch_dataset(TensorDatasetLike(samples), image_size=6, channels=1)
    for i in range(3):
        np.testing.assert_array_equal(ds.images[i, 0], grey)
    assert ds.name == "TensorDatasetLike"


class TensorDatasetLike(torch.utils.data.Dataset[Any]):
    def __init__(self, samples: list[Any]) -> None:
        self.samples_ = samples

    def __len__(self) -> int:
        return len(self.samples_)

    def __getitem__(self, i: int) -> Any:
        return self.samples_[i]


def test_a_tensor_dataset_of_labels_and_given_class_names() -> None:
    x = torch.rand(6, 3, 8, 8)
    y = torch.tensor([4, 4, 1, 1, 2, 2])
    names = ["zero", "one", "two", "three", "four"]
    ds = from_torch_dataset(TensorDataset(x, y), image_size=8, channels=3, class_names=names)
    assert list(ds.class_names) == ["one", "two", "four"] and ds.labels.tolist() == [
        2,
        2,
        0,
        0,
        1,
        1,
    ]
    np.testing.assert_array_equal(ds.images, (x * 255).round().to(torch.uint8).numpy())
    with pytest.raises(DataError, match=r"class_names has 3 names but the labels include \[4\]"):
        from_torch_dataset(TensorDataset(x, y), image_size=8, channels=3, class_names=names[:3])


# ---- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("samples", "match"),
    [
        ([], r"toy is empty"),
        ([torch.zeros(3, 4, 4)], r"toy\[0\] is a Tensor, not an \(image, label\) pair"),
        (
            [(torch.zeros(3, 4, 4), 0, "x")],
            r"toy\[0\] is a tuple of length 3, not an \(image, label\)",
        ),
        (
            [(torch.zeros(3, 4, 4), "cat")],
            r"toy\[0\] has label 'cat' \(str\): labels must be integer",
        ),
        ([(torch.zeros(3, 4, 4), 1.0)], r"label 1.0 \(float\)"),
        ([(torch.zeros(3, 4, 4), True)], r"label True \(bool\)"),
        ([(torch.zeros(3, 4, 4), torch.tensor([0.0, 1.0]))], r"label tensor\(\[0., 1.\]\)"),
        (
            [(torch.zeros(3, 4, 4), 0), (torch.zeros(1, 4, 4), 1)],
            r"toy\[1\] is an image of 1 channel\(s\) but toy\[0\] has 3: every image of a dataset",
        ),
        ([(torch.zeros(1, 4, 4), 0)], r"toy\[0\] is an image of 1 channel\(s\) but channels=3 was"),
        ([(torch.full((3, 4, 4), 200.0), 0)], r"values in \[200, 200\].*divide them by 255"),
        (
            [(torch.full((3, 4, 4), -1.5), 0)],
            r"values in \[-1.5, -1.5\].*before transforms.Normalize",
        ),
        ([(torch.full((3, 4, 4), float("nan")), 0)], r"float images must lie in \[0, 1\]"),
        ([(torch.zeros(3, 4, 4, dtype=torch.int64), 0)], r"tensor images must be uint8"),
        ([(torch.zeros(4, 4, 3), 0)], r"looks like \(H, W, C\): permute it"),
        ([(np.zeros((3, 4, 4), np.uint8), 0)], r"looks like \(C, H, W\): transpose it"),
        ([(np.zeros((4, 4, 3), np.float32), 0)], r"numpy images must be uint8"),
        ([("a.png", 0)], r"toy\[0\] has an image of type str: images must be PIL images"),
    ],
)
def test_bad_samples_are_refused_naming_them(samples: list[Any], match: str) -> None:
    with pytest.raises(DataError, match=match):
        from_torch_dataset(samples, image_size=4, channels=3, name="toy")


def test_iterable_datasets_are_refused() -> None:
    class Stream(IterableDataset[Any]):
        def __iter__(self) -> Any:
            yield torch.zeros(3, 4, 4), 0

    with pytest.raises(DataError, match=r"Stream: a map-style dataset is needed"):
        from_torch_dataset(Stream(), image_size=4, channels=3)  # type: ignore[arg-type]


# ---- torchvision's ImageFolder -------------------------------------------------------------------
def test_image_folder_of_torchvision_gives_what_image_folder_gives(
    class_folder: Callable[[Path, list[int], int, int], Path], tmp_path: Path
) -> None:
    datasets = torchvision().datasets
    root = class_folder(tmp_path / "images", [0, 3, 5, 7], 4, 0)
    ours = image_folder(root, 28, "L", tmp_path / "cache")
    theirs = from_torch_dataset(datasets.ImageFolder(root), image_size=28, channels=1)
    np.testing.assert_array_equal(theirs.images, ours.images)
    np.testing.assert_array_equal(theirs.labels, ours.labels)
    assert (
        list(theirs.class_names)
        == list(ours.class_names)
        == ["class00", "class03", "class05", "class07"]
    )
    assert [Path(s).relative_to(root).as_posix() for s in theirs.sources] == list(ours.sources)
    assert theirs.name == "ImageFolder"
    # a Subset keeps the class names and files of the classes it holds
    part = from_torch_dataset(
        Subset(datasets.ImageFolder(root), range(8, 16)), image_size=28, channels=1
    )
    assert (
        list(part.class_names) == ["class05", "class07"]
        and part.labels.tolist() == [0] * 4 + [1] * 4
    )
    assert list(part.sources) == list(theirs.sources[8:16])
    # and episodes are drawn from it
    sampler = EpisodeSampler(theirs, ways=3, shots=1, queries=2)
    batch = sampler.sample(2, torch.Generator().manual_seed(0))
    assert tuple(batch.support_x.shape) == (2, 3, 1, 28, 28)


# ---- data.name: torch ----------------------------------------------------------------------------
MODULE = """
import torch
from torch.utils.data import TensorDataset

def images(first: int, classes: int) -> TensorDataset:
    g = torch.Generator().manual_seed(first)
    labels = torch.arange(first, first + classes).repeat_interleave(4)
    x = torch.rand(len(labels), 1, 16, 16, generator=g) * 0.3
    for i, c in enumerate(labels.tolist()):  # a bright square at a class-specific place
        r, col = divmod(c % 16, 4)
        x[i, 0, 4 * r : 4 * r + 4, 4 * col : 4 * col + 4] = 1.0
    return TensorDataset(x, labels)

SPLITS = {"train": (0, 6), "val": (6, 3), "test": (9, 3)}

def make(split: str) -> TensorDataset:
    return images(*SPLITS[split])

everything = images(0, 10)
not_a_dataset = 42

def wrong(split: str) -> int:
    return 1
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"user_data_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_function_of_the_split_names_the_dataset_in_a_run_config(user_module: str) -> None:
    assert DATASETS["torch"] is TorchData
    section = TorchData(dataset=f"{user_module}:make", image_size=16)
    train, test = section.load("train"), section.load("test")
    assert train.num_classes == 6 and test.num_classes == 3 and train.image_shape == (1, 16, 16)
    assert list(test.class_names) == ["9", "10", "11"] and train.name == "make:train"
    assert section.split_note() == f" ({user_module}:make)"


def test_one_dataset_is_split_by_classes(user_module: str) -> None:
    section = TorchData(dataset=f"{user_module}:everything", image_size=16)
    parts = {s: section.load(s) for s in ("train", "val", "test", "trainval")}
    assert [parts[s].num_classes for s in ("train", "val", "test", "trainval")] == [6, 2, 2, 8]
    names = [set(parts[s].class_names) for s in ("train", "val", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_bad_import_paths_are_refused(user_module: str) -> None:
    with pytest.raises(ConfigError, match=r"'data.dataset'.*expected an import path"):
        load_config(None, ["task.family=episodes", "data.name=torch", "data.dataset=nocolon"])
    with pytest.raises(DataError, match=r"needs data.dataset"):
        TorchData().load("train")
    with pytest.raises(DataError, match=r"cannot import 'no_such_module_x'.*PYTHONPATH"):
        TorchData(dataset="no_such_module_x:make").load("train")
    with pytest.raises(DataError, match=r"has no 'nothing'"):
        TorchData(dataset=f"{user_module}:nothing").load("train")
    with pytest.raises(DataError, match=r"names a value of type int: it must name a function"):
        TorchData(dataset=f"{user_module}:not_a_dataset").load("train")
    with pytest.raises(DataError, match=r"returned a value of type int for split 'train'"):
        TorchData(dataset=f"{user_module}:wrong").load("train")


def test_a_run_trains_on_a_torch_dataset(user_module: str, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "task.family=episodes",
            "data.name=torch",
            f"data.dataset={user_module}:make",
            "data.image_size=16",
            "task.ways=3",
            "task.shots=1",
            "task.queries=2",
            "model.name=conv4",
            "model.width=8",
            "learner.name=protonet",
            "train.steps=4",
            "train.meta_batch=2",
            "train.val_every=4",
            "train.val_tasks=2",
            "train.ckpt_every=4",
            "train.progress=false",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    assert trainer.last_path.is_file()


def test_concatenated_splits_keep_every_sample() -> None:
    a = TensorDataset(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]))
    b = TensorDataset(torch.ones(2, 3, 4, 4), torch.tensor([2, 3]))
    ds = from_torch_dataset(ConcatDataset([a, b]), image_size=4, channels=3)
    assert ds.num_classes == 4 and int(ds.images[3].min()) == 255
