"""Resumability, determinism, validation/best checkpoint and failure handling of the trainer."""

import json
import math
from pathlib import Path

import pytest
import torch

from metamap.errors import CheckpointError, ConfigError, NonFiniteLossError
from metamap.learners import MetaStep
from metamap.train import (
    RunPaths,
    Trainer,
    learner_from_checkpoint,
    load_checkpoint,
    load_config,
    read_metrics,
    save_checkpoint,
)

FAST = [
    "train.steps=12",
    "train.meta_batch=4",
    "train.val_every=4",
    "train.val_tasks=8",
    "train.ckpt_every=3",
    "train.log_every=1",
    "train.progress=false",
    "model.hidden=[16,16]",
    "train.schedule=cosine",
    "train.warmup_steps=2",
]


def _weights(t: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in t.learner.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("learner", ["maml", "metasgd", "reptile"])
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path: Path, learner: str) -> None:
    cfg = load_config(None, [*FAST, f"learner.name={learner}"])
    full = Trainer(cfg, tmp_path / "full")
    full.fit()
    part = Trainer(cfg, tmp_path / "part")
    part.fit(stop_after=7)  # "killed" after step 7; the last checkpoint is from step 6
    assert load_checkpoint(part.last_path)["step"] == 6
    resumed = Trainer(cfg, tmp_path / "part")
    resumed.fit()
    assert resumed.step == 12
    assert _same(_weights(full), _weights(resumed))
    assert resumed.optimizer.state_dict()["state"][0]["step"] == 12
    # the metrics log is consistent: one line per step, none duplicated by the replay
    run = RunPaths(tmp_path / "part")  # the layout a reader of a finished run sees
    assert (run.last, run.best) == (resumed.last_path, resumed.best_path) and run.best.exists()
    steps = [r["step"] for r in read_metrics(run.metrics)]
    assert steps == list(range(1, 13))


def test_a_time_budget_stops_with_the_step_checkpointed_and_continues_alike(
    tmp_path: Path,
) -> None:
    cfg = load_config(None, FAST)
    full = Trainer(cfg, tmp_path / "full")
    full.fit()
    assert not full.fit(minutes=60).budget_stopped  # a finished run: nothing left to stop
    calls = []
    while True:  # a budget spent at once: one step a call, each checkpointed (ckpt_every=3)
        part = Trainer(cfg, tmp_path / "part")
        result = part.fit(minutes=1e-9)
        calls.append(result.step)
        assert load_checkpoint(part.last_path)["step"] == result.step
        if not result.budget_stopped:
            break
    assert calls == list(range(1, 13))
    assert _same(_weights(full), _weights(part))
    steps = [r["step"] for r in read_metrics(RunPaths(tmp_path / "part").metrics)]
    assert steps == list(range(1, 13))


@pytest.mark.parametrize("minutes", [0.0, -1.0, math.nan, math.inf])
def test_a_time_budget_that_is_not_a_positive_number_is_refused(
    tmp_path: Path, minutes: float
) -> None:
    with pytest.raises(ConfigError, match="positive number of minutes"):
        Trainer(load_config(None, FAST), tmp_path / "r").fit(minutes=minutes)
    assert not (tmp_path / "r").exists()


def test_same_seed_same_weights_other_seed_differs(tmp_path: Path) -> None:
    a = Trainer(load_config(None, FAST), tmp_path / "a")
    a.fit()
    b = Trainer(load_config(None, FAST), tmp_path / "b")
    b.fit()
    c = Trainer(load_config(None, [*FAST, "seed=1"]), tmp_path / "c")
    c.fit()
    assert _same(_weights(a), _weights(b))
    assert not _same(_weights(a), _weights(c))


def test_training_reduces_validation_error_and_keeps_best(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        [
            "train.steps=300",
            "train.val_every=100",
            "train.val_tasks=50",
            "train.progress=false",
            "train.lr=0.003",
        ],
    )
    t = Trainer(cfg, tmp_path)
    before = t.validate()
    t.fit()
    vals = [r["val_mse"] for r in read_metrics(tmp_path / "metrics.jsonl") if "val_mse" in r]
    assert len(vals) == 3
    assert t.best_val == min(vals) < before
    best = load_checkpoint(t.best_path)
    assert best["step"] == t.best_step and math.isclose(best["best_val"], t.best_val)
    assert (tmp_path / "config.yaml").read_text().startswith("name:")


def test_resume_refuses_checkpoint_of_another_config(tmp_path: Path) -> None:
    Trainer(load_config(None, FAST), tmp_path).fit()
    other = Trainer(load_config(None, [*FAST, "train.lr=0.5"]), tmp_path)
    with pytest.raises(CheckpointError, match="another configuration"):
        other.fit()


