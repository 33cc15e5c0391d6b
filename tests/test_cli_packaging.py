"""What a user of the installed package sees: ``metamap --version``, the shipped configs
(``metamap configs``, training one by name, and the wheel carrying them), and ``metamap plot``
drawing the metric the run validates on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

import metamap
import metamap.viz.plots as plots
from metamap.cli import main
from metamap.shipped_configs import shipped_config, shipped_configs, shipped_configs_dir
from metamap.viz.plots import learning_curve_figure

ROOT = Path(__file__).resolve().parents[1]
TINY = ["-o", "train.progress=false", "-o", "train.val_tasks=4", "-o", "train.ckpt_every=10"]


# ---- --version ----------------------------------------------------------------------------


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"metamap {version('metamap')}"
    assert version("metamap") == metamap.__version__  # pyproject reads it from the package


# ---- the shipped configs ------------------------------------------------------------------


def test_the_checkout_configs_folder_is_the_shipped_one() -> None:
    """``configs/`` at the root is a link to the package's folder: one copy of each file."""
    assert (ROOT / "configs").is_symlink()
    assert (ROOT / "configs").resolve() == shipped_configs_dir().resolve()
    names = {c.name for c in shipped_configs()}
    assert {"sinusoid/maml", "omniglot/protonet-5w1s", "miniimagenet/maml-5w1s"} <= names
    on_disk = {p.relative_to(ROOT / "configs").with_suffix("").as_posix() for p in
               (ROOT / "configs").rglob("*.yaml")}  # fmt: skip
    assert names == on_disk


def test_configs_lists_every_shipped_config_with_a_line_on_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["configs"]) == 0
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert len(lines) == len(shipped_configs())
    by_name = dict(line.split(maxsplit=1) for line in lines)
    assert (
        by_name["omniglot/protonet-5w1s"] == "Prototypical Networks on Omniglot (Snell et al. 2017)"
    )
    assert by_name["sinusoid/maml"].startswith("Sinusoid regression")
    assert all(len(d) <= 72 for d in by_name.values())
    assert "metamap train NAME" in out.err


def test_configs_prints_one_config(capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / "configs" / "omniglot" / "protonet-5w1s.yaml").read_text(encoding="utf-8")
    for name in ("omniglot/protonet-5w1s", "omniglot/protonet-5w1s.yaml"):
        assert main(["configs", name]) == 0
        assert capsys.readouterr().out == text
    assert main(["configs", "sinusoid/maml", "--path"]) == 0
    assert Path(capsys.readouterr().out.strip()) == shipped_config("sinusoid/maml").path


