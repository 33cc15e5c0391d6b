"""benchmarks/inner_optimizers.py on a 2-step smoke run: each variant trains with its own inner
update rule, and a variant's paired difference to its plain-steps control is computed task by
task from the per-task scores in the file."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_variants_train_with_their_rule_and_differ_from_the_control_task_by_task(
    tmp_path: Path,
) -> None:
    out = tmp_path / "inner.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "inner_optimizers.py"), "--steps", "2"]
    cmd += ["--variants", "maml-sgd", "maml-adam", "--runs", str(tmp_path), "--out", str(out)]
    cmd += ["--set", "eval.tasks=40", "train.val_tasks=4"]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    data = json.loads(out.read_text())
    assert data["provenance"]["commit"] and "inner_optimizers.py" in data["command"]
    sgd, adam = data["variants"]["maml-sgd"], data["variants"]["maml-adam"]
    assert sgd["config"]["learner"]["inner_optimizer"]["name"] == "sgd"
    assert adam["config"]["learner"]["inner_optimizer"]["name"] == "adam"
    assert sgd["config"]["learner"]["inner_steps"] == adam["config"]["learner"]["inner_steps"] == 5
    assert "vs_control" not in sgd and adam["vs_control"]["control"] == "maml-sgd"
    for shots in ("5-shot", "10-shot", "20-shot"):
        for k in ("0", "1", "5", "10"):
            a, b = adam["scores"][shots][k]["values"], sgd["scores"][shots][k]["values"]
            d = adam["vs_control"][shots][k]
            assert d["n"] == len(a) == len(b) == 40
            diffs = [x - y for x, y in zip(a, b, strict=True)]
            assert math.isclose(d["mean"], sum(diffs) / len(diffs), rel_tol=1e-9, abs_tol=1e-12)
    # different rules adapt differently: after 5 steps the two are not the same function
    assert adam["vs_control"]["5-shot"]["5"]["mean"] != 0.0
