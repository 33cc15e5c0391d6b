"""Data-parallel meta-gradients over the tasks of a meta-batch, on ``torch.distributed``.

A meta-batch's tasks are independent, so the meta-gradient is a sum over tasks:

    ∇φ L_meta = (1/B) Σ_T ∇φ L_T = (1/B) Σ_ranks  n_r · (1/n_r) Σ_{T ∈ rank r} ∇φ L_T.

Every rank draws the same global batch (from the same generator, so no data moves), keeps only
its contiguous slice (:func:`shard_range`: ``B`` need not divide by the world size; the first
``B mod W`` ranks take one task more, and a rank may hold none), computes its learner's mean
meta-gradient on the slice, and :func:`all_reduce_step` turns the ranks' means into the global
one: each rank's gradients, loss and metric are weighted by its task count, packed into one flat
bucket (one ``all_reduce`` a step, sorted by parameter name so every rank packs alike), summed,
and divided by the global count ``B``. The result is the single-process meta-gradient of the same
batch, to rounding (tested in float64 with gloo, 2 ranks against 1 process).

The trainer uses it when ``torch.distributed`` is initialised with several ranks: every rank
runs the same loop on the same generator, hands the problem a :class:`ShardedLearner`, and applies
the same all-reduced gradients, so the parameters stay identical; rank 0 alone validates, logs and
writes checkpoints. ``metamap train CONFIG --nproc N`` starts ``N`` such processes on this machine
(gloo on the CPU; with ``train.device: cuda``, NCCL, process ``i`` on GPU ``i``);
``torchrun --nproc-per-node N -m metamap train CONFIG`` does the same across nodes.
:func:`check_shardable` refuses, before any work, what would not give the single-process answer.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import Tensor
from torch.multiprocessing import spawn as mp_spawn  # type: ignore[attr-defined]

import metamap.errors as error_types
from metamap.core import MetaStep, TaskBatch, even_ranges
from metamap.core.learner import Learner
from metamap.errors import ConfigError, MetamapError
from metamap.train.config import RunConfig
from metamap.train.learner_view import LearnerView

__all__ = [
    "ShardedLearner",
    "all_reduce_step",
    "any_rank",
    "backend_for",
    "check_gpus",
    "check_shardable",
    "mean_over_ranks",
    "process_group",
    "rank_and_world",
    "shard_batch",
    "shard_range",
    "sharded_meta_gradients",
    "spawn_ranks",
]


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of ranks (``(0, 1)`` without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_range(total: int, rank: int, world: int) -> range:
    """The tasks ``[start, stop)`` of ``rank`` among ``world`` ranks for ``total`` tasks:
    contiguous, sizes differing by at most one (the first ``total mod world`` ranks larger)."""
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not one of the {world} ranks")
    return even_ranges(total, world)[rank]


def shard_batch(batch: TaskBatch, rank: int, world: int) -> TaskBatch | None:
    """``rank``'s slice of ``batch`` (``None`` when it holds no task)."""
    r = shard_range(len(batch), rank, world)
    if not len(r):
        return None
    s = slice(r.start, r.stop)
    params = list(batch.params)[s] if batch.params else ()
    return TaskBatch(batch.support_x[s], batch.support_y[s], batch.query_x[s], batch.query_y[s],
                     params)  # fmt: skip


def all_reduce_step(
    step: MetaStep | None, count: int, total: int, like: dict[str, torch.Tensor]
) -> MetaStep:
    """The global mean step from each rank's mean ``step`` over its ``count`` tasks (``None``
    for a rank without tasks) and ``total`` tasks in all; ``like``: the parameters by name (the
    zero gradients of an idle rank, and the bucket's order)."""
    names = sorted(like)
    ref = like[names[0]]
    if step is None:
        loss = metric = torch.zeros((), dtype=ref.dtype, device=ref.device)
        grads = [torch.zeros_like(like[k]) for k in names]
    else:
        loss, metric = step.loss.to(ref.dtype), step.metric.to(ref.dtype)
        grads = [step.grads.get(k, torch.zeros_like(like[k])).to(ref.dtype) for k in names]
    bucket = torch.cat([loss.reshape(1), metric.reshape(1), *(g.reshape(-1) for g in grads)])
    bucket = bucket * count
    dist.all_reduce(bucket, op=dist.ReduceOp.SUM)
    bucket = bucket / total
    pieces = torch.split(bucket[2:], [like[k].numel() for k in names])
    out = {k: g.view_as(like[k]) for k, g in zip(names, pieces, strict=True)}
    return MetaStep(bucket[0], bucket[1], out)