def test_an_unknown_config_name_is_refused_with_close_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["configs", "protonet-5w1s"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no shipped config is called 'protonet-5w1s'" in err
    assert "did you mean miniimagenet/protonet-5w1s or omniglot/protonet-5w1s" in err


def test_train_takes_a_shipped_config_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ here: the name is the shipped config's
    out = tmp_path / "run"
    argv = ["train", "sinusoid/maml", "--out", str(out), "-o", "train.steps=10", *TINY]
    assert main([*argv, "-o", "train.val_every=5", "-o", "train.meta_batch=2"]) == 0
    err = capsys.readouterr().err
    assert f"using the shipped config sinusoid/maml ({shipped_config('sinusoid/maml').path})" in err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 10 and "val_mse" in records[-1]


def test_train_prefers_an_existing_file_to_a_shipped_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sinusoid").mkdir()
    (tmp_path / "sinusoid" / "maml").write_text("train: {steps: nope}\n")  # a file of that name
    assert main(["train", "sinusoid/maml", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "shipped" not in err and "'train.steps'" in err


def test_train_names_a_missing_file_and_the_shipped_configs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "sinusoid/mam1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "config file 'sinusoid/mam1' does not exist" in err
    assert "did you mean sinusoid/maml" in err and not (tmp_path / "r").exists()


def test_the_wheel_carries_the_configs_and_the_license(tmp_path: Path) -> None:
    """``pip wheel`` of a copy of the sources (the checkout is left alone): every shipped YAML
    is in it under metamap/configs, with the LICENSE and the version. About 2 s. Built with this
    environment's setuptools (no download), so skipped where there is none: 77 reads pyproject's
    SPDX ``license`` and puts the file under ``.dist-info/licenses``."""
    pytest.importorskip("setuptools", minversion="77", reason="building needs setuptools>=77")
    src = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip, "-q", "-w", str(tmp_path / "dist")], cwd=tmp_path, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("metamap-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"metamap/configs/{c.name}.yaml" for c in shipped_configs()}
    assert shipped <= names
    assert f"metamap-{metamap.__version__}.dist-info/licenses/LICENSE" in names
    assert "metamap/defaults/sinusoid_maml_demo.yaml" in names


# ---- metamap plot: the run's own validation metric ------------------------------------------


def _labels(fig: Figure) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes]


def test_learning_curve_of_a_regression_run_is_mse() -> None:
    records = [{"step": 5, "loss": 2.0}, {"step": 10, "loss": 1.0, "val_mse": 1.5}]
    fig = learning_curve_figure(records, "run")
    (ax,) = fig.axes
    assert ax.get_ylabel() == "MSE" and ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.get_lines()] == [
        "train meta-loss (query MSE)",
        "validation MSE (fixed tasks)",
    ]
    assert list(ax.get_lines()[1].get_ydata()) == [1.5]


def test_learning_curve_of_a_classification_run_is_accuracy() -> None:
    records = [
        {"step": 5, "loss": 1.2},
        {"step": 10, "loss": 0.8, "val_accuracy": 0.6},
        {"step": 20, "loss": 0.5, "val_accuracy": 0.75},
    ]
    for metric in (None, "accuracy"):  # from the records, or named
        fig = learning_curve_figure(records, "run", metric)
        loss_ax, acc_ax = fig.axes
        assert _labels(fig) == ["train meta-loss", "validation accuracy"]
        assert "MSE" not in " ".join(_labels(fig))
        assert loss_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
        (val,) = acc_ax.get_lines()
        assert list(val.get_xdata()) == [10, 20] and list(val.get_ydata()) == [0.6, 0.75]
        assert acc_ax.yaxis.get_major_formatter()(0.75, 0) in ("75%", "75.0%")


def test_learning_curve_keeps_a_loss_that_is_not_positive() -> None:
    """Meta-RL logs minus the mean return, negative where rewards are positive: a log axis
    would drop those points without a word, so the loss axis turns linear."""
    records = [
        {"step": 1, "loss": 3.0},
        {"step": 2, "loss": -1.5, "val_return": 1.0},
        {"step": 3, "loss": -4.0, "val_return": 2.5},
    ]
    loss_ax, return_ax = learning_curve_figure(records, "run").axes
    assert loss_ax.get_yscale() == "linear"
    assert list(loss_ax.get_lines()[0].get_ydata()) == [3.0, -1.5, -4.0]
    assert return_ax.get_ylabel() == "validation return"
    positive = [{**r, "loss": abs(r["loss"])} for r in records]
    assert learning_curve_figure(positive, "run").axes[0].get_yscale() == "log"


def test_learning_curve_steps_are_whole_numbers() -> None:
    fig = learning_curve_figure([{"step": s, "loss": 1.0 / s} for s in (1, 2, 3)], "run")
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The learning-curve figures ``metamap plot`` draws, kept for their labels."""
    drawn: list[Figure] = []
    real = plots.learning_curve_figure

    def keep(
        records: Sequence[dict[str, Any]], title: str = "", metric: str | None = None
    ) -> Figure:
        drawn.append(real(records, title, metric))
        return drawn[-1]

    monkeypatch.setattr(plots, "learning_curve_figure", keep)
    return drawn


def test_plot_of_a_classification_run_draws_validation_accuracy(
    tmp_path: Path,
    class_folder: Callable[[Path, list[int], int, int], Path],
    figures: list[Figure],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A 2-way ProtoNet from the shipped Omniglot config by name, on a generated image folder."""
    root = class_folder(tmp_path / "images", list(range(10)), 6, 0)
    data = ["data.name=folder", "data.protocol=folder", f"data.root={root}",
            f"data.cache_dir={tmp_path / 'cache'}", "data.split_fractions=[0.6, 0.2, 0.2]",
            "data.splits_root=null", "data.download=false", "task.ways=2", "task.shots=1",
            "task.queries=2", "eval.ways=2", "model.width=4", "train.steps=10",
            "train.val_every=5", "train.log_every=5", "train.meta_batch=1"]  # fmt: skip
    argv = ["train", "omniglot/protonet-5w1s", "--out", str(tmp_path / "run"), *TINY]
    assert main(argv + [a for o in data for a in ("-o", o)]) == 0
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_accuracy"] for r in records if "val_accuracy" in r]  # what a run logs
    capsys.readouterr()
    assert main(["plot", str(tmp_path / "run")]) == 0
    (fig,) = figures
    assert _labels(fig) == ["train meta-loss", "validation accuracy"]
    assert len(fig.axes[1].get_lines()[0].get_ydata()) == 2  # steps 5 and 10
    assert (tmp_path / "run" / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "run" / "adaptation.png").exists()  # regression runs only


def test_plot_of_a_regression_run_still_draws_mse(
    tmp_path: Path, figures: list[Figure], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "sinusoid/maml", "--out", str(tmp_path), "-o", "train.steps=10", *TINY]
    assert main([*argv, "-o", "train.val_every=5", "-o", "train.meta_batch=2"]) == 0
    assert main(["plot", str(tmp_path)]) == 0
    (fig,) = figures
    assert _labels(fig) == ["MSE"]
    assert (tmp_path / "adaptation.png").is_file()
