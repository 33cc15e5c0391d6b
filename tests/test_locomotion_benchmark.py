"""benchmarks/locomotion.py on a tiny HalfCheetah protocol: training stops at its time budget and
resumes from there, and the result file carries the scores, the validation curve, how far the
run got and its provenance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mujoco")
ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "task.horizon=4",
    "task.rollouts=2",
    "train.meta_batch=2",
    "train.val_tasks=2",
    "train.val_every=2",
    "eval.tasks=2",
]


def _run(tmp_path: Path, *args: str) -> dict:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "locomotion.py"), "--threads", "1"]
    cmd += ["--runs", str(tmp_path / "runs"), "--results", str(tmp_path / "results")]
    cmd += ["--plots", str(tmp_path / "plots"), *args, "--set", *TINY]
    subprocess.run(cmd, check=True, capture_output=True, cwd=tmp_path)
    return json.loads((tmp_path / "results" / "rl_halfcheetah_dir.json").read_text())


def test_a_budget_stops_training_and_the_next_call_resumes(tmp_path: Path) -> None:
    first = _run(tmp_path, "--steps", "5", "--minutes", "1e-9")
    assert (first["reached"], first["planned"], first["budget_stopped"]) == (1, 5, True)
    second = _run(tmp_path, "--steps", "3")
    assert (second["reached"], second["budget_stopped"]) == (3, False)
    assert [s for s, _ in second["validation"]] == [2, 3]
    assert second["scored_step"] in (2, 3)
    maml = second["methods"]["MAML-TRPO"]
    assert maml["steps"] == second["scored_step"] and set(maml["scores"]) == {"0", "1", "2", "3"}
    assert second["methods"]["random initialisation"]["steps"] == 0
    # the training's cost over both calls: its wall clock and its CPU time, counted over resumes
    assert maml["train_cpu_seconds"] > 0 and maml["train_seconds"] > 0
    assert second["provenance"]["commit"] and (tmp_path / "plots").is_dir()
