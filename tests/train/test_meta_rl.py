"""Environments as tasks (:mod:`metamap.train.meta_rl`): MAML-TRPO on 2D navigation trained by
the unchanged trainer from ``configs/rl/maml-trpo-navigation.yaml`` (CI-sized), resumed bit for
bit after a kill, scored by ``metamap eval``, and the configs that cannot work refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import metamap.viz.runs as runs
from metamap.cli import main
from metamap.errors import ConfigError, NonFiniteLossError, NonFiniteRolloutError
from metamap.rl import MAMLTRPO
from metamap.tasks.navigation import EnvStep, NavigationEnvs
from metamap.train import MetaRLProblem, Trainer, build_problem, load_checkpoint, load_config

CONFIG = Path(__file__).parents[2] / "configs" / "rl" / "maml-trpo-navigation.yaml"
SMALL = [
    "model.hidden=[32, 32]",
    "task.rollouts=10",
    "train.meta_batch=6",
    "train.val_tasks=10",
    "train.ckpt_every=2",
    "train.val_every=4",
    "train.threads=1",
    "train.progress=false",
    "eval.tasks=6",
]


def config(*extra: str) -> Any:
    return load_config(CONFIG, [*SMALL, *extra])


def test_the_config_builds_maml_trpo_on_navigation() -> None:
    cfg = config()
    problem = build_problem(cfg)
    assert isinstance(problem, MetaRLProblem) and problem.higher_is_better
    trainer = Trainer(cfg, Path("/nonexistent-never-written"))
    assert isinstance(trainer.learner, MAMLTRPO)
    assert trainer.learner.model.obs_dim == 2 and trainer.learner.model.act_dim == 2


def test_a_few_iterations_raise_the_return_after_adaptation(tmp_path: Path) -> None:
    trainer = Trainer(config("train.steps=8"), tmp_path / "run")
    before = trainer.validate()
    trainer.fit()
    after = trainer.validate()
    assert after > before + 10, (before, after)  # mean return after one step, 10 fixed goals


def test_a_killed_run_resumes_to_the_same_policy(tmp_path: Path) -> None:
    fresh = Trainer(config("train.steps=4"), tmp_path / "fresh")
    fresh.fit()
    part = Trainer(config("train.steps=4"), tmp_path / "part")
    part.fit(stop_after=2)
    resumed = Trainer(config("train.steps=4"), tmp_path / "part")
    resumed.fit()
    a = load_checkpoint(fresh.last_path)["learner"]
    b = load_checkpoint(resumed.last_path)["learner"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_metamap_eval_scores_an_rl_checkpoint_before_and_after_adaptation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    args = ["train", str(CONFIG), "--out", str(run)]
    for o in [*SMALL, "train.steps=2"]:
        args += ["-o", o]
    assert main(args) == 0
    out = tmp_path / "eval.json"
    assert main(["eval", str(run / "checkpoints" / "last.pt"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    scores = result["scores"]["6 test tasks"]
    assert set(scores) == {"0", "1", "2", "3"} and result["metric"] == "return"
    assert all(len(s["values"]) == 6 and s["mean"] < 0 for s in scores.values())
    assert "6 test tasks" in capsys.readouterr().out
    shown = tmp_path / "shown.json"  # with progress: a bar of the rounds on stderr, same scores
    ckpt_path = str(run / "checkpoints" / "last.pt")
    assert main(["eval", ckpt_path, "-o", "train.progress=true", "--out", str(shown)]) == 0
    assert "evaluating" in capsys.readouterr().err
    assert json.loads(shown.read_text())["scores"] == result["scores"]
    drawn: list[list[str]] = []
    draw = runs.return_curve_plot

    def keep(result: dict[str, Any], path: Path) -> Path:
        drawn.append(list(result["methods"]["maml_trpo"]["scores"]))
        return draw(result, path)

    monkeypatch.setattr(runs, "return_curve_plot", keep)
    assert main(["plot", str(run)]) == 0  # the learning curve and return against steps
    assert (run / "learning_curve.png").is_file() and (run / "adaptation.png").is_file()
    assert (run / "trajectories.png").is_file()  # navigation is planar: its paths are drawn
    assert main(["plot", str(run), "--steps", "2,0"]) == 0  # --steps in place of eval.steps
    assert drawn == [["0", "1", "2", "3"], ["0", "2"]]
    # explain: the same evaluation, to 2 steps, drawn per goal, with every goal's return
    ckpt = str(run / "checkpoints" / "last.pt")
    assert main(["explain", ckpt, "--out", str(tmp_path / "x"), "--steps", "2"]) == 0
    report = json.loads((tmp_path / "x" / "explain.json").read_text())
    by_step = report["evaluation"]["scores"]["6 test tasks"]
    assert {k: v["values"] for k, v in by_step.items()} == {
        k: scores[k]["values"] for k in ("0", "1", "2")
    }  # the goals and rollouts `eval` scored, one step fewer
    gain = report["adaptation_gains"]["6 test tasks"]
    before, after = by_step["0"]["values"], by_step["2"]["values"]
    assert gain["steps"] == 2 and gain["tasks"] == 6
    assert gain["improved"] == sum(a > b for a, b in zip(after, before, strict=True))
    assert {p.name for p in (tmp_path / "x").glob("*.png")} == {"adaptation.png", "task_scores.png"}
    assert "better on" in capsys.readouterr().out
    assert (
        main(["explain", ckpt, "--out", str(tmp_path / "y"), "--steps", "1", "--tasks", "3"]) == 0
    )
    assert len(json.loads((tmp_path / "y" / "explain.json").read_text())["evaluation"]["scores"]
               ["3 test tasks"]["1"]["values"]) == 3  # fmt: skip
    assert main(["explain", ckpt, "--out", str(tmp_path / "z"), "--data", str(tmp_path)]) == 2
    assert "--data is for image classifiers; this checkpoint's tasks are 2D navigation" in (
        capsys.readouterr().err
    )
    # a policy for 2-d observations and actions, evaluated on pendulums (3-d, 1-d): named
    capsys.readouterr()
    assert main(["eval", str(run / "checkpoints" / "last.pt"), "-o", "task={family: pendulum}"])
    err = capsys.readouterr().err
    assert "model.mean.body.0.weight is (32, 2) in the checkpoint, (32, 3) here" in err


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model={name: mlp}"], "needs a policy model.name 'gaussian_mlp', not 'mlp'"),
        (["learner={name: maml}"], "use one of 'maml_ppo', 'maml_trpo', 'promp', 'rl2'"),
        (["task={family: sinusoid}"], "has no environments"),
        (["task.low=0.5", "task.high=-0.5"], "low < high"),
        (["learner.max_kl=0"], "max_kl"),
        # no adaptation in training and no test step size: evaluation would adapt by 0
        (["learner.inner_lr=0"], r"step size of 0: set learner\.test_lr"),
        (["learner={name: maml_ppo, inner_lr: 0}"], r"set learner\.test_lr"),
    ],
)
def test_configs_that_cannot_work_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG, overrides)


def test_the_pretraining_baseline_names_its_test_step_size() -> None:
    cfg = load_config(CONFIG, ["learner.inner_lr=0", "learner.test_lr=0.1"])
    learner = Trainer(cfg, Path("/nonexistent-never-written")).learner
    assert isinstance(learner, MAMLTRPO) and learner.inner_lr == 0 and learner.test_lrs == [0.1]


def test_non_finite_rewards_stop_training_and_the_run_stays_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = Trainer(config("train.steps=4"), tmp_path / "fresh")
    fresh.fit()
    trainer = Trainer(config("train.steps=4"), tmp_path / "run")
    trainer.fit(stop_after=2)
    step = NavigationEnvs.step

    def broken(self: NavigationEnvs, actions: torch.Tensor) -> EnvStep:
        out = step(self, actions)
        return out._replace(reward=out.reward * float("nan"))

    monkeypatch.setattr(NavigationEnvs, "step", broken)
    with pytest.raises(NonFiniteRolloutError, match="NaN or infinite observations or rewards"):
        trainer.validate()
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        Trainer(config("train.steps=4"), tmp_path / "run").fit()
    assert load_checkpoint(trainer.last_path)["step"] == 2
    monkeypatch.undo()
    resumed = Trainer(config("train.steps=4"), tmp_path / "run")
    resumed.fit()
    a = load_checkpoint(fresh.last_path)["learner"]
    b = load_checkpoint(resumed.last_path)["learner"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        resumed.learner.model.log_std.fill_(float("nan"))  # a diverged policy
    with pytest.raises(NonFiniteRolloutError, match="NaN or infinite actions"):
        resumed.validate()


@pytest.mark.parametrize("config_name", ["maml-ppo-navigation.yaml", "promp-navigation.yaml"])
def test_ppo_outer_updates_learn_and_resume_with_their_adam_state(
    tmp_path: Path, config_name: str
) -> None:
    cfg = load_config(CONFIG.with_name(config_name), [*SMALL, "train.steps=6"])
    fresh = Trainer(cfg, tmp_path / "fresh")
    before = fresh.validate()
    fresh.fit()
    assert fresh.validate() > before + 5
    part = Trainer(cfg, tmp_path / "part")
    part.fit(stop_after=3)
    assert "adam_m_0" in load_checkpoint(part.last_path)["learner"]  # the outer Adam's moments
    resumed = Trainer(cfg, tmp_path / "part")
    resumed.fit()
    a = load_checkpoint(fresh.last_path)["learner"]
    b = load_checkpoint(resumed.last_path)["learner"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_navigation_runs_from_before_the_actions_option_keep_their_fingerprint() -> None:
    cfg = load_config(CONFIG, ["task.actions=velocity"])  # as before the option existed
    stored = cfg.model_dump(mode="json")
    stored["task"].pop("actions")  # as a run saved before the option existed holds it
    assert type(cfg).model_validate(stored).fingerprint() == cfg.fingerprint()
    assert load_config(CONFIG).fingerprint() != cfg.fingerprint()  # the shipped: normalized
