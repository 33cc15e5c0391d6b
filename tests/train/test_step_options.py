"""``train.compile``: the training step's meta-gradient under ``torch.compile`` trains the eager
run's weights to float32 rounding (second order: its inner loop stays eager), resumes bit for
bit, counts in the fingerprint without moving older runs', and is refused for meta-RL. And
``train.layout: default``, the other way to run the step: NCHW throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metamap.errors import ConfigError
from metamap.train import Trainer, load_checkpoint, load_config
from metamap.train.build import build_run_learner

CONFIGS = Path(__file__).parents[2] / "configs"
SHORT = ["train.steps=4", "train.ckpt_every=2", "train.val_every=2", "train.threads=1",
         "train.progress=false", "train.val_tasks=4", "train.meta_batch=4"]  # fmt: skip


def _weights(run: Path) -> dict[str, torch.Tensor]:
    learner: dict[str, torch.Tensor] = load_checkpoint(run / "checkpoints" / "last.pt")["learner"]
    return learner


def test_a_compiled_run_trains_the_eager_weights_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "sinusoid" / "maml.yaml", [*SHORT, "train.compile=true"])
    eager = load_config(CONFIGS / "sinusoid" / "maml.yaml", SHORT)
    assert cfg.fingerprint() != eager.fingerprint()
    stored = eager.model_dump(mode="json")
    stored["train"].pop("compile")  # as a run saved before the option existed holds it
    assert type(eager).model_validate(stored).fingerprint() == eager.fingerprint()
    torch._dynamo.reset()
    Trainer(cfg, tmp_path / "compiled").fit()
    Trainer(eager, tmp_path / "eager").fit()
    a, b = _weights(tmp_path / "compiled"), _weights(tmp_path / "eager")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6, msg=k)
    Trainer(cfg, tmp_path / "part").fit(stop_after=2)
    Trainer(cfg, tmp_path / "part").fit()
    c = _weights(tmp_path / "part")
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_compile_is_refused_for_meta_rl() -> None:
    with pytest.raises(ConfigError, match=r"train\.compile compiles the meta-gradients"):
        load_config(CONFIGS / "rl" / "maml-trpo-navigation.yaml", ["train.compile=true"])


def test_layout_default_keeps_nchw_and_counts_in_the_fingerprint() -> None:
    auto = load_config(CONFIGS / "omniglot" / "protonet-5w1s.yaml")
    nchw = load_config(CONFIGS / "omniglot" / "protonet-5w1s.yaml", ["train.layout=default"])
    assert auto.fingerprint() != nchw.fingerprint()
    stored = auto.model_dump(mode="json")
    stored["train"].pop("layout")  # as a run saved before the option existed holds it
    assert type(auto).model_validate(stored).fingerprint() == auto.fingerprint()
    assert build_run_learner(auto, pretrained=False).channels_last
    learner = build_run_learner(nchw, pretrained=False)
    assert not learner.channels_last
    conv = next(m for m in learner.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # NCHW parameters, not merely no pinning
