"""Sinusoid regression benchmark, MAML protocol (Finn et al. 2017, §5.1).

Trains each learner with its config in configs/sinusoid/ (70,000 meta-iterations, meta-batch 25,
K=10, one inner step α=0.01, Adam 1e-3), then evaluates the best-validation checkpoint on 600
fixed tasks (seed 1234, 100 query points) with 5, 10 and 20 support points after 0, 1, 5 and 10
inner steps. Results: benchmarks/results/sinusoid_<learner>.json. Training resumes from
runs/bench/ if a run was interrupted.

    python benchmarks/sinusoid.py --learners maml metasgd anil
    python benchmarks/make_tables.py        # regenerate the README tables
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.train import Trainer, evaluate_run, learner_from_checkpoint, load_config

ROOT = Path(__file__).resolve().parents[1]


def run(
    learner: str,
    steps: int | None,
    out_root: Path,
    threads: int,
    where: dict[str, object],
    overrides: Sequence[str] = (),
    run_name: str | None = None,
) -> dict[str, object]:
    """Train ``configs/sinusoid/<learner>.yaml`` (with ``overrides``) in
    ``out_root/sinusoid-<run_name or learner>``, resuming, and evaluate its best checkpoint."""
    torch.set_num_threads(threads)
    settings = ["train.progress=false", *overrides]
    if steps is not None:
        settings.append(f"train.steps={steps}")
    cfg = load_config(ROOT / "configs" / "sinusoid" / f"{learner}.yaml", settings)
    trainer = Trainer(cfg, out_root / f"sinusoid-{run_name or learner}")
    t0 = time.perf_counter()
    result = trainer.fit(resume=True)
    train_s = time.perf_counter() - t0
    cfg, best, _ = learner_from_checkpoint(trainer.result_path)
    t0 = time.perf_counter()
    scores = evaluate_run(cfg, best)
    return {
        "benchmark": "sinusoid",
        "learner": learner,
        "command": command_line(),
        "config": cfg.model_dump(mode="json"),
        "steps_trained": result.step,
        "best_step": result.best_step,
        "best_val_mse": result.best_val,
        "train_seconds": round(result.train_seconds, 1),
        "train_cpu_seconds": None if (c := result.train_cpu_seconds) is None else round(c, 1),
        "train_seconds_this_invocation": round(train_s, 1),
        "eval_seconds": round(time.perf_counter() - t0, 1),
        "batching": best.batching,
        "threads": threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": where,
        **scores,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--learners", nargs="+", default=["maml", "metasgd", "anil"])
    ap.add_argument("--steps", type=int, default=None, help="override 70,000 (smoke runs)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    where = provenance("cpu", args.threads)  # the checkout as it is when the runs start
    for name in args.learners:
        res = run(name, args.steps, args.runs, args.threads, where)
        write_result(args.results / f"sinusoid_{name}.json", res)
        s = res["scores"]["5-shot"]  # type: ignore[index]
        print(
            f"{name}: 5-shot MSE after 1/5/10 steps: "
            + " / ".join(f"{s[k]['mean']:.3f}±{s[k]['ci95']:.3f}" for k in ("1", "5", "10")),
            flush=True,
        )


if __name__ == "__main__":
    main()
