"""Scale-out's prepared GPU check: metamap's default path against the per-task loop, bf16, compile,
and NCCL with one rank, in one short run that writes everything it measured to one file.

For a lent GPU machine (``bash benchmarks/device_check.sh`` runs it with ``GPU_SPEED=1``), and
rehearsed on a CPU here (``--device cpu --tiny``, in the test suite). Three workloads, each on
random tensors of the real shapes (speed does not depend on the pixels):

* ``conv4-maml-5w1s``: second-order MAML, Conv-4 (64 filters, transductive BatchNorm), 28×28×1,
  5-way 1-shot, 15 queries per class, one inner step of α = 0.4, meta-batch 32 (Omniglot);
* ``conv4-maml-miniimagenet``: the same at mini-ImageNet's shape: 32 filters, 84×84×3, five inner
  steps of α = 0.01, meta-batch 4 (MAML §5.2);
* ``resnet12-protonet``: Prototypical Networks on ResNet-12 (64-160-320-640), 84×84×3, 5-way
  5-shot, 15 queries per class, one episode per step.

Variants of each, timed over ``--steps`` meta-gradients after ``--warmup`` (the device
synchronised around the clock): ``default`` (metamap's choice: tasks vmapped on a GPU), ``loop``
(a Python loop over tasks with ``torch.autograd.grad(create_graph=True)``: the algorithm
learn2learn and higher run, with the same numbers: the loop-vs-vmap tests), ``bf16`` (the default
under ``torch.autocast``; its meta-gradient's cosine to float32's on the same batch is recorded,
since second-order MAML under bf16 autocast on a CPU gave 0.886: not shipped), ``compile``
(``torch.compile`` of the whole meta-gradient function; its failure, if any, is recorded, not
fatal) and ``cudagraphs`` (the same with ``mode="reduce-overhead"``: the compiled regions are
replayed as CUDA graphs, which the default path's static shapes allow, one task batch of fixed
size and no host synchronisation in the step; a second-order inner loop stays eager between
them, see ``metamap.train.compiled``; on a CPU it is recorded as skipped). Compiled variants
start only within ``--seconds``. ``nccl``: one rank of NCCL (gloo on a CPU) all-reduces the
default meta-gradient through :class:`metamap.train.ShardedLearner`, checked against the direct
one. Peak GPU memory per variant.

    python3 benchmarks/gpu_speed.py --device cuda --results "$OUT"     # on the GPU machine
    python benchmarks/gpu_speed.py --device cpu --tiny --steps 1        # rehearsal

Results: ``gpu_speed_<device type>.json`` (ms per step, speed-ups against the loop, cosines,
memory, provenance). The issue's target: the default ≥ 3× the loop on ``conv4-maml-5w1s``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.core import TaskBatch
from metamap.learners import MAML, MetaLearner, ProtoNet
from metamap.models import Conv4, ResNet12

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workload:
    name: str
    make: Callable[[str], MetaLearner]  # batching -> learner
    tasks: int
    ways: int
    shots: int
    queries: int  # per class
    channels: int
    size: int
    settings: dict[str, Any]


def workloads(tiny: bool) -> list[Workload]:
    """The three workloads; ``tiny``: the same code on small shapes (a CPU rehearsal)."""
    s = 0.25 if tiny else 1.0
    omni, mini = (16, 32) if tiny else (28, 84)
    width = (8, 16, 16, 16) if tiny else (64, 160, 320, 640)
    return [
        Workload(
            "conv4-maml-5w1s",
            lambda b: MAML(Conv4(5, 1, 64, omni), "cross_entropy", 1, 0.4, batching=b),  # type: ignore[arg-type]
            max(1, int(32 * s)), 5, 1, 15, 1, omni,
            {"model": "Conv-4, 64 filters", "inner_steps": 1, "inner_lr": 0.4},
        ),
        Workload(
            "conv4-maml-miniimagenet",
            lambda b: MAML(Conv4(5, 3, 32, mini), "cross_entropy", 5, 0.01, batching=b),  # type: ignore[arg-type]
            4, 5, 1, 15, 3, mini,
            {"model": "Conv-4, 32 filters", "inner_steps": 5, "inner_lr": 0.01},
        ),
        Workload(
            "resnet12-protonet",
            lambda b: ProtoNet(ResNet12(5, 3, width, batch_norm="transductive").body),
            1, 5, 5, 15, 3, mini,
            {"model": f"ResNet-12 {'-'.join(map(str, width))}", "learner": "protonet"},
        ),
    ]  # fmt: skip


def batch_of(w: Workload, device: str, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    shape = (w.channels, w.size, w.size)
    sx = torch.randn(w.tasks, w.ways * w.shots, *shape, generator=g)
    qx = torch.randn(w.tasks, w.ways * w.queries, *shape, generator=g)
    sy = torch.arange(w.ways).repeat_interleave(w.shots).expand(w.tasks, -1).contiguous()
    qy = torch.arange(w.ways).repeat_interleave(w.queries).expand(w.tasks, -1).contiguous()
    return TaskBatch(sx, sy, qx, qy).to(device)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _flat(grads: dict[str, Tensor]) -> Tensor:
    return torch.cat([grads[k].detach().float().reshape(-1) for k in sorted(grads)])


def cosine(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    x, y = _flat(a), _flat(b)
    return float(torch.nn.functional.cosine_similarity(x, y, dim=0))


def timed(
    fn: Callable[[], dict[str, Tensor]], device: str, warmup: int, steps: int
) -> dict[str, Any]:
    """Milliseconds per call of ``fn`` after ``warmup`` calls, and peak GPU memory."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    ms = (time.perf_counter() - t0) / steps * 1e3
    out: dict[str, Any] = {"ms_per_step": round(ms, 3)}
    if device.startswith("cuda"):
        out["peak_memory_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


VARIANTS = ("default", "loop", "bf16", "compile", "cudagraphs")


def _error(e: BaseException) -> dict[str, str]:
    return {"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"}


def variants(
    w: Workload,
    device: str,
    warmup: int,
    steps: int,
    chosen: tuple[str, ...] = VARIANTS,
    deadline: float = float("inf"),
) -> dict[str, dict[str, Any]]:
    """Each chosen variant's ms per step (and its agreement with the default's meta-gradient);
    ``loop`` is always timed: the speed-ups are against it. A compiled variant is not started
    after ``deadline`` (``time.perf_counter()``): compiling takes a minute or more."""
    batch = batch_of(w, device)
    torch.manual_seed(0)
    default = w.make("auto").to(device)
    loop = w.make("loop").to(device)
    loop.load_state_dict(default.state_dict())
    reference = default.meta_gradients(batch).grads
    dev_type = torch.device(device).type

    def grads(
        learner: MetaLearner, ctx: Callable[[], AbstractContextManager[Any]] = nullcontext
    ) -> Callable[[], dict[str, Tensor]]:
        def run() -> dict[str, Tensor]:
            with ctx():
                return learner.meta_gradients(batch).grads

        return run

    def bf16() -> AbstractContextManager[Any]:
        return torch.autocast(dev_type, dtype=torch.bfloat16)

    out: dict[str, dict[str, Any]] = {}
    if "default" in chosen:
        batching = getattr(default, "batching", "encoder")
        out["default"] = {"batching": batching, **timed(grads(default), device, warmup, steps)}
    out["loop"] = {
        "cosine_to_default": round(cosine(grads(loop)(), reference), 6),
        **timed(grads(loop), device, warmup, steps),
    }
    if "bf16" in chosen:
        try:
            low = grads(default, bf16)()
            out["bf16"] = {
                "cosine_to_float32": round(cosine(low, reference), 6),
                **timed(grads(default, bf16), device, warmup, steps),
            }
        except (RuntimeError, NotImplementedError) as e:  # an op without bf16 support here
            out["bf16"] = _error(e)
    for name, mode in (("compile", "default"), ("cudagraphs", "reduce-overhead")):
        if name not in chosen:
            continue
        if name == "cudagraphs" and dev_type != "cuda":
            out[name] = {"skipped": "CUDA graphs need a CUDA device"}
            continue
        if time.perf_counter() > deadline:
            out[name] = {"skipped": "no time left in --seconds"}
            continue
        try:
            torch._dynamo.reset()  # each mode compiles afresh, not from the other's cache
            compiled = torch.compile(grads(default), mode=mode)
            t0 = time.perf_counter()
            first = compiled()  # a CUDA graph's outputs are overwritten by its next replay:
            agreement = round(cosine(first, reference), 6)  # compare before calling again
            _sync(device)
            out[name] = {
                "compile_seconds": round(time.perf_counter() - t0, 1),
                "cosine_to_default": agreement,
                **timed(compiled, device, warmup, steps),
            }
        except Exception as e:  # a dynamo/inductor failure is a finding, not a crash
            out[name] = _error(e)
    base = out["loop"]["ms_per_step"]
    for v in out.values():
        if "ms_per_step" in v:
            v["speedup_vs_loop"] = round(base / v["ms_per_step"], 3)
    return out


def one_rank_all_reduce(device: str) -> dict[str, Any]:
    """NCCL (gloo on a CPU) with one rank: the sharded meta-gradient equals the direct one."""
    from metamap.train.distributed import ShardedLearner, _free_port, backend_for

    backend = backend_for(device)
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
    )
    try:
        w = workloads(tiny=not device.startswith("cuda"))[0]
        torch.manual_seed(0)
        learner = w.make("auto").to(device)
        batch = batch_of(w, device, seed=1)
        direct = learner.meta_gradients(batch).grads
        t0 = time.perf_counter()
        sharded = ShardedLearner(learner).meta_gradients(batch).grads
        _sync(device)
        diff = max(float((direct[k] - sharded[k]).abs().max()) for k in direct)
        return {
            "backend": backend,
            "world_size": dist.get_world_size(),
            "max_abs_difference": diff,
            "bucket_mib": round(sum(g.numel() for g in direct.values()) * 4 / 2**20, 3),
            "seconds": round(time.perf_counter() - t0, 3),
        }
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tiny", action="store_true", help="small shapes: a CPU rehearsal")
    ap.add_argument("--only", nargs="*", default=None, help="workload names")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument(
        "--seconds",
        type=float,
        default=float("inf"),
        help="start no compiled variant after this many seconds (the rest is recorded skipped)",
    )
    args = ap.parse_args()
    deadline = time.perf_counter() + args.seconds
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda needs a GPU; rehearse with --device cpu --tiny")
    where = provenance(args.device, torch.get_num_threads())
    result: dict[str, Any] = {
        "benchmark": "gpu_speed",
        "command": command_line(),
        "device": args.device,
        "tiny": args.tiny,
        "steps": args.steps,
        "warmup": args.warmup,
        "variants": args.variants,
        "provenance": where,  # the checkout as it is when the timings start
        "workloads": {},
    }
    for w in workloads(args.tiny):
        if args.only and w.name not in args.only:
            continue
        t0 = time.perf_counter()
        found = variants(w, args.device, args.warmup, args.steps, tuple(args.variants), deadline)
        result["workloads"][w.name] = {
            "tasks_per_step": w.tasks,
            "episode": f"{w.ways}-way {w.shots}-shot, {w.queries} queries per class, "
            f"{w.channels}x{w.size}x{w.size}",
            **w.settings,
            "variants": found,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(
            w.name,
            {
                k: v.get("speedup_vs_loop", v.get("error", v.get("skipped")))
                for k, v in found.items()
            },
        )
    try:
        result["one_rank"] = one_rank_all_reduce(args.device)
    except Exception as e:
        result["one_rank"] = {"error": f"{type(e).__name__}: {e}"}
    dev = torch.device(args.device).type
    write_result(args.results / f"gpu_speed_{dev}{'_tiny' if args.tiny else ''}.json", result)


if __name__ == "__main__":
    main()
