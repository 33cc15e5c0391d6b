"""Every shipped few-shot config *runs*: a Trainer builds from it and takes a step.

Each `configs/**.yaml` with episodes keeps its task, learner, schedule and evaluation ways; only
what needs data or time is swapped: the dataset becomes a generated class-per-folder tree of
the config's image shape (100 classes of 21 images, split 60/20/20), the network is 4 wide, one
task per meta-batch, one step, one validation episode, on the CPU. This catches a config that
validates but cannot start (e.g. validation drawing more ways than the validation split has).
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metamap.train import Trainer, load_config

ROOT = Path(__file__).resolve().parents[2]
EPISODE_CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if load_config(p).task.family == "episodes"
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], Path]:
    """One generated image tree per (image size, channels) the configs use."""
    rng = np.random.default_rng(0)
    out: dict[tuple[int, int], Path] = {}
    for size, channels in {
        (load_config(p).data.image_size, load_config(p).data.channels) for p in EPISODE_CONFIGS
    }:
        root = tmp_path_factory.mktemp(f"images{size}x{channels}")
        for c in range(100):
            (root / f"c{c:03d}").mkdir()
            for i in range(21):
                shape = (size, size) if channels == 1 else (size, size, 3)
                pixels = rng.integers(0, 256, shape, dtype=np.uint8)
                Image.fromarray(pixels).save(root / f"c{c:03d}" / f"{i}.png")
        out[size, channels] = root
    return out


@pytest.mark.parametrize("path", EPISODE_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_config_starts_and_steps(
    path: Path, folders: dict[tuple[int, int], Path], tmp_path: Path
) -> None:
    shipped = load_config(path)
    d = shipped.data
    cfg = load_config(
        path,
        [
            "data.name=folder",
            "data.protocol=folder",
            f"data.root={folders[d.image_size, d.channels]}",
            f"data.cache_dir={tmp_path.parent / 'cache'}",
            "data.split_fractions=[0.6, 0.2, 0.2]",
            "data.splits_root=null",
            "data.download=false",
            "model.width=4",
            "train.device=cpu",
            "train.steps=1",
            "train.meta_batch=1",
            "train.batch_size=8",
            "train.warmup_steps=0",
            "train.val_every=1",
            "train.val_tasks=1",
            "train.progress=false",
        ],
    )
    t = Trainer(cfg, tmp_path / "run")
    result = t.fit()
    assert result.step == 1 and np.isfinite(t.last_loss)
    assert getattr(t.learner, "label_smoothing", 0.0) == getattr(
        cfg.learner, "label_smoothing", 0.0
    )
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()
