"""Data-parallel meta-training (:mod:`metamap.train.distributed`): 2 and 3 gloo ranks, each
computing its slice of a meta-batch, give the single-process meta-gradient of exact second-order
MAML in float64 to 1e-12, also when the batch does not divide by the ranks (a rank may hold no
task); the slices cover the batch exactly once; the trainer on 2 processes follows the same
trajectory as on 1 and a run resumes on another number of processes to the same weights; so do
the policy learners on environments, each process rolling out its share of the goals; what
would not give the one-process answer is refused before any process starts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from metamap import errors
from metamap.cli import main
from metamap.core import TaskBatch
from metamap.errors import ConfigError, DataError
from metamap.learners import MAML
from metamap.models import MLP
from metamap.tasks import SinusoidTasks
from metamap.train import Trainer, load_checkpoint, load_config, read_metrics
from metamap.train.distributed import (
    _error_record,
    _rebuilt,
    backend_for,
    check_gpus,
    check_shardable,
    process_group,
    shard_range,
    sharded_meta_gradients,
    spawn_ranks,
)
from metamap.train.rundir import RunLock


def _learner() -> MAML:
    torch.manual_seed(0)
    return MAML(MLP(1, 1, (16, 16)).double(), "mse", inner_steps=2, inner_lr=0.05)


def _batch(tasks: int) -> TaskBatch:
    batch = SinusoidTasks(5, 7).sample(tasks, torch.Generator().manual_seed(3))
    return TaskBatch(*(t.double() for t in (batch.support_x, batch.support_y, batch.query_x,
                                            batch.query_y)))  # fmt: skip


def _shard_and_save(tasks: int, out: str) -> None:
    step = sharded_meta_gradients(_learner(), _batch(tasks))
    torch.save({"loss": step.loss, "grads": step.grads}, f"{out}/rank{dist.get_rank()}.pt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_shards_cover_the_batch_once() -> None:
    for total in range(0, 12):
        for world in range(1, 5):
            covered = [i for r in range(world) for i in shard_range(total, r, world)]
            assert covered == list(range(total))
            sizes = [len(shard_range(total, r, world)) for r in range(world)]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize(("world", "tasks"), [(2, 5), (3, 2)])
def test_ranks_give_the_single_process_meta_gradient(
    tmp_path: Path, world: int, tasks: int
) -> None:
    spawn_ranks(world, _shard_and_save, (tasks, str(tmp_path)))
    single = _learner().meta_gradients(_batch(tasks))
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], single.loss, rtol=0, atol=1e-12)
        for k, g in single.grads.items():
            torch.testing.assert_close(got["grads"][k], g, rtol=0, atol=1e-12)


SHORT = [
    "train.steps=6",
    "train.val_every=3",
    "train.ckpt_every=1",
    "train.progress=false",
    "train.dtype=float64",
    "train.meta_batch=5",
]


def _fit(out: str, stop_after: int | None) -> None:
    Trainer(load_config(None, SHORT), out).fit(stop_after=stop_after)


def _fit_budget(out: str) -> None:
    result = Trainer(load_config(None, SHORT), out).fit(minutes=1e-9)
    assert (result.step, result.budget_stopped) == (1, True)  # every process stops at step 1


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return dict(load_checkpoint(out / "checkpoints" / "last.pt")["learner"])


def test_two_processes_train_as_one_and_resume_with_any_number(tmp_path: Path) -> None:
    single = tmp_path / "single"
    Trainer(load_config(None, SHORT), single).fit()
    two = tmp_path / "two"
    spawn_ranks(2, _fit, (str(two), None))
    a, b = _weights(single), _weights(two)
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-12) for k in a)
    logged = [read_metrics(out / "metrics.jsonl") for out in (single, two)]
    assert [r["step"] for r in logged[1]] == [r["step"] for r in logged[0]]  # rank 0 alone logs
    for r1, r2 in zip(*logged, strict=True):
        assert r2["val_mse"] == pytest.approx(r1["val_mse"], rel=1e-9)
    # killed after 3 steps on 2 processes, resumed on 1 (and the other way round)
    mixed = tmp_path / "mixed"
    spawn_ranks(2, _fit, (str(mixed), 3))
    Trainer(load_config(None, SHORT), mixed).fit()
    other = tmp_path / "other"
    Trainer(load_config(None, SHORT), other).fit(stop_after=3)
    spawn_ranks(2, _fit, (str(other), None))
    budget = tmp_path / "budget"  # a spent time budget: both processes stop after one step
    spawn_ranks(2, _fit_budget, (str(budget),))
    assert load_checkpoint(budget / "checkpoints" / "last.pt")["step"] == 1
    spawn_ranks(2, _fit, (str(budget), None))
    for out in (mixed, other, budget):
        c = _weights(out)
        assert all(torch.allclose(a[k], c[k], rtol=0, atol=1e-12) for k in a)


@pytest.mark.parametrize(
    ("overrides", "nproc", "message"),
    [
        ([], 40, "more than train.meta_batch"),
        (["task.family=episodes", "model.name=conv4", "learner.name=protonet"], 2,
         "normalises its encoder"),
        (["train.device=cuda"], 2, "NCCL needs CUDA"),
    ],
)  # fmt: skip
def test_what_would_not_give_the_one_process_answer_is_refused(
    overrides: list[str], nproc: int, message: str
) -> None:
    if "cuda" in " ".join(overrides) and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    try:
        cfg = load_config(None, overrides)
    except ConfigError as e:  # train.device=cuda is refused by the config itself here
        assert "cuda" in str(e).lower()
        return
    with pytest.raises(ConfigError, match=message):
        check_shardable(cfg, nproc)


def test_metamap_train_nproc_refuses_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "sinusoid/maml", "--nproc", "64", "--out", str(tmp_path / "r")])
    assert code != 0 and "more than train.meta_batch" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _refuse_on_rank_1() -> None:
    if dist.get_rank() == 1:
        raise DataError("image folder 'x' does not exist; give data.root")


def test_a_mistake_raised_in_a_process_reaches_the_spawner_as_it_was() -> None:
    """A :class:`MetamapError` of one process is raised by :func:`spawn_ranks` itself (not
    torch's ``ProcessRaisedException``, which ``metamap`` would report as a bug, exit 1)."""
    with pytest.raises(DataError, match="image folder 'x' does not exist"):
        spawn_ranks(2, _refuse_on_rank_1, ())


def _validate_on_rank_0_for(seconds: float) -> None:
    """Rank 0 works alone (as it validates) while rank 1 waits in the next all-reduce."""
    if dist.get_rank() == 0:
        time.sleep(seconds)
    dist.all_reduce(torch.ones(1))


def test_the_collective_timeout_bounds_how_long_the_others_wait_for_process_0() -> None:
    """``train.collective_timeout_minutes`` reaches the process group: a wait longer than it
    fails, a shorter one does not (it was a fixed 10 minutes, less than a long validation)."""
    spawn_ranks(2, _validate_on_rank_0_for, (2.0,), timeout_minutes=1.0)
    with pytest.raises(Exception, match=r"(?i)timed? ?out"):
        spawn_ranks(2, _validate_on_rank_0_for, (6.0,), timeout_minutes=0.02)
    cfg = load_config(None, [])
    longer = load_config(None, ["train.collective_timeout_minutes=600"])
    assert cfg.train.collective_timeout_minutes == 120.0  # well past a validation's length
    assert longer.fingerprint() == cfg.fingerprint()  # it changes no weight: runs resume


@pytest.mark.parametrize("name", errors.__all__)
def test_a_process_error_crosses_as_json_and_comes_back_whole(name: str) -> None:
    """What a process writes for its parent (JSON, never pickle) rebuilds the same error."""
    cls = getattr(errors, name)
    error = cls(7, float("nan"), "runs/x/last.pt") if name == "NonFiniteLossError" else cls("bad")
    again = _rebuilt(json.loads(json.dumps(_error_record(error))))
    assert type(again) is cls and str(again) == str(error)
    assert again.exit_code == error.exit_code


def test_metamap_train_nproc_ends_with_the_status_of_a_process_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], class_folder: Any
) -> None:
    """A run folder in use (75) and an evaluation that cannot run (2, refused before any
    training: `--eval` is checked on every process first), as in one process: one line."""
    over = [a for o in SHORT[:-2] for a in ("-o", o)]
    out = tmp_path / "locked"
    with RunLock(out):
        code = main(["train", "sinusoid/maml", *over, "--nproc", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 75 and "is in use by process" in err and "internal error" not in err, err
    assert not (out / "checkpoints").exists()
    images = class_folder(tmp_path / "images", list(range(10)), 4, 0)  # test split: 2 classes
    cfg = Path(__file__).parents[2] / "configs" / "omniglot" / "protonet-5w1s.yaml"
    folder = ["data.name=folder", "data.protocol=folder", f"data.root={images}",
              f"data.cache_dir={tmp_path / 'cache'}", "task.ways=2", "task.shots=1",
              "task.queries=1", "model.width=8", "learner.name=maml", "train.steps=2",
              "train.meta_batch=2", "train.val_every=2", "train.val_tasks=2",
              "train.progress=false", "eval.ways=2", "eval.shots=[4]",
              "eval.queries=2"]  # fmt: skip
    out = tmp_path / "eval"
    argv = ["train", str(cfg), *(a for o in folder for a in ("-o", o)), "--out", str(out)]
    code = main([*argv, "--nproc", "2", "--eval"])
    err = capsys.readouterr().err
    assert code == 2 and "shots + queries = 6 but class" in err, err
    assert not (out / "checkpoints").exists()


def test_two_torchrun_nodes_over_loopback_train_as_one_process(tmp_path: Path) -> None:
    """``torchrun --nnodes 2`` (one process a node, both here) through ``python -m metamap``;
    ``--eval`` scores the result once, on rank 0."""
    over = [a for o in SHORT for a in ("-o", o)]
    Trainer(load_config(None, SHORT), tmp_path / "single").fit()
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def node(rank: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                   "--nproc-per-node", "1", "--node-rank", str(rank), "--master-addr",
                   "127.0.0.1", "--master-port", str(port), "-m", "metamap", "train",
                   "sinusoid/maml", *over, "-o", "eval.tasks=10", "--out",
                   str(tmp_path / "nodes"), "--eval"]  # fmt: skip
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    nodes = [node(0), node(1)]
    for started in nodes:
        _, err = started.communicate(timeout=300)
        assert started.returncode == 0, err.decode()[-2000:]
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "nodes")
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-12) for k in a)
    assert json.loads((tmp_path / "nodes" / "eval.json").read_text())["step"] == 6  # --eval


