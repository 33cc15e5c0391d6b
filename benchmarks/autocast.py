"""``train.autocast: bf16`` measured: how far the meta-gradient moves from float32's, and what it
does to the time of a meta-step, on the sinusoid MLP and on Omniglot Conv-4 MAML.

For each config (``configs/sinusoid/maml.yaml``, ``configs/omniglot/maml-5w1s.yaml``: second
order, the config's meta-batch) and ``--seeds`` initialisations, one meta-batch of training
tasks is drawn and its meta-gradient computed in float32 and under bfloat16 autocast (what the
trainer does with ``train.autocast: bf16``): their cosine and the relative error
``‖g_bf16 − g_32‖ / ‖g_32‖``. Then ``--rounds`` interleaved rounds time one meta-gradient each
way on the same weights and tasks (median seconds); run it on an otherwise idle machine (the
result records the 1-minute load average before and after).

    python benchmarks/autocast.py --threads 1

Results: benchmarks/results/autocast.json; ``python benchmarks/make_tables.py`` renders the
table in docs/results/speed.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from machine import SHARED, interleaved_medians, write_rows  # benchmarks/machine.py
from metamap.train import describe, from_config, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"sinusoid MLP": "sinusoid/maml", "Omniglot Conv-4": "omniglot/maml-5w1s"}


def _grads(learner: Any, batch: Any, bf16: bool) -> torch.Tensor:
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with ctx:
        step = learner.meta_gradients(batch)
    return torch.cat([g.reshape(-1) for _, g in sorted(step.grads.items())]).double()


def measure(config: str, data: Path, seeds: int, rounds: int) -> dict[str, Any]:
    over = [f"data.root={data}"] if config.startswith("omniglot") else []
    cfg = load_config(ROOT / "configs" / f"{config}.yaml", over)
    per_seed = []
    for seed in range(seeds):
        problem, learner = from_config(load_config(ROOT / "configs" / f"{config}.yaml",
                                                   [*over, f"seed={seed}"]))  # fmt: skip
        batch = problem.tasks.sample(cfg.train.meta_batch, torch.Generator().manual_seed(seed))
        exact, mixed = _grads(learner, batch, False), _grads(learner, batch, True)
        cosine = float(torch.nn.functional.cosine_similarity(exact, mixed, dim=0))
        per_seed.append({"cosine": cosine, "relative_error": float((mixed - exact).norm()
                                                                    / exact.norm())})  # fmt: skip
    seconds = interleaved_medians(
        {name: lambda bf16=(name == "bf16"): _grads(learner, batch, bf16)
         for name in ("float32", "bf16")}, rounds)  # fmt: skip
    return {
        "config": config,
        "protocol": describe(cfg),
        "seeds": per_seed,
        "cosine": statistics.fmean(s["cosine"] for s in per_seed),
        "relative_error": statistics.fmean(s["relative_error"] for s in per_seed),
        "seconds": seconds,
        "speedup": seconds["float32"] / seconds["bf16"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]  # other work on the machine slows both ways alike, not equally
    rows = {}
    for name, config in CONFIGS.items():
        rows[name] = measure(config, args.data, args.seeds, args.rounds)
        r = rows[name]
        print(f"{name}: cosine {r['cosine']:.4f}, error {r['relative_error']:.3f}, "
              f"speed-up {r['speedup']:.2f}×", flush=True)  # fmt: skip
    write_rows(args.results / "autocast.json", "autocast", rows, args.rounds, load)


if __name__ == "__main__":
    main()
