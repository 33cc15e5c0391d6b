"""Fixtures of the recommendation tests: a synthetic MovieLens-100K folder in the official formats
(tests/movielens_fake.py; the licence forbids copying the real one) and a cold-start checkpoint
trained on it with the shipped MeLU config."""

from __future__ import annotations

from pathlib import Path

import pytest

from metamap.train import Trainer, load_config
from movielens_fake import write_fake_100k

CONFIGS = Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="session")
def movielens_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder ``ml-100k/`` holding ``u.data``, ``u.user``, ``u.item``, ``u.genre`` and
    ``u.occupation`` (66 users, 120 films with ids 1, 8, 15, ...)."""
    return write_fake_100k(tmp_path_factory.mktemp("movielens") / "ml-100k")


@pytest.fixture(scope="session")
def movielens_ckpt(movielens_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The last checkpoint of 10 steps of ``configs/movielens/melu.yaml`` on that folder."""
    cfg = load_config(
        CONFIGS / "movielens" / "melu.yaml",
        [
            f"task.root={movielens_root}",
            f"task.cache_dir={movielens_root.parent / 'cache'}",
            "train.steps=10",
            "train.meta_batch=8",
            "train.val_every=10",
            "train.ckpt_every=10",
            "train.progress=false",
        ],
    )
    trainer = Trainer(cfg, tmp_path_factory.mktemp("melu") / "run")
    trainer.fit()
    return trainer.last_path
