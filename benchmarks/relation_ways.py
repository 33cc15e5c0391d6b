"""Why does a 5-way-trained Relation Network lose accuracy at 20 ways? One suspect, tested.

The relation module's BatchNorm is transductive (Sung et al.'s code): it normalises over all
(class, query) pairs of an episode. In a 5-way training episode one pair in 5 is a match; in a
20-way test episode one in 20, so the statistics the module normalises by shift with the number
of ways. This scores a finished run (``runs/bench/omniglot-<config>``) on the same 1,000 fixed
20-way test episodes as ``benchmarks/omniglot.py``, with the relation module's BatchNorm
statistics taken from the pairs of the first ``--stats-ways`` classes and their queries only
(queries are class-major, so those are the first ``stats_ways × queries`` queries) and applied
to all pairs. ``--stats-ways`` equal to the test ways is the control: it is the module as
trained and must reproduce the table's score.

    python benchmarks/relation_ways.py --config relation-5w5s --setting 20w5s --stats-ways 5

Results: benchmarks/results/experiments/relation_ways_<config>_<setting>_<stats-ways>.json.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from machine import (  # benchmarks/machine.py
    SHARED,
    command_line,
    cpu_info,
    parse_setting,
    provenance,
    write_result,
)
from metamap.learners import RelationNet
from metamap.train import RunPaths, evaluate_run, learner_from_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class SubsetStatistics(nn.Module):
    """A relation module whose BatchNorm layers normalise all pairs ``(Q·W, 2C, h, w)`` (query-
    major, as :meth:`RelationNet.relate` flattens them) by the batch statistics of the pairs of
    the first ``k`` classes and the queries of those classes."""

    def __init__(self, relation: nn.Module, ways: int, queries: int, k: int) -> None:
        super().__init__()
        self.layers = [m for m in relation.modules() if not list(m.children())]
        self.ways, self.queries, self.k = ways, queries, k

    def forward(self, x: Tensor) -> Tensor:
        for m in self.layers:
            if isinstance(m, nn.BatchNorm2d):
                pairs = x.reshape(-1, self.ways, *x.shape[1:])  # (Q, W, c, h, w)
                sub = pairs[: self.k * self.queries, : self.k].flatten(0, 1)
                mean, var = sub.mean((0, 2, 3)), sub.var((0, 2, 3), unbiased=False)
                x = F.batch_norm(x, mean, var, m.weight, m.bias, False, 0.0, m.eps)
            else:
                x = m(x)
        return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="relation-5w5s", help="a finished run in --runs")
    ap.add_argument("--setting", default="20w5s")
    ap.add_argument("--stats-ways", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench")
    args = ap.parse_args()
    ways, shots = parse_setting(args.setting)
    if not 1 <= args.stats_ways <= ways:
        raise SystemExit(f"--stats-ways must be between 1 and the test ways ({ways})")
    torch.set_num_threads(args.threads)
    run = RunPaths(args.runs / f"omniglot-{args.config}")
    over = [
        f"data.root={args.data}",
        f"eval.tasks={args.tasks}",
        f"eval.ways={ways}",
        f"eval.shots=[{shots}]",
        "eval.metadataset_tasks=0",
    ]
    cfg, learner, state = learner_from_checkpoint(run.best, over)
    if not isinstance(learner, RelationNet):
        raise SystemExit(f"{args.config} is not a Relation Network run")
    learner.relation = SubsetStatistics(learner.relation, ways, cfg.eval.queries, args.stats_ways)
    res = evaluate_run(cfg, learner)
    score = res["scores"][f"{shots}-shot"]["0"]
    stats = f"statistics of {args.stats_ways} ways"
    print(f"{args.config} {args.setting}, {stats}: {score['mean']:.4f}", flush=True)
    out = {
        "benchmark": "relation_ways",
        "config": args.config,
        "setting": args.setting,
        "stats_ways": args.stats_ways,
        "checkpoint_step": int(state["step"]),
        "protocol": res["protocol"],
        "test_tasks": args.tasks,
        "queries": cfg.eval.queries,
        "score": score,
        "command": command_line(),
        "threads": args.threads,
        "cpu": cpu_info(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance("cpu", args.threads),
    }
    name = f"relation_ways_{args.config}_{args.setting}_{args.stats_ways}.json"
    write_result(ROOT / "benchmarks" / "results" / "experiments" / name, out)


if __name__ == "__main__":
    main()
