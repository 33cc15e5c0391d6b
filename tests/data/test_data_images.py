"""decode_image / list_images: modes, resizing, inversion, and clear errors naming the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metamap.data.images import decode_image, list_images, parse_size
from metamap.errors import DataError


def save(path: Path, array: np.ndarray, mode: str | None = None, fmt: str | None = None) -> Path:
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(path, format=fmt)
    return path


def test_grey_and_rgb_shapes_and_values(tmp_path: Path) -> None:
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    p = save(tmp_path / "a.png", rgb)
    x = decode_image(p, None, "RGB")
    assert x.shape == (3, 10, 12) and x.dtype == np.uint8
    assert x[:, 0, 0].tolist() == [10, 20, 30]
    g = decode_image(p, (5, 6), "L")
    assert g.shape == (1, 5, 6)
    grey = save(tmp_path / "g.png", np.full((8, 8), 77, np.uint8))
    assert (decode_image(grey, 8, "RGB") == 77).all()  # grey → 3 equal channels


def test_one_bit_images_are_inverted_and_antialiased(tmp_path: Path) -> None:
    board = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)  # 1-pixel checkerboard
    p = save(tmp_path / "c.png", board, mode="1")
    assert Image.open(p).mode == "1"
    full = decode_image(p, None, "L", invert=True)
    assert set(np.unique(full).tolist()) == {0, 255}
    assert (full[0] == 255 - board).all()
    small = decode_image(p, 4, "L", resample="lanczos")
    assert 100 < small.mean() < 155 and small.std() < 40  # antialiased: grey, not 0/255
    nearest = decode_image(p, 4, "L", resample="nearest")
    assert set(np.unique(nearest).tolist()) <= {0, 255}


def test_bytes_input_and_draft_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 1)) * 40 + np.linspace(0, 200, 64)[None, :, None]).astype(np.uint8)
    img = np.repeat(img, 3, axis=2)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    full = decode_image(buf.getvalue(), 16, "RGB").astype(int)
    fast = decode_image(buf.getvalue(), 16, "RGB", draft=True).astype(int)
    assert full.shape == fast.shape == (3, 16, 16)
    assert np.abs(full - fast).mean() < 6


def test_corrupt_non_image_and_missing_files_name_the_file(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    good = save(tmp_path / "good.png", noise)
    bad = tmp_path / "truncated.png"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"truncated\.png.*corrupt"):
        decode_image(bad, 8)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match=r"notes\.png is not an image"):
        decode_image(text, 8)
    with pytest.raises(DataError, match=r"missing\.png does not exist"):
        decode_image(tmp_path / "missing.png", 8)
    with pytest.raises(DataError, match=r"member\.jpg"):
        decode_image(b"garbage", 8, name="archive.tgz:member.jpg")


def test_list_images_refuses_or_skips_non_images(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.jpg"):
        save(tmp_path / name, np.zeros((4, 4, 3), np.uint8), fmt="PNG")
    (tmp_path / ".DS_Store").write_bytes(b"x")  # hidden: always ignored
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    (tmp_path / "readme.txt").write_text("hi")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match=r"'readme\.txt', 'sub/'.*skip_non_images=True"):
        list_images(tmp_path)
    assert len(list_images(tmp_path, skip_non_images=True)) == 2


def test_bad_arguments() -> None:
    assert parse_size(28) == (28, 28) and parse_size((3, 4)) == (3, 4)
    with pytest.raises(ValueError):
        parse_size(0)
    with pytest.raises(ValueError):
        decode_image(b"", 4, "CMYK")  # type: ignore[arg-type]
