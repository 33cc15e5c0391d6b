"""``train.autocast: bf16``: second-order MAML's meta-gradient under bfloat16 autocast is close to
float32's (and not equal: the option does something), a run under it resumes bit for bit, and
the option leaves older runs' fingerprints alone and refuses what it cannot serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metamap.errors import ConfigError
from metamap.learners import MAML
from metamap.models import MLP, Conv4
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator
from metamap.train import Trainer, load_checkpoint, load_config

CONFIGS = Path(__file__).parents[2] / "configs"
SHORT = ["train.steps=4", "train.ckpt_every=2", "train.val_every=2", "train.threads=1",
         "train.progress=false", "train.val_tasks=4", "train.meta_batch=4"]  # fmt: skip


def _episodes(n: int = 4, ways: int = 5, queries: int = 3) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    sx = torch.randn(n, ways, 1, 28, 28, generator=g)
    qx = torch.randn(n, ways * queries, 1, 28, 28, generator=g)
    sy = torch.arange(ways).expand(n, ways)
    qy = torch.arange(ways).repeat(queries).expand(n, ways * queries)
    return TaskBatch(sx, sy, qx, qy)


def _cosine_and_error(learner: MAML, batch: TaskBatch) -> tuple[float, float]:
    exact = learner.meta_gradients(batch).grads
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = learner.meta_gradients(batch).grads
    assert all(mixed[k].dtype == torch.float32 for k in mixed)  # the parameters' dtype
    a = torch.cat([exact[k].reshape(-1) for k in exact])
    b = torch.cat([mixed[k].reshape(-1) for k in exact])
    cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return cosine, float((a - b).norm() / a.norm())


def test_second_order_maml_under_bf16_autocast_against_float32() -> None:
    """On sinusoid tasks the MLP's meta-gradient stays within a few percent; on random-noise
    images (nothing to learn: gradients of pure noise) Conv-4's, through its BatchNorm and two
    inner steps, moves far more. benchmarks/autocast.py measures real Omniglot episodes."""
    torch.manual_seed(0)
    mlp = MAML(MLP(1, 1, (40, 40)), "mse", inner_steps=5, inner_lr=0.01)
    cosine, error = _cosine_and_error(mlp, SinusoidTasks(10, 10).sample(25, make_generator(0)))
    assert 0.99 < cosine < 1.0 and error < 0.15, (cosine, error)  # close, not float32's own
    torch.manual_seed(0)
    conv = MAML(Conv4(5, width=16), loss="cross_entropy", inner_steps=2, inner_lr=0.4)
    conv_cosine, conv_error = _cosine_and_error(conv, _episodes())
    assert 0.8 < conv_cosine < cosine and conv_error > error, (conv_cosine, conv_error)


def test_a_bf16_run_resumes_bit_for_bit_and_counts_in_the_fingerprint(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "sinusoid" / "maml.yaml", [*SHORT, "train.autocast=bf16"])
    plain = load_config(CONFIGS / "sinusoid" / "maml.yaml", SHORT)
    assert cfg.fingerprint() != plain.fingerprint()
    stored = plain.model_dump(mode="json")
    stored["train"].pop("autocast")  # as a run saved before the option existed holds it
    assert type(plain).model_validate(stored).fingerprint() == plain.fingerprint()
    fresh = Trainer(cfg, tmp_path / "fresh")
    fresh.fit()
    part = Trainer(cfg, tmp_path / "part")
    part.fit(stop_after=2)
    Trainer(cfg, tmp_path / "part").fit()
    a = load_checkpoint(fresh.last_path)["learner"]
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")["learner"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = load_checkpoint(
        Trainer(plain, tmp_path / "plain").fit().out_dir / "checkpoints" / "last.pt"
    )
    assert not all(torch.equal(a[k], c["learner"][k]) for k in a)  # bf16 trained otherwise


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ("sinusoid/maml.yaml", ["train.dtype=float64"], "with train.dtype float64"),
        ("rl/maml-trpo-navigation.yaml", [], "meta-RL's rollouts"),
        ("sinusoid/maml.yaml", ["train.autocast=fp16"], "autocast"),
    ],
)
def test_what_autocast_cannot_serve_is_refused(
    config: str, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIGS / config, ["train.autocast=bf16", *overrides])