def mean_over_ranks(count: int, total: int) -> Callable[[Tensor], Tensor]:
    """Turns a mean over this rank's ``count`` tasks into the mean over all ``total`` tasks of
    the ranks (weighted by count, one ``all_reduce``): the ``reduce`` of a policy learner's
    ``meta_update`` when the ranks split a batch of environments."""

    def reduce(t: Tensor) -> Tensor:
        out = t * (count / total)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    return reduce


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (``flag`` itself alone): one rank's failed rollout
    stops every rank's step, instead of leaving the others waiting in an all-reduce."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    nccl = dist.get_backend() == "nccl"  # NCCL reduces GPU tensors only
    t = torch.tensor([1.0 if flag else 0.0], device="cuda" if nccl else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sharded_meta_gradients(learner: Learner, batch: TaskBatch) -> MetaStep:
    """The meta-gradient of all of ``batch`` on every rank of the default process group, each
    rank computing only its slice (``learner.meta_gradients``, whose result is a mean)."""
    if not dist.is_initialized():
        raise ConfigError("sharded_meta_gradients needs torch.distributed initialised")
    rank, world = dist.get_rank(), dist.get_world_size()
    local = shard_batch(batch, rank, world)
    step = None if local is None else learner.meta_gradients(local)
    if step is not None and step.applied:
        raise ConfigError("a learner whose outer update applies itself cannot be sharded")
    like = {k: p.detach() for k, p in learner.named_parameters() if p.requires_grad}
    count = 0 if local is None else len(local)
    return all_reduce_step(step, count, len(batch), like)


class ShardedLearner(LearnerView):
    """``learner`` whose ``meta_gradients`` computes this rank's slice of a batch and returns
    the all-reduced meta-gradient of the whole batch; everything else is the learner's."""

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        return sharded_meta_gradients(self.learner, batch)


def check_shardable(cfg: RunConfig, world: int, local_world: int | None = None) -> None:
    """Raise :class:`ConfigError` naming why ``cfg`` cannot be trained on ``world`` processes
    (``local_world`` of them on this machine; default all) with the single-process answer,
    checked before any process starts."""
    if world < 1:
        raise ConfigError(f"--nproc must be at least 1, got {world}")
    if world == 1:
        return
    learner, t = cfg.learner, cfg.train
    if not type(learner).shards_exactly:
        why = (
            "it trains on labelled batches, not tasks"
            if type(learner).supervised
            else "it normalises its encoder over the whole meta-batch, so a split batch would "
            "change the answer"
        )
        raise ConfigError(f"learner {learner.name!r} cannot split a meta-batch across processes: "
                          f"{why}; train it in one process")  # fmt: skip
    if cfg.task.variable_ways():
        raise ConfigError(
            "variable-way episodes are averaged task by task already; train them in one process"
        )
    if cfg.model.batch_norm_policy() == "inductive" and cfg.task.images:
        raise ConfigError(
            "inductive BatchNorm updates running statistics from each process's own tasks, so "
            "the processes would drift apart; use model.batch_norm: transductive, or one process"
        )
    if world > t.meta_batch:
        raise ConfigError(
            f"--nproc {world} is more than train.meta_batch {t.meta_batch}: some processes would "
            f"never hold a task; use at most {t.meta_batch} processes"
        )
    if t.device.startswith("cuda"):
        check_gpus(t.device, world if local_world is None else local_world)


def check_gpus(device: str, local_world: int) -> None:
    """Refuse what NCCL cannot run: no CUDA, a device index (each process takes its own GPU),
    or more processes on this machine than GPUs (NCCL refuses two ranks on one GPU)."""
    if not torch.cuda.is_available():
        raise ConfigError(
            "NCCL needs CUDA, which this machine does not have; use train.device: cpu (gloo)"
        )
    if device != "cuda":
        raise ConfigError(
            f"train.device {device!r} names one GPU, but each process takes its own (process i "
            "on cuda:i of its machine): use train.device: cuda"
        )
    count = torch.cuda.device_count()
    if local_world > count:
        raise ConfigError(
            f"{local_world} processes on this machine need {local_world} GPUs (NCCL runs one "
            f"process a GPU), but it has {count}: use --nproc {count}, or gloo on the CPU"
        )


def backend_for(device: str) -> str:
    """The process group's backend for ``train.device``: NCCL on GPUs, gloo on the CPU."""
    return "nccl" if device.startswith("cuda") else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process_group(
    backend: str = "gloo", timeout_minutes: float = 120.0, **kwargs: Any
) -> Iterator[None]:
    """Join the default process group (``init_process_group(backend, **kwargs)``; from the
    environment, as torchrun sets it, when no rank is given) for the ``with`` block, and leave it
    when every rank is done: a rank that tore its connections down while another still held
    them could abort that one at exit. ``timeout_minutes``: how long a collective waits for the
    others (``train.collective_timeout_minutes``: longer than rank 0's longest validation)."""
    if backend == "nccl":  # process i of a machine on its GPU i, before NCCL starts
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", kwargs.get("rank", 0))))
    dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes), **kwargs)
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _rank_main(
    rank: int,
    world: int,
    port: int,
    backend: str,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    errors: str,
    timeout_minutes: float,
) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        with process_group(backend, timeout_minutes, rank=rank, world_size=world):
            target(*args)
    except MetamapError as e:  # a mistake in what was given: for the parent to raise as is
        Path(errors, f"{rank}.json").write_text(json.dumps(_error_record(e)))
        raise


