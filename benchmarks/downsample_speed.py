"""Second-order MAML on Omniglot: Conv-4 with 2×2 max-pooling against strided convolutions.

The MAML paper's Omniglot network halves the resolution with stride-2 convolutions instead of
max-pooling (Finn et al. 2017, §5.2), which metamap offers as ``model.downsample: stride``. This
times the real ``configs/omniglot/maml-*.yaml`` through the real trainer on the real Omniglot
under both settings, for ``--steps`` meta-iterations after ``--warmup`` untimed ones, by the
trainer's own clock (validation and checkpoints excluded). The two settings alternate over
``--rounds`` rounds and the median of each is kept, so that a change in the machine's load
touches both alike.

    python benchmarks/downsample_speed.py --threads 1 --steps 5 --rounds 2

Results: benchmarks/results/downsample_speed.json; `python benchmarks/make_tables.py` puts them
in the README.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from machine import (  # benchmarks/
    SHARED,
    clock_overrides,
    clocked_seconds,
    command_line,
    cpu_info,
    provenance,
    write_result,
)
from metamap.train import RunConfig, Trainer, describe, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["maml-5w1s", "maml-5w5s", "maml-20w1s"]
SETTINGS = ("maxpool", "stride")


def rate(cfg: RunConfig, out: Path, warmup: int, steps: int) -> float:
    """Meta-iterations per second of a run of ``cfg`` (made with :func:`clock_overrides`)."""
    shutil.rmtree(out, ignore_errors=True)
    Trainer(cfg, out).fit()
    return steps / clocked_seconds(out / "metrics.jsonl", warmup, steps)


def time_config(config: str, data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    path = ROOT / "configs" / "omniglot" / f"{config}.yaml"
    timing = clock_overrides(args.warmup, args.steps)
    cfg = {
        s: load_config(path, [f"data.root={data}", f"model.downsample={s}", *timing])
        for s in SETTINGS
    }
    rounds: dict[str, list[float]] = {s: [] for s in SETTINGS}
    for _ in range(args.rounds):
        for s in SETTINGS:
            rounds[s].append(rate(cfg[s], work / f"{config}-{s}", args.warmup, args.steps))
    median = {s: statistics.median(r) for s, r in rounds.items()}
    row = {
        "config": config,
        "protocol": {s: describe(c) for s, c in cfg.items()},
        "meta_batch": cfg["stride"].train.meta_batch,
        "inner_steps": cfg["stride"].learner.inner_steps,
        "it_per_s": median,
        "rounds": rounds,
        "speedup": median["stride"] / median["maxpool"],
    }
    print(
        f"{config}: max-pool {median['maxpool']:.3g} it/s, strided {median['stride']:.3g} it/s "
        f"({row['speedup']:.2f}×)",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=CONFIGS, help="names in configs/omniglot")
    ap.add_argument("--steps", type=int, default=5, help="timed meta-iterations per run")
    ap.add_argument("--warmup", type=int, default=2, help="untimed meta-iterations first")
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two settings")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [time_config(c, args.data, Path(tmp), args) for c in args.configs]
    out = {
        "benchmark": "downsample_speed",
        "device_name": cpu_info(),
        "threads": args.threads,
        "timed_steps": args.steps,
        "warmup_steps": args.warmup,
        "rows": rows,
        "command": command_line(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance("cpu", args.threads),
    }
    write_result(args.results / "downsample_speed.json", out)


if __name__ == "__main__":
    main()
