"""The recommendation plots (:mod:`metamap.viz.recsys`): one user's predicted against true
ratings, labelled by what each prediction is."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import metamap.viz.recsys as viz
from metamap.cli import main
from metamap.core import Task
from metamap.learners import MAML, Ridge
from metamap.learners.base import MetaLearner
from metamap.models import MLP
from metamap.train import Trainer, load_config
from metamap.viz.plots import _save

CONFIGS = Path(__file__).parents[2] / "configs"


def _saved_figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the recommendation plots save from now on, in order."""
    seen: list[Figure] = []
    save = _save

    def keep(fig: Figure, path: str | Path) -> Path:
        seen.append(fig)
        return save(fig, path)

    monkeypatch.setattr(viz, "_save", keep)
    return seen


def _labels(
    learner: MetaLearner, steps: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The legend of ``user_adaptation_plot`` for a user of 6 support and 5 query ratings."""
    seen = _saved_figures(monkeypatch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(11, 3, generator=g)
    y = 1 + 4 * torch.rand(11, 1, generator=g)
    task = Task(x[:6], y[:6], x[6:], y[6:])
    out = viz.user_adaptation_plot(learner, task, tmp_path / "user.png", steps)
    assert out.is_file() and len(seen) == 1
    legend = seen[0].axes[0].get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def test_a_learner_with_inner_steps_is_drawn_before_and_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    learner = MAML(MLP(3, 1, (8,)), inner_steps=1, inner_lr=0.1)
    labels = _labels(learner, [0, 1, 5], tmp_path, monkeypatch)
    assert [s.split(" (MAE")[0] for s in labels] == [
        "before adaptation",
        "after 1 step",
        "after 5 steps",
    ]


def test_a_closed_form_learner_is_drawn_once_as_adapted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ridge has no inner steps: its one prediction is already fitted to the support ratings,
    # not the "before adaptation" one (as the cold-start run's plot, steps {0}, labelled it)
    learner = Ridge(MLP(3, 1, (8,)))
    for steps in ([0], [0, 1]):
        labels = _labels(learner, steps, tmp_path, monkeypatch)
        assert len(labels) == 1 and labels[0].startswith("adapted to the support ratings")


def _plot_labels(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> list[str]:
    """The legend of the user plot ``metamap plot`` draws for ``argv``."""
    seen = _saved_figures(monkeypatch)
    assert main(["plot", *argv]) == 0, capsys.readouterr().err
    legend = seen[0].axes[0].get_legend()
    assert len(seen) == 1 and legend is not None
    return [t.get_text().split(" (MAE")[0] for t in legend.get_texts()]


def test_metamap_plot_steps_reach_a_cold_start_runs_user_plot(
    movielens_ckpt: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = str(movielens_ckpt.parents[1])
    trained = _plot_labels([run], monkeypatch, capsys)  # 0 and the trained count
    assert trained == ["before adaptation", "after 1 step"]
    chosen = _plot_labels([run, "--steps", "2,0,7"], monkeypatch, capsys)
    assert chosen == ["before adaptation", "after 2 steps", "after 7 steps"]


def test_metamap_plot_steps_are_refused_for_a_closed_form_learner(
    movielens_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    over = [
        f"task.root={movielens_root}",
        f"task.cache_dir={movielens_root.parent / 'cache'}",
        "train.steps=2",
        "train.meta_batch=4",
        "train.val_every=2",
        "train.progress=false",
    ]
    Trainer(load_config(CONFIGS / "movielens" / "melu-ridge.yaml", over), tmp_path).fit()
    assert main(["plot", str(tmp_path), "--steps", "0,3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "adapts in closed form" in err, err
    assert main(["plot", str(tmp_path)]) == 0  # drawn once, as adapted
