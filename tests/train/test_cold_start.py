"""The ``cold_start`` problem (:mod:`metamap.train.cold_start`): MeLU meta-trained by the
unchanged trainer on a synthetic MovieLens-100K folder (tests/movielens_fake.py), resumed bit
for bit, evaluated at every support size, and scored by ``metamap eval``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from metamap.cli import main
from metamap.errors import ConfigError
from metamap.learners import GradientLearner
from metamap.models import MeLU
from metamap.recsys import evaluate_users
from metamap.tasks.users import ColdStartTask
from metamap.train import (
    PROBLEMS,
    ColdStartProblem,
    Trainer,
    build_problem,
    learner_from_checkpoint,
    load_checkpoint,
    load_config,
    read_metrics,
    save_checkpoint,
)
from metamap.train.cold_start import ITEM_DAMPING, support_label
from movielens_fake import write_fake_100k

CONFIG = Path(__file__).parents[2] / "configs" / "movielens" / "melu.yaml"
SHORT = [
    "train.steps=30",
    "train.val_every=10",
    "train.ckpt_every=10",
    "train.log_every=10",
    "train.meta_batch=8",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_100k(tmp_path_factory.mktemp("movielens") / "ml-100k")


def config(root: Path, *extra: str) -> Any:
    return load_config(
        CONFIG, [f"task.root={root}", f"task.cache_dir={root.parent / 'cache'}", *SHORT, *extra]
    )


@pytest.fixture(scope="module")
def trained(root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, float]:
    """The 30-step run, and its validation MAE before training."""
    trainer = Trainer(config(root), tmp_path_factory.mktemp("run") / "fresh")
    start = trainer.validate()
    trainer.fit()
    return trainer, start


def test_the_problem_is_registered_and_starts_from_the_baseline(root: Path) -> None:
    cfg = config(root)
    assert PROBLEMS["cold_start"] is ColdStartProblem
    problem = build_problem(cfg)
    assert isinstance(problem, ColdStartProblem)
    base = problem.baseline()
    # the baseline predictor, computed here from the training users' ratings
    data, split = problem.data, problem.split
    r = data.rating[split.train_rows].double()
    mu = float(r.mean())
    assert base.mean == pytest.approx(mu, abs=1e-6)
    items = data.item[split.train_rows]
    assert base.first_column.shape == (1683,)
    for pos in range(0, data.num_items, 7):
        mine = r[items == pos]
        want = float((mine - mu).sum() / (len(mine) + ITEM_DAMPING)) if len(mine) else 0.0
        assert float(base.first_column[data.item_ids[pos]]) == pytest.approx(want, abs=1e-5)
    unrated = torch.ones(1683, dtype=torch.bool)
    unrated[data.item_ids[items]] = False
    assert (base.first_column[unrated] == 0).all()  # no rating, no offset (id 0 included)
    # the trainer's network starts there (model.warm_start)
    learner = Trainer(cfg, root.parent / "unused").learner
    assert isinstance(learner, GradientLearner) and isinstance(learner.model, MeLU)
    assert learner.adapt_prefixes == tuple(cfg.learner.adapt) == ("decision.",)
    assert learner.model.item_bias is not None
    assert torch.equal(learner.model.item_bias.weight[:, 0], base.first_column)


def test_a_short_run_lowers_the_validation_mae(trained: tuple[Trainer, float]) -> None:
    trainer, start = trained
    records = read_metrics(trainer.metrics_path)
    val = [r["val_mae"] for r in records if "val_mae" in r]
    assert [r["step"] for r in records if "val_mae" in r] == [10, 20, 30]
    assert 0.3 < start < 1.5  # an MAE on a 1-5 scale, from the baseline start
    assert min(val) < start - 0.02, (start, val)
    assert trainer.validate() == pytest.approx(val[-1])  # deterministic validation
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)


def test_killed_and_resumed_it_ends_bit_identical(
    root: Path, trained: tuple[Trainer, float], tmp_path: Path
) -> None:
    fresh, _ = trained
    part = Trainer(config(root), tmp_path / "run")
    part.fit(stop_after=23)  # killed after step 23: the last checkpoint is step 20's
    assert load_checkpoint(part.last_path)["step"] == 20
    resumed = Trainer(config(root), tmp_path / "run")
    result = resumed.fit()
    assert result.step == 30
    a = load_checkpoint(fresh.last_path)["learner"]
    b = load_checkpoint(resumed.last_path)["learner"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(fresh.best_path)["step"] == load_checkpoint(resumed.best_path)["step"]


def test_evaluate_scores_every_support_size_per_user(
    root: Path, trained: tuple[Trainer, float]
) -> None:
    trainer, _ = trained
    cfg, learner, _ = learner_from_checkpoint(trainer.last_path)
    problem = build_problem(cfg)
    assert isinstance(problem, ColdStartProblem) and isinstance(cfg.task, ColdStartTask)
    results = problem.evaluate(learner)
    labels = ["support 5", "support 10", "support 20", "support all"]
    assert list(results["scores"]) == labels == [support_label(s) for s in cfg.task.supports]
    assert results["metric"] == "mae" and results["tasks"] == len(problem.roles["test"])
    assert "MovieLens-100K user-cold" in results["protocol"]
    users_at: dict[str, list[int]] = {}
    for support, label in zip(cfg.task.supports, labels, strict=True):
        by_step = results["scores"][label]
        assert list(by_step) == ["0", str(learner.inner_steps)]  # none, and the trained number
        assert learner.inner_steps > 0
        trained_steps = by_step[str(learner.inner_steps)]
        assert trained_steps["diverged"] == 0 and by_step["0"]["diverged"] == 0
        ranking = results["ranking"][label]
        assert set(ranking) == {"mae", "rmse", "ndcg@3", "ndcg@10", "users"}
        tasks, users = problem.fixed_tasks("test", support)
        ids = [int(problem.data.user_ids[u]) for u in users]
        assert ranking["users"] == ids and len(ids) > 0
        users_at[label] = ids
        # the per-user values are the learner's scores of each user's fixed task
        mine = evaluate_users(learner, tasks, scale=problem.data.scale)
        for metric in ("mae", "rmse", "ndcg@3", "ndcg@10"):
            got = ranking[metric]
            assert got["n"] == len(ids)
            assert got["values"] == pytest.approx([m[metric] for m in mine], rel=1e-5)
        assert trained_steps["values"] == pytest.approx(ranking["mae"]["values"])
        assert by_step["0"]["values"] != pytest.approx(trained_steps["values"])  # it adapts
        assert all(m["mae"] <= m["rmse"] + 1e-9 for m in mine)
    assert set(users_at["support 20"]) < set(users_at["support all"])  # too few: left out
    assert users_at["support 5"] == users_at["support all"]
    other = problem.evaluate(learner, steps=[1, 2])
    assert list(other["scores"]["support 5"]) == ["1", "2"]


def test_the_data_location_does_not_change_the_fingerprint(root: Path, tmp_path: Path) -> None:
    cfg = config(root)
    moved = config(tmp_path / "elsewhere", "task.download=true")
    plain = load_config(CONFIG, SHORT)
    assert cfg.fingerprint() == moved.fingerprint() == plain.fingerprint()
    assert isinstance(moved.task, ColdStartTask) and moved.task.root != cfg.task.root
    for change in ("task.fold=1", "task.split_seed=1", "task.queries=5", "task.query=latest"):
        assert config(root, change).fingerprint() != cfg.fingerprint(), change


def test_metamap_eval_scores_the_checkpoint(
    trained: tuple[Trainer, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer, _ = trained
    out = tmp_path / "eval.json"
    assert main(["eval", str(trainer.last_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MAE on" in printed and "support all" in printed
    results = json.loads(out.read_text())
    assert results["step"] == 30 and results["learner"] == trainer.cfg.learner.name
    assert set(results["scores"]) == {"support 5", "support 10", "support 20", "support all"}
    # and the same numbers as the API
    cfg, learner, _ = learner_from_checkpoint(trainer.last_path)
    again = build_problem(cfg).evaluate(learner)
    assert results["scores"] == json.loads(json.dumps(again["scores"]))
    assert "evaluating" not in capsys.readouterr().err  # train.progress=false: no bar
    shown = tmp_path / "shown.json"
    argv = ["eval", str(trainer.last_path), "-o", "train.progress=true", "--out", str(shown)]
    assert main(argv) == 0
    assert "evaluating" in capsys.readouterr().err  # a bar of the passes over the test users
    assert json.loads(shown.read_text())["scores"] == results["scores"]


def test_metamap_explain_draws_each_user_before_and_after_adapting(
    trained: tuple[Trainer, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Users are not tensors of one shape: ``explain`` shows what the problem's evaluation
    measures, per support size and per user, at 0 to ``--steps`` steps."""
    trainer, _ = trained
    out = tmp_path / "x"
    assert main(["explain", str(trainer.last_path), "--out", str(out), "--steps", "2"]) == 0
    report = json.loads((out / "explain.json").read_text())
    assert report["metric"] == "mae" and report["higher_is_better"] is False
    cfg, learner, _ = learner_from_checkpoint(trainer.last_path)
    again = build_problem(cfg).evaluate(learner, [0, 1, 2])
    assert report["evaluation"]["scores"] == json.loads(json.dumps(again["scores"]))
    for label, gain in report["adaptation_gains"].items():
        by_step = again["scores"][label]
        before, after = by_step["0"]["values"], by_step["2"]["values"]
        assert gain["improved"] == sum(a < b for a, b in zip(after, before, strict=True))  # MAE
        change = by_step["0"]["mean"] - by_step["2"]["mean"]  # from values to 6 digits:
        assert gain["gain"] == pytest.approx(change, rel=1e-4, abs=1e-6)
    assert {p.name for p in out.glob("*.png")} == {"adaptation.png", "task_scores.png"}
    printed = capsys.readouterr().out
    assert "support all: MAE" in printed and "after 2;" in printed
    # every test user is scored: --tasks does not apply, and says so
    assert (
        main(["explain", str(trainer.last_path), "--out", str(tmp_path / "y"), "--tasks", "5"]) == 0
    )
    users = report["evaluation"]["tasks"]
    assert f"--tasks 5 does not apply here: this evaluation scores all its {users}" in (
        capsys.readouterr().err
    )


