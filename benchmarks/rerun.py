"""Re-run the commands that produced benchmark results, then regenerate the README tables.

Every results file records the command that made it (``"command"``); this runs each distinct
command once, in file order, with this interpreter, and stops at the first failure. Commands
that train on a GPU (``--device cuda``) are skipped on a machine without one. Training
benchmarks resume from their run folders (``runs/bench``), so on a machine that already holds
them a finished row is only re-evaluated; on a fresh clone everything trains from scratch
(the Omniglot table takes many CPU hours: each row's budget is in its JSON and the table).

    python benchmarks/rerun.py 'omniglot_*.json'       # the Omniglot table
    python benchmarks/rerun.py --dry-run               # list every recorded command
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def recorded_commands(pattern: str) -> list[str]:
    """The distinct ``command`` fields of the results matching ``pattern``, in file order."""
    seen: dict[str, None] = {}
    for path in sorted(RESULTS.glob(pattern)):
        command = json.loads(path.read_text()).get("command")
        if isinstance(command, str) and command.startswith("python "):
            seen.setdefault(command, None)
    return list(seen)


def portable_argv(command: str) -> list[str]:
    """``command`` as an argument list, less any ``--results DIR``: a result made elsewhere
    (the GPU machine writes to its ``$OUT``) is re-made into benchmarks/results."""
    argv = shlex.split(command)
    while "--results" in argv:
        i = argv.index("--results")
        del argv[i : i + 2]
    return argv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("pattern", nargs="?", default="*.json", help="results files (a glob)")
    ap.add_argument("--dry-run", action="store_true", help="list the commands, run nothing")
    args = ap.parse_args()
    commands = recorded_commands(args.pattern)
    if not commands:
        raise SystemExit(f"no results in {RESULTS} match {args.pattern!r}")
    gpu = torch.cuda.is_available()
    for command in commands:
        argv = portable_argv(command)
        if any(a.startswith("cuda") for a in argv) and not gpu:
            print(f"skipped (needs a CUDA device; see benchmarks/device_check.sh): {command}")
            continue
        print(f"$ {shlex.join(argv)}", flush=True)
        if not args.dry_run:
            subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, check=True)
    if not args.dry_run:
        subprocess.run([sys.executable, "benchmarks/make_tables.py"], cwd=ROOT, check=True)


if __name__ == "__main__":
    main()