def _error_record(e: MetamapError) -> dict[str, Any]:
    """``e`` as JSON: its class's name in :mod:`metamap.errors` and its constructor's
    arguments (no pickle: the parent rebuilds it from names it knows)."""
    reduced = cast(tuple[Any, ...], e.__reduce__())  # (class, constructor arguments, ...)
    return {"name": type(e).__name__, "args": list(reduced[1])}


def _rebuilt(record: dict[str, Any]) -> MetamapError:
    """The error :func:`_error_record` wrote (a plain :class:`MetamapError` of its message
    where the class is not one of :mod:`metamap.errors`)."""
    name, args = record.get("name"), record.get("args", [])
    cls = getattr(error_types, name) if name in error_types.__all__ else None
    if isinstance(cls, type) and issubclass(cls, MetamapError):
        return cls(*args)
    return MetamapError(*args)


def spawn_ranks(
    world: int,
    target: Callable[..., Any],
    args: tuple[Any, ...],
    backend: str = "gloo",
    timeout_minutes: float = 120.0,
) -> None:
    """Run ``target(*args)`` in ``world`` processes of one process group on this machine (a
    process that fails stops the others, and its error is raised here: a
    :class:`~metamap.errors.MetamapError` as the process raised it, of the lowest rank that
    raised one, so that ``metamap train --nproc`` ends with its one line and exit status)."""
    with tempfile.TemporaryDirectory(prefix="metamap-ranks-") as errors:
        args_ = (world, _free_port(), backend, target, args, errors, timeout_minutes)
        try:
            mp_spawn(_rank_main, args=args_, nprocs=world)  # type: ignore[no-untyped-call]
        except Exception:
            raised = sorted(Path(errors).glob("*.json"), key=lambda p: int(p.stem))
            if raised:  # written by _rank_main in a process of this call, from its own error
                raise _rebuilt(json.loads(raised[0].read_text())) from None
            raise
