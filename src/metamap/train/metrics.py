"""Metrics as JSON lines: one object per logged step, appended and flushed as training runs.

A resume drops the records past the checkpoint's step by replacing the whole file atomically
(:func:`~metamap.fileio.atomic_write`), so a kill during that rewrite leaves the old log, never an
empty one. A kill during an append can leave a torn last line: :func:`read_metrics` skips it, and
the next resume's rewrite removes it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from metamap.fileio import atomic_write_text

__all__ = ["MetricsLog", "read_metrics"]


class MetricsLog:
    """Append-only JSONL log. On resume, lines past the checkpoint's step are dropped first
    (atomically); a fresh run starts an empty log."""

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        if resume_step is None:
            atomic_write_text(self.path, "")
        elif self.path.exists():
            keep = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in keep))

    def write(self, record: dict[str, Any]) -> None:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()
        }
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The complete records of a metrics file, in order: a line that is torn (by a kill), not
    JSON, not UTF-8, or not an object with an integer ``step`` is skipped; of records logged
    twice for one step, the last one stands."""
    by_step: dict[int, dict[str, Any]] = {}
    for line in Path(path).read_bytes().splitlines():
        try:
            record = json.loads(line.decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        step = record.get("step") if isinstance(record, dict) else None
        if isinstance(step, int) and not isinstance(step, bool):
            by_step.pop(step, None)
            by_step[step] = record
    return sorted(by_step.values(), key=lambda r: int(r["step"]))
