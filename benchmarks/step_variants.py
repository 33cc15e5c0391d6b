"""The training step's meta-gradient three ways — eager channels-last (metamap's default for
Conv-4), eager in the default layout (``use_channels_last(False)``), and compiled
(``train.compile: true``) — timed, and each one's float32 error against float64.

For each config one meta-batch of training tasks is drawn (the config's size; real Omniglot
episodes), its meta-gradient is computed in float64 in the default layout (the reference), then
each way in float32: the relative error ``‖g − g_64‖ / ‖g_64‖`` over the parameters whose exact
gradient is not zero (a conv bias right before BatchNorm cancels: its gradient is rounding
noise), the seconds of the first compiled call (compiling), then ``--rounds`` interleaved rounds
time one meta-gradient each way (median seconds). Run it on an otherwise idle machine (the
result records the 1-minute load average before and after).

Why the float64 reference: on a CPU, torch's BatchNorm kernel for channels-last tensors
accumulates its batch statistics less exactly than the default layout's, and the error grows
with the elements per channel (a first block of 60-way episodes: hundreds of thousands), so the
two float32 layouts differ by far more than rounding; which one is right is only seen against
float64.

    python benchmarks/step_variants.py --threads 1

Results: benchmarks/results/step_variants.json; ``python benchmarks/make_tables.py`` renders the
table in docs/results/speed.md.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from machine import SHARED, interleaved_medians, write_rows  # benchmarks/machine.py
from metamap.core import MetaStep, TaskBatch
from metamap.learners import MetaLearner
from metamap.models.layout import channels_last, default_layout
from metamap.train import describe, from_config, load_config
from metamap.train.compiled import CompiledLearner

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "sinusoid MLP, MAML": "sinusoid/maml",
    "Omniglot Conv-4, MAML 5w1s": "omniglot/maml-5w1s",
    "Omniglot Conv-4, first-order MAML 5w1s": "omniglot/fomaml-5w1s",
    "Omniglot Conv-4, ProtoNet 60w1s": "omniglot/protonet-5w1s",
    "Omniglot Conv-4, Matching Networks 20w1s": "omniglot/matching-5w1s",
}
WAYS = ("channels-last", "default layout", "compiled")


def cancelling(learner: MetaLearner) -> set[str]:
    """Names of conv biases that feed a BatchNorm directly (their exact gradient is zero)."""
    names: set[str] = set()
    for prefix, module in learner.named_modules():
        children = list(module.named_children())
        for (name, a), (_, b) in itertools.pairwise(children):
            conv_then_bn = isinstance(a, torch.nn.Conv2d) and isinstance(b, torch.nn.BatchNorm2d)
            if conv_then_bn and a.bias is not None:
                names.add(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


def _flat(step: MetaStep, skip: set[str]) -> torch.Tensor:
    return torch.cat([g.reshape(-1).double() for k, g in sorted(step.grads.items())
                      if k not in skip])  # fmt: skip


def first_block_error(learner: MetaLearner, batch: TaskBatch) -> dict[str, Any] | None:
    """The first conv → BatchNorm (batch statistics) of the learner's encoder on the first
    episode (support and query images together, as the encoder learners run them): float32
    output error against float64 in each layout, and the elements per channel it normalises.
    ``None`` for a model without that block (the MLP)."""
    body = getattr(learner, "model", None)
    body = getattr(body, "body", body)
    if not isinstance(body, torch.nn.Sequential) or not isinstance(body[0], torch.nn.Conv2d):
        return None
    conv, bn = body[0], body[1]
    x = torch.cat([batch.support_x[0], batch.query_x[0]]).double()

    def block(x: torch.Tensor, dtype: torch.dtype, nhwc: bool) -> torch.Tensor:
        restride = channels_last if nhwc else default_layout  # NHWC for real, one channel too
        w = restride(conv.weight.detach().to(dtype))
        y = torch.nn.functional.conv2d(restride(x.to(dtype)), w, conv.bias.detach().to(dtype),
                                       conv.stride, conv.padding)  # fmt: skip
        g, b = bn.weight.detach().to(dtype), bn.bias.detach().to(dtype)
        return torch.nn.functional.batch_norm(restride(y), None, None, g, b, True, eps=bn.eps)

    exact = block(x, torch.float64, nhwc=False)
    err = {
        name: float((block(x, torch.float32, nhwc).double() - exact).norm() / exact.norm())
        for name, nhwc in (("channels-last", True), ("default layout", False))
    }
    return {"error": err, "per_channel": exact.numel() // exact.shape[1]}


def measure(config: str, data: Path, rounds: int) -> dict[str, Any]:
    over = [f"data.root={data}"] if config.startswith("omniglot") else []
    cfg = load_config(ROOT / "configs" / f"{config}.yaml", over)
    problem, learner = from_config(cfg)
    batch: TaskBatch = problem.tasks.sample(cfg.train.meta_batch, torch.Generator().manual_seed(0))
    skip = cancelling(learner)
    reference = copy.deepcopy(learner).double()
    if reference.channels_last:
        reference.use_channels_last(False)
    exact = _flat(reference.meta_gradients(batch.to("cpu", torch.float64)), skip)
    default = copy.deepcopy(learner)
    default.use_channels_last(False)
    torch._dynamo.reset()
    compiled = CompiledLearner(learner)
    t0 = time.perf_counter()
    compiled.meta_gradients(batch)
    compile_seconds = time.perf_counter() - t0
    ways: dict[str, Callable[[TaskBatch], MetaStep]] = {
        "channels-last": learner.meta_gradients,
        "default layout": default.meta_gradients,
        "compiled": compiled.meta_gradients,
    }
    error = {
        k: float((_flat(f(batch), skip) - exact).norm() / exact.norm()) for k, f in ways.items()
    }
    seconds = interleaved_medians(
        {name: lambda step=step: step(batch) for name, step in ways.items()}, rounds
    )
    return {
        "config": config,
        "protocol": describe(cfg),
        "channels_last_by_default": learner.channels_last,
        "float32_error": error,
        "compile_seconds": compile_seconds,
        "first_block": first_block_error(learner, batch),
        "seconds": seconds,
        "left_out": sorted(skip),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    rows = {}
    for name, config in CONFIGS.items():
        rows[name] = r = measure(config, args.data, args.rounds)
        err, sec = r["float32_error"], r["seconds"]
        print(f"{name}: " + ", ".join(f"{k} {sec[k]:.3f} s (error {err[k]:.1e})" for k in WAYS)
              + f"; compiled in {r['compile_seconds']:.0f} s", flush=True)  # fmt: skip
    write_rows(args.results / "step_variants.json", "step_variants", rows, args.rounds, load)


if __name__ == "__main__":
    main()
