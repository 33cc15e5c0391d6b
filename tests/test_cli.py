"""The command line: end-to-end train → eval → plot, errors with exit status 2, and a real kill."""

import json
import re
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


def test_train_minutes_stops_checkpointed_and_the_same_command_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ROOT / "configs" / "sinusoid" / "maml.yaml"
    argv = ["train", str(cfg), "--out", str(tmp_path), *SMALL, "--eval", "--minutes", "1e-9"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "trained 1 steps" in out and "no validation yet (every 10 steps)" in out
    assert re.search(r"into \S+ \(\d+\.\d s, \d+\.\d s of CPU\)", out), out  # its cost
    assert "stopped by the 1e-09-minute budget at step 1 of 30" in err
    assert "not evaluated: the run stopped at step 1 of 30" in err
    assert not (tmp_path / "eval.json").exists()
    assert main(argv[:-2]) == 0  # no budget: it continues from step 1 and evaluates
    assert "resuming from" in capsys.readouterr().err
    assert (tmp_path / "eval.json").is_file()


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


def _grey_folder(root: Path, classes: int, per_class: int, seed: int) -> None:
    """Class ``c``: a bright square at a class-specific place on a noisy 28×28 background."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c:02d}").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (28, 28), dtype=np.uint8)
            r, col = divmod(c, 4)
            img[2 + 6 * r : 8 + 6 * r, 2 + 6 * col : 8 + 6 * col] = 255
            Image.fromarray(img, mode="L").save(root / f"class{c:02d}" / f"{i}.png")


def _lake_runs(root: Path, runs: int = 2, classes: int = 3) -> Path:
    """Lake's layout: runNN/{training/classNN.png, test/itemNN.png, class_labels.txt}."""
    src = root / "glyphs"
    _grey_folder(src, classes, 2, seed=7)
    base = root / "omniglot"
    for r in range(1, runs + 1):
        run = base / "one-shot-classification" / "all_runs" / f"run{r:02d}"
        (run / "training").mkdir(parents=True)
        (run / "test").mkdir()
        lines = []
        for c in range(1, classes + 1):
            (run / "training" / f"class{c:02d}.png").write_bytes(
                (src / f"class{c - 1:02d}" / "0.png").read_bytes()
            )
            (run / "test" / f"item{c:02d}.png").write_bytes(
                (src / f"class{classes - c:02d}" / "1.png").read_bytes()
            )
            lines.append(
                f"run{r:02d}/test/item{c:02d}.png run{r:02d}/training/class{4 - c:02d}.png"
            )
        (run / "class_labels.txt").write_text("\n".join(lines) + "\n")
    return base


def _folder_run(images: Path, cache: Path, learner: str) -> list[str]:
    """Overrides of the Omniglot ProtoNet config for 2 steps of 2-way 1-shot on a folder."""
    return [
        "-o", "data.name=folder", "-o", "data.protocol=folder",
        "-o", f"data.root={images}", "-o", f"data.cache_dir={cache}",
        "-o", "task.ways=2", "-o", "task.shots=1", "-o", "task.queries=2",
        "-o", "model.width=8", "-o", f"learner.name={learner}", "-o", "train.steps=2",
        "-o", "train.meta_batch=2", "-o", "train.val_every=2", "-o", "train.val_tasks=2",
        "-o", "train.progress=false", "-o", "eval.ways=2", "-o", "eval.shots=[1]",
        "-o", "eval.steps=[0, 1]",
    ]  # fmt: skip


@pytest.mark.parametrize("learner", ["protonet", "maml"])
def test_eval_scores_lakes_one_shot_runs_or_refuses_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], learner: str
) -> None:
    _grey_folder(tmp_path / "images", 10, 5, seed=0)
    lake = _lake_runs(tmp_path)
    cfg = ROOT / "configs" / "omniglot" / "protonet-5w1s.yaml"
    folder = _folder_run(tmp_path / "images", tmp_path / "cache", learner)
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), *folder]) == 0
    capsys.readouterr()
    best, out = tmp_path / "run" / "checkpoints" / "best.pt", tmp_path / "e.json"
    small = ["-o", "eval.tasks=4", "-o", "eval.queries=2"]
    code = main(["eval", str(best), "--lake", str(lake), *small, "--out", str(out)])
    printed = capsys.readouterr()
    if learner == "maml":  # a fixed 2-way head cannot take 3-way runs: refused, nothing evaluated
        assert code == 2 and "metamap: error:" in printed.err and not out.exists()
        assert "Lake's one-shot runs are 3-way 1-shot tasks" in printed.err
        assert "for a 2-way model" in printed.err
        assert "fixed tasks" not in printed.out
        return
    assert code == 0, printed.err
    res = json.loads(out.read_text())["lake_one_shot"]
    assert res["runs"] == 2 and len(res["per_run"]) == 2 and 0.0 <= res["error"] <= 1.0
    assert "Lake et al. one-shot runs (2 × 3-way 1-shot)" in printed.out


@pytest.mark.parametrize("learner", ["protonet", "maml"])
def test_train_eval_refuses_an_evaluation_that_cannot_run_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], learner: str
) -> None:
    override, needle = "eval.shots=[4]", "shots + queries = 6 but class"
    _grey_folder(tmp_path / "images", 15, 5, seed=0)  # test split: 3 classes of 5 images
    cfg = ROOT / "configs" / "omniglot" / "protonet-5w1s.yaml"
    run = [
        *_folder_run(tmp_path / "images", tmp_path / "cache", learner),
        *("-o", "eval.queries=2", "-o", "eval.tasks=4"),
    ]
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), *run, "-o", override]) == 0  # no --eval
    capsys.readouterr()
    out = tmp_path / "run-eval"
    code = main(["train", str(cfg), "--out", str(out), *run, "-o", override, "--eval"])
    err = capsys.readouterr().err
    assert code == 2 and "metamap: error:" in err and needle in err, err
    assert not (out / "checkpoints").exists() and not (out / "eval.json").exists()
    assert main(["train", str(cfg), "--out", str(out), *run, "--eval"]) == 0  # as it should be
    assert (out / "eval.json").is_file()


def test_eval_lake_needs_a_grey_image_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ROOT / "configs" / "sinusoid" / "maml.yaml"
    assert main(["train", str(cfg), "--out", str(tmp_path), *SMALL[:2], *SMALL[-6:-2]]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "checkpoints" / "best.pt"), "--lake", "x"]) == 2
    assert "needs an image checkpoint with data.channels 1" in capsys.readouterr().err


def test_train_eval_scores_the_last_checkpoint_where_the_config_says(tmp_path: Path) -> None:
    cfg = ROOT / "configs" / "sinusoid" / "maml.yaml"
    argv = ["train", str(cfg), "--out", str(tmp_path), *SMALL, "-o", "eval.checkpoint=last"]
    assert main([*argv, "--eval"]) == 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert Path(res["checkpoint"]).name == "last.pt" and res["step"] == 30
