"""Does the inner loop's update rule matter? Plain steps, momentum and Adam on the sinusoid.

``learner.inner_optimizer`` (``metamap.learners.inner_optim``) lets MAML and Reptile adapt with
momentum or Adam instead of plain gradient steps, differentiated exactly. This benchmark trains
the sinusoid configs (Finn et al. 2017, §5.1: 70,000 meta-iterations, meta-batch 25, K=10,
Adam 1e-3 outside) once per update rule and evaluates each best-validation checkpoint on the
sinusoid table's 600 fixed tasks with 5, 10 and 20 support points after 0, 1, 5 and 10 inner
steps, adapting with the rule it was trained with.

MAML trains with 5 inner steps here (the sinusoid table's MAML takes one, where momentum and
Adam's moments would not matter); plain SGD with 5 steps is its control. Adam runs at the
config's step size (0.01) and at 0.03: one Adam step moves each weight by about the step size
whatever its gradient, so its step size is not comparable to SGD's. Reptile keeps its 5 steps
and adds the rule of Nichol et al. (2018): Adam with β₁ = 0.

    python benchmarks/inner_optimizers.py                  # every variant, about an hour
    python benchmarks/inner_optimizers.py --steps 200      # smoke run
    python benchmarks/make_tables.py                       # regenerate the tables

Results: ``benchmarks/results/inner_optimizers.json``; runs resume from ``runs/bench``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.train.evaluate import summarize
from sinusoid import run

ROOT = Path(__file__).resolve().parents[1]

MAML5 = ["learner.inner_steps=5"]
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "maml-sgd": ("maml", MAML5, "SGD"),
    "maml-momentum": (
        "maml",
        [*MAML5, "learner.inner_optimizer.momentum=0.9"],
        "SGD, momentum 0.9",
    ),
    "maml-adam": ("maml", [*MAML5, "learner.inner_optimizer.name=adam"], "Adam"),
    "maml-adam-lr0.03": (
        "maml",
        [*MAML5, "learner.inner_optimizer.name=adam", "learner.inner_lr=0.03"],
        "Adam",
    ),
    "reptile-sgd": ("reptile", [], "SGD"),
    "reptile-adam": (
        "reptile",
        ["learner.inner_optimizer.name=adam", "learner.inner_optimizer.betas=[0.0,0.999]"],
        "Adam, β₁ = 0",
    ),
}
"""name: (config in configs/sinusoid/, overrides, the update rule in words)."""
CONTROLS = {"maml": "maml-sgd", "reptile": "reptile-sgd"}
"""config → the variant with plain steps that the others are compared with, task by task."""


def paired(rows: dict[str, Any]) -> None:
    """Add to each variant its query MSE minus its control's on the same fixed tasks
    (``"vs_control"``: per support size and step count, mean ± 95% CI of the differences)."""
    for row in rows.values():
        control = rows.get(CONTROLS[row["base_config"]])
        if control is None or control is row:
            continue
        row["vs_control"] = {"control": CONTROLS[row["base_config"]]}
        for shots, by_steps in row["scores"].items():
            ref = control["scores"][shots]
            row["vs_control"][shots] = {}
            for k, s in by_steps.items():
                d = summarize([a - b for a, b in zip(s["values"], ref[k]["values"], strict=True)])
                row["vs_control"][shots][k] = {"mean": d.mean, "ci95": d.ci95, "n": d.n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--steps", type=int, default=None, help="override 70,000 (smoke runs)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/inner_optimizers.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="for every variant")
    args = ap.parse_args()
    where = provenance("cpu", args.threads)  # the checkout as it is when the runs start
    rows: dict[str, Any] = {}
    for name in args.variants:
        config, overrides, rule = VARIANTS[name]
        res = run(
            config,
            args.steps,
            args.runs,
            args.threads,
            where,
            [*overrides, *args.set],
            f"inner-{name}",
        )
        rows[name] = {"base_config": config, "overrides": overrides, "rule": rule, **res}
        s = res["scores"]["5-shot"]  # type: ignore[index]
        print(
            f"{name}: 5-shot MSE after 1/5/10 steps: "
            + " / ".join(f"{s[k]['mean']:.3f}±{s[k]['ci95']:.3f}" for k in ("1", "5", "10")),
            flush=True,
        )
    paired(rows)
    write_result(
        args.out,
        {
            "benchmark": "inner_optimizers",
            "command": command_line(),
            "provenance": where,
            "variants": rows,
        },
    )


if __name__ == "__main__":
    main()
