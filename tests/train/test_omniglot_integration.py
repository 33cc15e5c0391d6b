"""Integration: ProtoNet meta-trained on real Omniglot through the trainer reaches a target.

Skipped when the shared Omniglot copy is absent (``$METAMAP_SHARED_DATA`` or ``../shared/data``
beside the repository). The target is far below the paper's 98.8% because the run is 60 episodes
long; the untrained encoder already scores well above chance (20%), so the test also requires a
clear gain over it. It fails if training, episodes, data or evaluation is broken.
"""

import os
from pathlib import Path

import pytest

from metamap.train import Trainer, evaluate_run, lake_one_shot_error, load_config

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("METAMAP_SHARED_DATA", ROOT.parent / "shared" / "data"))
OMNIGLOT = SHARED / "omniglot"

pytestmark = pytest.mark.skipif(
    not (OMNIGLOT / "images_background").is_dir(), reason="shared Omniglot data not found"
)


def test_protonet_learns_omniglot(tmp_path: Path) -> None:
    from metamap.data import omniglot_one_shot_runs

    cfg = load_config(
        ROOT / "configs" / "omniglot" / "protonet-5w1s.yaml",
        [
            f"data.root={OMNIGLOT}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "task.ways=20",
            "train.steps=60",
            "train.val_every=30",
            "train.val_tasks=20",
            "train.ckpt_every=30",
            "train.progress=false",
            "eval.tasks=100",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run")
    untrained = evaluate_run(cfg, trainer.learner)["scores"]["1-shot"]["0"]["mean"]
    trainer.fit()
    acc = evaluate_run(cfg, trainer.learner)["scores"]["1-shot"]["0"]
    assert acc["n"] == 100
    assert acc["mean"] > 0.80, acc  # measured: 0.85 after 60 episodes
    assert acc["mean"] > untrained + 0.05, (untrained, acc)
    lake = lake_one_shot_error(trainer.learner, omniglot_one_shot_runs(OMNIGLOT))
    assert lake["runs"] == 20
    assert lake["error"] < 0.6  # 20-way: chance error is 95%
