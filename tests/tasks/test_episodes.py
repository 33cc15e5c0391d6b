"""N-way K-shot episodes: layout, content read back from the pixels, rotations, seeding, fixed
evaluation plans, uniformity of the draws and bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from metamap.data.dataset import ImageClassDataset
from metamap.errors import TaskShapeError
from metamap.tasks import EpisodePlan, EpisodeSampler, TaskBatch, TaskDistribution, make_generator


def make_dataset(
    counts: list[int], shape: tuple[int, int, int] = (2, 5, 5), seed: int = 0
) -> ImageClassDataset:
    """Random, pairwise distinct images (checked), labels shuffled so classes interleave."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)
    images = rng.integers(0, 256, (len(labels), *shape), dtype=np.uint8)
    flat = images.reshape(len(images), -1)
    assert len(np.unique(flat, axis=0)) == len(images)
    return ImageClassDataset(images, labels, [f"class{c:02d}" for c in range(len(counts))])


def decode(x: torch.Tensor, ds: ImageClassDataset, rotations: bool = False) -> torch.Tensor:
    """Recover each image's dataset row (and quarter turns) from its pixels: ``(..., 2)``."""
    lead = x.shape[: x.dim() - 3]
    pix = torch.round(x.reshape(-1, *x.shape[-3:]) * 255).to(torch.uint8)
    ref = torch.from_numpy(np.asarray(ds.images))
    refs = [torch.rot90(ref, k, dims=(-2, -1)) for k in (range(4) if rotations else [0])]
    allref = torch.cat([r.reshape(len(ds), -1) for r in refs])  # (K*N, D)
    eq = (pix.reshape(len(pix), 1, -1) == allref.unsqueeze(0)).all(dim=2)
    assert bool(torch.all(eq.sum(dim=1) == 1)), "an episode image matches no dataset image"
    hit = eq.int().argmax(dim=1)
    return torch.stack([hit % len(ds), hit // len(ds)], dim=1).reshape(*lead, 2)


COUNTS = [8, 9, 10, 8, 12, 8, 11, 9, 8, 10]  # ragged, so padded table slots exist


@pytest.fixture(scope="module")
def ds() -> ImageClassDataset:
    return make_dataset(COUNTS)


def test_shapes_dtypes_and_label_major_layout(ds: ImageClassDataset) -> None:
    s = EpisodeSampler(ds, ways=4, shots=3, queries=5)
    assert isinstance(s, TaskDistribution)
    b = s.sample(6, make_generator(0))
    assert isinstance(b, TaskBatch)
    assert b.support_x.shape == (6, 12, 2, 5, 5) and b.query_x.shape == (6, 20, 2, 5, 5)
    assert b.support_x.dtype == torch.float32 and b.query_x.dtype == torch.float32
    assert b.support_y.dtype == torch.int64 and b.query_y.dtype == torch.int64
    assert float(b.support_x.min()) >= 0 and float(b.support_x.max()) <= 1
    assert torch.equal(b.support_y, torch.arange(4).repeat_interleave(3).expand(6, -1))
    assert torch.equal(b.query_y, torch.arange(4).repeat_interleave(5).expand(6, -1))
    assert b.support_x.is_contiguous() and b.query_x.is_contiguous()


@pytest.mark.parametrize("ways", [3, 8])  # rejection draw of classes / random-key draw
def test_episode_content_read_back_from_pixels(ds: ImageClassDataset, ways: int) -> None:
    shots, queries, n = 2, 4, 40
    s = EpisodeSampler(ds, ways=ways, shots=shots, queries=queries)
    assert s._rejection == (ways == 3)
    plan = s.sample_plan(n, make_generator(7))
    batch = s.sample(n, make_generator(7))  # same generator state → the plan materialised
    sup = decode(batch.support_x, ds)[..., 0]  # dataset rows
    qry = decode(batch.query_x, ds)[..., 0]
    assert torch.equal(sup.reshape(n, ways, shots), plan.images[:, :, queries:])
    assert torch.equal(qry.reshape(n, ways, queries), plan.images[:, :, :queries])
    labels = torch.from_numpy(ds.labels)
    for e in range(n):
        rows = torch.cat([sup[e], qry[e]])
        assert rows.unique().numel() == rows.numel(), "an image appears twice in an episode"
        sc, qc = labels[sup[e]], labels[qry[e]]
        assert sc.unique().numel() == ways and set(sc.tolist()) == set(qc.tolist())
        for j in range(ways):  # one class per label, the same in support and query
            cls = sc[batch.support_y[e] == j]
            assert cls.numel() == shots and bool(torch.all(cls == cls[0]))
            assert bool(torch.all(qc[batch.query_y[e] == j] == cls[0]))
            assert int(plan.classes[e, j]) == int(cls[0])


def test_plan_materialisation_equals_sample(ds: ImageClassDataset) -> None:
    s = EpisodeSampler(ds, ways=5, shots=1, queries=3)
    plan = s.sample_plan(9, make_generator(3))
    a, b = s.episodes_from_plan(plan), s.sample(9, make_generator(3))
    for x, y in zip(a.tensors(), b.tensors(), strict=True):
        assert torch.equal(x, y)


@pytest.mark.parametrize("in_memory", [True, False])  # pre-rotated pool / rotation on the fly
def test_rotations_are_rot90_of_the_base_images(ds: ImageClassDataset, in_memory: bool) -> None:
    base = np.repeat(np.arange(10), 4)
    rot = np.tile(np.arange(4), 10)
    s = EpisodeSampler(
        ds, ways=6, shots=2, queries=3, class_base=base, class_rotations=rot, in_memory=in_memory
    )
    assert (s._pool_start is not None) == in_memory and s.num_classes == 40
    plan = s.sample_plan(30, make_generator(11))
    batch = s.episodes_from_plan(plan)
    ref = torch.from_numpy(np.asarray(ds.images))
    k = torch.from_numpy(rot)[plan.classes]  # (n, ways)
    for e in range(30):
        for j in range(6):
            rows = plan.images[e, j]
            want = torch.rot90(ref[rows], int(k[e, j]), dims=(-2, -1)).float() / 255
            assert torch.equal(batch.query_x[e, 3 * j : 3 * j + 3], want[:3])
            assert torch.equal(batch.support_x[e, 2 * j : 2 * j + 2], want[3:])
            assert int(base[plan.classes[e, j]]) == int(ds.labels[rows[0]])
    # Read back from the pixels: (row, quarter turns) of every image matches the plan.
    got = decode(batch.support_x, ds, rotations=True).reshape(30, 6, 2, 2)
    assert torch.equal(got[..., 0], plan.images[:, :, 3:])
    assert torch.equal(got[..., 1], k.unsqueeze(2).expand(30, 6, 2))


def test_rotation_direction_is_counter_clockwise() -> None:
    img = np.arange(9, dtype=np.uint8).reshape(1, 1, 3, 3).repeat(4, axis=0)
    two = ImageClassDataset(img, np.array([0, 1, 0, 1]), ["a", "b"], name="tiny")
    s = EpisodeSampler(two, ways=2, shots=1, queries=1, class_rotations=[1, 1])
    x = torch.round(s.sample(1, make_generator(0)).support_x[0, 0, 0] * 255).to(torch.uint8)
    # [[0,1,2],[3,4,5],[6,7,8]] turned a quarter counter-clockwise: the right column on top.
    assert x.tolist() == [[2, 5, 8], [1, 4, 7], [0, 3, 6]]


def test_class_base_alone_selects_a_subset(ds: ImageClassDataset) -> None:
    s = EpisodeSampler(ds, ways=3, shots=2, queries=2, class_base=[7, 2, 5])
    plan = s.sample_plan(50, make_generator(1))
    labels = torch.from_numpy(ds.labels)
    assert set(labels[plan.images.reshape(-1)].tolist()) <= {7, 2, 5}
    assert torch.equal(labels[plan.images[:, :, 0]], torch.tensor([7, 2, 5])[plan.classes])


def test_normalisation(ds: ImageClassDataset) -> None:
    mean, std = (0.5, 0.25), (0.2, 0.4)
    plain = EpisodeSampler(ds, ways=3, shots=2, queries=2).sample(4, make_generator(2))
    norm = EpisodeSampler(ds, ways=3, shots=2, queries=2, normalize=(mean, std))
    b = norm.sample(4, make_generator(2))
    m = torch.tensor(mean).view(2, 1, 1)
    sd = torch.tensor(std).view(2, 1, 1)
    torch.testing.assert_close(b.support_x, (plain.support_x - m) / sd)
    torch.testing.assert_close(b.query_x, (plain.query_x - m) / sd)
    one = EpisodeSampler(ds, ways=3, shots=2, queries=2, normalize=([0.5], [0.5]))
    torch.testing.assert_close(one.sample(4, make_generator(2)).query_x, plain.query_x * 2 - 1)


def test_seeding_and_global_rng_untouched(ds: ImageClassDataset) -> None:
    s = EpisodeSampler(ds, ways=4, shots=2, queries=3, class_rotations=[0, 1, 2, 3] * 2 + [0, 0])
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    a = s.sample(5, make_generator(0))
    b = s.sample(5, make_generator(0))
    c = s.sample(5, make_generator(1))
    s.fixed_tasks(3, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors(), strict=True))
    assert not torch.equal(a.support_x, c.support_x)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    g = make_generator(0)  # consecutive batches differ
    assert not torch.equal(s.sample(5, g).support_x, s.sample(5, g).support_x)


def test_fixed_tasks_reproducible_prefix_nested_and_chunked(ds: ImageClassDataset) -> None:
    s = EpisodeSampler(ds, ways=4, shots=3, queries=4)
    a, b = s.fixed_tasks(150, seed=9), s.fixed_tasks(150, seed=9)
    assert all(torch.equal(x, y) for x, y in zip(a.tensors(), b.tensors(), strict=True))
    assert not torch.equal(a.query_x, s.fixed_tasks(150, seed=10).query_x)
    # the first m episodes of a larger set are the set of m (plans are drawn in fixed blocks)
    small = s.fixed_tasks(70, seed=9)
    assert torch.equal(small.support_x, a.support_x[:70])
    # other shots: same classes, labels and queries; nested support sets
    p3, p1 = s.fixed_episode_indices(150, 9), s.fixed_episode_indices(150, 9, shots=1)
    p4 = s.fixed_episode_indices(150, 9, shots=4)
    assert torch.equal(p3.classes, p1.classes) and torch.equal(p3.classes, p4.classes)
    assert torch.equal(p4.images[:, :, :7], p3.images)
    assert torch.equal(p3.images[:, :, :5], p1.images)
    one = s.fixed_tasks(150, seed=9, shots=1)
    assert one.support_x.shape == (150, 4, 2, 5, 5) and torch.equal(one.query_x, a.query_x)
    assert torch.equal(one.support_x, a.support_x.view(150, 4, 3, 2, 5, 5)[:, :, 0])
    # chunks of the plan = the whole set
    parts = [s.episodes_from_plan(p3, i, min(i + 40, 150)) for i in range(0, 150, 40)]
    for k in range(4):
        assert torch.equal(torch.cat([p.tensors()[k] for p in parts]), a.tensors()[k])
    chunks = list(s.fixed_task_chunks(150, seed=9, chunk_size=64))
    assert [len(c) for c in chunks] == [64, 64, 22]
    assert torch.equal(torch.cat([c.query_x for c in chunks]), a.query_x)


PINNED = {  # fixed_episode_indices(2, seed=1234) on the dataset below, torch 2.13 CPU generator
    3: (
        [[5, 6, 2], [5, 8, 4]],
        [[[53, 17, 41], [54, 30, 6], [50, 62, 38]], [[41, 5, 53], [68, 8, 44], [64, 52, 16]]],
    ),
    5: (
        [[9, 10, 2, 3, 4], [6, 0, 7, 1, 10]],
        [
            [[21, 69, 45], [70, 34, 22], [2, 26, 38], [39, 15, 51], [52, 16, 40]],
            [[54, 30, 66], [48, 36, 60], [67, 7, 31], [13, 37, 61], [70, 22, 46]],
        ],
    ),
}


@pytest.mark.parametrize("ways", [3, 5])  # rejection draw / random-key draw
def test_fixed_plan_is_pinned(ways: int) -> None:
    """Fixed evaluation sets depend on the seed alone: a pin against silent changes (of this
    code, or of torch's CPU generator) that would make results incomparable across versions."""
    labels = np.arange(72, dtype=np.int64) % 12
    data = ImageClassDataset(np.zeros((72, 1, 2, 2), np.uint8), labels, list("abcdefghijkl"))
    s = EpisodeSampler(data, ways=ways, shots=1, queries=2)
    assert s._rejection == (ways == 3)
    plan = s.fixed_episode_indices(2, seed=1234)
    assert plan.classes.tolist() == PINNED[ways][0]
    assert plan.images.tolist() == PINNED[ways][1]


def chi_square(observed: torch.Tensor) -> float:
    e = observed.double().mean()
    return float(((observed.double() - e) ** 2 / e).sum())


def chi_bound(categories: int) -> float:
    """df + 6·sqrt(2·df): far beyond any fluctuation, far below what a real bias produces."""
    df = categories - 1
    return df + 6 * math.sqrt(2 * df)


@pytest.mark.parametrize("ways", [4, 12])  # rejection draw / random-key draw
def test_classes_labels_and_images_drawn_uniformly(ways: int) -> None:
    counts = [10, 14] * 10  # 20 classes of unequal size
    data = make_dataset(counts, shape=(1, 2, 2), seed=1)
    s = EpisodeSampler(data, ways=ways, shots=2, queries=3)
    plan = s.sample_plan(3000, make_generator(123))
    k = s.num_classes
    per_class = torch.bincount(plan.classes.reshape(-1), minlength=k)
    assert chi_square(per_class) < chi_bound(k)
    # the label order is random too: the class given label 0 is uniform, and so on
    for j in (0, ways - 1):
        assert chi_square(torch.bincount(plan.classes[:, j], minlength=k)) < chi_bound(k)
    # images: within each class, every image equally often
    rows = plan.images.reshape(-1)
    per_image = torch.bincount(rows, minlength=len(data))
    labels = torch.from_numpy(data.labels)
    for c in range(k):
        obs = per_image[labels == c]
        assert int(obs.min()) > 0
        assert chi_square(obs) < chi_bound(obs.numel())
    # and a biased draw would be caught: never picking class 0 fails the bound by far
    biased = per_class.clone()
    biased[1] += biased[0]
    biased[0] = 0
    assert chi_square(biased) > 3 * chi_bound(k)


def test_memmap_dataset_read_in_place(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "images.u8"
    src = make_dataset([6] * 5, shape=(1, 4, 4))
    mm = np.memmap(path, dtype=np.uint8, mode="w+", shape=src.images.shape)
    mm[:] = src.images
    mm.flush()
    ro = np.memmap(path, dtype=np.uint8, mode="r", shape=src.images.shape)
    data = ImageClassDataset(ro, src.labels, src.class_names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lazy = EpisodeSampler(data, ways=3, shots=2, queries=2, in_memory=False)
        copied = EpisodeSampler(data, ways=3, shots=2, queries=2)
        a, b = lazy.sample(4, make_generator(0)), copied.sample(4, make_generator(0))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_x, b.query_x)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ways": 30}, r"ways=30 but the dataset has 20 classes"),
        ({"ways": 1}, r"ways must be at least 2, got 1"),
        ({"shots": 0}, r"shots must be at least 1, got 0"),
        ({"queries": 0}, r"queries must be at least 1, got 0"),
        (
            {"shots": 5, "queries": 4},
            r"shots \+ queries = 9 but class 'class03' \(sampler class 3\) holds only 7 images"
            r" — the smallest class; 2 of the 20 classes hold fewer than 9",
        ),
        ({"class_base": [0, 20]}, r"class_base must hold dataset class ids in \[0, 20\)"),
        ({"class_base": [0.5, 1.0]}, r"class_base must hold integers"),
        ({"class_base": [[0, 1]]}, r"class_base must be one-dimensional"),
        ({"class_base": [0, 1], "class_rotations": [1]}, r"class_rotations has 1 entries"),
        ({"class_base": [0, 1], "class_rotations": [1, 4]}, r"quarter turns .* got 4"),
        ({"class_base": [0, 1, 0], "class_rotations": [1, 2, 1]}, r"\(0, 1\) appears more"),
        ({"class_base": [0, 1], "ways": 3}, r"ways=3 but the sampler has 2 classes"),
        ({"normalize": ([0.5, 0.5], [1.0])}, r"normalize mean has 2 values .* 1 channel"),
        ({"normalize": ([0.5], [0.0])}, r"std must be positive"),
        ({"normalize": "imagenet"}, r"normalize must be \(mean, std\)"),
    ],
)
def test_bad_construction(kwargs: dict[str, object], message: str) -> None:
    counts = [10] * 20
    counts[3], counts[11] = 7, 8
    data = make_dataset(counts, shape=(1, 3, 3))
    args: dict[str, object] = {"ways": 5, "shots": 1, "queries": 2, **kwargs}
    with pytest.raises(TaskShapeError, match=message):
        EpisodeSampler(data, **args)  # type: ignore[arg-type]


