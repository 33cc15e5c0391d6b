"""Test-wide settings and fixtures.

One intra-op thread: the models in the tests are tiny, where OpenMP threads only add overhead, and
several test processes (the CLI tests start subprocesses) must not oversubscribe CI's two cores.

Image fixtures, for the feature and command-line tests: a small image folder (generated here)
and checkpoints trained on it.

Twelve classes of 28×28 grey images — a bright square at a class-specific place on noise — so
that even a briefly trained Conv-4 separates them. The checkpoints train on the folder's seeded
train split of classes; the tests classify classes and images from folders they write.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metamap.train import Trainer, load_config

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the CLI subprocesses
torch.set_num_threads(1)


def square_image(c: int, rng: np.random.Generator) -> np.ndarray:
    img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
    r, col = divmod(c % 12, 4)
    img[3 + 8 * r : 10 + 8 * r, 2 + 6 * col : 8 + 6 * col] = 255
    return img


def write_class_folder(root: Path, classes: list[int], per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / f"class{c:02d}").mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(square_image(c, rng), mode="L").save(root / f"class{c:02d}/{i}.png")
    return root


@pytest.fixture(scope="session")
def class_folder() -> Callable[[Path, list[int], int, int], Path]:
    """``class_folder(root, classes, per_class, seed)`` writes a folder of class folders."""
    return write_class_folder


@pytest.fixture(scope="session")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_class_folder(tmp_path_factory.mktemp("images"), list(range(12)), 6, 0)


MAML = ["learner.inner_lr=0.4"]


def _train(root: Path, out: Path, learner: str, batch_norm: str, extra: list[str]) -> Path:
    cfg = load_config(
        None,
        [
            "task.family=episodes",
            "data.name=folder",
            "data.protocol=folder",
            f"data.root={root}",
            f"data.cache_dir={out / 'cache'}",
            "task.ways=2",
            "task.shots=1",
            "task.queries=2",
            "model.name=conv4",
            "model.width=16",
            f"model.batch_norm={batch_norm}",
            f"learner.name={learner}",
            *extra,
            "train.steps=30",
            "train.meta_batch=2",
            "train.val_every=30",
            "train.val_tasks=4",
            "train.ckpt_every=30",
            "train.progress=false",
        ],
    )
    trainer = Trainer(cfg, out / "run")
    trainer.fit()
    return trainer.last_path


@pytest.fixture(scope="session")
def protonet_ckpt(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ProtoNet with inductive BatchNorm (running statistics)."""
    return _train(image_root, tmp_path_factory.mktemp("proto"), "protonet", "inductive", [])


@pytest.fixture(scope="session")
def maml_ckpt(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MAML with transductive BatchNorm (batch statistics, no running statistics)."""
    return _train(image_root, tmp_path_factory.mktemp("maml"), "maml", "transductive", MAML)


@pytest.fixture(scope="session")
def maml_strided_ckpt(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MAML on the strided Conv-4 (``model.downsample: stride``, MAML's Omniglot network)."""
    out = tmp_path_factory.mktemp("maml-strided")
    return _train(image_root, out, "maml", "transductive", [*MAML, "model.downsample=stride"])


@pytest.fixture(scope="session")
def inverted_ckpt(image_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ProtoNet (inductive BatchNorm) trained on inverted, normalised images."""
    out = tmp_path_factory.mktemp("inverted")
    extra = ["data.invert=true", "data.mean=[0.4]", "data.std=[0.2]"]
    return _train(image_root, out, "protonet", "inductive", extra)