def _fit_losing_rank_1(out: str) -> None:
    trainer = Trainer(load_config(None, SHORT), out)
    if dist.get_rank() == 1:  # rank 1 is killed in the middle of step 4
        step = trainer.problem.meta_step

        def dying(learner: Any, generator: torch.Generator) -> Any:
            if trainer.step == 3:
                os._exit(1)
            return step(learner, generator)

        trainer.problem.meta_step = dying  # type: ignore[method-assign]
    trainer.fit()


def test_a_rank_dying_mid_step_leaves_a_checkpoint_that_resumes_to_the_same_weights(
    tmp_path: Path,
) -> None:
    single = tmp_path / "single"
    Trainer(load_config(None, SHORT), single).fit()
    run = tmp_path / "run"
    with pytest.raises(Exception, match="exit"):  # the spawner reports the lost process
        spawn_ranks(2, _fit_losing_rank_1, (str(run),))
    # a whole checkpoint, of step 3 or of step 2 where rank 0 was stopped while writing step 3's
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] in (2, 3)
    Trainer(load_config(None, SHORT), run).fit()  # resumed in one process
    a, b = _weights(single), _weights(run)
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-12) for k in a)


RL = Path(__file__).parents[2] / "configs" / "rl"
RL_SHORT = [
    "model.hidden=[8, 8]",
    "task.rollouts=3",
    "task.horizon=12",
    "train.meta_batch=5",  # 3 + 2 goals on 2 processes
    "train.steps=3",
    "train.val_tasks=4",
    "train.val_every=2",
    "train.ckpt_every=1",
    "train.threads=1",
    "train.progress=false",
    "train.dtype=float64",
]


