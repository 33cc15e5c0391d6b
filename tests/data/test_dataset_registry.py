"""The dataset registry: each dataset's ``data`` section, old flat sections, and a plug-in."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest

from metamap.data import DATASETS, DatasetSection, ImageClassDataset, register_dataset
from metamap.data.dataset import ClassSplit
from metamap.data.images import DecodeOptions
from metamap.errors import ConfigError
from metamap.train import Trainer, load_config, parse_config

EPISODES = {"task": {"family": "episodes"}, "model": {"name": "conv4"}}


def test_every_shipped_dataset_is_registered_with_a_loader() -> None:
    assert set(DATASETS) == {
        "omniglot",
        "folder",
        "mini_imagenet",
        "tiered_imagenet",
        "cifar_fs",
        "fc100",
        "cub",
        "torch",
    }
    for name, section in DATASETS.items():
        config = section.model_validate({"name": name})
        assert config.name == name
        if section.load is not DatasetSection.load:  # a loader of its own (a folder's split)
            continue
        params = inspect.signature(section.loader).parameters
        takes = set(params)
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):  # **decoding
            takes |= set(DecodeOptions.__annotations__)
        assert set(section.keywords) <= takes, (name, set(section.keywords) - takes)
        assert set(section.keywords) <= set(config.settings()), name
        # every setting the loader takes is passed (none left at the loader's default)
        passed = {k for k in takes if k in config.settings()} - {"split"}
        assert passed <= set(section.keywords), (name, passed - set(section.keywords))


# Fingerprints computed by metamap 8df0b8b (one flat data section for every dataset) from the
# same stored configs: the registry must give runs stored then the same fingerprint.
OLD_FLAT_SECTIONS: list[tuple[dict[str, Any], str]] = [
    (
        {
            "name": "cifar_fs",
            "image_size": 32,
            "channels": 3,
            "protocol": "vinyals",
            "split_fractions": [0.6, 0.2, 0.2],
        },
        "19edb24fa0caa2f8",
    ),
    (
        {"name": "cifar_fs", "image_size": 32, "channels": 3, "split_fractions": [0.5, 0.3, 0.2]},
        "b4787accbfc88495",
    ),
    (
        {"name": "folder", "root": "x", "protocol": "folder", "split_fractions": [0.5, 0.25, 0.25]},
        "1ada01c03cba6be3",
    ),
    ({"name": "folder", "root": "x"}, "2e37c95d489ebc4d"),
]


@pytest.mark.parametrize(("data", "fingerprint"), OLD_FLAT_SECTIONS)
def test_stored_flat_data_sections_keep_their_fingerprints(
    data: dict[str, Any], fingerprint: str
) -> None:
    cfg = parse_config({**EPISODES, "learner": {"name": "protonet"}, "data": data}, legacy=True)
    assert cfg.fingerprint() == fingerprint


def test_another_datasets_setting_is_dropped_at_its_default_and_refused_otherwise() -> None:
    base = {**EPISODES, "learner": {"name": "protonet"}}
    flat = {"name": "cub", "protocol": "vinyals", "split_fractions": [0.6, 0.2, 0.2]}
    assert "protocol" not in parse_config({**base, "data": flat}).data.model_dump()
    odd = {"name": "cub", "split_fractions": [0.5, 0.3, 0.2]}
    with pytest.raises(ConfigError, match=r"data\.split_fractions .* is a setting of folder"):
        parse_config({**base, "data": odd})
    # a run stored by an older version keeps it aside: it loads, and counts for the fingerprint
    kept = parse_config({**base, "data": odd}, legacy=True)
    assert kept.fingerprint() != parse_config({**base, "data": {"name": "cub"}}).fingerprint()


def test_a_folders_old_protocol_round_trips_through_the_stored_config() -> None:
    cfg = load_config(None, ["task.family=episodes", "model.name=conv4", "data.name=folder"])
    old = load_config(None, ["task.family=episodes", "model.name=conv4", "data.name=folder",
                             "data.protocol=folder"])  # fmt: skip
    for c in (cfg, old):  # what the run folder and checkpoint store, read back
        again = parse_config(c.model_dump(mode="json"), legacy=True)
        assert again.fingerprint() == c.fingerprint()
    assert old.data.split_note() == cfg.data.split_note() == " (folder split)"


class _Stripes:
    """Sixteen classes of 1×16×16 images: class ``c`` is a bright row (or column) ``c % 8``."""

    @staticmethod
    def images(split: ClassSplit) -> ImageClassDataset:
        offset = {"train": 0, "val": 4, "trainval": 0, "test": 8}[split]
        n_classes = 8 if split == "trainval" else 4
        rng = np.random.default_rng(offset)
        images, labels = [], []
        for c in range(n_classes):
            k = offset + c
            base = np.zeros((16, 16), dtype=np.float64)
            if k < 8:
                base[k % 8] = 200
            else:
                base[:, k % 8] = 200
            for _ in range(6):
                noisy = np.clip(base + rng.normal(0, 20, (16, 16)), 0, 255)
                images.append(noisy.astype(np.uint8)[None])
                labels.append(c)
        names = [f"stripe{offset + c}" for c in range(n_classes)]
        return ImageClassDataset(np.stack(images), np.array(labels), names, name="stripes")


@pytest.fixture
def stripes() -> Iterator[type[DatasetSection]]:
    """A dataset registered after metamap.train was imported, as a user's plug-in would be."""

    @register_dataset
    class StripesData(DatasetSection):
        name: Literal["stripes"] = "stripes"
        image_size: int = 16

        def load(self, split: ClassSplit, progress: bool = False) -> ImageClassDataset:
            return _Stripes.images(split)

    yield StripesData
    del DATASETS["stripes"]


def test_a_dataset_registered_later_is_named_in_a_config_and_trained_on(
    stripes: type[DatasetSection], tmp_path: Path
) -> None:
    over = [
        "task.family=episodes",
        "data.name=stripes",
        "task.ways=4",
        "task.shots=1",
        "task.queries=2",
        "model.name=conv4",
        "model.width=4",
        "learner.name=protonet",
        "train.steps=4",
        "train.meta_batch=2",
        "train.val_every=2",
        "train.val_tasks=4",
        "train.progress=false",
        "eval.tasks=4",
        "eval.shots=[1]",
        "eval.queries=2",
    ]
    cfg = load_config(None, over)
    assert isinstance(cfg.data, stripes) and cfg.data.image_size == 16
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.fit().step == 4
    assert trainer.problem.tasks.num_classes == 4  # type: ignore[attr-defined]
    stored = parse_config(cfg.model_dump(mode="json"), legacy=True)
    assert stored.fingerprint() == cfg.fingerprint()
    with pytest.raises(ConfigError, match=r"needs images of at least 16×16, but data\.image_size"):
        load_config(None, [*over, "data.image_size=8"])
    with pytest.raises(ConfigError, match=r"'data\.name' 'stripe' is not a dataset; choose one"):
        load_config(None, [*over, "data.name=stripe"])
