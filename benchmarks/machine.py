"""What the benchmarks record about the machine they ran on."""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["cpu_info"]


def cpu_info() -> str:
    """The processor's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