def test_metamap_eval_counts_and_names_adaptations_that_diverged(
    trained: tuple[Trainer, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Meta-SGD step sizes large enough to overflow the inner step: every test user's
    adaptation diverges; eval still reports (no exception from a NaN prediction) and says how
    many diverged at each support size, in its output and its JSON."""
    trainer, _ = trained
    state = load_checkpoint(trainer.last_path)
    lrs = [k for k in state["learner"] if "inner_lr" in k]
    assert lrs, list(state["learner"])
    for k in lrs:
        state["learner"][k] = torch.full_like(state["learner"][k], 1e30)
    broken = save_checkpoint(tmp_path / "diverges.pt", state)
    out = tmp_path / "eval.json"
    assert main(["eval", str(broken), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    results = json.loads(out.read_text())
    for label, by_step in results["scores"].items():
        adapted = by_step[str(trainer.cfg.learner.inner_steps)]
        assert adapted["diverged"] == adapted["n"] > 0, label
        assert by_step["0"]["diverged"] == 0  # unadapted, nothing diverges
        assert f"after 1 step: {adapted['n']} of {adapted['n']} adaptations diverged" in printed
    assert "an infinite prediction as the rating scale's bound" in printed
    # validation (which training runs) gets a non-finite MAE, which is never "best", not an error
    cfg, learner, _ = learner_from_checkpoint(broken)
    assert not math.isfinite(build_problem(cfg).validate(learner))


def test_a_support_size_no_test_user_has_is_refused_before_training(
    root: Path, trained: tuple[Trainer, float]
) -> None:
    trainer, _ = trained
    build_problem(config(root)).check_evaluation(trainer.learner)  # the shipped sizes: fine
    problem = build_problem(config(root, "task.supports=[5, 90]"))
    with pytest.raises(ConfigError, match=r"no test user has 90 ratings .* remove 90 from task"):
        problem.check_evaluation(trainer.learner)


def test_the_closed_form_config_starts_as_fold_in_and_trains(root: Path, tmp_path: Path) -> None:
    """configs/movielens/melu-ridge.yaml: the problem's factorisation seeds the item factors,
    its settings are the benchmark's "MeLU (ridge)" method, and it meta-trains and scores."""
    ridge = load_config(
        CONFIG.with_name("melu-ridge.yaml"),
        [f"task.root={root}", f"task.cache_dir={root.parent / 'cache'}", *SHORT],
    )
    bench = config(root, "learner={name: ridge, lam: 5.0}", "model.item_embedding=false",
                   "model.item_factors=10", "train.lr=0.0001")  # fmt: skip
    assert ridge.model_dump(exclude={"name", "out_dir"}) == bench.model_dump(
        exclude={"name", "out_dir"}
    )
    problem = build_problem(ridge)
    assert isinstance(problem, ColdStartProblem)
    factors = problem.baseline().first_column_factors
    assert factors is not None and factors.shape == (1683, 10) and factors.abs().sum() > 0
    trainer = Trainer(ridge, tmp_path / "ridge")
    model = trainer.learner.model
    assert isinstance(model, MeLU) and model.factors is not None
    assert torch.equal(model.factors.weight, factors)
    result = trainer.fit()
    assert math.isfinite(result.best_val) and result.best_val < 1.5
    _, learner, _ = learner_from_checkpoint(trainer.result_path)
    tasks, _ = problem.fixed_tasks("test", 5)
    scores = evaluate_users(learner, tasks[:5], scale=problem.data.scale)
    assert all(0 <= s["mae"] <= 4 for s in scores)
    # explain: one closed-form mapping, so each support size's MAEs as a histogram, no curve
    out = tmp_path / "explained"
    assert main(["explain", str(trainer.result_path), "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*.png")} == {"task_scores.png"}
    report = json.loads((out / "explain.json").read_text())
    assert report["adaptation_gains"] == {}
    assert all(list(v) == ["0"] for v in report["evaluation"]["scores"].values())


def test_melu_runs_from_before_item_factors_keep_their_fingerprint(root: Path) -> None:
    cfg = config(root)
    stored = cfg.model_dump(mode="json")
    stored["model"].pop("item_factors")  # as a run saved before the option existed holds it
    old = type(cfg).model_validate(stored)
    assert old.fingerprint() == cfg.fingerprint()
    assert config(root, "model.item_factors=10").fingerprint() != cfg.fingerprint()
