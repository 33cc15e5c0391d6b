"""Bad input to every command: one line naming the problem, the documented exit status, no
traceback, and nothing written where the command must not write.

Each case runs ``metamap`` in-process and checks: the exit status; that standard error is one
line starting ``metamap`` and holding the expected words; no traceback; no suggestion to load a
file unsafely (``weights_only=False``); and that the folder the case names is byte-for-byte as
it was. Output paths are checked before any work, so those cases run in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from metamap.cli import main
from metamap.train import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SINUSOID = str(ROOT / "configs" / "sinusoid" / "maml.yaml")
SMALL = [
    "-o",
    "train.steps=20",
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
    "eval.tasks=10",
]


def _unwritable() -> Path | None:
    """A folder even root cannot create files in (sysfs), if this machine has one."""
    try:
        fd = os.open("/sys/.metamap-probe", os.O_CREAT | os.O_WRONLY)
    except OSError:
        return Path("/sys")
    os.close(fd)  # pragma: no cover - a writable /sys: the case is skipped
    os.unlink("/sys/.metamap-probe")
    return None


UNWRITABLE = _unwritable()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@dataclass
class Env:
    """What the cases point at: scratch space, a finished sinusoid run (a copy per test), image
    checkpoints and folders."""

    tmp: Path
    run: Path
    proto: Path
    maml: Path
    images: Path

    @property
    def best(self) -> str:
        return str(self.run / "checkpoints" / "best.pt")

    @property
    def file(self) -> str:
        """An existing plain file."""
        p = self.tmp / "a-file.txt"
        p.write_text("not a folder\n")
        return str(p)

    def folder(self, name: str = "a-folder") -> str:
        p = self.tmp / name
        p.mkdir(exist_ok=True)
        return str(p)


@pytest.fixture(scope="module")
def sinusoid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sinusoid")
    assert main(["train", SINUSOID, "--out", str(out), *SMALL]) == 0
    return out


@pytest.fixture
def env(
    tmp_path: Path, sinusoid_run: Path, protonet_ckpt: Path, maml_ckpt: Path, image_root: Path
) -> Env:
    run = tmp_path / "run"
    shutil.copytree(sinusoid_run, run)
    return Env(tmp_path / "scratch", run, protonet_ckpt, maml_ckpt, image_root)


def run_case(
    env: Env,
    argv: list[str],
    code: int,
    needle: str,
    untouched: Path,
    capsys: pytest.CaptureFixture[str],
) -> str:
    """Run ``metamap argv`` and check the whole contract; returns standard error."""
    before = snapshot(untouched)
    try:
        got = main(argv)
    except SystemExit as e:  # argparse's own refusals
        got = int(e.code or 0)
    err = capsys.readouterr().err
    assert got == code, (argv, got, err)
    assert err.startswith("metamap") and err.count("\n") == 1, err
    assert needle in err, (needle, err)
    assert "Traceback" not in err and "weights_only" not in err, err
    assert snapshot(untouched) == before, f"{untouched} was changed"
    return err


# ---- output paths, for every command that writes -------------------------------------------
Argv = Callable[[Env, str], list[str]]
WRITERS: dict[str, tuple[str, Argv]] = {
    "train": ("dir", lambda e, out: ["train", SINUSOID, "--out", out, *SMALL]),
    "demo": ("dir", lambda e, out: ["demo", "--out", out]),
    "eval": ("file", lambda e, out: ["eval", e.best, "--out", out]),
    "extract": ("file", lambda e, out: ["extract", str(e.proto), str(e.images), "--out", out]),
    "fewshot": (
        "file",
        lambda e, out: [
            "fewshot",
            str(e.proto),
            "--support",
            str(e.images),
            "--query",
            str(e.images),
            "--out",
            out,
        ],
    ),
    "export": ("dir", lambda e, out: ["export", str(e.proto), "--out", out]),
    "explain": ("dir", lambda e, out: ["explain", e.best, "--out", out]),
}
SUFFIX = {"extract": ".npz", "fewshot": ".csv", "eval": ".json"}


def _bad_outputs(command: str) -> list[tuple[str, Callable[[Env], str], str]]:
    kind, _ = WRITERS[command]
    name = "out" + SUFFIX.get(command, "")
    cases: list[tuple[str, Callable[[Env], str], str]] = [
        ("under-a-file", lambda e: str(Path(e.file) / name), "which is a file, not a folder"),
        ("empty", lambda e: "", "--out is empty"),
    ]
    if kind == "dir":
        cases.append(("existing-file", lambda e: e.file, "is an existing file"))
    else:
        cases.append(("existing-folder", lambda e: e.folder(), "is a folder, but a file"))
    if UNWRITABLE is not None:
        cases.append(
            ("unwritable", lambda e: str(UNWRITABLE / "metamap-out" / name), "is not writable")
        )
    return cases


OUTPUT_CASES = [
    pytest.param(command, path, needle, id=f"{command}-{case}")
    for command in WRITERS
    for case, path, needle in _bad_outputs(command)
]


@pytest.mark.parametrize(("command", "out", "needle"), OUTPUT_CASES)
def test_bad_output_path_is_refused_before_work(
    env: Env,
    command: str,
    out: Callable[[Env], str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.tmp.mkdir()
    argv = WRITERS[command][1](env, out(env))
    run_case(env, argv, 2, needle, env.tmp.parent, capsys)


@pytest.mark.parametrize(
    ("where", "needle"),
    [
        ("missing", "does not exist"),
        ("a-file", "is not a run folder"),
        ("no-checkpoints", "is not a run folder"),
        ("empty", "the run folder argument is empty"),
    ],
)
def test_plot_refuses_what_is_not_a_run_folder(
    env: Env, where: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env.tmp.mkdir()
    target = {
        "missing": str(env.tmp / "nowhere"),
        "a-file": env.file,
        "no-checkpoints": env.folder("not-a-run"),
        "empty": "",
    }[where]
    run_case(env, ["plot", target], 2, needle, env.tmp, capsys)


# ---- broken checkpoints ---------------------------------------------------------------------
def _rewrite(good: Path, dest: Path, change: Callable[[dict], None]) -> None:
    state = load_checkpoint(good)
    change(state)
    save_checkpoint(dest, {k: v for k, v in state.items() if not k.startswith("format")})


def _nan_weights(state: dict) -> None:
    name = next(k for k, v in state["learner"].items() if v.is_floating_point())
    state["learner"][name] = torch.full_like(state["learner"][name], float("nan"))


BROKEN: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "empty": (lambda g, d: d.write_bytes(b""), "is empty (0 bytes)"),
    "truncated": (
        lambda g, d: d.write_bytes(g.read_bytes()[: g.stat().st_size // 2]),
        "truncated or damaged",
    ),
    "random-bytes": (
        lambda g, d: d.write_bytes(random.Random(0).randbytes(5000)),
        "not a PyTorch checkpoint",
    ),
    "foreign-torch-file": (
        lambda g, d: torch.save({"state_dict": {"w": torch.zeros(2)}}, d),
        "not a metamap checkpoint",
    ),
    "legacy-torch-format": (
        lambda g, d: torch.save({"w": torch.zeros(2)}, d, _use_new_zipfile_serialization=False),
        "legacy (pre-1.6) format",
    ),
    "pickled-object": (
        lambda g, d: torch.save(
            {"format": "metamap-checkpoint", "format_version": 1, "o": argparse.Namespace()}, d
        ),
        "refuses to unpickle",
    ),
    "a-folder": (lambda g, d: d.mkdir(), "is a folder"),
    "step-missing": (
        lambda g, d: _rewrite(g, d, lambda s: s.pop("step")),
        "'step' must be a non-negative integer, got None",
    ),
    "step-text": (
        lambda g, d: _rewrite(g, d, lambda s: s.update(step="12")),
        "'step' must be a non-negative integer, got '12'",
    ),
    "step-boolean": (
        lambda g, d: _rewrite(g, d, lambda s: s.update(step=True)),
        "'step' must be a non-negative integer, got True",
    ),
    "step-negative": (
        lambda g, d: _rewrite(g, d, lambda s: s.update(step=-3)),
        "'step' must be a non-negative integer, got -3",
    ),
    "no-weights": (lambda g, d: _rewrite(g, d, lambda s: s.pop("learner")), "no 'learner' entry"),
    "config-mistyped": (
        lambda g, d: _rewrite(g, d, lambda s: s.update(config="maml")),
        "'config' is a str, not a dict",
    ),
    "nan-weights": (lambda g, d: _rewrite(g, d, _nan_weights), "non-finite weights"),
}


def _broken(env: Env, kind: str, good: Path) -> str:
    env.tmp.mkdir(exist_ok=True)
    dest = env.tmp / f"{kind}.pt"
    BROKEN[kind][0](good, dest)
    return str(dest)


@pytest.mark.parametrize("kind", list(BROKEN))
def test_eval_refuses_a_broken_checkpoint_before_evaluating(
    env: Env, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = _broken(env, kind, Path(env.best))
    argv = ["eval", ckpt, "--out", str(env.tmp / "scores.json")]
    run_case(env, argv, 2, BROKEN[kind][1], env.tmp, capsys)


FEATURE_CHECKPOINT_CASES = [
    ("extract", "truncated"),
    ("extract", "nan-weights"),
    ("extract", "pickled-object"),
    ("fewshot", "random-bytes"),
    ("fewshot", "step-text"),
    ("export", "empty"),
    ("export", "foreign-torch-file"),
    ("explain", "legacy-torch-format"),
    ("explain", "no-weights"),
    ("plot", "nan-weights"),
]


@pytest.mark.parametrize(("command", "kind"), FEATURE_CHECKPOINT_CASES)
def test_feature_commands_refuse_a_broken_checkpoint(
    env: Env, command: str, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = env.proto if command in ("extract", "fewshot", "export") else Path(env.best)
    ckpt = _broken(env, kind, good)
    out = str(env.tmp / ("o" + SUFFIX.get(command, "")))
    if command == "plot":  # the run's own best.pt is broken
        shutil.copy(ckpt, env.run / "checkpoints" / "best.pt")
        argv = ["plot", str(env.run)]
    else:
        argv = WRITERS[command][1](env, out)
        argv[1] = ckpt
    run_case(env, argv, 2, BROKEN[kind][1], env.tmp.parent, capsys)


def test_train_refuses_to_resume_from_a_broken_last_checkpoint(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    last = env.run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    argv = ["train", SINUSOID, "--out", str(env.run), *SMALL, "-o", "train.steps=40"]
    run_case(env, argv, 2, "truncated or damaged", env.run, capsys)


# ---- arguments and configs ----------------------------------------------------------------
ARG_CASES: list[tuple[str, Callable[[Env], list[str]], str]] = [
    ("no-command", lambda e: [], "required: command"),
    ("unknown-command", lambda e: ["fit"], "invalid choice: 'fit'"),
    ("train-no-config", lambda e: ["train"], "required: config"),
    (
        "extract-batch-size-0",
        lambda e: ["extract", str(e.proto), str(e.images), "--out", "x.npz", "--batch-size", "0"],
        "must be at least 1, got 0",
    ),
    (
        "extract-batch-size-text",
        lambda e: [
            "extract",
            str(e.proto),
            str(e.images),
            "--out",
            "x.npz",
            "--batch-size",
            "many",
        ],
        "expected a positive integer, got 'many'",
    ),
    (
        "explain-tasks-0",
        lambda e: ["explain", e.best, "--out", "x", "--tasks", "0"],
        "must be at least 1",
    ),
    (
        "explain-steps-0",
        lambda e: ["explain", e.best, "--out", "x", "--steps", "0"],
        "must be at least 1",
    ),
    (
        "plot-steps-text",
        lambda e: ["plot", str(e.run), "--steps", "1,a"],
        "comma-separated integers",
    ),
    ("plot-steps-negative", lambda e: ["plot", str(e.run), "--steps", "-1"], "non-negative"),
    (
        "export-format",
        lambda e: ["export", str(e.proto), "--out", str(e.tmp / "x"), "--format", "tflite"],
        "--format takes",
    ),
    (
        "fewshot-head",
        lambda e: ["fewshot", str(e.proto), "--support", "s", "--query", "q", "--head", "knn"],
        "--head must be one of",
    ),
    (
        "override-without-equals",
        lambda e: ["train", SINUSOID, "--out", str(e.tmp / "r"), "-o", "train.steps"],
        "must look like section.key=value",
    ),
    (
        "override-empty-key-part",
        lambda e: ["train", SINUSOID, "--out", str(e.tmp / "r"), "-o", "train..steps=3"],
        "empty part",
    ),
    (
        "seed-beyond-64-bits",
        lambda e: ["train", SINUSOID, "--out", str(e.tmp / "r"), "-o", f"seed={2**64}"],
        "'seed'",
    ),
    (
        "boolean-for-integer",
        lambda e: ["train", SINUSOID, "--out", str(e.tmp / "r"), "-o", "train.steps=true"],
        "a boolean",
    ),
    (
        "empty-eval-shots",
        lambda e: ["train", SINUSOID, "--out", str(e.tmp / "r"), "-o", "eval.shots=[]"],
        "'eval.shots'",
    ),
    ("empty-eval-steps", lambda e: ["eval", e.best, "-o", "eval.steps=[]"], "'eval.steps'"),
    ("unknown-key", lambda e: ["eval", e.best, "-o", "eval.shot=[5]"], "unknown key 'eval.shot'"),
    ("config-missing", lambda e: ["train", str(e.tmp / "none.yaml")], "does not exist"),
    (
        "minutes-zero",
        lambda e: ["train", SINUSOID, "--out", str(e.tmp / "r"), "--minutes", "0"],
        "the time budget (--minutes) must be a positive number of minutes",
    ),
    (
        "lake-on-regression",
        lambda e: ["eval", e.best, "--lake", str(e.tmp)],
        "(this one: task.family 'sinusoid', not images)",
    ),
]


@pytest.mark.parametrize(("argv", "needle"), [pytest.param(a, n, id=i) for i, a, n in ARG_CASES])
def test_bad_arguments_and_overrides(
    env: Env, argv: Callable[[Env], list[str]], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env.tmp.mkdir()
    run_case(env, argv(env), 2, needle, env.tmp.parent, capsys)


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("latin1.yaml", "name: caf\xe9\n".encode("latin-1"), "not UTF-8"),
        ("empty.yaml", b"", "is empty"),
        ("comments.yaml", b"# nothing here\n", "is empty"),
        ("list.yaml", b"- 1\n- 2\n", "mapping at the top level"),
        ("broken.yaml", b"train: {steps: 3\n", "not valid YAML"),
        (
            "bomb.yaml",
            b"a: &a [x, x, x, x, x, x, x, x, x]\n"
            + b"".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n".encode()
                for i in range(8)
            ),
            "expand to more than",
        ),
    ],
)
def test_bad_config_files(
    env: Env, name: str, content: bytes, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env.tmp.mkdir()
    path = env.tmp / name
    path.write_bytes(content)
    run_case(env, ["train", str(path), "--out", str(env.tmp / "r")], 2, needle, env.tmp, capsys)


# ---- data the commands read -----------------------------------------------------------------
def test_explain_data_applies_the_fixed_head_check_of_eval(
    env: Env, class_folder: Callable, capsys: pytest.CaptureFixture[str]
) -> None:
    data = class_folder(env.tmp / "one-class", [3], 6, 1)  # a 2-way MAML head, 1-way episodes
    argv = ["explain", str(env.maml), "--out", str(env.tmp / "x"), "--data", str(data)]
    run_case(env, argv, 2, "fixed 2-way head", env.tmp, capsys)


def test_plot_on_a_damaged_metrics_log(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = env.run / "metrics.jsonl"
    good = metrics.read_bytes()
    metrics.write_bytes(b"\xff\xfe garbage\n{not json\n[1, 2]\n")
    run_case(env, ["plot", str(env.run)], 2, "no readable training record", env.run, capsys)
    metrics.write_bytes(good + b'{"step": 99, "lo')  # a torn last line only: plotted, said
    assert main(["plot", str(env.run)]) == 0
    assert "skipped 1 unreadable lines" in capsys.readouterr().err


# ---- failures that are not the user's -----------------------------------------------------
@pytest.mark.parametrize(
    ("raised", "code", "needle"),
    [
        (RuntimeError("an invariant broke"), 1, "internal error (RuntimeError: an invariant"),
        (OSError(28, "No space left on device", "/x/metrics.jsonl"), 74, "No space left"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_failures_that_are_not_the_users_mistake(
    env: Env,
    raised: BaseException,
    code: int,
    needle: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import metamap.cli as cli

    env.tmp.mkdir()
    monkeypatch.setenv("METAMAP_CRASH_DIR", str(env.tmp))
    monkeypatch.delenv("METAMAP_DEBUG", raising=False)

    def boom(args: argparse.Namespace) -> None:
        raise raised

    monkeypatch.setattr(cli, "_run", boom)
    err = run_case(env, ["eval", env.best], code, needle, env.run, capsys)
    traces = list(env.tmp.glob("metamap-crash-*.txt"))
    if code == 1:
        assert len(traces) == 1 and str(traces[0]) in err
        assert "Traceback" in traces[0].read_text() and "an invariant broke" in err
        monkeypatch.setenv("METAMAP_DEBUG", "1")
        with pytest.raises(RuntimeError, match="an invariant broke"):
            main(["eval", env.best])
        with pytest.raises(RuntimeError):
            main(["--debug", "eval", env.best])
    else:
        assert not traces


@pytest.mark.parametrize("command", ["train", "extract"])
def test_loose_images_beside_class_folders_are_refused_alike(
    env: Env, command: str, class_folder: Callable, capsys: pytest.CaptureFixture[str]
) -> None:
    data = class_folder(env.tmp / "tree", [0, 1, 2, 3, 4, 5], 4, 2)
    shutil.copy(data / "class00" / "0.png", data / "stray.png")
    argv = {
        "train": [
            "train",
            SINUSOID,
            "--out",
            str(env.tmp / "r"),
            *[f"-o{o}" for o in ("task.family=episodes", "model.name=conv4")],
            *[f"-o{o}" for o in ("data.name=folder", "data.protocol=folder", "task.ways=2")],
            f"-odata.root={data}",
            f"-odata.cache_dir={env.tmp / 'cache'}",
        ],
        "extract": ["extract", str(env.proto), str(data), "--out", str(env.tmp / "f.npz")],
    }[command]
    run_case(
        env,
        argv,
        2,
        "mixes class folders with image files directly in it (stray.png)",
        env.tmp,
        capsys,
    )


def test_other_files_beside_class_folders_are_ignored_alike(
    class_folder: Callable, tmp_path: Path
) -> None:
    from metamap.data import image_folder
    from metamap.features import InputSpec, load_image_files

    data = class_folder(tmp_path / "tree", [0, 1, 2], 3, 4)
    (data / "README.txt").write_text("my classes\n")
    (data / "splits.csv").write_text("class,split\n")
    trained = image_folder(data, 28, "L", tmp_path / "cache")
    extracted = load_image_files(data, InputSpec(1, 28))
    assert list(trained.class_names) == extracted.class_names == ["class00", "class01", "class02"]
    assert len(trained) == len(extracted.files) == 9
