"""What the benchmarks record about the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy
import torch

import metamap
from metamap.fileio import atomic_write
from metamap.train import read_metrics

__all__ = [
    "clock_overrides",
    "clocked_seconds",
    "command_line",
    "cpu_info",
    "device_name",
    "git_state",
    "interleaved_medians",
    "parse_setting",
    "portable",
    "provenance",
    "write_result",
    "write_rows",
]

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("METAMAP_SHARED_DATA", ROOT.parent / "shared" / "data"))
"""The shared real data (Omniglot, ...): ``$METAMAP_SHARED_DATA``, default ``../shared/data``."""


def command_line() -> str:
    """The command that is running, as a shell would take it back (``rerun.py`` does): arguments
    such as ``'train.milestones=[5500]'`` stay quoted."""
    return shlex.join(["python", *sys.argv])


def clock_overrides(warmup: int, steps: int) -> list[str]:
    """Config overrides that time ``steps`` meta-iterations after ``warmup`` untimed ones: the
    trainer logs its clock every step, and one more step, which validates, closes the run."""
    total = warmup + steps + 1  # the last step validates: it is not timed
    return [
        f"train.steps={total}",
        "train.warmup_steps=0",
        f"train.val_every={total}",
        "train.val_tasks=4",
        f"train.ckpt_every={total}",
        "train.log_every=1",
        "train.progress=false",
    ]


def clocked_seconds(metrics: Path, warmup: int, steps: int) -> float:
    """Seconds the trainer's clock (its ``metrics.jsonl``) took for steps ``warmup+1 …
    warmup+steps`` of a run made with :func:`clock_overrides`."""
    clock = {r["step"]: r["time"] for r in read_metrics(metrics)}
    return float(clock[warmup + steps] - clock[warmup])


def cpu_info() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """The GPU's name for a CUDA ``device``, else the processor's (:func:`cpu_info`)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_info()


def parse_setting(setting: str) -> tuple[int, int]:
    """``(ways, shots)`` of a test setting written like ``5w1s``; exits naming it otherwise."""
    m = re.fullmatch(r"(\d+)w(\d+)s", setting)
    if m is None:
        raise SystemExit(f"setting {setting!r} must look like 5w1s")
    return int(m.group(1)), int(m.group(2))


def portable(value: Any) -> Any:
    """``value`` with every path string inside the repository's parent folder made relative to
    the repository (``../shared/data/omniglot``, ``runs/bench/…``), so that the result files do
    not record this machine's absolute paths. Dicts and lists are walked; other values pass."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, (str, Path)) and Path(value).is_absolute():
        path = Path(value).resolve()
        if path.is_relative_to(ROOT.parent):
            return os.path.relpath(path, ROOT)
    return value


OUTPUTS = ("benchmarks/results", "docs/results")
"""Where benchmarks write what they measure: changes there are a run's own output, not a change
to the code that measured it, so they do not make a checkout dirty (a benchmark that writes
several results in turn would otherwise record all but its first as dirty)."""


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """``{"commit": <HEAD's sha>, "dirty": <uncommitted changes to tracked files outside
    OUTPUTS>}`` of the checkout at ``root`` (``None`` for both outside a git checkout)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        outputs = [f":(exclude){p}" for p in OUTPUTS]
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *outputs],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(status.strip())}


def provenance(device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """Where and with what a result was measured, for its ``"provenance"`` key.

    ``{"commit", "dirty"}`` (:func:`git_state`), ``"cpu"`` (:func:`cpu_info`), ``"gpu"`` (the
    GPU's name when ``device`` is a CUDA one, else ``None``), ``"device"``, ``"threads"`` (the
    thread count the benchmark was asked for; torch's when ``None``), ``"torch_threads"``
    (``torch.get_num_threads()`` now), ``"versions"`` (python, torch, numpy, metamap) and
    ``"date"`` (UTC, ISO 8601).
    """
    cuda = torch.device(device).type == "cuda"
    return {
        **git_state(),
        "cpu": cpu_info(),
        "gpu": device_name(device) if cuda else None,
        "device": device,
        "threads": torch.get_num_threads() if threads is None else threads,
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "metamap": metamap.__version__,
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def interleaved_medians(ways: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each way, timed in ``rounds`` rounds that run every way once in turn
    (so that a change in the machine's load hits all of them alike)."""
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, run in ways.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def write_rows(path: Path, benchmark: str, rows: dict[str, Any], rounds: int,
               load_before: float) -> Path:  # fmt: skip
    """Write a timing benchmark's ``rows`` with its rounds, the 1-minute load average before it
    started and now, the command and the provenance (:func:`write_result`)."""
    result = {"benchmark": benchmark, "rows": rows, "rounds": rounds,
              "load_average": [load_before, os.getloadavg()[0]], "command": command_line(),
              "provenance": provenance("cpu", torch.get_num_threads())}  # fmt: skip
    return write_result(path, result)


def write_result(path: Path, result: Any) -> Path:
    """Write a benchmark's result as indented JSON, atomically: a benchmark killed while writing
    leaves the previous result file (which the README tables are built from), never a torn one.

    A result dict must hold a ``"provenance"`` (:func:`provenance`): every result file says the
    commit, machine and versions it was measured with."""
    if isinstance(result, dict) and "provenance" not in result:
        raise ValueError(f"result for {path} has no 'provenance' (benchmarks/machine.py)")
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))
    print(f"wrote {path}", flush=True)
    return path
