"""Re-run the commands that produced benchmark results, then regenerate the README tables.

Every results file records the command that made it (``"command"``); this runs each distinct
command once, in file order, with this interpreter, and stops at the first failure. Commands
that train on a GPU (``--device cuda``) are skipped on a machine without one. Training
benchmarks resume from their run folders (``runs/bench``), so on a machine that already holds
them a finished row is only re-evaluated; on a fresh clone everything trains from scratch
(the Omniglot table takes many CPU hours: each row's budget is in its JSON and the table).

    python benchmarks/rerun.py 'omniglot_*.json'       # the Omniglot table
    python benchmarks/rerun.py --dry-run               # list every recorded command

Results made before result files recorded their provenance (or made from a dirty tree) can be
re-made a session at a time, cheapest first by the training time they recorded, several at once:

    python benchmarks/rerun.py --unproven --hours 2.5 --jobs 2 --dry-run
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def recorded_commands(pattern: str, unproven: bool = False) -> dict[str, float]:
    """The distinct ``command`` fields of the results matching ``pattern``, in file order, each
    with the training seconds its results recorded, summed over the files it writes (the
    sinusoid command trains one learner per file; ``inf`` where a file records none).
    ``unproven``: only results without a clean provenance record (none, or a dirty tree)."""
    seen: dict[str, float] = {}
    for path in sorted(RESULTS.glob(pattern)):
        data = json.loads(path.read_text())
        command = data.get("command")
        if not (isinstance(command, str) and command.startswith("python ")):
            continue
        if unproven and not _unproven(data):
            continue
        seconds = data.get("train_seconds")
        cost = float(seconds) if isinstance(seconds, int | float) else math.inf
        seen[command] = seen.get(command, 0.0) + cost
    return seen


def _unproven(data: dict[str, Any]) -> bool:
    where = data.get("provenance")
    return not isinstance(where, dict) or not where.get("commit") or bool(where.get("dirty"))


def within(costs: dict[str, float], hours: float, jobs: int) -> list[str]:
    """The commands that fit ``hours`` of wall time on ``jobs`` workers, cheapest first (by
    their recorded seconds; commands of unknown cost are left out)."""
    chosen, total = [], 0.0
    for command, cost in sorted(costs.items(), key=lambda kv: kv[1]):
        if total + cost > hours * 3600 * jobs:
            break
        chosen.append(command)
        total += cost
    return chosen


def portable_argv(command: str) -> list[str]:
    """``command`` as an argument list, less any ``--results DIR``: a result made elsewhere
    (the GPU machine writes to its ``$OUT``) is re-made into benchmarks/results."""
    argv = shlex.split(command)
    while "--results" in argv:
        i = argv.index("--results")
        del argv[i : i + 2]
    return argv


def run_folder(argv: list[str]) -> tuple[str, ...]:
    """What names the run folder a command trains in: its script, ``--config`` and ``--runs``.
    Two commands with the same folder (a row and its re-scoring under ``--eval-set``) must not
    run at once: the second would be refused by the run's lock while the first trains."""
    keys = [argv[1] if len(argv) > 1 else ""]
    for flag in ("--config", "--runs"):
        keys.append(argv[argv.index(flag) + 1] if flag in argv[:-1] else "")
    return tuple(keys)


def queues(runnable: list[list[str]]) -> list[list[list[str]]]:
    """``runnable`` grouped by :func:`run_folder`, in order: each group runs on one worker, one
    command after another; different groups run side by side."""
    groups: dict[tuple[str, ...], list[list[str]]] = {}
    for argv in runnable:
        groups.setdefault(run_folder(argv), []).append(argv)
    return list(groups.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("pattern", nargs="?", default="*.json", help="results files (a glob)")
    ap.add_argument("--dry-run", action="store_true", help="list the commands, run nothing")
    ap.add_argument(
        "--unproven",
        action="store_true",
        help="only results without a clean provenance record (none, or a dirty tree)",
    )
    ap.add_argument(
        "--hours",
        type=float,
        default=None,
        help="the commands that fit this many hours, cheapest first by recorded training time",
    )
    ap.add_argument("--jobs", type=int, default=1, help="commands run at once (default 1)")
    args = ap.parse_args()
    if args.jobs < 1 or (args.hours is not None and not args.hours > 0):
        raise SystemExit("--jobs must be at least 1 and --hours positive")
    costs = recorded_commands(args.pattern, args.unproven)
    if not costs:
        raise SystemExit(f"no results in {RESULTS} match {args.pattern!r}")
    gpu = torch.cuda.is_available()
    for command in list(costs):
        if any(a.startswith("cuda") for a in portable_argv(command)) and not gpu:
            print(f"skipped (needs a CUDA device; see benchmarks/device_check.sh): {command}")
            del costs[command]
    commands = list(costs) if args.hours is None else within(costs, args.hours, args.jobs)
    runnable = [portable_argv(c) for c in commands]
    for command, argv in zip(commands, runnable, strict=True):
        seconds = costs[command]
        cost = f"  # trained {seconds / 60:.0f} min when recorded" if math.isfinite(seconds) else ""
        print(f"$ {shlex.join(argv)}{cost}", flush=True)
    if args.dry_run:
        return

    def run(queue: list[list[str]]) -> list[str]:
        """Run one queue in order; the commands that failed."""
        failed = []
        for argv in queue:
            if subprocess.run([sys.executable, *argv[1:]], cwd=ROOT).returncode != 0:
                failed.append(shlex.join(argv))
        return failed

    with ThreadPoolExecutor(args.jobs) as pool:
        failed = [f for fails in pool.map(run, queues(runnable)) for f in fails]
    if failed:
        raise SystemExit("failed: " + "; ".join(failed))
    subprocess.run([sys.executable, "benchmarks/make_tables.py"], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
