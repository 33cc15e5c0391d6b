"""``train.device`` is checked before any work starts; a GPU checkpoint can be evaluated on CPU."""

from pathlib import Path

import pytest
import torch

from metamap.errors import ConfigError
from metamap.learners import GradientLearner
from metamap.train import (
    Trainer,
    learner_from_checkpoint,
    load_checkpoint,
    load_config,
    save_checkpoint,
)
from metamap.train.build import build_run_learner, resolve_device

NO_CUDA = not torch.cuda.is_available()
FAST = ["train.steps=2", "train.meta_batch=2", "train.val_tasks=2", "train.progress=false"]


def test_known_devices_resolve_and_unknown_names_are_refused() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"'gpu' is not a torch device; use cpu, cuda"):
        resolve_device("gpu")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_says_how_to_run_on_cpu() -> None:
    with pytest.raises(ConfigError, match=r"sees no CUDA device; run it on the CPU with -o"):
        resolve_device("cuda")


@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device")
def test_a_cuda_index_past_the_last_device_is_refused() -> None:
    with pytest.raises(ConfigError, match="pick one of those"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA device")
def test_trainer_checks_the_device_before_loading_data(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "task.family=episodes",
            "model.name=conv4",
            f"data.root={tmp_path / 'no-such-data'}",  # loading it would fail with DataError
            "train.device=cuda",
        ],
    )
    with pytest.raises(ConfigError, match=r"train\.device"):
        Trainer(cfg, tmp_path / "run")


@pytest.mark.skipif(not NO_CUDA, reason="this machine has a CUDA device")
def test_a_gpu_trained_checkpoint_evaluates_on_cpu_with_an_override(tmp_path: Path) -> None:
    t = Trainer(load_config(None, FAST), tmp_path)
    t.fit()
    state = load_checkpoint(t.best_path)
    state["config"]["train"]["device"] = "cuda"  # as a run on a GPU machine writes it
    gpu = tmp_path / "gpu.pt"
    save_checkpoint(gpu, state)
    with pytest.raises(ConfigError, match=r"-o train\.device=cpu"):
        learner_from_checkpoint(gpu)
    cfg, learner, _ = learner_from_checkpoint(gpu, ["train.device=cpu"])
    assert cfg.train.device == "cpu"
    want = t.learner.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in learner.state_dict().items())


def test_auto_batching_follows_the_device_the_learner_is_built_for() -> None:
    # the model is placed before the learner is built, so 'auto' sees where it will run
    devices = ["cpu"] if NO_CUDA else ["cpu", "cuda"]
    for device, expected in zip(devices, ["loop", "vmap"], strict=False):
        over = ["task.family=episodes", "model.name=conv4", "learner.name=maml"]
        learner = build_run_learner(load_config(None, [*over, f"train.device={device}"]))
        assert isinstance(learner, GradientLearner)
        assert learner.batching == expected
        assert next(learner.parameters()).device.type == device
