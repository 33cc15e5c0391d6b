"""Speed and memory of metamap's MAML against learn2learn 0.2.0's, on identical initial weights.

Scenarios (both libraries start from the same weights, copied weight for weight):

* ``sinusoid``: MLP 1-40-40-1, K=10 support and 10 query points, one inner step α=0.01,
  meta-batch 25 (MAML §5.1); second order (``maml``) and first order (``fomaml``).
* ``conv4``: Omniglot-shaped Conv-4 (64 filters, transductive BatchNorm, 28×28×1 random images),
  5-way 1-shot with 15 queries per class, one inner step α=0.4, meta-batch 32; second order, and
  first order as an extra row.

The networks: on the MLP both run ``metamap.models.MLP``. On Conv-4, metamap runs its
``Conv4`` (blocks conv → BN → max-pool → ReLU, channels-last pinned at every order of
differentiation, see ``metamap.models.layout``); learn2learn runs the textbook block
conv → BN → ReLU → max-pool in the default layout, as its own ``l2l.vision.models.ConvBlock``
builds it. The two compute the same function (ReLU commutes with max; tested in
tests/models/test_layout.py, and checked here: same meta-gradient). To show what the network
alone is worth, ``l2l-metamap-net`` runs learn2learn's loop on metamap's ``Conv4``.

One meta-iteration is the whole update, Adam step included:

* metamap: ``learner.meta_gradients(batch)``, ``learner.apply_gradients(step)``, ``opt.step()``,
  with ``batching`` forced to ``"vmap"`` and to ``"loop"`` (the default ``"auto"`` resolves to
  one of them, so its number is that path's number);
* learn2learn: the per-task loop of its examples: ``clone()``, ``adapt(support loss)``, query
  loss ``.backward()`` accumulated over tasks, gradients divided by the meta-batch, ``opt.step()``.

Before timing, each scenario checks in float64 that both libraries give the same meta-gradient
(max abs difference stored in the results; Conv-4 on its first 4 tasks, to keep it short).

Timing and memory: each measurement runs in a fresh process (this script with ``--worker``):
build the model and batch, read the RSS baseline, warm up, time a fixed number of
meta-iterations, then read the peak RSS (VmHWM; see ``peak_rss_kib``); the peak increase over the
baseline is the memory the meta-iterations needed (torch's CPU allocator is invisible to
tracemalloc). Workers run in rounds interleaving the variants (A B C, B C A, ...) so that machine
noise hits all alike; the median it/s over rounds is reported. All use the same thread count.
For ``conv4-maml`` the script also writes a torch.profiler table (sorted by self CPU time) of one
meta-iteration of each library to ``profile_conv4.txt``.

Why torchvision and gym are stubbed: learn2learn imports torchvision (for its vision datasets) and
gym (for its RL environments) when ``learn2learn`` is imported. PyPI's torchvision wheels are built
against one exact torch and do not import beside this CPU torch (installing one would replace
torch), and gym is unmaintained and does not support NumPy 2. None of the MAML code paths
(``l2l.algorithms.MAML``, ``clone_module``, ``update_module``) touches either, so an import hook
(``_StubFinder``) serves inert placeholder modules for ``torchvision``, ``gym`` and their
submodules before learn2learn is imported. learn2learn's other import-time dependencies
(requests, scipy) are real packages installed by ``make bench-env``. learn2learn is a benchmark
dependency only; metamap never imports it.

    make bench-env                                   # installs learn2learn 0.2.0 into .venv
    python benchmarks/speed_learn2learn.py --threads 1   # ~10 min (as for the committed results)
    python benchmarks/speed_learn2learn.py --quick       # smoke run, ~2 min

Threads: all variants use the same torch thread count (``--threads``, default
``torch.get_num_threads()``). On a machine whose cores are shared with other busy processes, use
``--threads 1``: with 2 OpenMP threads on 2 loaded vCPUs every parallel region waits for a
descheduled peer, and per-task loops of small ops (metamap's loop path, learn2learn) slowed down
up to 20x in our runs, which measures the machine, not the libraries.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metamap.learners import MAML, choose_batching
from metamap.models import MLP, Conv4
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_stubs import install_stubs
from machine import command_line, cpu_info, provenance, write_result
from textbook import textbook

ROOT = Path(__file__).resolve().parents[1]
STUBBED = ("torchvision", "gym")


install_stubs(STUBBED)
import learn2learn as l2l  # noqa: E402  (must come after the stubs)


# ---- scenarios ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    first_order: bool
    make_model: Callable[[], nn.Module]
    loss: str  # "mse" or "cross_entropy"
    inner_lr: float
    meta_batch: int
    make_batch: Callable[[int, torch.dtype], TaskBatch]  # (tasks, dtype) -> batch
    settings: dict[str, object]


def sinusoid_batch(tasks: int, dtype: torch.dtype) -> TaskBatch:
    return SinusoidTasks(shots=10, queries=10).sample(tasks, make_generator(0)).to("cpu", dtype)


def omniglot_like_batch(tasks: int, dtype: torch.dtype) -> TaskBatch:
    """5-way 1-shot, 15 queries per class, random 28×28×1 images."""
    g = make_generator(0)
    ways, shots, queries = 5, 1, 15
    sx = torch.randn(tasks, ways * shots, 1, 28, 28, generator=g, dtype=dtype)
    qx = torch.randn(tasks, ways * queries, 1, 28, 28, generator=g, dtype=dtype)
    sy = torch.arange(ways).repeat_interleave(shots).expand(tasks, -1).contiguous()
    qy = torch.arange(ways).repeat_interleave(queries).expand(tasks, -1).contiguous()
    return TaskBatch(sx, sy, qx, qy)


def scenarios() -> dict[str, Scenario]:
    sin = {
        "model": "MLP 1-40-40-1",
        "shots": 10,
        "queries": 10,
        "inner_steps": 1,
        "inner_lr": 0.01,
        "meta_batch": 25,
    }
    conv = {
        "model": "Conv-4, 64 filters, transductive BatchNorm, 28x28x1 random images",
        "ways": 5,
        "shots": 1,
        "queries_per_class": 15,
        "inner_steps": 1,
        "inner_lr": 0.4,
        "meta_batch": 32,
    }
    out = {}
    for first_order, tag in ((False, "maml"), (True, "fomaml")):
        out[f"sinusoid-{tag}"] = Scenario(
            f"sinusoid-{tag}",
            first_order,
            lambda: MLP(1, 1, (40, 40)),
            "mse",
            0.01,
            25,
            sinusoid_batch,
            sin,
        )
        out[f"conv4-{tag}"] = Scenario(
            f"conv4-{tag}",
            first_order,
            lambda: Conv4(5, 1, 64, 28, batch_norm="transductive"),
            "cross_entropy",
            0.4,
            32,
            omniglot_like_batch,
            conv,
        )
    return out


def first_tasks(batch: TaskBatch, n: int) -> TaskBatch:
    return TaskBatch(*(t[:n] for t in batch.tensors()))


@dataclass(frozen=True)
class Plan:
    """Per scenario family: timed iterations per worker, rounds, warm-up, float64-checked tasks."""

    iters: int
    rounds: int
    warmup_s: float
    warmup_tasks: int
    check_tasks: int


# A second-order Conv-4 meta-iteration (32 tasks) takes 4-11 s on one thread of our CPU, hence
# few iterations there, and the float64 gradient check on the first 4 tasks only.
PLANS = {"sinusoid": Plan(20, 5, 1.0, 25, 25), "conv4": Plan(2, 3, 1.0, 2, 4)}
QUICK = {"sinusoid": Plan(3, 1, 0.1, 25, 25), "conv4": Plan(1, 1, 0.0, 1, 2)}


# ---- one meta-iteration of each library ----------------------------------------------------------
VARIANTS = ("metamap-vmap", "metamap-loop", "l2l", "l2l-metamap-net")


def variants(name: str) -> tuple[str, ...]:
    """The variants timed for a scenario (the two networks differ only on Conv-4)."""
    return VARIANTS if name.startswith("conv4") else VARIANTS[:3]


def build(variant: str, sc: Scenario, model: nn.Module) -> tuple[nn.Module, Callable[..., None]]:
    """The meta-learner wrapping a copy of ``model``, and ``step(batch)``: one meta-iteration."""
    model = copy.deepcopy(model)
    if variant.startswith("metamap"):
        batching = variant.split("-")[1]
        learner = MAML(
            model,
            loss=sc.loss,
            inner_lr=sc.inner_lr,  # type: ignore[arg-type]
            first_order=sc.first_order,
            batching=batching,
        )  # type: ignore[arg-type]
        opt = torch.optim.Adam(learner.parameters(), lr=1e-3)

        def metamap_step(batch: TaskBatch) -> None:
            step = learner.meta_gradients(batch)
            learner.apply_gradients(step)
            opt.step()

        return learner, metamap_step

    if variant == "l2l":
        model = textbook(model)
    elif isinstance(model, Conv4):  # l2l-metamap-net: the network as metamap's learners run it
        model.to_channels_last()
    maml = l2l.algorithms.MAML(model, lr=sc.inner_lr, first_order=sc.first_order)
    opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
    loss_fn = F.mse_loss if sc.loss == "mse" else F.cross_entropy

    def l2l_step(batch: TaskBatch) -> None:
        opt.zero_grad()
        l2l_meta_backward(maml, loss_fn, batch)
        opt.step()

    return maml, l2l_step


def l2l_meta_backward(maml: nn.Module, loss_fn: Callable[..., Tensor], batch: TaskBatch) -> None:
    """As in learn2learn's examples: per task clone, adapt, query-loss backward; then ÷ B."""
    for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
        learner = maml.clone()  # type: ignore[operator]
        learner.adapt(loss_fn(learner(sx), sy))
        loss_fn(learner(qx), qy).backward()
    for p in maml.parameters():
        p.grad.mul_(1.0 / len(batch))  # type: ignore[union-attr]


