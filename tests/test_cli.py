"""The command line: end-to-end train → eval → plot, errors with exit status 2, and a real kill."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metamap.cli import main
from metamap.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "-o",
    "train.steps=30",
    "-o",
    "train.meta_batch=4",
    "-o",
    "train.val_every=10",
    "-o",
    "train.val_tasks=8",
    "-o",
    "train.ckpt_every=10",
    "-o",
    "train.progress=false",
    "-o",
    "eval.tasks=20",
]


def test_train_eval_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = ROOT / "configs" / "sinusoid" / "maml.yaml"
    assert main(["train", str(cfg), "--out", str(tmp_path), *SMALL, "--eval"]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert set(res["scores"]) == {"5-shot", "10-shot", "20-shot"}
    assert set(res["scores"]["5-shot"]) == {"0", "1", "5", "10"}
    assert res["scores"]["5-shot"]["1"]["n"] == 20
    assert (
        main(
            [
                "eval",
                str(tmp_path / "checkpoints" / "best.pt"),
                "-o",
                "eval.tasks=10",
                "-o",
                "eval.shots=[5]",
                "--out",
                str(tmp_path / "e2.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "e2.json").read_text())["scores"]["5-shot"]["1"]["n"] == 10
    assert main(["plot", str(tmp_path)]) == 0
    for png in ("adaptation.png", "learning_curve.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "MSE on 20 fixed tasks" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "missing.yaml"], "does not exist"),
        (
            ["train", "configs/sinusoid/maml.yaml", "-o", "train.bogus=1"],
            "unknown key 'train.bogus'",
        ),
        (
            ["train", "configs/sinusoid/maml.yaml", "-o", "learner.inner_steps=zero"],
            "'learner.inner_steps'",
        ),
        (["eval", "missing.pt"], "does not exist"),
        (["plot", "nowhere"], "does not exist"),
    ],
)
def test_user_errors_exit_2_with_message(
    argv: list[str],
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("metamap: error:") and needle in err
    assert "Traceback" not in err


def _run(out: Path, steps: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metamap.cli",
            "train",
            str(ROOT / "configs/sinusoid/maml.yaml"),
            "--out",
            str(out),
            "-o",
            f"train.steps={steps}",
            "-o",
            "train.ckpt_every=25",
            "-o",
            "train.val_every=100",
            "-o",
            "train.val_tasks=8",
            "-o",
            "train.progress=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    steps = 400
    assert _run(tmp_path / "full", steps).wait() == 0
    proc = _run(tmp_path / "killed", steps)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(last)["step"]
    assert 0 < killed_at < steps, "the kill came too late to test a resume"
    assert _run(tmp_path / "killed", steps).wait() == 0
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["learner"]
    b = load_checkpoint(last)["learner"]
    assert all(torch.equal(a[k], b[k]) for k in a)
