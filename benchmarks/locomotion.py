"""MuJoCo locomotion meta-RL benchmark (MAML §5.3): MAML-TRPO on HalfCheetah direction or
velocity, scored as the paper scores it, beside the untrained policy adapted by the same steps.

The paper trains for hours on many cores; these machines have two. So training takes a budget:
``--steps`` meta-iterations at most, and ``--minutes`` of this invocation at most (the
trainer's time budget, ``metamap train --minutes``: checked between meta-iterations). A
killed or budget-stopped run resumes where it stopped, bit for bit (the trainer's
checkpoints), so the budget can be spent over several invocations; the result says how many
meta-iterations the scored model had and how long they took.

Evaluation (:class:`metamap.train.MetaRLProblem`, as ``benchmarks/navigation.py``): the mean
return on 40 fixed test tasks before adaptation and after 1, 2 and 3 policy-gradient steps (20
episodes a step; step sizes ``--test-lr``, by default 0.1, then 0.05), mean ± 95% CI over the
tasks, for the checkpoint that validated best. The result also carries the run's validation
curve (the mean return after one step on 20 validation tasks, every 25 meta-iterations).
Results: ``benchmarks/results/rl_halfcheetah_<family>.json``; ``python benchmarks/make_tables.py``
renders the table in docs/results/rl.md.

    python benchmarks/locomotion.py --family dir --minutes 150 --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.train import (
    MetaRLProblem,
    Trainer,
    learner_from_checkpoint,
    load_config,
    read_metrics,
)
from metamap.train.build import build_run_learner
from metamap.viz.rl import return_curve_plot
from navigation import scored  # benchmarks/navigation.py

ROOT = Path(__file__).resolve().parents[1]
PAPER = {  # Finn et al. 2017, the paper's result files: after 0 / 1 / 2 / 3 steps
    "dir": {
        "MAML-TRPO": [-50.7, 293.2, 313.5, 315.7],
        "random initialisation": [-35.7, 21.8, 62.3, 86.2],
    },
    "vel": {
        "MAML-TRPO": [-129.5, -78.6, -66.6, -60.8],
        "random initialisation": [-254.8, -254.3, -246.8, -230.8],
    },
}


def validation_curve(metrics: Path, key: str) -> list[list[float]]:
    """``[[step, validation return], ...]`` from the run's metrics log (:func:`read_metrics`:
    torn lines of a killed run skipped, a step logged again by a resume counted once)."""
    return [[r["step"], round(float(r[key]), 2)] for r in read_metrics(metrics) if key in r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", choices=["dir", "vel"], default="dir")
    ap.add_argument("--steps", type=int, default=500, help="meta-iterations at most")
    ap.add_argument("--minutes", type=float, default=None, help="training budget of this call")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--plots", type=Path, default=ROOT / "docs" / "results" / "rl")
    ap.add_argument("--test-lr", type=float, nargs="+", default=[0.1, 0.05])
    ap.add_argument("--set", nargs="*", default=[], help="config overrides (a smaller protocol)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    where = provenance("cpu", args.threads)  # the checkout as it is when training starts
    config = ROOT / "configs" / "rl" / f"maml-trpo-halfcheetah-{args.family}.yaml"
    over = [
        f"train.threads={args.threads}",
        f"train.steps={args.steps}",
        "train.progress=false",
        *args.set,
    ]
    cfg = load_config(config, over)
    trainer = Trainer(cfg, args.runs / f"halfcheetah-{args.family}")
    trained = trainer.fit(resume=True, minutes=args.minutes)  # the budget: the trainer's
    reached, stopped = trained.step, trained.budget_stopped
    test_lr = [f"learner.test_lr={args.test_lr}"]
    ckpt = trainer.result_path  # the best validated; the last before any validation
    ckpt = ckpt if ckpt.exists() else trainer.last_path
    _, learner, state = learner_from_checkpoint(ckpt, test_lr)
    seconds = (trainer.train_seconds, trainer.train_cpu_seconds)
    untrained = build_run_learner(load_config(config, [*over, *test_lr]))
    learners = {
        "MAML-TRPO": (learner, seconds, int(state["step"])),
        "random initialisation": (untrained, (0.0, 0.0), 0),
    }
    result = {
        "benchmark": f"rl_halfcheetah_{args.family}",
        **scored(MetaRLProblem(cfg), cfg, learners, PAPER[args.family], args.test_lr),
        "reached": reached,
        "planned": args.steps,
        "budget_stopped": stopped,
        "scored_step": int(state["step"]),
        "validation": validation_curve(trainer.metrics_path, trainer.val_name),
        "command": command_line(),
        "provenance": where,
    }
    write_result(args.results / f"rl_halfcheetah_{args.family}.json", result)
    return_curve_plot(result, args.plots / f"halfcheetah_{args.family}_returns.png")


if __name__ == "__main__":
    main()