# ---- 1. the same meta-gradient ------------------------------------------------------------------
def gradient_agreement(sc: Scenario, tasks: int) -> dict[str, float]:
    """Max abs difference of each metamap path's meta-gradient from learn2learn's, in float64."""
    torch.manual_seed(0)
    model = sc.make_model().double()
    batch = sc.make_batch(tasks, torch.float64)
    maml, _ = build("l2l", sc, model)
    l2l_meta_backward(maml, F.mse_loss if sc.loss == "mse" else F.cross_entropy, batch)
    ref = [p.grad for p in maml.parameters()]
    out = {"tasks": float(tasks), "l2l_grad_max_abs": max(float(g.abs().max()) for g in ref)}  # type: ignore[union-attr]
    for variant in ("metamap-vmap", "metamap-loop"):
        learner, _ = build(variant, sc, model)
        grads = learner.meta_gradients(batch).grads  # type: ignore[operator]
        names = [n for n, _ in learner.named_parameters()]
        out[variant] = max(
            float((grads[n] - g).abs().max())  # type: ignore[operator]
            for n, g in zip(names, ref, strict=True)
        )
    return out


# ---- 2. speed and peak memory: one fresh process per (variant, scenario, round) ------------------
def peak_rss_kib() -> int:
    """This process's peak resident set size (VmHWM) in KiB.

    Not ``getrusage().ru_maxrss``: on Linux a child inherits its parent's ru_maxrss through fork
    and keeps it across exec, so a worker started by a large parent would read the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(variant: str, name: str, meta_batch: int, plan: Plan) -> None:
    """Print it/s over ``plan.iters`` meta-iterations and the peak RSS increase, as JSON.

    The baseline is the peak RSS after imports, model and batch creation. Warm-up runs on the
    first ``plan.warmup_tasks`` tasks (per-task shapes are those of the timed run) for
    ``plan.warmup_s`` seconds and at least one iteration.
    """
    sc = replace(scenarios()[name], meta_batch=meta_batch)
    torch.manual_seed(0)
    batch = sc.make_batch(sc.meta_batch, torch.float32)
    _, step = build(variant, sc, sc.make_model())
    base = peak_rss_kib()
    warm = first_tasks(batch, plan.warmup_tasks)
    t0, n = time.perf_counter(), 0
    while n < 1 or time.perf_counter() - t0 < plan.warmup_s:
        step(warm)
        n += 1
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(plan.iters):
        step(batch)
    it_s = plan.iters / (time.perf_counter() - t0)
    cpu_s = (time.process_time() - c0) / plan.iters
    peak = peak_rss_kib()
    print(
        json.dumps(
            {
                "it_s": it_s,
                "cpu_s_per_it": cpu_s,
                "baseline_mib": base / 1024,
                "peak_increase_mib": (peak - base) / 1024,
            }
        )
    )


def run_worker(variant: str, sc: Scenario, plan: Plan, threads: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        sc.name,
        "--threads",
        str(threads),
        "--worker-plan",
        json.dumps({"meta_batch": sc.meta_batch, **asdict(plan)}),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"worker {variant} {sc.name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def speed_and_memory(sc: Scenario, plan: Plan, threads: int) -> dict[str, Any]:
    """Rounds of A B C (order rotated each round); median it/s and max peak memory per variant."""
    names = variants(sc.name)
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in names}
    for r in range(plan.rounds):
        k = r % len(names)
        for v in names[k:] + names[:k]:
            runs[v].append(run_worker(v, sc, plan, threads))
    return {
        v: {
            "median_it_s": statistics.median(x["it_s"] for x in xs),
            "rounds_it_s": [x["it_s"] for x in xs],
            "median_cpu_s_per_it": statistics.median(x["cpu_s_per_it"] for x in xs),
            "peak_increase_mib": max(x["peak_increase_mib"] for x in xs),
            "baseline_mib": statistics.median(x["baseline_mib"] for x in xs),
        }
        for v, xs in runs.items()
    }


# ---- 3. profile of one conv4 meta-iteration ------------------------------------------------------
def profile(sc: Scenario, rows: int = 12) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    model = sc.make_model()
    batch = sc.make_batch(sc.meta_batch, torch.float32)
    default = f"metamap-{choose_batching(model, 'auto')}"
    parts = []
    for variant in (default, "l2l"):
        _, step = build(variant, sc, model)
        step(first_tasks(batch, 2))  # warm-up
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            step(batch)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
        parts.append(
            f"== {variant}: one {sc.name} meta-iteration (meta-batch {len(batch)}) ==\n{table}"
        )
    return "\n".join(parts)


# ---- driver ----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (one round, conv4 on 2 tasks); writes speed_learn2learn_quick.json",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--scenarios", nargs="+", default=list(scenarios()), choices=list(scenarios()))
    ap.add_argument("--no-profile", action="store_true", help="skip profile_conv4.txt")
    ap.add_argument("--worker", nargs=2, metavar=("VARIANT", "SCENARIO"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-plan", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        spec = json.loads(args.worker_plan)
        worker(*args.worker, spec.pop("meta_batch"), Plan(**spec))
        return

    all_sc = scenarios()
    if args.quick:  # conv4 on 2 tasks: a smoke run of every code path in well under a minute
        all_sc = {
            k: replace(v, meta_batch=2) if k.startswith("conv4") else v for k, v in all_sc.items()
        }
    plans = QUICK if args.quick else PLANS
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    table = []
    for name in args.scenarios:
        sc = all_sc[name]
        plan = plans[name.split("-")[0]]
        default = choose_batching(sc.make_model(), "auto")

        agree = gradient_agreement(sc, min(plan.check_tasks, sc.meta_batch))
        worst = max(agree["metamap-vmap"], agree["metamap-loop"])
        print(
            f"[{name}] meta-gradient max |metamap - l2l| (float64, {int(agree['tasks'])} tasks): "
            f"vmap {agree['metamap-vmap']:.1e}, loop {agree['metamap-loop']:.1e}",
            flush=True,
        )
        assert worst < 1e-9 * max(1.0, agree["l2l_grad_max_abs"]), agree

        load_before = os.getloadavg()[0]
        res = speed_and_memory(sc, plan, args.threads)
        load = [load_before, os.getloadavg()[0]]
        names = variants(name)
        its = {v: res[v]["median_it_s"] for v in names}
        cpu = {v: res[v]["median_cpu_s_per_it"] for v in names}
        mem = {v: res[v]["peak_increase_mib"] for v in names}
        print(
            f"[{name}] it/s: "
            + ", ".join(f"{v} {its[v]:.3g}" for v in names)
            + " | peak MiB: "
            + ", ".join(f"{v} {mem[v]:.0f}" for v in names),
            flush=True,
        )
        d = f"metamap-{default}"
        results[name] = {
            "settings": {
                **sc.settings,
                "meta_batch": sc.meta_batch,
                "second_order": not sc.first_order,
            },
            "plan": asdict(plan),
            "metamap_default_batching": default,
            "meta_gradient_max_abs_diff_float64": agree,
            "variants": res,
            "ratio_metamap_over_l2l": {
                "default": its[d] / its["l2l"],
                "vmap": its["metamap-vmap"] / its["l2l"],
                "loop": its["metamap-loop"] / its["l2l"],
            },
            "ratio_metamap_over_l2l_by_cpu_time": {
                b: cpu["l2l"] / cpu[f"metamap-{b}"] for b in ("vmap", "loop")
            },
            "faster_metamap_path": max(("vmap", "loop"), key=lambda b: its[f"metamap-{b}"]),
            "load_average_1min_before_after": load,
        }
        table.append(
            {
                "scenario": name,
                "metamap default it/s": f"{its[d]:.3g} ({default})",
                "metamap vmap it/s": f"{its['metamap-vmap']:.3g}",
                "metamap loop it/s": f"{its['metamap-loop']:.3g}",
                "learn2learn it/s": f"{its['l2l']:.3g}",
                "learn2learn on metamap's net it/s": (
                    f"{its['l2l-metamap-net']:.3g}" if "l2l-metamap-net" in its else "same net"
                ),
                "default / l2l": f"{its[d] / its['l2l']:.2f}x",
                "best / l2l": f"{max(its['metamap-vmap'], its['metamap-loop']) / its['l2l']:.2f}x",
                "default / l2l by CPU time": f"{cpu['l2l'] / cpu[d]:.2f}x",
                "peak MiB vmap / loop / l2l": " / ".join(f"{mem[v]:.0f}" for v in VARIANTS[:3]),
                "max abs grad diff": f"{worst:.1e}",
            }
        )

    if not args.no_profile and not args.quick and "conv4-maml" in args.scenarios:
        print("[profile] conv4-maml ...", flush=True)
        text = profile(all_sc["conv4-maml"])
        (args.out / "profile_conv4.txt").write_text(
            f"torch {torch.__version__}, {args.threads} threads, {cpu_info()}; "
            "sorted by self CPU time\n\n" + text + "\n"
        )

    report = {
        "benchmark": "speed_learn2learn",
        "command": command_line(),
        "quick": args.quick,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "learn2learn": l2l.__version__,
        "python": platform.python_version(),
        "cpu": cpu_info(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "meta_iteration": "meta-gradient + Adam(lr=1e-3) step, float32",
        "table": table,
        "notes": (
            f"Meta-iterations per second, median over rounds that alternate the variants, each "
            f"run in a fresh process (torch {torch.__version__}, learn2learn {l2l.__version__}, "
            f"{args.threads} threads, {cpu_info()}, {os.cpu_count()} cores). A meta-iteration is "
            "the meta-gradient plus an Adam step. metamap's default (`batching='auto'`) is the "
            "path in parentheses. Peak MiB: peak RSS increase during the timed run over the RSS "
            "after imports and model creation. By CPU time: the ratio of process CPU seconds per "
            "meta-iteration, less sensitive than wall time to other load on the machine (the "
            "1-minute load average around each scenario is in the JSON). Max abs grad diff: "
            "worse of metamap's two paths against learn2learn, float64. On Conv-4, learn2learn "
            "runs the textbook conv-BN-ReLU-pool network in the default layout (as its own "
            "ConvBlock); 'learn2learn on metamap's net' runs its loop on metamap's Conv4 "
            "(pool before ReLU, channels-last pinned), which computes the same function. "
            "Produced by `python benchmarks/speed_learn2learn.py`."
        ),
        "scenarios": results,
        "provenance": provenance("cpu", args.threads),
    }
    name = "speed_learn2learn_quick.json" if args.quick else "speed_learn2learn.json"
    write_result(args.out / name, report)


if __name__ == "__main__":
    main()
