"""Meta-Dataset episodes: the paper's formulas re-derived from each episode's recorded draws,
content read back from the pixels, domains, class imbalance, seeding and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metamap.data.dataset import ImageClassDataset
from metamap.errors import TaskShapeError
from metamap.tasks import (
    ClassHierarchy,
    MetaDatasetEpisode,
    MetaDatasetSampler,
    Task,
    make_generator,
)


def make_dataset(
    counts: list[int], shape: tuple[int, int, int] = (1, 2, 3), seed: int = 0, name: str = "d"
) -> ImageClassDataset:
    """Random, pairwise distinct images (checked), labels shuffled so classes interleave."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)
    images = rng.integers(0, 256, (len(labels), *shape), dtype=np.uint8)
    assert len(np.unique(images.reshape(len(images), -1), axis=0)) == len(images)
    return ImageClassDataset(images, labels, [f"{name}{c}" for c in range(len(counts))], name=name)


def pixel_keys(pix: torch.Tensor) -> torch.Tensor:
    """An exact int64 key per uint8 image of at most 7 bytes."""
    flat = pix.reshape(len(pix), -1).to(torch.int64)
    assert flat.shape[1] <= 7
    return (flat * 256 ** torch.arange(flat.shape[1])).sum(dim=1)


def rows_of(x: torch.Tensor, ds: ImageClassDataset) -> torch.Tensor:
    """Each image's dataset row, recovered from its pixels."""
    ref = pixel_keys(torch.from_numpy(np.asarray(ds.images)))
    order = torch.argsort(ref)
    key = pixel_keys(torch.round(x * 255).to(torch.uint8))
    pos = torch.searchsorted(ref[order], key).clamp(max=len(ref) - 1)
    assert torch.equal(ref[order][pos], key), "an episode image matches no dataset image"
    return order[pos]


