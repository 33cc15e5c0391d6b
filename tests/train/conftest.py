"""Shared test data for the training tests: a class-per-folder tree of grey 28×28 images."""

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BlockClasses = Callable[..., Path]


def write_block_classes(
    root: Path,
    counts: Sequence[int],
    cols: int,
    step: tuple[int, int],
    offset: tuple[int, int] = (2, 2),
    block: int = 4,
    seed: int = 0,
) -> Path:
    """``root/class<NN>/<i>.png``: class ``c`` has ``counts[c]`` images of dim noise (0-59) with
    a bright ``block``-square at grid cell ``divmod(c, cols)`` (cells ``step`` pixels apart)."""
    rng = np.random.default_rng(seed)
    for c, n in enumerate(counts):
        (root / f"class{c:02d}").mkdir()
        r, col = divmod(c, cols)
        top, left = offset[0] + step[0] * r, offset[1] + step[1] * col
        for i in range(n):
            img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            img[top : top + block, left : left + block] = 255
            Image.fromarray(img, mode="L").save(root / f"class{c:02d}" / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def block_classes() -> BlockClasses:
    """:func:`write_block_classes`, for the test modules' folder fixtures."""
    return write_block_classes