def _fit_rl(config: str, out: str) -> None:
    Trainer(load_config(RL / config, RL_SHORT), out).fit()


@pytest.mark.parametrize(
    ("config", "atol"),
    [
        # TRPO's conjugate gradient (damping 1e-5) amplifies the rounding of a sum taken in
        # another order (3 + 2 goals against 5) to about 1e-7 after 3 steps; PPO's Adam does not
        ("maml-trpo-navigation.yaml", 1e-5),
        ("maml-ppo-navigation.yaml", 1e-12),
    ],
)
def test_policy_learners_on_two_processes_train_as_one(
    config: str, atol: float, tmp_path: Path
) -> None:
    """Each process rolls out its share of the goals (drawing the whole batch's noise) and the
    TRPO step (gradient, Fisher-vector products, line search) or PPO's Adam steps average
    across processes: the policy after 3 steps is the one-process policy."""
    single = tmp_path / "single"
    _fit_rl(config, str(single))
    two = tmp_path / "two"
    spawn_ranks(2, _fit_rl, (config, str(two)))
    a, b = _weights(single), _weights(two)
    start = Trainer(load_config(RL / config, RL_SHORT), tmp_path / "unused").learner.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=atol) for k in a)
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1000 * atol  # it moved
    logged = [read_metrics(out / "metrics.jsonl") for out in (single, two)]
    assert [r["step"] for r in logged[0]] == [r["step"] for r in logged[1]] == [1, 2, 3]
    assert logged[1][0]["loss"] == pytest.approx(logged[0][0]["loss"], rel=1e-12)  # same rollouts


