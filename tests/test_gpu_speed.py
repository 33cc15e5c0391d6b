"""benchmarks/gpu_speed.py, the prepared GPU check of scale-out, rehearsed on the CPU: every
workload builds, the loop and the default compute the same meta-gradient, one rank of the
process group returns the direct meta-gradient, and the result file carries its provenance."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def gpu_speed(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("gpu_speed", ROOT / "benchmarks" / "gpu_speed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_speed", module)  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_the_rehearsal_writes_timings_agreement_and_the_one_rank_check(
    gpu_speed: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["gpu_speed.py", "--device", "cpu", "--tiny", "--steps", "1", "--warmup", "0",
            "--only", "conv4-maml-5w1s", "--variants", "default", "loop",
            "--results", str(tmp_path)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    gpu_speed.main()
    r = json.loads((tmp_path / "gpu_speed_cpu_tiny.json").read_text())
    v = r["workloads"]["conv4-maml-5w1s"]["variants"]
    assert set(v) == {"default", "loop"} and v["loop"]["speedup_vs_loop"] == 1.0
    assert v["loop"]["cosine_to_default"] == pytest.approx(1.0, abs=1e-5)
    assert v["default"]["ms_per_step"] > 0
    assert r["one_rank"]["backend"] == "gloo" and r["one_rank"]["world_size"] == 1
    assert r["one_rank"]["max_abs_difference"] < 1e-6
    assert r["provenance"]["commit"] and "dirty" in r["provenance"]


def test_every_workload_builds_its_learner_and_batch(gpu_speed: ModuleType) -> None:
    for w in gpu_speed.workloads(tiny=True):
        batch = gpu_speed.batch_of(w, "cpu")
        assert len(batch) == w.tasks and batch.support_x.shape[-1] == w.size
        assert w.make("loop").meta_gradients(batch).grads
    names = [w.name for w in gpu_speed.workloads(tiny=False)]
    assert names == ["conv4-maml-5w1s", "conv4-maml-miniimagenet", "resnet12-protonet"]


def test_cuda_graphs_are_recorded_as_skipped_without_a_gpu(gpu_speed: ModuleType) -> None:
    w = gpu_speed.workloads(tiny=True)[0]
    found = gpu_speed.variants(w, "cpu", warmup=0, steps=1, chosen=("loop", "cudagraphs"))
    assert found["cudagraphs"] == {"skipped": "CUDA graphs need a CUDA device"}
    assert set(found) == {"loop", "cudagraphs"}
