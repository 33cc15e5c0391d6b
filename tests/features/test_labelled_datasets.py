"""Datasets as inputs: the inversion an ImageClassDataset gets depends on its loader, and labelled
datasets (ImageClassDataset, ImageFolder-like torch Datasets) carry their labels into ``fit``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metamap.data import ImageClassDataset, image_folder, omniglot, omniglot_images
from metamap.errors import TaskShapeError
from metamap.features import FeatureExtractor, FewShotClassifier, load_image_files


def test_an_image_folder_dataset_is_embedded_like_its_files(
    inverted_ckpt: Path, image_root: Path, tmp_path: Path
) -> None:
    """``image_folder`` decodes raw pixels (``invert=False``): an Omniglot-style model inverts
    them, as it inverts the same files; with ``invert=True`` the dataset records it and is not
    inverted twice; an array is taken as it is."""
    ext = FeatureExtractor.from_checkpoint(inverted_ckpt)
    assert ext.spec.invert
    files = load_image_files(image_root, ext.spec).files
    want = ext.embed(files)
    raw = image_folder(image_root, 28, "L", tmp_path / "cache")
    assert list(raw.sources) == [str(Path(f).relative_to(image_root)) for f in files]
    torch.testing.assert_close(ext.embed(raw), want)
    inverted = image_folder(image_root, 28, "L", tmp_path / "cache", invert=True)
    assert inverted.inverted and not raw.inverted
    torch.testing.assert_close(ext.embed(inverted), want)
    torch.testing.assert_close(ext.embed(inverted.images), want)  # arrays: as they are


def _glyph(char: int, sample: int) -> Image.Image:
    """A 105×105 Omniglot-like drawing: black strokes on white."""
    a = np.full((105, 105), 255, dtype=np.uint8)
    top = 10 + 9 * char + 2 * sample
    a[top : top + 50, 20 + 5 * char : 30 + 5 * char] = 0
    a[top + 40 : top + 50, 20:75] = 0
    return Image.fromarray(a, mode="L")


def _omniglot_tree(root: Path) -> Path:
    layout = {"images_background": ["Alpha", "Beta"], "images_evaluation": ["Gamma"]}
    char = 0
    for part, alphabets in layout.items():
        for alphabet in alphabets:
            d = root / part / alphabet / "character01"
            d.mkdir(parents=True)
            for k in range(1, 4):
                _glyph(char, k).save(d / f"{char + 1:04d}_{k:02d}.png")
            char += 1
    return root


def test_the_omniglot_loaders_datasets_are_not_inverted_twice(
    inverted_ckpt: Path, protonet_ckpt: Path, tmp_path: Path
) -> None:
    """metamap's Omniglot loaders invert: their datasets are taken as inverted already, so they
    give the features of their files, for a model that inverts and for one that does not."""
    root = _omniglot_tree(tmp_path / "omniglot")
    cache = tmp_path / "cache"
    split = omniglot("background", "lake", root=root, cache_dir=cache)
    full = omniglot_images(root, cache_dir=cache)
    for ckpt in (inverted_ckpt, protonet_ckpt):
        ext = FeatureExtractor.from_checkpoint(ckpt)
        for data in (split, full):
            files = [str(root / s) for s in data.sources]
            torch.testing.assert_close(ext.embed(data), ext.embed(files), msg=str(ckpt))


class ImageFolderLike(torch.utils.data.Dataset[tuple[Image.Image, int]]):
    """What torchvision's ``ImageFolder`` is to metamap: PIL images, integer targets,
    ``classes`` and ``samples`` (torchvision itself does not import beside this CPU torch)."""

    def __init__(self, root: Path, named: bool = True) -> None:
        dirs = sorted(d for d in root.iterdir() if d.is_dir())
        if named:
            self.classes = [d.name for d in dirs]
        self.samples = [(str(f), k) for k, d in enumerate(dirs) for f in sorted(d.glob("*.png"))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        path, target = self.samples[i]
        return Image.open(path).convert("L"), target


def test_fit_takes_the_labels_of_labelled_datasets(
    inverted_ckpt: Path, image_root: Path, tmp_path: Path
) -> None:
    """An ImageClassDataset or an ImageFolder-like Dataset given without labels fits as its
    class folder does: the same classes (names from ``class_names`` / ``classes``, else the
    integer labels) and the same predictions, the inversion included."""
    ext = FeatureExtractor.from_checkpoint(inverted_ckpt)
    queries = load_image_files(image_root, ext.spec).files[::5]
    want = FewShotClassifier(ext).fit(image_root)
    assert list(want.classes_) == [f"class{c:02d}" for c in range(12)]
    for data in (
        image_folder(image_root, 28, "L", tmp_path / "cache"),
        ImageFolderLike(image_root),
    ):
        got = FewShotClassifier(ext).fit(data)
        assert list(got.classes_) == list(want.classes_), type(data)
        np.testing.assert_allclose(got.predict_proba(queries), want.predict_proba(queries))
    subset = torch.utils.data.Subset(ImageFolderLike(image_root), list(range(0, 72, 2)))
    assert list(FewShotClassifier(ext).fit(subset).classes_) == list(want.classes_)
    unnamed = FewShotClassifier(ext).fit(ImageFolderLike(image_root, named=False))
    assert list(unnamed.classes_) == list(range(12))  # its own integer labels, not "0", "1", …
    np.testing.assert_array_equal(
        unnamed.predict(queries), [list(want.classes_).index(c) for c in want.predict(queries)]
    )


def test_fit_without_labels_names_what_carries_them(inverted_ckpt: Path) -> None:
    ext = FeatureExtractor.from_checkpoint(inverted_ckpt)
    with pytest.raises(TaskShapeError, match="ImageClassDataset or a torch Dataset"):
        FewShotClassifier(ext).fit(torch.rand(4, 1, 28, 28))
    empty = ImageClassDataset(np.zeros((0, 1, 28, 28), np.uint8), np.zeros(0, np.int64), ["a", "b"])
    with pytest.raises(TaskShapeError, match="the support set is empty"):
        FewShotClassifier(ext).fit(empty)
