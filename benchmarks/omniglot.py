"""Omniglot few-shot classification benchmark (Vinyals split, 1,000 fixed test episodes).

Trains one config from configs/omniglot/ (optionally with a shorter step budget, since these
CPUs are slow), then evaluates its result (the best-validation checkpoint, or the last where the
config's ``eval.checkpoint`` says so) on every requested test setting (ways × shots), on Lake
et al.'s 20 within-alphabet one-shot runs and, for metric learners that ask for it
(``eval.metadataset_tasks`` or ``--metadataset-tasks``), on fixed Meta-Dataset test episodes.
Results:
benchmarks/results/omniglot_<config>.json (omniglot_<config>_cuda.json when trained on a GPU);
`python benchmarks/make_tables.py` renders them.

    python benchmarks/omniglot.py --config protonet-5w1s --steps 1500 --settings 5w1s 20w1s
    python3 benchmarks/omniglot.py --config maml-5w1s --device cuda --data .data/omniglot  # GPU

A finished run can be scored again with test-time overrides that do not touch its training
(``--eval-set``, e.g. Relation Networks' ``learner.class_feature=mean``); such a result is an
experiment, written to ``--results`` under ``omniglot_<config>_<tag>.json``:

    python benchmarks/omniglot.py --config relation-5w1s --steps 25000 --settings 5w5s \
        --eval-set learner.class_feature=mean --tag mean --results benchmarks/results/experiments
"""

from __future__ import annotations

import argparse
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

import torch

from machine import (  # benchmarks/
    SHARED,
    command_line,
    device_name,
    parse_setting,
    portable,
    provenance,
    write_result,
)
from metamap.data import omniglot_one_shot_runs, run_images_seen
from metamap.errors import TaskShapeError
from metamap.train import (
    Trainer,
    evaluate_meta_dataset,
    evaluate_run,
    lake_one_shot_error,
    learner_from_checkpoint,
    load_config,
    read_metrics,
)
from metamap.train.build import load_images

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", required=True, help="name in configs/omniglot/, e.g. protonet-5w1s")
    ap.add_argument("--steps", type=int, default=None, help="training budget (default: config's)")
    ap.add_argument("--settings", nargs="+", default=None, help="test settings, e.g. 5w1s 20w1s")
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument(
        "--metadataset-tasks",
        type=int,
        default=None,
        help="also score this many fixed Meta-Dataset test episodes (metric learners; default: "
        "the config's eval.metadataset_tasks)",
    )
    ap.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. to anneal a finished constant-rate run from the step it "
        "reached: train.schedule=piecewise 'train.milestones=[5500]' 'train.factors=[0.1]'",
    )
    ap.add_argument(
        "--eval-set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="overrides applied to the trained checkpoint at test time only (needs --tag)",
    )
    ap.add_argument("--tag", default="", help="suffix of the result file's name")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu", help="train.device: cpu, cuda, cuda:1, ...")
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.eval_set and not args.tag:
        ap.error("--eval-set scores the run under other settings: name the result with --tag")
    if args.tag and not re.fullmatch(r"[A-Za-z0-9.-]+", args.tag):
        ap.error(f"--tag {args.tag!r}: use letters, digits, '.' and '-'")
    torch.set_num_threads(args.threads)
    over = [
        f"data.root={args.data}",
        "train.progress=false",
        f"eval.tasks={args.tasks}",
        f"train.device={args.device}",
    ]
    if args.steps is not None:
        over.append(f"train.steps={args.steps}")
    if args.metadataset_tasks is not None:
        over.append(f"eval.metadataset_tasks={args.metadataset_tasks}")
    over += args.set
    cfg = load_config(ROOT / "configs" / "omniglot" / f"{args.config}.yaml", over)
    trainer = Trainer(cfg, args.runs / f"omniglot-{args.config}")
    result = trainer.fit()
    cpu = result.train_cpu_seconds
    # The validation curve, by step (a resumed run logs its last validation again: keep one).
    validation = {
        r["step"]: r[trainer.val_name]
        for r in read_metrics(trainer.metrics_path)
        if trainer.val_name in r
    }
    # The checkpoint stores the config it was trained under; this run's evaluation settings win.
    evaluation = [o for o in over if o.startswith("eval.")] + args.eval_set
    cfg, learner, state = learner_from_checkpoint(trainer.result_path, evaluation)
    settings = args.settings or [
        f"{cfg.eval.ways or cfg.task.episodes().ways}w{cfg.eval.shots[0]}s"
    ]
    scores = {}
    for s in settings:
        ways, shots = parse_setting(s)
        c = cfg.model_copy(deep=True)
        c.eval.ways, c.eval.shots = ways, [shots]
        c.eval.metadataset_tasks = 0  # scored once, below
        res = evaluate_run(c, learner)
        by_step = next(iter(res["scores"].values()))
        last = by_step[str(max(int(k) for k in by_step))]  # after the most steps
        scores[s] = {k: v for k, v in last.items() if k != "values"}  # values: in by_step
        scores[s]["by_step"] = by_step
        print(f"{args.config} {s}: {scores[s]['mean']:.4f} ± {scores[s]['ci95']:.4f}", flush=True)
    runs = omniglot_one_shot_runs(args.data)
    seen = run_images_seen(load_images(cfg, "train").images, runs)  # pixels, not names
    try:
        lake = lake_one_shot_error(learner, runs)
        print(f"Lake 20-run one-shot error: {lake['error']:.3f}", flush=True)
    except TaskShapeError as e:  # a fixed N-way head cannot take Lake's 20-way runs
        lake = {"error": None, "reason": str(e)}
    lake["seen_run_images"] = len(seen)
    if seen:  # not a one-shot figure: the tables leave it out
        print(f"(trained on {len(seen)} of the 800 run images: not a one-shot figure)")
    meta_dataset = None
    if cfg.eval.metadataset_tasks:
        meta_dataset = evaluate_meta_dataset(cfg, learner)
        print(
            f"{args.config} Meta-Dataset episodes: {meta_dataset['mean']:.4f} ± "
            f"{meta_dataset['ci95']:.4f}",
            flush=True,
        )
    out = {
        "benchmark": "omniglot",
        "config": args.config,
        "learner": cfg.learner.name,
        "protocol": res["protocol"],
        "command": command_line(),
        "config_dump": portable(cfg.model_dump(mode="json")),
        "eval_overrides": args.eval_set,
        "steps_trained": result.step,
        "steps_in_paper_schedule": load_config(
            ROOT / "configs" / "omniglot" / f"{args.config}.yaml"
        ).train.steps,
        "best_step": int(state["step"]),
        "validation": [{"step": k, "accuracy": v} for k, v in sorted(validation.items())],
        "train_seconds": round(result.train_seconds, 1),  # wall clock: longer on a shared machine
        # this process's CPU time (None if part of the run was made before it was counted)
        "train_cpu_seconds": cpu if cpu is None else round(cpu, 1),
        "threads": args.threads,
        "device": args.device,
        "device_name": device_name(args.device),
        "test_tasks": args.tasks,
        "queries": cfg.eval.queries,
        "scores": scores,
        "lake_one_shot": lake,
        "meta_dataset": meta_dataset,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance(args.device, args.threads),
    }
    # A GPU-trained row sits beside the CPU one rather than replacing it.
    kind = torch.device(args.device).type
    suffix = (f"_{args.tag}" if args.tag else "") + ("" if kind == "cpu" else f"_{kind}")
    write_result(args.results / f"omniglot_{args.config}{suffix}.json", out)


if __name__ == "__main__":
    main()
