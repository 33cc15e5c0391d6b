"""A folder's class split: seeded fractions or explicit class lists, and what a small one needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metamap.data.folder import folder_split_classes
from metamap.errors import ConfigError, DataError
from metamap.train import load_config
from metamap.train.build import build_episodes, load_images

NAMES = [f"class{c:02d}" for c in range(10)]


def test_fractions_give_disjoint_splits_and_trainval_is_train_and_val() -> None:
    parts = folder_split_classes(NAMES, (0.6, 0.2, 0.2))
    assert [len(parts[k]) for k in ("train", "val", "test")] == [6, 2, 2]
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == list(range(10))
    assert parts["trainval"] == sorted(parts["train"] + parts["val"])


def test_explicit_lists_choose_the_classes() -> None:
    lists = {"train": NAMES[:5], "val": NAMES[5:7], "test": NAMES[7:]}
    parts = folder_split_classes(NAMES, (0.6, 0.2, 0.2), lists)
    assert parts["train"] == [0, 1, 2, 3, 4] and parts["test"] == [7, 8, 9]
    with pytest.raises(DataError, match=r"names 'class99', which is not a class folder"):
        folder_split_classes(NAMES, (0.6, 0.2, 0.2), {**lists, "test": ["class99", "class08"]})
    with pytest.raises(DataError, match=r"'class05' are in two of"):
        folder_split_classes(NAMES, (0.6, 0.2, 0.2), {**lists, "test": ["class05", "class08"]})


def test_a_small_folder_is_told_what_would_work() -> None:
    with pytest.raises(DataError) as e:
        folder_split_classes(NAMES[:4], (0.6, 0.2, 0.2))
    message = str(e.value)
    assert "a folder of 4 classes split train 2, val 1, test 1" in message
    assert "data.train_classes, data.val_classes and data.test_classes" in message
    assert "add class folders (at least 9 give every split 2 classes" in message


def test_a_config_trains_on_the_named_classes(tmp_path: Path, class_folder: Any) -> None:
    root = class_folder(tmp_path / "images", list(range(10)), 3, 0)
    base = ["task.family=episodes", "model.name=conv4", "data.name=folder", f"data.root={root}",
            f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    lists = [
        "data.train_classes=[class00, class01, class02, class03]",
        "data.val_classes=[class04, class05]",
        "data.test_classes=[class06, class07]",
    ]
    cfg = load_config(None, [*base, *lists])
    assert load_images(cfg, "test").class_names == ["class06", "class07"]
    assert load_images(cfg, "train").num_classes == 4
    summary = cfg.data.split_summary()
    assert summary.startswith("folder classes by data.*_classes: train 4 (class00, class01")
    assert "test 2 (class06, class07)" in summary
    plain = load_config(None, base)
    assert "split_fractions [0.6, 0.2, 0.2]" in plain.data.split_summary()
    assert cfg.fingerprint() != plain.fingerprint()
    with pytest.raises(ConfigError, match=r"give all three class lists; val_classes, test_"):
        load_config(None, [*base, lists[0]])
    counts = np.bincount(load_images(cfg, "val").labels)
    assert counts.tolist() == [3, 3]


def test_a_class_too_small_for_the_episodes_names_what_a_config_can_do(
    tmp_path: Path, class_folder: Any
) -> None:
    # the sampler's hint, class_base, is an argument of the Python API, not a config key
    root = class_folder(tmp_path / "images", list(range(6)), 3, 0)
    for image in sorted((root / "class00").iterdir())[1:]:
        image.unlink()
    lists = [
        "data.train_classes=[class00, class01]",
        "data.val_classes=[class02, class03]",
        "data.test_classes=[class04, class05]",
    ]
    base = ["task.family=episodes", "model.name=conv4", "data.name=folder", f"data.root={root}",
            f"data.cache_dir={tmp_path / 'cache'}", "task.ways=2", "task.queries=1"]  # fmt: skip
    with pytest.raises(ConfigError) as e:
        build_episodes(load_config(None, [*base, *lists]), "train")
    why = str(e.value)
    assert "class 'class00' (sampler class 0) holds only 1 images" in why
    assert "class_base" not in why and "data.train_classes, data.val_classes" in why, why


@pytest.mark.parametrize("name", ["folder", "torch"])
@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        # the split cuts at the first two fractions: a third that is not the rest would be
        # silently replaced by it (here 20% of the classes tested, not 10%)
        ("[0.6, 0.2, 0.1]", r"must add up to 1, got \[0.6, 0.2, 0.1\] \(sum 0.9\)"),
        ("[0.5, 0.5, 0.5]", r"must add up to 1, got \[0.5, 0.5, 0.5\] \(sum 1.5\)"),
        ("[-0.2, 0.6, 0.6]", r"split_fractions.0': Input should be greater than 0"),
    ],
)
def test_split_fractions_must_be_positive_and_add_up_to_one(
    name: str, fractions: str, message: str
) -> None:
    base = ["task.family=episodes", "model.name=conv4", f"data.name={name}"]
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*base, f"data.split_fractions={fractions}"])
    ok = load_config(None, [*base, "data.split_fractions=[0.7, 0.15, 0.15]"])
    assert ok.data.split_fractions == (0.7, 0.15, 0.15)  # type: ignore[attr-defined]


def test_a_config_may_skip_files_that_are_not_images(tmp_path: Path, class_folder: Any) -> None:
    """A stray ``Thumbs.db`` in a class folder is refused with the config key that skips it;
    skipping changes no image the run trains on, so not its fingerprint either."""
    root = class_folder(tmp_path / "images", list(range(10)), 3, 0)
    (root / "class03" / "Thumbs.db").write_bytes(b"\0\1")
    base = ["task.family=episodes", "model.name=conv4", "data.name=folder", f"data.root={root}",
            f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    strict = load_config(None, base)
    with pytest.raises(DataError, match=r"'Thumbs\.db'.*data\.skip_non_images: true in a config"):
        load_images(strict, "train")
    skipping = load_config(None, [*base, "data.skip_non_images=true"])
    assert sum(load_images(skipping, p).num_classes for p in ("train", "val", "test")) == 10
    assert "class03" in skipping.data.split_summary()
    assert skipping.fingerprint() == strict.fingerprint()
