"""A run folder never loses work: what a resume finds, what it refuses, the lock, temporaries.

Each test here failed before the run folder had these guarantees: a missing ``last.pt`` started
over and overwrote ``best.pt`` and the metrics; two trainers ran into one folder; a resume
rewrote ``metrics.jsonl`` in place; temporaries of interrupted writes stayed forever.
"""

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from metamap.cli import main
from metamap.errors import OutputPathError, RunFolderError, RunLockedError
from metamap.train import RunLock, RunPaths, Trainer, load_checkpoint, load_config, read_metrics

SameRun = Callable[[Path, Path], None]
FAST = [
    "train.steps=12",
    "train.meta_batch=4",
    "train.val_every=4",
    "train.val_tasks=8",
    "train.ckpt_every=3",
    "train.log_every=1",
    "train.progress=false",
    "model.hidden=[16,16]",
]


def _cfg(*extra: str):  # type: ignore[no-untyped-def]
    return load_config(None, [*FAST, *extra])


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (the folder byte for byte)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    Trainer(_cfg(), out).fit()
    return out


def test_missing_last_resumes_from_best_and_replays_the_same_run(
    tmp_path: Path, reference: Path, same_run: SameRun
) -> None:
    Trainer(_cfg(), tmp_path).fit(stop_after=10)  # best.pt at step 8, last.pt at step 9
    run = RunPaths(tmp_path)
    assert load_checkpoint(run.best)["step"] == 8
    run.last.unlink()
    trainer = Trainer(_cfg(), tmp_path)
    assert trainer.resume_source() == run.best
    trainer.fit()
    same_run(reference, tmp_path)


def test_no_checkpoint_but_metrics_of_another_run_is_refused_untouched(tmp_path: Path) -> None:
    Trainer(_cfg(), tmp_path).fit(stop_after=10)
    run = RunPaths(tmp_path)
    run.last.unlink()
    run.best.unlink()
    before = _snapshot(tmp_path)
    other = _cfg("learner.inner_lr=0.02")
    with pytest.raises(RunFolderError, match="--restart") as err:
        Trainer(other, tmp_path).fit()
    assert "metrics.jsonl" in str(err.value) and "new --out" in str(err.value)
    assert _snapshot(tmp_path) == before


def test_no_checkpoint_but_metrics_of_the_same_run_replays_it(
    tmp_path: Path, reference: Path, same_run: SameRun
) -> None:
    Trainer(_cfg(), tmp_path).fit(stop_after=2)  # killed before the first checkpoint
    run = RunPaths(tmp_path)
    assert not run.last.exists() and read_metrics(run.metrics)
    Trainer(_cfg(), tmp_path).fit()
    same_run(reference, tmp_path)


def test_scores_without_checkpoints_are_refused_and_restart_discards_them(
    tmp_path: Path, reference: Path, same_run: SameRun
) -> None:
    tmp_path.joinpath("eval.json").write_text("{}\n")
    tmp_path.joinpath("config.yaml").write_text(_cfg().to_yaml())
    before = _snapshot(tmp_path)
    with pytest.raises(RunFolderError, match=r"eval\.json"):
        Trainer(_cfg(), tmp_path).fit()
    assert _snapshot(tmp_path) == before
    Trainer(_cfg(), tmp_path).fit(resume=False)
    assert not (tmp_path / "eval.json").exists()
    same_run(reference, tmp_path)


def test_restart_discards_the_old_results(
    tmp_path: Path, reference: Path, same_run: SameRun
) -> None:
    Trainer(_cfg("learner.inner_lr=0.02"), tmp_path).fit()
    with pytest.raises(Exception, match="another configuration"):
        Trainer(_cfg(), tmp_path).fit()  # a resume is checked against the stored config
    Trainer(_cfg(), tmp_path).fit(resume=False)
    same_run(reference, tmp_path)


def test_cli_refusal_names_the_choices_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = Path(__file__).resolve().parents[2] / "configs" / "sinusoid" / "maml.yaml"
    tmp_path.joinpath("metrics.jsonl").write_text('{"step": 5, "loss": 1.0}\n')
    before = _snapshot(tmp_path)
    assert main(["train", str(cfg), "--out", str(tmp_path), "-o", "train.steps=2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--restart" in err and "Traceback" not in err
    assert _snapshot(tmp_path) == before


def test_stale_temporaries_are_removed_at_the_next_start(tmp_path: Path) -> None:
    Trainer(_cfg(), tmp_path).fit(stop_after=4)
    run = RunPaths(tmp_path)
    stale = [run.checkpoints / ".last.pt.k2j4h1.tmp", tmp_path / ".metrics.jsonl.x8a.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.tmp"  # not one of ours: left alone
    keep.write_text("mine")
    Trainer(_cfg(), tmp_path).fit()
    assert not any(p.exists() for p in stale)
    assert keep.read_text() == "mine"


def test_a_second_trainer_in_the_same_process_is_refused(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        before = _snapshot(tmp_path)
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            Trainer(_cfg(), tmp_path).fit()
        assert _snapshot(tmp_path) == before
    Trainer(_cfg(), tmp_path).fit()  # released: the folder is usable again


_HOLD = """
import sys, time
from metamap.train import RunLock
lock = RunLock(sys.argv[1]).acquire()  # held while the process lives
print("held", flush=True)
time.sleep(120)
"""


def test_a_concurrent_trainer_is_refused_and_a_stale_lock_does_not_block(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        cfg = Path(__file__).resolve().parents[2] / "configs" / "sinusoid" / "maml.yaml"
        argv = ["train", str(cfg), "--out", str(tmp_path), *[f"-o{o}" for o in FAST]]
        before = _snapshot(tmp_path)
        assert main(argv) == 75
        err = capsys.readouterr().err
        assert f"in use by process {holder.pid}" in err and err.count("\n") == 1
        assert _snapshot(tmp_path) == before
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, naming a dead process
        holder.wait()
    assert (tmp_path / ".lock").read_text().strip() == str(holder.pid)
    assert main(argv) == 0
    assert load_checkpoint(RunPaths(tmp_path).last)["step"] == 12


def test_an_out_dir_under_a_file_is_refused_by_the_api(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="which is a file, not a folder"):
        Trainer(_cfg(), tmp_path / "file" / "run").fit()
