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

Groundwork of the scale-out issue: the trainer and ``metamap train --nproc`` do not use it yet.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from metamap.core import MetaStep, TaskBatch
from metamap.core.learner import Learner
from metamap.errors import ConfigError

__all__ = ["all_reduce_step", "shard_batch", "shard_range", "sharded_meta_gradients"]


def shard_range(total: int, rank: int, world: int) -> range:
    """The tasks ``[start, stop)`` of ``rank`` among ``world`` ranks for ``total`` tasks:
    contiguous, sizes differing by at most one (the first ``total mod world`` ranks larger)."""
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not one of the {world} ranks")
    base, extra = divmod(total, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


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
    out: dict[str, torch.Tensor] = {}
    i = 2
    for k in names:
        n = like[k].numel()
        out[k] = bucket[i : i + n].view_as(like[k])
        i += n
    return MetaStep(bucket[0], bucket[1], out)


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