def test_gpu_processes_are_checked_before_any_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """NCCL runs one process a GPU: more processes on a machine than its GPUs, or a device
    index for all of them, are refused with the fix (CUDA stubbed: this machine has none)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError, match=r"need 2 GPUs .* has 1: use --nproc 1"):
        check_gpus("cuda", 2)
    with pytest.raises(ConfigError, match=r"names one GPU.*use train\.device: cuda"):
        check_gpus("cuda:1", 1)
    check_gpus("cuda", 1)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    check_gpus("cuda", 4)
    assert (backend_for("cuda"), backend_for("cpu")) == ("nccl", "gloo")


def test_an_nccl_process_takes_its_local_gpu_before_joining(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken: list[int] = []
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "set_device", taken.append)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.append(backend))
    monkeypatch.setattr(dist, "barrier", lambda: None)
    monkeypatch.setattr(dist, "destroy_process_group", lambda: None)
    monkeypatch.setenv("LOCAL_RANK", "3")  # as torchrun sets it on a node
    with process_group("nccl"):
        pass
    monkeypatch.delenv("LOCAL_RANK")
    with process_group("nccl", rank=1, world_size=2):  # as --nproc spawns them
        pass
    with process_group("gloo", rank=0, world_size=2):
        pass
    assert taken == [3, 1] and calls == ["nccl", "nccl", "gloo"]


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_metamap_train_nproc_is_refused_under_torchrun(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    world_size: str,
) -> None:
    """torchrun decides the processes: ``--nproc`` beside its ``WORLD_SIZE`` was ignored."""
    monkeypatch.setenv("WORLD_SIZE", world_size)
    code = main(["train", "sinusoid/maml", "--nproc", "2", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "--nproc 2 under torchrun" in err and "drop --nproc" in err
    assert not (tmp_path / "r").exists()