def test_bad_rotation_of_non_square_images_and_bad_calls() -> None:
    data = make_dataset([4] * 4, shape=(1, 3, 5))
    with pytest.raises(TaskShapeError, match=r"needs square images, got 3×5"):
        EpisodeSampler(data, ways=2, shots=1, queries=1, class_rotations=[0, 1, 0, 0])
    s = EpisodeSampler(data, ways=2, shots=1, queries=1, class_rotations=[0, 2, 0, 2])
    assert s.sample(1, make_generator(0)).support_x.shape == (1, 2, 1, 3, 5)
    with pytest.raises(TaskShapeError, match="batch_size must be at least 1"):
        s.sample(0, make_generator(0))
    with pytest.raises(TaskShapeError, match="shots \\+ queries = 5 but class"):
        s.fixed_tasks(3, seed=0, shots=4)
    with pytest.raises(TaskShapeError, match="n must be at least 1"):
        s.fixed_tasks(0, seed=0)
    plan = s.fixed_episode_indices(5, seed=0)
    with pytest.raises(TaskShapeError, match=r"episode range \[4, 9\)"):
        s.episodes_from_plan(plan, 4, 9)
    other = EpisodeSampler(data, ways=3, shots=1, queries=1)
    with pytest.raises(TaskShapeError, match="the plan has 2 ways, this sampler 3"):
        other.episodes_from_plan(plan)
    shifted = EpisodePlan(plan.classes, (plan.images + 1) % len(data), shots=1, queries=1)
    with pytest.raises(TaskShapeError, match="plan's images are not images of its classes"):
        s.episodes_from_plan(shifted)
    with pytest.raises(TaskShapeError, match="images hold 2 images per class"):
        EpisodePlan(plan.classes, plan.images, shots=2, queries=1)
    with pytest.raises(TaskShapeError, match="needs an ImageClassDataset"):
        EpisodeSampler("omniglot", ways=2, shots=1, queries=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("in_memory", [True, False])
def test_labelled_batches_for_pretraining(ds: ImageClassDataset, in_memory: bool) -> None:
    """Supervised batches: each image is an image of its label's class, rotated as that class
    says, and every (class, image) pair is drawn."""
    base = np.repeat(np.arange(10), 4)
    rot = np.tile(np.arange(4), 10)
    s = EpisodeSampler(
        ds, ways=5, shots=1, queries=1, class_base=base, class_rotations=rot, in_memory=in_memory
    )
    x, y = s.sample_labelled(5000, make_generator(3))
    assert x.shape == (5000, 2, 5, 5) and x.dtype == torch.float32 and y.dtype == torch.int64
    got = decode(x, ds, rotations=True)  # (5000, 2): dataset row, quarter turns
    labels = torch.from_numpy(ds.labels)
    assert torch.equal(labels[got[:, 0]], torch.from_numpy(base)[y])
    assert torch.equal(got[:, 1], torch.from_numpy(rot)[y])
    pairs = {(int(c), int(r)) for c, r in zip(y, got[:, 0], strict=True)}
    assert len(pairs) == 4 * len(ds)  # 5000 draws of 392 pairs: every pair appears
    again, _ = s.sample_labelled(5000, make_generator(3))
    assert torch.equal(x, again)
    with pytest.raises(TaskShapeError, match="batch_size"):
        s.sample_labelled(0, make_generator(3))
