"""Every benchmark result records where and with what it was measured: benchmarks/machine.py's
``provenance()`` (commit, dirty flag, CPU and GPU model, threads, versions, date), which
``write_result`` requires and every result-writing script passes; make_tables says under each
table at which commit its results were measured, and still renders results from before."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

import pytest
import torch

import metamap

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def machine() -> ModuleType:
    return load("machine")


def test_provenance_records_commit_machine_threads_and_versions(machine: ModuleType) -> None:
    p = machine.provenance("cpu", 3)
    assert set(p) == {
        "commit", "dirty", "cpu", "gpu", "device", "threads", "torch_threads", "versions", "date",
    }  # fmt: skip
    if p["commit"] is not None:  # None outside a git checkout (an unpacked sdist)
        assert re.fullmatch(r"[0-9a-f]{40}", p["commit"])
        assert isinstance(p["dirty"], bool)
    assert isinstance(p["cpu"], str) and p["cpu"]
    assert p["gpu"] is None and p["device"] == "cpu"  # a CPU result names no GPU
    assert p["threads"] == 3 and p["torch_threads"] == torch.get_num_threads()
    assert machine.provenance()["threads"] == torch.get_num_threads()  # none asked: torch's
    versions = p["versions"]
    assert versions["torch"] == torch.__version__ and versions["metamap"] == metamap.__version__
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(versions["numpy"], str)
    assert datetime.fromisoformat(p["date"]).tzinfo is not None
    json.dumps(p)  # it goes into a JSON result file as it is


def test_a_change_to_the_code_is_dirty_and_a_benchmark_s_own_results_are_not(
    machine: ModuleType, tmp_path: Path
) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "a.json").write_text("{}\n")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x", "--allow-empty")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "y")
    assert machine.git_state(tmp_path)["dirty"] is False
    (tmp_path / "benchmarks" / "results" / "a.json").write_text('{"a": 1}\n')
    assert machine.git_state(tmp_path)["dirty"] is False  # a result the run wrote itself
    (tmp_path / "code.py").write_text("x = 2\n")
    assert machine.git_state(tmp_path)["dirty"] is True


def test_write_result_requires_provenance(machine: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no 'provenance'"):
        machine.write_result(tmp_path / "a.json", {"benchmark": "x"})
    assert not (tmp_path / "a.json").exists()
    path = machine.write_result(tmp_path / "b.json", {"provenance": machine.provenance()})
    assert json.loads(path.read_text())["provenance"]["cpu"] == machine.cpu_info()


def test_every_script_that_writes_a_result_records_provenance() -> None:
    writers = [
        p
        for p in sorted(BENCHMARKS.glob("*.py"))
        if p.name != "machine.py" and "write_result(" in p.read_text()
    ]
    assert len(writers) >= 10
    # recorded as the result is written, or (a long grid) when it starts: provenance(...) is
    # called and stored under "provenance"
    missing = [
        p.name
        for p in writers
        if '"provenance": provenance(' not in p.read_text()
        and not ("= provenance(" in p.read_text() and '"provenance": ' in p.read_text())
    ]
    assert not missing, f"result files written without provenance by {missing}"


def test_tables_say_at_which_commit_their_results_were_measured() -> None:
    tables = load("make_tables")
    note = tables.provenance_note
    old = {"benchmark": "x"}  # a result file from before provenance was recorded
    clean = {"provenance": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": False}}
    dirty = {"provenance": {"commit": "fedcba9876543210" * 2 + "01234567", "dirty": True}}
    assert note([old]) == "Measured before result files recorded their commit."
    assert note([clean]) == "Measured at commit `0123456`."
    assert note([dirty]) == "Measured at commit `fedcba9`, dirty."
    assert note([clean, dirty, dirty, old]) == (
        "Measured at commit `0123456` (1); `fedcba9`, dirty (2); not recorded (1, older results)."
    )
