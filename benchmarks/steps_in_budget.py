"""How many meta-iterations of an Omniglot config fit in a time budget, and with which batching.

A lent GPU machine comes with minutes, not hours, so the device check (`device_check.sh`) sizes
its Omniglot training from a measurement rather than a guess: this script times a few steps of
the real config through the real trainer on the real data, once per task batching (``loop``: the
tasks of a meta-batch one after another; ``vmap``: all of them in one batched call; both give the
same gradients, see tests/learners/test_batching.py), and prints the faster batching and the
number of steps, rounded down to whole validation intervals (at least one), that fit in what is
left of ``--seconds`` after the timing itself, once a ``--margin`` share is kept for validation
and checkpoints. The last line is ``BATCHING STEPS`` for a shell to read; the rates also go to
``--results`` as JSON.

    python3 benchmarks/steps_in_budget.py --config maml-5w1s --device cuda \
        --data .data/omniglot --seconds 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from machine import (  # benchmarks/
    SHARED,
    clock_overrides,
    clocked_seconds,
    command_line,
    device_name,
    provenance,
    write_result,
)
from metamap.train import Trainer, load_config

ROOT = Path(__file__).resolve().parents[1]


def rate(config: Path, overrides: list[str], work: Path, warmup: int, steps: int) -> float:
    """Meta-iterations per second over ``steps`` timed steps after ``warmup`` untimed ones."""
    cfg = load_config(config, [*overrides, *clock_overrides(warmup, steps)])
    Trainer(cfg, work).fit()
    return steps / clocked_seconds(work / "metrics.jsonl", warmup, steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", required=True, help="name in configs/omniglot/, e.g. maml-5w1s")
    ap.add_argument(
        "--seconds",
        type=float,
        required=True,
        help="time from now to fill with training; the timing's own time comes off it",
    )
    ap.add_argument("--margin", type=float, default=0.2, help="share kept for validation etc.")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--batchings", nargs="+", default=["loop", "vmap"], choices=["loop", "vmap"])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per batching")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    started = time.monotonic()
    if not 0 <= args.margin < 1:
        raise SystemExit(f"--margin must lie in [0, 1), got {args.margin}")
    config = ROOT / "configs" / "omniglot" / f"{args.config}.yaml"
    base = [f"data.root={args.data}", f"train.device={args.device}", *args.set]
    rates: dict[str, float] = {}
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b in args.batchings:
            over = [*base, f"learner.batching={b}"]
            try:  # a batching this torch build cannot run is recorded, and the other one used
                rates[b] = rate(config, over, Path(tmp) / b, args.warmup, args.steps)
            except Exception as e:  # reported in the output and the result, not hidden
                failures[b] = f"{type(e).__name__}: {e}"
                print(f"{args.config} on {args.device}, batching {b} failed: {failures[b]}")
                continue
            print(f"{args.config} on {args.device}, batching {b}: {rates[b]:.3g} it/s", flush=True)
    if not rates:
        raise SystemExit(f"no batching ran: {failures}")
    best = max(rates, key=rates.__getitem__)
    val_every = load_config(config, base).train.val_every
    left = args.seconds - (time.monotonic() - started)
    fit = left * (1 - args.margin) * rates[best]
    steps = max(1, int(fit // val_every)) * val_every
    kind = torch.device(args.device).type
    out: dict[str, Any] = {
        "benchmark": "steps_in_budget",
        "config": args.config,
        "device": args.device,
        "device_name": device_name(args.device),
        "it_per_s": rates,
        "failures": failures,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "seconds": args.seconds,
        "seconds_left_after_timing": round(left, 1),
        "margin": args.margin,
        "batching": best,
        "steps": steps,
        "command": command_line(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance(args.device),
    }
    write_result(args.results / f"steps_in_budget_{args.config}_{kind}.json", out)
    print(best, steps)


if __name__ == "__main__":
    main()
