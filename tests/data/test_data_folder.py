"""image_folder: the user's own class-per-folder data, decoded once, with clear layout errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metamap.data.folder import image_folder
from metamap.data.images import decode_image
from metamap.errors import DataError


def make_folder(root: Path, classes: dict[str, int], size: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / name / f"img{i:02d}.png")
    return root


def test_decodes_once_and_reopens_without_decoding(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_folder(tmp_path / "pets", {"dog": 3, "cat": 2, "bird": 1})
    ds = image_folder(root, 8, "RGB", cache_dir)
    assert list(ds.class_names) == ["bird", "cat", "dog"]
    assert ds.labels.tolist() == [0, 1, 1, 2, 2, 2]
    assert ds.images.shape == (6, 3, 8, 8) and isinstance(ds.images, np.memmap)
    assert ds.sources[0] == "bird/img00.png"
    assert (ds.images[3] == decode_image(root / "dog" / "img00.png", 8, "RGB")).all()
    with monkeypatch.context() as m:
        m.setattr("PIL.Image.open", lambda *a, **k: pytest.fail("decoded again"))
        again = image_folder(root, 8, "RGB", cache_dir)
    assert (np.asarray(again.images) == np.asarray(ds.images)).all()
    # grey, another size: another cache; a changed folder: decoded again
    assert image_folder(root, (4, 5), "L", cache_dir).images.shape == (6, 1, 4, 5)
    make_folder(root, {"cat": 3})
    assert len(image_folder(root, 8, "RGB", cache_dir)) == 7


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_folder(tmp_path / "d", {"a": 1, "b": 1})
    monkeypatch.setenv("METAMAP_CACHE", str(tmp_path / "envcache"))
    image_folder(root, 4, "L")
    assert len(list((tmp_path / "envcache").glob("folder-d-*.npy"))) == 1


def test_layout_errors_say_what_is_expected(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(DataError, match=r"does not exist.*one sub-folder per class"):
        image_folder(tmp_path / "nope", 8, "L", cache_dir)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (4, 4)).save(flat / "x.png")
    with pytest.raises(DataError, match=r"no class folders \(found images directly in it: x.png"):
        image_folder(flat, 8, "L", cache_dir)
    root = make_folder(tmp_path / "d", {"a": 1})
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*empty.* holds no images"):
        image_folder(root, 8, "L", cache_dir)


def test_non_images_are_refused_unless_skipped(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "d", {"a": 2, "b": 1})
    (root / "a" / "labels.csv").write_text("x")
    with pytest.raises(DataError, match=r"labels\.csv.*skip_non_images=True"):
        image_folder(root, 8, "L", cache_dir)
    assert len(image_folder(root, 8, "L", cache_dir, skip_non_images=True)) == 3


def test_a_corrupt_image_is_named_and_no_cache_is_left(tmp_path: Path, cache_dir: Path) -> None:
    root = make_folder(tmp_path / "d", {"a": 2, "b": 1})
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(DataError, match=r"b/broken\.jpg"):
        image_folder(root, 8, "L", cache_dir)
    assert not list(cache_dir.glob("*.npy"))
