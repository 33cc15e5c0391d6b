"""Data-parallel scaling: seconds per meta-iteration on 1 and N processes, one thread each.

Conv-4 MAML 5-way 1-shot on Omniglot (``configs/omniglot/maml-5w1s.yaml``: 15 queries, meta-batch
32, exact second order), trained by ``metamap train --nproc N`` with ``train.threads=1``; the
trainer's own clock times ``--steps`` meta-iterations after ``--warmup``. Also the communication
a step costs: one all-reduce of a flat bucket of every parameter (float32) plus the loss and
metric, against the compute of the step.

Result: benchmarks/results/scaling.json; ``python benchmarks/make_tables.py`` renders it.

    python benchmarks/scaling.py --nproc 1 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import (  # benchmarks/machine.py
    SHARED,
    clock_overrides,
    clocked_seconds,
    command_line,
    provenance,
    write_result,
)
from metamap.train import load_config
from metamap.train.build import build_run_learner

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "omniglot" / "maml-5w1s.yaml"


def seconds_per_step(nproc: int, warmup: int, steps: int, data: Path) -> float:
    over = [*clock_overrides(warmup, steps), "train.threads=1", f"data.root={data}"]
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "metamap", "train", str(CONFIG), "--out", out,
                   "--nproc", str(nproc), *(a for o in over for a in ("-o", o))]  # fmt: skip
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return clocked_seconds(Path(out) / "metrics.jsonl", warmup, steps) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    where = provenance("cpu", 1)
    cfg = load_config(CONFIG, [f"data.root={args.data}"])
    params = sum(p.numel() for p in build_run_learner(cfg).parameters() if p.requires_grad)
    timing = {n: seconds_per_step(n, args.warmup, args.steps, args.data) for n in args.nproc}
    base = timing[min(timing)]
    result = {
        "benchmark": "scaling",
        "protocol": "Conv-4 MAML 5-way 1-shot, 15 queries, meta-batch 32, second order, "
        "one thread per process",
        "seconds_per_step": {str(n): round(s, 3) for n, s in timing.items()},
        "speedup": {str(n): round(base / s, 2) for n, s in timing.items()},
        "allreduce_bytes_per_step": 4 * (params + 2),
        "parameters": params,
        "warmup": args.warmup,
        "steps": args.steps,
        "command": command_line(),
        "provenance": where,
    }
    print(result)
    write_result(args.results / "scaling.json", result)


if __name__ == "__main__":
    main()
