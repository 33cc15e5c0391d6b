"""benchmarks/rerun.py: recorded commands re-run into benchmarks/results, GPU ones only on a GPU."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def rerun(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("rerun", ROOT / "benchmarks" / "rerun.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def test_a_recorded_results_folder_is_dropped(rerun: ModuleType) -> None:
    command = "python benchmarks/x.py --device cuda --results /root/out --steps 3"
    assert rerun.portable_argv(command) == [
        "python",
        "benchmarks/x.py",
        "--device",
        "cuda",
        "--steps",
        "3",
    ]


def test_gpu_commands_are_skipped_without_a_gpu(
    rerun: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cpu = "python benchmarks/a.py --threads 1"
    gpu = "python benchmarks/b.py --device cuda:0 --results /root/out"
    for name, command in (("a.json", cpu), ("b.json", gpu)):
        (tmp_path / name).write_text(json.dumps({"command": command}))
    monkeypatch.setattr(sys, "argv", ["rerun.py", "--dry-run"])
    rerun.main()
    out = capsys.readouterr().out
    assert f"$ {cpu}" in out
    if torch.cuda.is_available():
        assert "$ python benchmarks/b.py --device cuda:0" in out
    else:
        assert f"skipped (needs a CUDA device; see benchmarks/device_check.sh): {gpu}" in out


def test_unproven_results_are_chosen_cheapest_first_within_the_hours(
    rerun: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean = {"commit": "abc", "dirty": False}
    results = {  # name: (command, recorded training seconds, provenance)
        "a.json": ("python benchmarks/a.py", 3000, None),
        "b.json": ("python benchmarks/b.py", 1000, {"commit": "abc", "dirty": True}),
        "c.json": ("python benchmarks/c.py", 100, clean),  # proven: not re-run
        "d.json": ("python benchmarks/d.py", 4000, None),
        "e.json": ("python benchmarks/e.py", None, None),  # cost unknown: never within hours
        "f.json": ("python benchmarks/f.py", 3000, None),  # one command, two files: 6,000 s
        "g.json": ("python benchmarks/f.py", 3000, None),
    }
    for name, (command, seconds, where) in results.items():
        data = {"command": command, "train_seconds": seconds, "provenance": where}
        (tmp_path / name).write_text(json.dumps({k: v for k, v in data.items() if v}))
    costs = rerun.recorded_commands("*.json", unproven=True)
    assert list(costs) == [f"python benchmarks/{x}.py" for x in "abdef"]
    assert costs["python benchmarks/f.py"] == 6000
    assert rerun.within(costs, 1.2, 2) == [  # 1.2 h on 2 workers: 8,640 s
        "python benchmarks/b.py",
        "python benchmarks/a.py",
        "python benchmarks/d.py",
    ]
    assert rerun.within(costs, 0.5, 1) == ["python benchmarks/b.py"]
    monkeypatch.setattr(sys, "argv", ["rerun.py", "--unproven", "--hours", "0.5", "--dry-run"])
    rerun.main()
    out = capsys.readouterr().out
    assert out == "$ python benchmarks/b.py  # trained 17 min when recorded\n"


def test_commands_sharing_a_run_folder_run_one_after_another(rerun: ModuleType) -> None:
    row = "python benchmarks/omniglot.py --config protonet-lake --threads 1"
    rescored = row + " --eval-set eval.batch_norm=transductive --tag transductive"
    other = "python benchmarks/omniglot.py --config r2d2-5w1s --threads 1"
    elsewhere = row + " --runs /tmp/elsewhere"
    sinusoid = "python benchmarks/sinusoid.py --learners maml"
    argvs = [rerun.portable_argv(c) for c in (row, other, rescored, elsewhere, sinusoid)]
    assert rerun.queues(argvs) == [[argvs[0], argvs[2]], [argvs[1]], [argvs[3]], [argvs[4]]]
