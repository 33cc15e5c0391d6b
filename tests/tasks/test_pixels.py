"""The uint8 image helpers of the episode samplers, each against a plain reference."""

import numpy as np
import pytest
import torch

from metamap.errors import TaskShapeError
from metamap.tasks.pixels import (
    class_index_table,
    images_as_tensor,
    normalization,
    rotate_groups,
    to_float,
)


def test_class_index_table_lists_each_class_in_order_and_pads() -> None:
    labels = np.array([2, 0, 2, 1, 2, 0, 4], dtype=np.int64)
    table, counts = class_index_table(labels, 5)
    assert counts.tolist() == [2, 1, 3, 0, 1]
    assert table.shape == (5, 3)
    for c in range(5):
        assert table[c, : counts[c]].tolist() == np.flatnonzero(labels == c).tolist()
        assert table[c, counts[c] :].eq(0).all()  # padding


def test_rotate_groups_equals_rot90_item_by_item() -> None:
    x = torch.arange(6 * 2 * 3 * 3, dtype=torch.uint8).reshape(6, 2, 3, 3)
    rot = torch.tensor([0, 1, 2, 3, 1, 0])
    expect = torch.stack([torch.rot90(x[i], int(rot[i]), dims=(-2, -1)) for i in range(6)])
    rotate_groups(x, rot, [1, 2, 3])
    assert torch.equal(x, expect)


def test_to_float_scales_and_normalises_per_channel() -> None:
    src = torch.randint(0, 256, (4, 2, 5, 5), dtype=torch.uint8)
    plain = to_float(torch.empty(4, 2, 5, 5), src, None)
    assert torch.allclose(plain, src.float() / 255)
    mean, std = torch.tensor([0.2, 0.7]), torch.tensor([0.5, 0.25])
    norm = to_float(torch.empty(4, 2, 5, 5), src, normalization(([0.2, 0.7], [0.5, 0.25]), 2))
    ref = (src.float() / 255 - mean.view(2, 1, 1)) / std.view(2, 1, 1)
    assert torch.allclose(norm, ref, atol=1e-6)
    with pytest.raises(TaskShapeError, match="normalize std has 3 values"):
        normalization(([0.5], [1.0, 1.0, 1.0]), 2)


def test_images_as_tensor_copies_or_wraps_without_writing() -> None:
    images = np.arange(24, dtype=np.uint8).reshape(2, 1, 3, 4)
    images.setflags(write=False)
    copied, wrapped = images_as_tensor(images, True), images_as_tensor(images, False)
    assert torch.equal(copied, torch.from_numpy(images.copy())) and torch.equal(copied, wrapped)
    assert wrapped.data_ptr() == images.ctypes.data != copied.data_ptr()