def check_episode(s: MetaDatasetSampler, ep: MetaDatasetEpisode, task: Task) -> None:
    """Every step of the protocol, recomputed by hand from the episode's own random draws."""
    ds = s.domains[ep.domain]
    counts = torch.bincount(torch.from_numpy(ds.labels), minlength=ds.num_classes)
    n = ep.ways
    assert s.min_ways <= n <= min(s.max_ways, ds.num_classes)
    assert ep.classes.unique().numel() == n
    size = counts[ep.classes]
    q = min(10, min(int(c) // 2 for c in size))  # q = min(10, min_c ⌊0.5·|Im(c)|⌋)
    assert ep.queries == q
    assert 0 < ep.beta <= 1
    want_s = min(500, sum(math.ceil(ep.beta * min(100, int(c) - q)) for c in size))
    assert ep.support_size == want_s <= 500
    lo, hi = math.log(0.5), math.log(2.0)
    assert bool(torch.all((ep.log_weights >= lo) & (ep.log_weights < hi)))
    w = [math.exp(float(a)) * int(c) for a, c in zip(ep.log_weights, size, strict=True)]
    for j in range(n):  # k_c = min(⌊R_c·(|S| − N)⌋ + 1, |Im(c)| − q)
        want_k = min(math.floor(w[j] / sum(w) * (want_s - n)) + 1, int(size[j]) - q)
        assert int(ep.shots[j]) == want_k >= 1
    # the task: label-major sets of the right images of the right classes, nothing twice
    assert task.support_x.shape == (int(ep.shots.sum()), *s.image_shape)
    assert task.query_x.shape == (n * q, *s.image_shape)
    assert task.support_x.dtype == torch.float32 and task.support_y.dtype == torch.int64
    assert torch.equal(task.support_y, torch.arange(n).repeat_interleave(ep.shots))
    assert torch.equal(task.query_y, torch.arange(n).repeat_interleave(q))
    sup, qry = rows_of(task.support_x, ds), rows_of(task.query_x, ds)
    assert torch.equal(sup, ep.support_rows) and torch.equal(qry, ep.query_rows)
    both = torch.cat([sup, qry])
    assert both.unique().numel() == both.numel()
    labels = torch.from_numpy(ds.labels)
    assert torch.equal(labels[sup], ep.classes[task.support_y])
    assert torch.equal(labels[qry], ep.classes[task.query_y])


def test_protocol_formulas_and_content() -> None:
    rng = np.random.default_rng(5)
    counts = rng.integers(2, 40, size=60).tolist()  # ragged, some tiny classes (q can be 1)
    ds = make_dataset(counts)
    s = MetaDatasetSampler(ds)
    g = make_generator(0)
    ways, queries = [], []
    for _ in range(150):
        ep = s.sample_episode(g)
        check_episode(s, ep, s.task_from_episode(ep))
        ways.append(ep.ways)
        queries.append(ep.queries)
    assert min(ways) >= 5 and max(ways) <= 50
    assert min(ways) <= 10 and max(ways) >= 45  # the whole range is used
    assert len(set(queries)) > 1


def test_large_classes_hit_the_caps() -> None:
    """Classes of 300 images: q = 10, contributions capped at 100, |S| capped at 500."""
    ds = make_dataset([300] * 50)
    s = MetaDatasetSampler(ds)
    g = make_generator(1)
    capped = 0
    for _ in range(40):
        ep = s.sample_episode(g)
        check_episode(s, ep, s.task_from_episode(ep))
        assert ep.queries == 10
        capped += ep.support_size == 500
    assert capped > 5


def test_ways_bounded_by_small_domains() -> None:
    ds = make_dataset([6] * 7)
    s = MetaDatasetSampler(ds)
    ways = {s.sample_episode(make_generator(i)).ways for i in range(60)}
    assert ways == {5, 6, 7}


def test_class_imbalance() -> None:
    # equal class sizes: shots still differ within episodes (α_c), often by a factor ≥ 1.5
    s = MetaDatasetSampler(make_dataset([40] * 30, shape=(1, 2, 2)))
    g = make_generator(2)
    eps = [s.sample_episode(g) for _ in range(200)]
    spread = [int(e.shots.max()) >= 1.5 * int(e.shots.min()) for e in eps if e.support_size > 100]
    assert len(spread) > 50 and sum(spread) > 0.5 * len(spread)
    # unequal sizes: bigger classes get more support images (R_c ∝ |Im(c)|)
    ds = make_dataset([20, 80] * 15, shape=(1, 2, 2), seed=1)
    s = MetaDatasetSampler(ds)
    size = torch.bincount(torch.from_numpy(ds.labels))
    small, big = [], []
    g = make_generator(3)
    for _ in range(200):
        e = s.sample_episode(g)
        for c, k in zip(e.classes.tolist(), e.shots.tolist(), strict=True):
            (big if int(size[c]) == 80 else small).append(k)
    assert np.mean(big) > 1.5 * np.mean(small)


def test_domains_weights_and_shape_check() -> None:
    a = make_dataset([8] * 10, name="a", seed=0)
    b = make_dataset([12] * 6, name="b", seed=1)
    s = MetaDatasetSampler([a, b], weights=[1.0, 3.0])
    g = make_generator(4)
    eps = [s.sample_episode(g) for _ in range(400)]
    share_b = sum(e.domain for e in eps) / len(eps)
    assert 0.65 < share_b < 0.85
    for e in eps[:20]:
        check_episode(s, e, s.task_from_episode(e))
    uniform = MetaDatasetSampler([a, b])
    share = sum(uniform.sample_episode(g).domain for _ in range(400)) / 400
    assert 0.4 < share < 0.6
    tasks = uniform.sample(5, g)
    assert len(tasks) == 5 and all(isinstance(t, Task) for t in tasks)
    assert {uniform.sample_task(g, domain=1).params["domain"] for _ in range(5)} == {1.0}
    c = make_dataset([8] * 10, shape=(1, 4, 4), name="c")
    with pytest.raises(TaskShapeError, match=r"same C×H×W: 'a' has \(1, 2, 3\), 'c' has"):
        MetaDatasetSampler([a, c])


def test_seeding_fixed_sets_and_global_rng() -> None:
    s = MetaDatasetSampler([make_dataset([8] * 10, name="a"), make_dataset([9] * 8, name="b")])
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()[1].copy()
    a = s.fixed_tasks(12, seed=3)
    b = s.fixed_tasks(12, seed=3)
    c = s.fixed_tasks(12, seed=4)
    assert all(
        torch.equal(x, y)
        for ta, tb in zip(a, b, strict=True)
        for x, y in zip(ta.tensors(), tb.tensors(), strict=True)
    )
    assert any(ta.support_x.shape != tc.support_x.shape for ta, tc in zip(a, c, strict=True))
    prefix = s.fixed_tasks(5, seed=3)
    assert all(torch.equal(p.query_x, t.query_x) for p, t in zip(prefix, a, strict=False))
    one = s.fixed_episodes(10, seed=3, domain=1)
    assert {e.domain for e in one} == {1}
    t1 = s.sample_task(make_generator(8))
    t2 = s.sample_task(make_generator(8))
    assert torch.equal(t1.support_x, t2.support_x) and t1.params == t2.params
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_normalisation() -> None:
    ds = make_dataset([8] * 10, shape=(2, 2, 2))
    plain = MetaDatasetSampler(ds).sample_task(make_generator(0))
    norm = MetaDatasetSampler(ds, normalize=([0.5, 0.1], [0.25, 0.5])).sample_task(
        make_generator(0)
    )
    m, sd = torch.tensor([0.5, 0.1]).view(2, 1, 1), torch.tensor([0.25, 0.5]).view(2, 1, 1)
    torch.testing.assert_close(norm.support_x, (plain.support_x - m) / sd)
    torch.testing.assert_close(norm.query_x, (plain.query_x - m) / sd)


@pytest.mark.parametrize(
    ("domains", "kwargs", "message"),
    [
        ([], {}, r"at least one domain"),
        (["x"], {}, r"domain 0 must be an ImageClassDataset, got str"),
        ([[6] * 4], {}, r"domain 'd' has 4 classes, fewer than min_ways=5"),
        ([[6] * 5 + [1]], {}, r"class 'd5' \(class 5\) holds 1 image\(s\); every class needs at"),
        ([[6] * 8], {"min_ways": 1}, r"min_ways must be at least 2"),
        ([[6] * 8], {"max_ways": 4}, r"max_ways \(4\) must be at least min_ways \(5\)"),
        ([[6] * 8], {"max_query": 0}, r"max_query must be at least 1"),
        ([[6] * 8], {"max_support_per_class": 0}, r"max_support_per_class must be at least 1"),
        ([[6] * 8], {"max_support": 7}, r"max_support \(7\) must be at least .* \(8\)"),
        ([[6] * 8], {"log_weight_range": (1.0, 0.0)}, r"log_weight_range must be"),
        ([[6] * 8], {"weights": [1.0, 2.0]}, r"2 weights for 1 domains"),
        ([[6] * 8], {"weights": [-1.0]}, r"non-negative with a positive sum"),
        ([[6] * 8], {"normalize": ([0.5, 0.5], [1.0])}, r"normalize mean has 2 values"),
    ],
)
def test_bad_construction(domains: list[object], kwargs: dict[str, object], message: str) -> None:
    doms = [make_dataset(d) if isinstance(d, list) else d for d in domains]
    with pytest.raises(TaskShapeError, match=message):
        MetaDatasetSampler(doms, **kwargs)  # type: ignore[arg-type]


def test_bad_calls() -> None:
    s = MetaDatasetSampler(make_dataset([6] * 8))
    with pytest.raises(TaskShapeError, match="batch_size must be at least 1"):
        s.sample(0, make_generator(0))
    with pytest.raises(TaskShapeError, match=r"domain must be in \[0, 1\), got 3"):
        s.sample_task(make_generator(0), domain=3)
    with pytest.raises(TaskShapeError, match="n must be at least 1"):
        s.fixed_tasks(0, seed=1)


# ---------------------------------------------------------------- class hierarchies (§3.2)


def test_bilevel_hierarchy_draws_each_episode_within_one_group() -> None:
    """Omniglot's procedure: a group uniformly, ways uniform up to its size, classes inside it."""
    sizes = [5, 7, 12]  # alphabets of 5, 7 and 12 characters
    names = [f"alpha{a}/char{i}" for a, n in enumerate(sizes) for i in range(n)]
    ds = make_dataset([6] * len(names))
    ds = ImageClassDataset(ds.images, ds.labels, names, name="omni")
    h = ClassHierarchy.from_class_names(names)
    assert h.names == ("alpha0", "alpha1", "alpha2") and [len(g) for g in h.groups] == sizes
    s = MetaDatasetSampler(ds, hierarchies=[h])
    g = make_generator(3)
    seen_groups, seen_ways = set(), {0: set(), 1: set(), 2: set()}
    for _ in range(300):
        ep = s.sample_episode(g)
        assert ep.group is not None
        members = set(h.groups[ep.group])
        assert set(ep.classes.tolist()) <= members
        assert 5 <= ep.ways <= len(members)
        seen_groups.add(ep.group)
        seen_ways[ep.group].add(ep.ways)
    check_episode(s, ep, s.task_from_episode(ep))  # the rest of the protocol is unchanged
    assert seen_groups == {0, 1, 2}
    assert seen_ways[0] == {5} and seen_ways[1] == {5, 6, 7} and seen_ways[2] == set(range(5, 13))


def test_dag_hierarchy_takes_a_whole_eligible_node_capped_at_max_ways() -> None:
    """ImageNet's procedure: nodes spanning min_ways..max_group leaves; all of them, ≤ max_ways."""
    ds = make_dataset([4] * 30)
    nodes = ((0, 1, 2), tuple(range(0, 8)), tuple(range(5, 30)), tuple(range(30)))
    h = ClassHierarchy(nodes, mode="dag", max_group=25)  # node 0 too small, node 3 too large
    s = MetaDatasetSampler(ds, max_ways=20, hierarchies=[h])
    g = make_generator(0)
    groups = set()
    for _ in range(100):
        ep = s.sample_episode(g)
        groups.add(ep.group)
        assert set(ep.classes.tolist()) <= set(nodes[ep.group])
        assert ep.ways == min(20, len(nodes[ep.group]))
    assert groups == {1, 2}


def test_domains_without_a_hierarchy_sample_as_before() -> None:
    a, b = make_dataset([6] * 9, seed=1), make_dataset([6] * 9, seed=2)
    plain = MetaDatasetSampler([a, b])
    mixed = MetaDatasetSampler([a, b], hierarchies=[None, None])
    for x, y in zip(plain.fixed_episodes(20, 7), mixed.fixed_episodes(20, 7), strict=True):
        assert torch.equal(x.classes, y.classes) and x.group is None and y.group is None


@pytest.mark.parametrize(
    ("hierarchies", "message"),
    [
        ([ClassHierarchy(((0, 1, 2, 3, 4), (5, 6, 7)))], r"group 1 has 3 classes, fewer than"),
        ([ClassHierarchy(((0, 1, 2, 3, 9),))], r"distinct class ids in \[0, 8\)"),
        ([ClassHierarchy(((0, 0, 1, 2, 3),))], r"distinct class ids"),
        ([ClassHierarchy(())], r"has no groups"),
        ([ClassHierarchy(((0, 1),), mode="dag")], r"no group spans between min_ways=5"),
        ([None, None], r"2 hierarchies for 1 domains"),
    ],
)
def test_bad_hierarchies(hierarchies: list[ClassHierarchy | None], message: str) -> None:
    with pytest.raises(TaskShapeError, match=message):
        MetaDatasetSampler(make_dataset([6] * 8), hierarchies=hierarchies)


def test_group_names_need_a_separator() -> None:
    with pytest.raises(TaskShapeError, match=r"'loose' has no group part before '/'"):
        ClassHierarchy.from_class_names(["a/x", "loose"])
