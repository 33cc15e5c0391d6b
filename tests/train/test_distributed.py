"""Data-parallel meta-gradients (:mod:`metamap.train.distributed`): 2 and 3 gloo ranks, each
computing its slice of a meta-batch, give the single-process meta-gradient of exact second-order
MAML in float64 to 1e-12, also when the batch does not divide by the ranks (a rank may hold no
task); the slices cover the batch exactly once."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metamap.core import TaskBatch
from metamap.learners import MAML
from metamap.models import MLP
from metamap.tasks import SinusoidTasks
from metamap.train.distributed import shard_range, sharded_meta_gradients


def _learner() -> MAML:
    torch.manual_seed(0)
    return MAML(MLP(1, 1, (16, 16)).double(), "mse", inner_steps=2, inner_lr=0.05)


def _batch(tasks: int) -> TaskBatch:
    batch = SinusoidTasks(5, 7).sample(tasks, torch.Generator().manual_seed(3))
    return TaskBatch(*(t.double() for t in (batch.support_x, batch.support_y, batch.query_x,
                                            batch.query_y)))  # fmt: skip


def _rank(rank: int, world: int, port: int, tasks: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        step = sharded_meta_gradients(_learner(), _batch(tasks))
        torch.save({"loss": step.loss, "grads": step.grads}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


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
    mp.spawn(_rank, args=(world, _free_port(), tasks, str(tmp_path)), nprocs=world, join=True)
    single = _learner().meta_gradients(_batch(tasks))
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["loss"], single.loss, rtol=0, atol=1e-12)
        for k, g in single.grads.items():
            torch.testing.assert_close(got["grads"][k], g, rtol=0, atol=1e-12)
