"""The real Omniglot (shared copy): decoded once per test session, then every protocol checked.

The data are located through ``$METAMAP_SHARED_DATA`` or ``<repo>/../shared/data``; the tests
skip cleanly if absent. The one full decode (32,460 PNGs, ~10-20 s on two cores) happens in a
session-scoped fixture; the other tests reuse its cache.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest

from metamap.data.dataset import ImageClassDataset
from metamap.data.omniglot import (
    VINYALS_SHA256,
    omniglot,
    omniglot_images,
)
from metamap.data.omniglot_runs import omniglot_one_shot_runs

SHARED = Path(os.environ.get("METAMAP_SHARED_DATA", Path(__file__).parents[2] / "../shared/data"))
ROOT = SHARED / "omniglot"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ROOT / "images_background").is_dir(), reason=f"no shared Omniglot copy at {ROOT}"
    ),
]


@pytest.fixture(scope="session")
def omni_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("omniglot-cache")


@pytest.fixture(scope="session")
def full(omni_cache: Path) -> ImageClassDataset:
    t0 = time.perf_counter()
    ds = omniglot_images(ROOT, cache_dir=omni_cache)
    print(f"\nOmniglot: decoded 32,460 images in {time.perf_counter() - t0:.1f} s")
    return ds


def test_full_decode(full: ImageClassDataset, omni_cache: Path, monkeypatch) -> None:
    assert full.images.shape == (32_460, 1, 28, 28) and isinstance(full.images, np.memmap)
    assert full.num_classes == 1_623
    assert np.bincount(full.labels).tolist() == [20] * 1_623
    assert sum(n.startswith("Tifinagh/") for n in full.class_names) == 55
    x = np.asarray(full.images)
    assert np.median(x) == 0 and (x.reshape(len(x), -1).max(1) > 150).all()  # bright strokes
    assert 10 < x.mean() < 40
    (npy,) = omni_cache.glob("omniglot-*.npy")
    assert npy.stat().st_size < 26_000_000
    monkeypatch.setattr("PIL.Image.open", lambda *a, **k: pytest.fail("decoded again"))
    t0 = time.perf_counter()
    again = omniglot_images(ROOT, cache_dir=omni_cache)
    assert time.perf_counter() - t0 < 5
    assert (np.asarray(again.images[::997]) == x[::997]).all()


@pytest.mark.parametrize(
    ("split", "chars", "classes"),
    [("train", 1028, 4112), ("val", 172, 688), ("trainval", 1200, 4800), ("test", 423, 1692)],
)
def test_vinyals_splits(full, omni_cache: Path, split: str, chars: int, classes: int) -> None:
    s = omniglot(split, root=ROOT, cache_dir=omni_cache)
    assert (s.num_classes, s.num_episode_classes, len(s)) == (chars, classes, 20 * chars)
    assert np.bincount(s.class_rotations).tolist() == [chars] * 4


def test_the_pinned_vinyals_checksums_are_those_of_the_real_lists() -> None:
    """The sha256 a download is checked against is that of the lists the table was made with."""
    folder = ROOT / "splits" / "vinyals"
    sums = {
        s: hashlib.sha256((folder / f"{s}.txt").read_bytes()).hexdigest() for s in VINYALS_SHA256
    }
    assert sums == VINYALS_SHA256


def test_vinyals_and_maml_splits_partition_the_characters(full, omni_cache: Path) -> None:
    def chars(split: str, protocol: str = "vinyals") -> set[str]:
        return set(omniglot(split, protocol, root=ROOT, cache_dir=omni_cache).class_names)

    assert chars("train") | chars("val") == chars("trainval")
    assert not chars("trainval") & chars("test")
    assert len(chars("trainval") | chars("test")) == 1_623
    maml = {s: chars(s, "maml") for s in ("train", "val", "test")}
    assert [len(v) for v in maml.values()] == [1100, 100, 423]
    assert len(set.union(*maml.values())) == 1_623
    assert chars("train", "maml") == maml["train"]  # seeded: the same again
    other = omniglot("train", "maml", root=ROOT, cache_dir=omni_cache, seed=2)
    assert set(other.class_names) != maml["train"]
    lake = [
        omniglot(s, "lake", root=ROOT, cache_dir=omni_cache) for s in ("background", "evaluation")
    ]
    assert [d.num_classes for d in lake] == [964, 659]


def test_one_shot_runs_match_evaluation_images(full: ImageClassDataset) -> None:
    runs = omniglot_one_shot_runs(ROOT)
    assert len(runs) == 20
    known = {full.images[i].tobytes() for i in range(len(full))}
    for run in runs:
        assert run.train_images.shape == (20, 1, 28, 28) == run.test_images.shape
        assert sorted(run.answers.tolist()) == list(range(20))
        # the run images are byte-identical copies of evaluation PNGs: identical once decoded
        assert all(img.tobytes() in known for img in (*run.train_images, *run.test_images))


def test_the_metadataset_protocol_has_meta_datasets_alphabet_split(full, omni_cache: Path) -> None:
    """25 / 5 / 20 alphabets of 883 / 81 / 659 characters (Meta-Dataset's Omniglot spec), and
    one-alphabet episodes of every split, the test split included (14+ characters each)."""
    from metamap.tasks import ClassHierarchy, MetaDatasetSampler, make_generator

    for split, groups, chars in (("train", 25, 883), ("val", 5, 81), ("test", 20, 659)):
        data = omniglot(split, "metadataset", root=ROOT, cache_dir=omni_cache)
        h = ClassHierarchy.from_class_names(data.class_names)
        assert (len(h.groups), data.num_classes) == (groups, chars)
        assert min(map(len, h.groups)) >= 14
        episode = MetaDatasetSampler(data, hierarchies=[h]).sample_episode(make_generator(0))
        assert 5 <= episode.ways <= 50


def test_meta_dataset_episodes_stay_within_one_alphabet(full, omni_cache: Path) -> None:
    """Meta-Dataset's Omniglot protocol on the real characters: one alphabet per episode."""
    from metamap.tasks import ClassHierarchy, MetaDatasetSampler, make_generator

    train = omniglot("train", root=ROOT, cache_dir=omni_cache, rotations=False)
    h = ClassHierarchy.from_class_names(train.class_names)
    assert len(h.groups) == 33 and sum(map(len, h.groups)) == 1028  # Vinyals train alphabets
    s = MetaDatasetSampler(train, hierarchies=[h])
    g = make_generator(0)
    for _ in range(20):
        ep = s.sample_episode(g)
        alphabets = {train.class_names[c].split("/")[0] for c in ep.classes.tolist()}
        assert alphabets == {h.names[ep.group]}  # type: ignore[index]
        assert ep.queries == 10  # 20 drawings per character: q = min(10, 20 // 2)


def test_lakes_runs_are_unseen_only_by_models_trained_on_the_background_alphabets(
    full: ImageClassDataset, omni_cache: Path
) -> None:
    """Pixels, not names: Vinyals training characters include 312 of the 800 run images (the runs
    come from the evaluation alphabets, which the Vinyals split also trains on); the background
    alphabets (the metadataset protocol's train + val, Lake's training set) include none."""
    from metamap.data import run_images_seen

    runs = omniglot_one_shot_runs(ROOT)
    vinyals = omniglot("train", "vinyals", root=ROOT, cache_dir=omni_cache)
    background = omniglot("trainval", "metadataset", root=ROOT, cache_dir=omni_cache)
    evaluation = omniglot("test", "metadataset", root=ROOT, cache_dir=omni_cache)
    assert len(run_images_seen(vinyals.images, runs)) == 312
    assert run_images_seen(background.images, runs) == []
    assert len(run_images_seen(evaluation.images, runs)) == 800  # the runs' own alphabets
