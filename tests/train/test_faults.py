"""Fault tests: ``metamap train`` killed with SIGKILL at the worst moments resumes to exactly the
run it would have been.

The kills are real (another process, SIGKILL, no clean-up code runs). ``fault_driver.py`` places
one at an exact moment of a file write: in the middle of a checkpoint write (its bytes written,
neither synced nor renamed), just before a checkpoint's rename, and during the metrics rewrite a
resume makes. A last test kills at random moments until the run finishes.
"""

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from metamap.cli import main
from metamap.train import RunPaths, load_checkpoint, read_metrics

SameRun = Callable[[Path, Path], None]
ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("fault_driver.py")
ARGS = [
    "train",
    str(ROOT / "configs" / "sinusoid" / "maml.yaml"),
    "-o",
    "train.steps=240",
    "-o",
    "train.meta_batch=4",
    "-o",
    "train.ckpt_every=20",
    "-o",
    "train.val_every=40",
    "-o",
    "train.val_tasks=8",
    "-o",
    "train.log_every=10",
    "-o",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def _faulty(out: Path, call: str, name: str, n: int) -> int:
    argv = [sys.executable, str(DRIVER), call, name, str(n), "--", *ARGS, "--out", str(out)]
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode


@pytest.mark.parametrize(
    ("call", "name", "n"),
    [
        ("fsync", "last.pt", 4),  # mid-write of the step-80 checkpoint
        ("replace", "last.pt", 4),  # complete but not yet renamed
        ("fsync", "best.pt", 2),  # mid-write of a best checkpoint
    ],
)
def test_sigkill_during_a_checkpoint_write(
    tmp_path: Path, uninterrupted: Path, same_run: SameRun, call: str, name: str, n: int
) -> None:
    assert _faulty(tmp_path, call, name, n) == -signal.SIGKILL
    leftover = list((tmp_path / "checkpoints").glob(f".{name}.*.tmp"))
    assert leftover, "the kill should leave the interrupted write's temporary behind"
    step = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"]
    assert 0 < step < 240  # the previous checkpoint survived whole
    assert main([*ARGS, "--out", str(tmp_path)]) == 0
    same_run(uninterrupted, tmp_path)


@pytest.mark.parametrize("call", ["fsync", "replace"])
def test_sigkill_during_the_metrics_rewrite_of_a_resume(
    tmp_path: Path, uninterrupted: Path, same_run: SameRun, call: str
) -> None:
    assert _faulty(tmp_path, "fsync", "last.pt", 5) == -signal.SIGKILL  # a first kill
    history = read_metrics(RunPaths(tmp_path).metrics)
    assert history
    # the resume rewrites metrics.jsonl (its 1st write of that file); kill it there
    assert _faulty(tmp_path, call, "metrics.jsonl", 1) == -signal.SIGKILL
    assert read_metrics(RunPaths(tmp_path).metrics) == history, "the history was lost"
    assert main([*ARGS, "--out", str(tmp_path)]) == 0
    same_run(uninterrupted, tmp_path)


def test_sigkill_at_random_moments(tmp_path: Path, uninterrupted: Path, same_run: SameRun) -> None:
    rng = random.Random(7)
    kills = 0
    for _ in range(12):
        cmd = [sys.executable, "-m", "metamap.cli", *ARGS, "--out", str(tmp_path)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(1.5, 4.0))  # torch's import takes ~1.5 s of it
        if proc.poll() is not None:
            assert proc.returncode == 0
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    else:
        assert main([*ARGS, "--out", str(tmp_path)]) == 0
    assert kills >= 2, "the run finished before it could be killed twice: lengthen it"
    same_run(uninterrupted, tmp_path)
