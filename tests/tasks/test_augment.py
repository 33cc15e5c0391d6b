"""Episode augmentation (MetaOptNet's crop / jitter / flip): each transform checked exactly."""

import pytest
import torch
import torch.nn.functional as F

from metamap.tasks import ImageAugment, TaskBatch, make_generator, stack_tasks


def images(n: int = 12, c: int = 3, size: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_disabled_is_the_identity() -> None:
    x = images()
    assert not ImageAugment().enabled
    assert ImageAugment()(x, make_generator(0)) is x


def test_crop_is_a_window_of_the_zero_padded_image_at_varied_offsets() -> None:
    x, pad = images(), 2
    out = ImageAugment(padding=pad)(x, make_generator(1))
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = []
    for n in range(len(x)):
        found = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(out[n], padded[n, :, dy : dy + 6, dx : dx + 6])
        ]
        assert found, f"image {n} is not a window of its padded original"
        offsets.append(found[0])
    assert len(set(offsets)) > 3


def test_flip_mirrors_about_half_of_the_images() -> None:
    x = images(n=64)
    out = ImageAugment(flip=True)(x, make_generator(2))
    same = [torch.equal(o, i) for o, i in zip(out, x, strict=True)]
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x, strict=True)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))
    assert 16 < sum(mirrored) < 48


def test_jitter_stays_in_range_keeps_grey_images_grey_and_changes_colour_ones() -> None:
    x = images(n=32)
    out = ImageAugment(jitter=0.4)(x, make_generator(3))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)
    grey = x[:, :1].expand(-1, 3, -1, -1)
    g_out = ImageAugment(jitter=0.4)(grey, make_generator(3))
    assert torch.allclose(g_out[:, 0], g_out[:, 1], atol=1e-6)
    assert torch.allclose(g_out[:, 1], g_out[:, 2], atol=1e-6)
    one = ImageAugment(jitter=0.4)(x[:, :1], make_generator(3))  # saturation: a no-op
    assert one.shape == (32, 1, 6, 6)


def test_episodes_keep_their_shapes_and_labels_and_replay_from_the_seed() -> None:
    sx, qx = images(10).view(2, 5, 3, 6, 6), images(6, seed=1).view(2, 3, 3, 6, 6)
    sy, qy = torch.arange(5).repeat(2, 1), torch.arange(3).repeat(2, 1)
    batch = TaskBatch(sx, sy, qx, qy)
    aug = ImageAugment(padding=1, flip=True, jitter=0.2)
    a = aug.batch(batch, make_generator(4))
    b = aug.batch(batch, make_generator(4))
    c = aug.batch(batch, make_generator(5))
    assert a.support_x.shape == sx.shape and a.query_x.shape == qx.shape
    assert a.support_y is sy and a.query_y is qy
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)
    assert not torch.equal(a.support_x, c.support_x)
    # one task of its own shape (a Meta-Dataset episode) is augmented as a batch of one would be
    one = batch[0]
    t = aug.task(one, make_generator(4))
    ref = aug.batch(stack_tasks([one]), make_generator(4))
    assert torch.equal(t.support_x, ref.support_x[0]) and torch.equal(t.query_x, ref.query_x[0])
    assert t.support_y is one.support_y and not torch.equal(t.support_x, one.support_x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"padding": -1}, "padding must be ≥ 0"), ({"jitter": 1.0}, r"jitter must be in \[0, 1\)")],
)
def test_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImageAugment(**kwargs)  # type: ignore[arg-type]