def test_resume_takes_a_checkpoint_written_before_a_config_field_existed(tmp_path: Path) -> None:
    """A field added to the config later (at its default) must not orphan old checkpoints."""
    Trainer(load_config(None, FAST), tmp_path).fit(stop_after=6)
    old = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    del old["config"]["data"]["splits_root"], old["config"]["train"]["threads"]
    old["fingerprint"] = "from-an-older-version"
    save_checkpoint(tmp_path / "checkpoints" / "last.pt", old)
    t = Trainer(load_config(None, FAST), tmp_path)
    t.fit()
    assert t.step == 12


def test_resume_reads_the_stored_run_with_this_runs_evaluation_section(tmp_path: Path) -> None:
    """Evaluation does not count for the fingerprint, so an evaluation section that today's
    checks refuse (as a trainval run scored at its best checkpoint is) must not orphan a run."""
    whole = Trainer(load_config(None, FAST), tmp_path / "whole")
    whole.fit()
    Trainer(load_config(None, FAST), tmp_path / "cut").fit(stop_after=6)
    old = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    old["config"]["eval"]["checkpoint"] = "an option this version refuses"
    save_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt", old)
    t = Trainer(load_config(None, [*FAST, "eval.checkpoint=last"]), tmp_path / "cut")
    t.fit()
    assert t.step == 12 and _same(_weights(t), _weights(whole))
    old["config"]["train"]["steps"] = "many"  # the training part unreadable: refused, and said so
    save_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt", old)
    with pytest.raises(CheckpointError, match="cannot read"):
        Trainer(load_config(None, FAST), tmp_path / "cut").fit()


def test_a_checkpoint_is_loaded_with_the_overrides_that_make_its_config_valid(
    tmp_path: Path,
) -> None:
    Trainer(load_config(None, FAST), tmp_path).fit(stop_after=3)
    path = tmp_path / "checkpoints" / "last.pt"
    with pytest.raises(ConfigError, match=r"'eval\.tasks'"):  # the caller's mistake
        learner_from_checkpoint(path, ["eval.tasks=none"])
    old = load_checkpoint(path)
    old["config"]["eval"]["checkpoint"] = "an option this version refuses"
    save_checkpoint(path, old)
    with pytest.raises(CheckpointError, match="holds no usable config"):
        learner_from_checkpoint(path)
    cfg, _, state = learner_from_checkpoint(path, ["eval.checkpoint=last"])
    assert cfg.eval.checkpoint == "last" and state["step"] == 3


def test_non_finite_loss_stops_names_step_and_keeps_last_good(tmp_path: Path) -> None:
    cfg = load_config(None, [*FAST, "train.ckpt_every=1"])
    t = Trainer(cfg, tmp_path)
    real = t.learner.meta_gradients

    def poisoned(batch):  # type: ignore[no-untyped-def]
        step = real(batch)
        if t.step == 4:  # the 5th step goes bad
            return MetaStep(torch.tensor(float("nan")), step.metric, step.grads)
        return step

    t.learner.meta_gradients = poisoned  # type: ignore[method-assign]
    with pytest.raises(NonFiniteLossError) as e:
        t.fit()
    assert e.value.step == 5 and "step 5" in str(e.value)
    assert str(t.last_path) in str(e.value)
    good = load_checkpoint(t.last_path)
    assert good["step"] == 4
    assert all(torch.isfinite(v).all() for v in good["learner"].values())
    json.dumps(read_metrics(tmp_path / "metrics.jsonl"))  # the log stays valid JSON


def test_a_finished_run_can_be_extended_unless_the_schedule_depends_on_its_length(
    tmp_path: Path,
) -> None:
    base = [o for o in FAST if not o.startswith(("train.schedule", "train.warmup"))]
    Trainer(load_config(None, base), tmp_path / "short").fit()
    extended = Trainer(load_config(None, [*base, "train.steps=18"]), tmp_path / "short")
    extended.fit()
    straight = Trainer(load_config(None, [*base, "train.steps=18"]), tmp_path / "long")
    straight.fit()
    assert extended.step == 18
    assert _same(_weights(extended), _weights(straight))
    cosine = [*base, "train.schedule=cosine"]
    Trainer(load_config(None, cosine), tmp_path / "cos").fit()
    with pytest.raises(CheckpointError, match="another learning-rate schedule"):
        Trainer(load_config(None, [*cosine, "train.steps=18"]), tmp_path / "cos").fit()


