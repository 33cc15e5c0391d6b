"""2D navigation meta-RL benchmark (MAML §5.3): MAML-TRPO against the baselines of the paper.

Methods, each scored by the same evaluation (:class:`metamap.train.MetaRLProblem`): the mean return
on 40 fixed test goals before adaptation and after 1, 2 and 3 policy-gradient steps (20 episodes a
step; step sizes ``--test-lr``, by default the paper's evaluation: 0.1, then 0.05), mean ± 95% CI
over the goals:

* **MAML-TRPO** — ``configs/rl/maml-trpo-navigation.yaml``, trained for ``--steps`` meta-iterations;
* **first-order MAML + PPO** and **ProMP** — ``configs/rl/maml-ppo-navigation.yaml`` and
  ``promp-navigation.yaml`` (the same inner step; PPO outer updates), ``--steps`` each, where
  ``--ppo`` asks for them;
* **RL²** — ``configs/rl/rl2-navigation.yaml`` (a GRU policy whose hidden state, carried from
  a trial's first episode to the next, is the adapted model; PPO outer update), ``--rl2-steps``
  meta-iterations, where ``--rl2`` asks for it. Its "k steps" are the k episodes of the trial
  before the scored one, one episode of experience a step (``--only-rl2``: it and the random
  initialisation alone, into ``rl_navigation_rl2.json``, with plots of its own);
* **multi-task pre-training** — the same policy trained by TRPO on all tasks with no adaptation in
  training (``learner.inner_lr=0``, ``learner.test_lr=0.1``), then fine-tuned by the same steps;
* **random initialisation** — the untrained policy, adapted by the same steps.

Training resumes where a killed run stopped (the trainer's checkpoints). Results:
benchmarks/results/rl_navigation.json (per-goal returns included); plots in
docs/results/rl/: trajectories before and after adaptation for four goals, and return against
adaptation steps. ``python benchmarks/make_tables.py`` renders the table.

    python benchmarks/navigation.py --steps 300 --pretrain-steps 300

``--train maml`` (``pretrain``, ``ppo``, ``promp``, ``rl2``) only trains that method (and
exits), so that trainings can run side by side, one core each; a later full invocation finds
them finished.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.rl.protocol import PolicyLearner
from metamap.train import MetaRLProblem, Trainer, learner_from_checkpoint, load_config
from metamap.train.build import build_run_learner
from metamap.viz.rl import navigation_plot, return_curve_plot

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "rl" / "maml-trpo-navigation.yaml"
RL2 = "rl2-navigation.yaml"
PAPER = {
    "MAML-TRPO": [-40.4, -11.7, -3.3, -3.2],
    "multi-task pre-training": [-40.8, -19.7, -11.7, -8.5],
    "random initialisation": [-82.7, -58.0, -53.8, -46.8],
}


TEST_LR: list[str] = []
"""The evaluation's step-size override (``learner.test_lr=[...]``), set from ``--test-lr``."""


def _trained(
    name: str, steps: int, over: list[str], runs: Path, config: Path = CONFIG
) -> tuple[Any, tuple[float, float | None], int]:
    cfg = load_config(config, [f"train.steps={steps}", "train.progress=false", *over])
    trainer = Trainer(cfg, runs / name)
    result = trainer.fit(resume=True)
    adapts_by_steps = "test_lr" in type(cfg.learner).model_fields  # not RL²: no step size
    _, learner, _ = learner_from_checkpoint(trainer.result_path, TEST_LR * adapts_by_steps)
    return learner, (result.train_seconds, result.train_cpu_seconds), result.step


