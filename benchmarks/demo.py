"""`make demo`, measured: the figures the README quotes for it.

Runs what ``make demo`` runs, ``metamap demo --out DIR`` (sinusoid MAML on the embedded default
config: 10,000 meta-iterations on one thread, then 5-shot MSE on 600 fixed tasks after 1, 5 and
10 inner steps, then the plots), in a fresh process and a fresh folder (a temporary one unless
``--out`` names one), and records its evaluation (per-task values included), the trainer's
clock, the command's wall time and the provenance. Results: benchmarks/results/demo.json;
`python benchmarks/make_tables.py` renders them into the README.

    python benchmarks/demo.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from machine import command_line, portable, provenance, write_result  # benchmarks/machine.py
from metamap.train import RunPaths, load_checkpoint, load_config

ROOT = Path(__file__).resolve().parents[1]
MAKE_DEMO = "metamap demo --out runs/demo"
"""The command of the Makefile's ``demo`` target (after its venv set-up)."""


def run_demo(out: Path) -> float:
    """``metamap demo --out out`` in a fresh interpreter (as ``make demo`` starts one); returns
    its wall time in seconds."""
    code = "import sys; from metamap.cli import main; sys.exit(main(sys.argv[1:]))"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, "demo", "--out", str(out)], check=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.out is not None and args.out.exists():
        ap.error(f"--out {args.out} exists: the demo is measured from scratch, in a new folder")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "demo"
        wall = run_demo(out)
        run = RunPaths(out)
        evaluation = json.loads(run.evaluation.read_text())
        last = load_checkpoint(run.last)
        cfg = load_config(run.config)
    threads = cfg.train.threads
    result = {
        "benchmark": "demo",
        "command": command_line(),
        "demo_command": MAKE_DEMO,
        "config": portable({**cfg.model_dump(mode="json"), "out_dir": MAKE_DEMO.split()[-1]}),
        "steps_trained": int(last["step"]),
        "train_seconds": round(float(last["train_seconds"]), 1),
        "wall_seconds": round(wall, 1),
        "threads": threads,
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "evaluation": {k: v for k, v in evaluation.items() if k != "checkpoint"},
        "provenance": provenance("cpu", threads),
    }
    write_result(args.results / "demo.json", result)
    scores = evaluation["scores"]["5-shot"]
    print(
        "demo: 5-shot MSE after 1/5/10 steps: "
        + " / ".join(f"{scores[k]['mean']:.3f}" for k in ("1", "5", "10"))
        + f"; trained in {wall:.0f} s (wall, with evaluation and plots)"
    )


if __name__ == "__main__":
    main()