def test_a_constant_rate_run_is_annealed_from_the_step_it_reached(tmp_path: Path) -> None:
    """Resuming under a piecewise decay whose milestone is at (or after) the checkpoint's step
    gives exactly the run that schedule trains straight through: the rates of the steps taken
    agree. A milestone before that step would rewrite the past, and is refused with the rates."""
    base = [o for o in FAST if not o.startswith(("train.schedule", "train.warmup"))]
    anneal = [
        "train.steps=18",
        "train.schedule=piecewise",
        "train.milestones=[12]",
        "train.factors=[0.1]",
    ]
    Trainer(load_config(None, base), tmp_path / "run").fit()  # 12 steps at a constant rate
    annealed = Trainer(load_config(None, [*base, *anneal]), tmp_path / "run")
    assert annealed.resume() and annealed.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    annealed.fit()
    straight = Trainer(load_config(None, [*base, *anneal]), tmp_path / "straight")
    straight.fit()
    assert annealed.step == 18 and _same(_weights(annealed), _weights(straight))
    lrs = [r["lr"] for r in read_metrics(RunPaths(tmp_path / "run").metrics)]
    assert lrs == pytest.approx([1e-3] * 12 + [1e-4] * 6)  # the rate of the next step
    early = [*base, "train.steps=18", "train.schedule=piecewise", "train.milestones=[9]"]
    Trainer(load_config(None, base), tmp_path / "again").fit()
    with pytest.raises(CheckpointError, match=r"at step 9 its rate was 0\.001, this config's"):
        Trainer(load_config(None, [*early, "train.factors=[0.1]"]), tmp_path / "again").fit()


def test_piecewise_schedule_and_sgd_momentum_reach_the_optimizer(tmp_path: Path) -> None:
    """MetaOptNet's recipe: SGD, Nesterov momentum, weight decay, rate cut at milestones."""
    base = [o for o in FAST if not o.startswith(("train.schedule", "train.warmup"))]
    cfg = load_config(
        None,
        [
            *base,
            "train.optimizer=sgd",
            "train.lr=0.1",
            "train.momentum=0.9",
            "train.nesterov=true",
            "train.weight_decay=5e-4",
            "train.schedule=piecewise",
            "train.milestones=[4, 8]",
            "train.factors=[0.06, 0.012]",
        ],
    )
    t = Trainer(cfg, tmp_path)
    group = t.optimizer.param_groups[0]
    assert isinstance(t.optimizer, torch.optim.SGD)
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, True, 5e-4)
    lrs = []
    for _ in range(10):
        t.fit(stop_after=t.step + 1)
        lrs.append(t.scheduler.get_last_lr()[0])
    want = [0.1] * 3 + [0.1 * 0.06] * 4 + [0.1 * 0.012] * 3  # the rate *for* steps 2..11
    assert lrs == pytest.approx(want)


def test_the_result_is_the_best_or_the_last_checkpoint_as_eval_checkpoint_says(
    tmp_path: Path,
) -> None:
    for which in ("best", "last"):
        t = Trainer(load_config(None, [*FAST, f"eval.checkpoint={which}"]), tmp_path / which)
        t.fit()
        paths = RunPaths(t.out_dir)
        assert t.result_path == paths.result(which) == getattr(paths, which)
        assert load_checkpoint(t.result_path)["step"] == (t.best_step if which == "best" else 12)


def test_cpu_time_is_counted_over_resumes_and_unknown_after_an_older_checkpoint(
    tmp_path: Path,
) -> None:
    """``train_cpu_seconds`` sums this process's CPU time over every resumed session (so a run
    on a shared machine reports its own cost); a checkpoint from a metamap that did not count
    it leaves the total unknown (``None``) rather than short."""
    cfg = load_config(None, FAST)
    part = Trainer(cfg, tmp_path / "a")
    first = part.fit(stop_after=6)
    assert first.train_cpu_seconds is not None and first.train_cpu_seconds > 0
    stored = load_checkpoint(part.last_path)["train_cpu_seconds"]
    assert stored == pytest.approx(first.train_cpu_seconds)
    whole = Trainer(cfg, tmp_path / "a").fit()
    assert whole.train_cpu_seconds is not None and whole.train_cpu_seconds > stored
    assert load_checkpoint(RunPaths(tmp_path / "a").last)["train_cpu_seconds"] == pytest.approx(
        whole.train_cpu_seconds
    )

    Trainer(cfg, tmp_path / "b").fit(stop_after=6)
    old = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    del old["train_cpu_seconds"]
    save_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt", old)
    resumed = Trainer(cfg, tmp_path / "b").fit()
    assert resumed.step == 12 and resumed.train_cpu_seconds is None
    assert load_checkpoint(RunPaths(tmp_path / "b").last)["train_cpu_seconds"] is None

    old["train_cpu_seconds"] = "3 s"
    save_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt", old)
    with pytest.raises(CheckpointError, match="'train_cpu_seconds' must be a number"):
        Trainer(cfg, tmp_path / "b").fit()
