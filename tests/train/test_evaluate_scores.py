"""evaluate_run reports each task's score beside the mean and interval, so that a reader of a
result file can recompute them; with ``progress`` it shows a bar on stderr, without it nothing."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from metamap.learners import MAML
from metamap.models import MLP
from metamap.tasks import SinusoidTasks
from metamap.train import (
    Summary,
    evaluate,
    evaluate_meta_dataset,
    evaluate_run,
    load_config,
    summarize,
)
from metamap.train.build import build_run_learner


def recomputed(values: list[float]) -> tuple[float, float]:
    """Mean and 95% CI half-width (normal approximation, sample sd) of ``values``."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, 1.96 * sd / math.sqrt(n)


def test_each_task_score_is_reported_and_gives_back_the_mean_and_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = load_config(
        None, ["eval.tasks=30", "eval.shots=[5,10]", "eval.steps=[1,3]", "eval.queries=10"]
    )
    learner = build_run_learner(cfg)
    res = evaluate_run(cfg, learner)
    assert capsys.readouterr().err == ""  # no progress bar unless asked
    assert set(res["scores"]) == {"5-shot", "10-shot"}
    for by_step in res["scores"].values():
        assert set(by_step) == {"1", "3"}
        for s in by_step.values():
            assert set(s) == {"mean", "ci95", "n", "nonfinite", "values"}
            assert s["n"] == 30 and len(s["values"]) == 30
            assert all(isinstance(v, float) for v in s["values"])
            mean, ci95 = recomputed(s["values"])
            assert mean == pytest.approx(s["mean"], rel=1e-5)
            assert ci95 == pytest.approx(s["ci95"], rel=1e-4)
    # the values are per task, in task order: the same tasks give the same list
    assert evaluate_run(cfg, learner, progress=True)["scores"] == res["scores"]
    assert "evaluating" in capsys.readouterr().err  # the bar, on stderr


def test_summary_to_dict_rounds_values_to_six_significant_digits() -> None:
    s = summarize([1 / 3, 2 / 3, 1.0])
    assert isinstance(s, Summary)
    d = s.to_dict()
    assert d["values"] == [0.333333, 0.666667, 1.0]
    assert (d["mean"], d["ci95"], d["n"], d["nonfinite"]) == (s.mean, s.ci95, 3, 0)
    bad = summarize([1.0, math.nan]).to_dict()
    assert bad["nonfinite"] == 1 and math.isnan(bad["values"][1])


def test_evaluate_refuses_step_counts_that_are_not_a_list_of_whole_numbers() -> None:
    # steps=5 used to fail with "'int' object is not iterable"; steps=[2.5] deep in the learner
    learner = MAML(MLP(1, 1, (8,)))
    tasks = SinusoidTasks(shots=5, queries=5).fixed_tasks(2, seed=0)
    with pytest.raises(TypeError, match=r"steps must be a list of step counts, e\.g\. steps=\[5\]"):
        evaluate(learner, tasks, steps=5)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"step counts must be non-negative integers, got \[2\.5\]"
    ):
        evaluate(learner, tasks, steps=[2.5])  # type: ignore[list-item]
    assert set(evaluate(learner, tasks, steps=range(2))) == {0, 1}
    # an empty list of step counts used to return {}: a silent empty result
    with pytest.raises(ValueError, match=r"steps is empty: give at least one step count"):
        evaluate(learner, tasks, steps=[])
    with pytest.raises(ValueError, match=r"no tasks to evaluate on"):
        evaluate(learner, [], steps=[1])


def test_meta_dataset_episodes_report_each_score_and_its_domain(
    tmp_path: Path, block_classes: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    roots = []
    for i in (0, 1):  # two domains of 20 classes (4 test classes each) of 5 images
        (tmp_path / f"d{i}").mkdir()
        roots.append(block_classes(tmp_path / f"d{i}", [5] * 20, cols=5, step=(6, 5), seed=i))
    cfg = load_config(
        None,
        [
            "task.family=episodes",
            "task.sampler=metadataset",
            "task.min_ways=3",
            "task.max_ways=4",
            "task.ways=3",
            "task.shots=1",
            "task.queries=2",
            "data.name=folder",
            "data.protocol=folder",
            f"data.root={roots[0]}",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"extra_domains=[{{name: folder, protocol: folder, root: '{roots[1]}', "
            f"cache_dir: '{tmp_path / 'cache'}'}}]",
            "model.name=conv4",
            "model.width=4",
            "learner.name=protonet",
            "eval.queries=2",
            "eval.metadataset_tasks=9",
        ],
    )
    learner = build_run_learner(cfg)
    md = evaluate_meta_dataset(cfg, learner, progress=True)
    assert "evaluating" in capsys.readouterr().err
    assert md["tasks"] == 9 and len(md["values"]) == 9 and len(md["domains"]) == 9
    assert sum(md["values"]) / 9 == pytest.approx(md["mean"], rel=1e-5)
    for d, domain in enumerate(md["by_domain"]):
        mine = [v for v, e in zip(md["values"], md["domains"], strict=True) if e == d]
        assert len(mine) == domain["tasks"]
        if mine:
            assert sum(mine) / len(mine) == pytest.approx(domain["mean"], rel=1e-5)
