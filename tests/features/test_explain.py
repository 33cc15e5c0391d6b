"""Interpretability: adaptation profiles, per-task scores, projections, `metamap explain`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metamap.cli import main
from metamap.features import FeatureExtractor
from metamap.features.explain import adaptation_profile, per_task_scores, project_episode
from metamap.learners import ANIL, MAML
from metamap.models import MLP
from metamap.tasks import SinusoidTasks
from metamap.train import evaluate


@pytest.fixture(scope="module")
def tasks():  # type: ignore[no-untyped-def]
    return SinusoidTasks(5, 10).fixed_tasks(12, seed=3)


def test_profile_agrees_with_evaluate_and_measures_the_adaptation(tasks) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    maml = MAML(MLP(1, 1, [20, 20]), "mse", inner_steps=1, inner_lr=0.01)
    prof = adaptation_profile(maml, tasks, [0, 1, 3])
    ref = evaluate(maml, tasks, [0, 1, 3])
    for i, k in enumerate([0, 1, 3]):
        assert prof.metric[i].mean == pytest.approx(ref[k].mean, rel=1e-6)
        assert prof.loss[i].mean == pytest.approx(ref[k].mean, rel=1e-6)  # MSE: loss = metric
    assert all(v[0] == 0.0 for v in prof.delta_norms.values())  # no step, no change
    assert all(v[1] > 0 and v[2] > v[1] for v in prof.delta_norms.values())
    losses, metrics = per_task_scores(maml, tasks)
    assert losses.shape == (12,) and metrics.mean() == pytest.approx(ref[1].mean, rel=1e-6)


def test_anil_moves_only_its_head(tasks) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    anil = ANIL(MLP(1, 1, [20, 20]), "mse", inner_steps=1, inner_lr=0.01)
    prof = adaptation_profile(anil, tasks, [0, 2])
    moved = {k for k, v in prof.delta_norms.items() if v[-1] > 0}
    assert moved and all(k.startswith("head") for k in moved), moved


def test_projection_keeps_prototypes_at_the_support_means(
    protonet_ckpt: Path, image_root: Path
) -> None:
    from metamap.data import ImageClassDataset
    from metamap.features import load_image_files
    from metamap.tasks import EpisodeSampler

    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    loaded = load_image_files(image_root, ext.spec)
    data = ImageClassDataset(loaded.images, loaded.labels, loaded.class_names)  # type: ignore[arg-type]
    task = EpisodeSampler(data, 5, 3, 3).fixed_tasks(1, 0)[0]
    proj = project_episode(ext, task)
    assert proj.support.shape == (15, 2) and proj.query.shape == (15, 2)
    for c in range(5):
        np.testing.assert_allclose(
            proj.prototypes[c], proj.support[proj.support_y == c].mean(0), atol=1e-9
        )
    assert (
        0 < proj.explained[0] + proj.explained[1] <= 1 + 1e-9
        and proj.explained[0] >= proj.explained[1]
    )


@pytest.mark.parametrize("ckpt", ["protonet_ckpt", "maml_ckpt"])
def test_explain_command_writes_plots(
    ckpt: str, request: pytest.FixtureRequest, image_root: Path, tmp_path: Path
) -> None:
    path = request.getfixturevalue(ckpt)
    argv = [
        "explain",
        str(path),
        "--out",
        str(tmp_path),
        "--data",
        str(image_root),
        "--tasks",
        "6",
        "--steps",
        "3",
    ]
    assert main(argv) == 0
    pngs = {p.name for p in tmp_path.glob("*.png")}
    want = {"task_scores.png", "embedding.png"} | (
        {"adaptation.png"} if ckpt == "maml_ckpt" else set()
    )
    assert pngs == want
    for p in pngs:
        assert (tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "explain.json").read_text())
    assert len(report["per_task"]["accuracy"]) == 6
    if ckpt == "maml_ckpt":
        assert report["adaptation"]["steps"] == [0, 1, 2, 3]
        gain = report["adaptation_gains"]  # after 3 steps against 0, task by task
        assert gain["steps"] == 3 and gain["tasks"] == 6
        assert gain["improved"] + gain["worse"] <= 6
        before, after = (
            report["adaptation"]["accuracy"][0][0],
            report["adaptation"]["accuracy"][3][0],
        )
        assert gain["gain"] == pytest.approx(after - before, abs=1e-6)
    else:
        assert "adaptation_gains" not in report  # one mapping: nothing to compare


def test_explain_regression_checkpoint_and_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from metamap.train import Trainer, load_config

    t = Trainer(
        load_config(None, ["train.steps=2", "train.progress=false", "train.val_tasks=2"]),
        tmp_path / "sin",
    )
    t.fit()
    assert (
        main(
            [
                "explain",
                str(t.last_path),
                "--out",
                str(tmp_path / "x"),
                "--tasks",
                "5",
                "--steps",
                "2",
            ]
        )
        == 0
    )
    assert {p.name for p in (tmp_path / "x").glob("*.png")} == {"task_scores.png", "adaptation.png"}
    assert (
        main(["explain", str(t.last_path), "--out", str(tmp_path / "y"), "--data", str(tmp_path)])
        == 2
    )
    assert "regression" in capsys.readouterr().err


def test_explain_a_normalised_checkpoint_normalises_its_episodes(
    inverted_ckpt: Path, image_root: Path, tmp_path: Path
) -> None:
    """A run with data.mean/std trains on normalised episodes: explain's own episodes (the run's
    test split) were refused by the extractor as "normalised", and --data episodes were scored
    un-normalised. Both now score what evaluation scores."""
    from metamap.data import ImageClassDataset
    from metamap.features import load_image_files
    from metamap.tasks import EpisodeSampler
    from metamap.train import learner_from_checkpoint

    argv = ["explain", str(inverted_ckpt), "--tasks", "3", "-o", "eval.shots=[1]"]
    argv += ["-o", "eval.queries=2"]
    assert main([*argv, "--out", str(tmp_path / "own")]) == 0
    assert (tmp_path / "own" / "embedding.png").exists()
    assert main([*argv, "--out", str(tmp_path / "data"), "--data", str(image_root)]) == 0
    report = json.loads((tmp_path / "data" / "explain.json").read_text())
    cfg, learner, _ = learner_from_checkpoint(inverted_ckpt)
    loaded = load_image_files(image_root, FeatureExtractor.from_checkpoint(inverted_ckpt).spec)
    data = ImageClassDataset(loaded.images, loaded.labels, loaded.class_names)  # type: ignore[arg-type]
    ways = cfg.eval.ways or cfg.task.episodes().ways  # 1 shot, 2 queries, as asked above
    sampler = EpisodeSampler(data, ways, 1, 2, normalize=((0.4,), (0.2,)))
    losses, _ = per_task_scores(learner, sampler.fixed_tasks(3, cfg.eval.seed, shots=1))
    np.testing.assert_allclose(report["per_task"]["loss"], losses, rtol=1e-5)


def test_adaptation_gains_count_the_tasks_adapting_helped() -> None:
    from metamap.features.explain import adaptation_gains

    def step(values: list[float]) -> dict[str, object]:
        return {"mean": float(np.nanmean(values)), "ci95": 0.0, "n": len(values), "values": values}

    scores = {
        "a": {"0": step([1.0, 2.0, 3.0, 4.0]), "1": step([0.0]), "5": step([2.0, 1.0, 3.0, nan])},
        "closed form": {"0": step([1.0, 2.0])},  # nothing to compare
        "no zero": {"1": step([1.0]), "2": step([2.0])},
    }
    scores["a"]["1"] = step([9.0, 9.0, 9.0, 9.0])  # not the last step: ignored
    higher = adaptation_gains(scores, higher_is_better=True)
    assert list(higher) == ["a"]
    assert higher["a"] == {"steps": 5, "tasks": 4, "improved": 1, "worse": 1, "gain": 0.0}
    lower = adaptation_gains(scores, higher_is_better=False)["a"]
    assert (lower["improved"], lower["worse"]) == (1, 1)
    scores["a"]["5"] = step([0.5, 1.0, 2.0, 3.0])
    assert adaptation_gains(scores, higher_is_better=False)["a"]["gain"] == pytest.approx(0.875)
    assert adaptation_gains(scores, higher_is_better=True)["a"]["improved"] == 0


nan = float("nan")