def scored(
    problem: MetaRLProblem,
    cfg: Any,
    learners: dict[str, tuple[Any, tuple[float, float | None], int]],
    paper: dict[str, list[float]],
    test_lr: list[float],
) -> dict[str, Any]:
    """Every method of ``learners`` (name → learner, training seconds of wall clock and of CPU
    (``None`` where not counted), meta-iterations) scored
    by ``problem``'s evaluation, beside ``paper``'s figures: the result file's protocol and
    ``methods``."""
    methods: dict[str, Any] = {}
    protocol = ""
    for name, (learner, (seconds, cpu), steps) in learners.items():
        t0 = time.perf_counter()
        scores = problem.evaluate(learner)
        protocol = scores["protocol"]
        methods[name] = {
            "train_seconds": round(seconds, 1),
            "train_cpu_seconds": None if cpu is None else round(cpu, 1),
            "steps": steps,
            "eval_seconds": round(time.perf_counter() - t0, 1),
            "scores": next(iter(scores["scores"].values())),
            "paper": paper.get(name),
        }
        print(name, {k: round(v["mean"], 2) for k, v in methods[name]["scores"].items()})
    return {
        "protocol": protocol,
        "tasks": cfg.eval.tasks,
        "seed": cfg.eval.seed,
        "steps": sorted(set(cfg.eval.steps) | {0}),
        "test_lr": test_lr,
        "config": cfg.model_dump(mode="json"),
        "methods": methods,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="MAML-TRPO meta-iterations")
    ap.add_argument("--pretrain-steps", type=int, default=100, help="0: skip that baseline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--plots", type=Path, default=ROOT / "docs" / "results" / "rl")
    ap.add_argument("--train", choices=["maml", "pretrain", "ppo", "promp", "rl2"], default=None)
    ap.add_argument(
        "--test-lr",
        type=float,
        nargs="+",
        default=[0.1, 0.05],
        help="adaptation step sizes after training, one per step (the last repeats)",
    )
    ap.add_argument("--ppo", action="store_true", help="also first-order MAML + PPO and ProMP")
    ap.add_argument("--ppo-steps", type=int, default=None, help="their meta-iterations (--steps)")
    ap.add_argument("--rl2", action="store_true", help="also RL²")
    ap.add_argument("--rl2-steps", type=int, default=500, help="RL²'s meta-iterations")
    ap.add_argument(
        "--only-rl2",
        action="store_true",
        help="RL² and the random initialisation alone, into rl_navigation_rl2.json",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    TEST_LR.append(f"learner.test_lr={args.test_lr}")
    where = provenance("cpu", args.threads)  # the checkout as it is when the runs start
    threads = [f"train.threads={args.threads}"]
    cfg = load_config(CONFIG, threads)
    problem = MetaRLProblem(cfg)
    learners: dict[str, tuple[Any, tuple[float, float | None], int]] = {}
    pretrain = [*threads, "learner.inner_lr=0", "learner.test_lr=0.1"]
    if args.train == "pretrain":
        _trained("rl-navigation-pretrain", args.pretrain_steps, pretrain, args.runs)
        return
    ppo = {
        "first-order MAML + PPO": ("rl-navigation-maml-ppo", "maml-ppo-navigation.yaml", "ppo"),
        "ProMP": ("rl-navigation-promp", "promp-navigation.yaml", "promp"),
    }
    ppo_steps = args.ppo_steps or args.steps
    rl2 = ("rl-navigation-rl2", args.rl2_steps, threads, args.runs, CONFIG.with_name(RL2))
    for run, config, key in ppo.values():
        if args.train == key:
            _trained(run, ppo_steps, threads, args.runs, CONFIG.with_name(config))
            return
    if args.train == "rl2":
        _trained(*rl2)
        return
    name = "rl_navigation_rl2" if args.only_rl2 else "rl_navigation"
    if args.only_rl2:  # RL² beside the random initialisation, in a result of its own
        learners["RL²"] = _trained(*rl2)
    else:
        learners["MAML-TRPO"] = _trained("rl-navigation-maml-trpo", args.steps, threads, args.runs)
        if args.train == "maml":
            return
        if args.pretrain_steps:
            learners["multi-task pre-training"] = _trained(
                "rl-navigation-pretrain", args.pretrain_steps, pretrain, args.runs
            )
        if args.ppo:
            for method, (run, config, _) in ppo.items():
                learners[method] = _trained(
                    run, ppo_steps, threads, args.runs, CONFIG.with_name(config)
                )
        if args.rl2:
            learners["RL²"] = _trained(*rl2)
    untrained = load_config(CONFIG, [*threads, *TEST_LR])
    learners["random initialisation"] = (build_run_learner(untrained), (0.0, 0.0), 0)
    result = {
        "benchmark": name,
        **scored(problem, cfg, learners, PAPER, args.test_lr),
        "command": command_line(),
        "provenance": where,
    }
    write_result(args.results / f"{name}.json", result)
    lead: PolicyLearner = next(iter(learners.values()))[0]  # MAML-TRPO, or RL²
    # before adaptation, after 1 and 2 steps (each from task.rollouts episodes)
    goals, paths = problem.example_paths(lead, 2)
    stem = name.removeprefix("rl_")
    navigation_plot(goals, paths, args.plots / f"{stem}_trajectories.png")
    return_curve_plot(result, args.plots / f"{stem}_returns.png")


if __name__ == "__main__":
    main()
