"""The adaptation plot of a trained run, by the problem that trained it (``metamap plot``).

Each kind of task draws its own picture of adaptation: a regression family's task with the
model's predictions after each step count, one MovieLens test user's predicted against true
ratings before and after adapting, a meta-RL policy's mean return against adaptation steps on
test goals (and, in 2D navigation, its paths before and after adapting). A problem registers
its drawing under its registered name (:func:`register_run_plot`); :func:`run_plots` draws what
the run's problem registered (nothing for problems without one: the learning curve is drawn for
every run by the caller).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from metamap.core import Learner
from metamap.core.problem import Problem
from metamap.errors import MetamapError
from metamap.learners import MetaLearner
from metamap.rl.protocol import EnvTaskSection, PolicyLearner
from metamap.train import ColdStartProblem, MetaRLProblem, RunConfig
from metamap.train.build import build_regression
from metamap.viz.plots import adaptation_plot
from metamap.viz.recsys import user_adaptation_plot
from metamap.viz.rl import navigation_plot, return_curve_plot

__all__ = ["RunPlot", "register_run_plot", "run_plots"]

RunPlot = Callable[[RunConfig, Learner, Problem, Path, Sequence[int] | None], list[Path]]
"""``(config, learner, problem, run folder, step counts) -> the files written``; the step counts
are ``None`` where the user gave none (``metamap plot`` without ``--steps``): the problem's own."""

_PLOTS: dict[str, RunPlot] = {}


def register_run_plot(problem: str) -> Callable[[RunPlot], RunPlot]:
    """Register the adaptation plot of runs of the problem registered as ``problem``."""

    def add(fn: RunPlot) -> RunPlot:
        _PLOTS[problem] = fn
        return fn

    return add


def run_plots(
    cfg: RunConfig,
    learner: Learner,
    problem: Problem,
    run_dir: Path,
    steps: Sequence[int] | None = None,
) -> list[Path]:
    """The adaptation plots of the run in ``run_dir`` (``[]`` where its problem has none), after
    each count of ``steps`` inner steps (``None``: the problem's own counts)."""
    draw = _PLOTS.get(cfg.task.problem())
    return [] if draw is None else draw(cfg, learner, problem, run_dir, steps)


@register_run_plot("regression")
def _regression(
    cfg: RunConfig, learner: Learner, problem: Problem, run_dir: Path, steps: Sequence[int] | None
) -> list[Path]:
    if not learner.inner_steps:  # a mapping without steps has no curve to show
        return []
    family = build_regression(cfg, queries=cfg.eval.queries)
    task = family.fixed_tasks(1, cfg.eval.seed, shots=cfg.eval.shots[0])[0]
    title = f"{cfg.learner.name.upper()} on a {cfg.task.family} task"
    model = typing.cast(MetaLearner, learner)
    counts = (0, 1, 10) if steps is None else steps
    return [adaptation_plot(model, family, task, run_dir / "adaptation.png", counts, title)]


@register_run_plot("cold_start")
def _cold_start(
    cfg: RunConfig, learner: Learner, problem: Problem, run_dir: Path, steps: Sequence[int] | None
) -> list[Path]:
    """One test user's predicted against true stars after each count of ``steps`` (default: 0
    and the trained count); a learner without inner steps is drawn once, as adapted."""
    k = learner.inner_steps
    if steps is not None and not k:
        raise MetamapError(
            f"--steps: learner {cfg.learner.name!r} adapts in closed form, without inner steps; "
            "its plot has one adapted prediction (leave out --steps)"
        )
    users = typing.cast(ColdStartProblem, problem)
    tasks, ids = users.fixed_tasks("test", None)
    title = f"{cfg.learner.name} on MovieLens user {int(users.data.user_ids[ids[0]])}"
    out = run_dir / "adaptation.png"
    model = typing.cast(MetaLearner, learner)
    counts = sorted({0, k} if steps is None else set(steps))
    return [user_adaptation_plot(model, tasks[0], out, counts, title=title)]


@register_run_plot("meta_rl")
def _meta_rl(
    cfg: RunConfig, learner: Learner, problem: Problem, run_dir: Path, steps: Sequence[int] | None
) -> list[Path]:
    """Mean return on the test goals against adaptation steps: ``metamap eval``'s figures, at
    ``steps`` in place of ``eval.steps`` where given. For tasks in the plane (2D navigation),
    also one episode's path in each of the first four test goals before adapting and after
    each step, as the MAML paper's Figure 5 draws them (``trajectories.png``)."""
    policy = typing.cast(PolicyLearner, learner)
    envs = typing.cast(MetaRLProblem, problem)
    scores = envs.evaluate(policy, steps)
    by_step = next(iter(scores["scores"].values()))
    result = {"methods": {cfg.learner.name: {"scores": by_step}}}
    written = [return_curve_plot(result, run_dir / "adaptation.png")]
    if typing.cast(EnvTaskSection, cfg.task).planar:
        goals, paths = envs.example_paths(policy, max(int(k) for k in by_step))
        written.append(navigation_plot(goals, paths, run_dir / "trajectories.png"))
    return written
