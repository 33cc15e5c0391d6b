"""How far first-order MAML's meta-gradient is from MAML's, on each Conv-4 downsampling.

First-order MAML (Finn et al. 2017, §5.2) drops the second derivatives from the meta-gradient:
it keeps ∇_θ' L_query(θ') at the adapted weights θ' and leaves out how θ' moves with θ. How much
that leaves out depends on the network. For ``--seeds`` initialisations (``seed``) of the network
of ``configs/omniglot/fomaml-5w1s.yaml``, with 2×2 max-pooling and with stride-2 convolutions
(``model.downsample``), at the config's inner step size α=0.4 and, on max-pool, also at 0.1,
this draws one meta-batch of the config's training episodes and computes both meta-gradients of
the same weights on the same episodes: their cosine and norm ratio, for the conv body and for the
head, and the query loss after the inner step (above chance's ln N when that step overshoots).
A cosine near 1 means first-order MAML steps where MAML would; near 0, the dropped term carries
most of MAML's step.

    python benchmarks/first_order_gap.py --threads 1

Results: benchmarks/results/first_order_gap.json; `python benchmarks/make_tables.py` puts them
in the README.
"""

from __future__ import annotations

import argparse
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from machine import (  # benchmarks/machine.py
    SHARED,
    command_line,
    cpu_info,
    provenance,
    write_result,
)
from metamap.train import describe, from_config, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "omniglot" / "fomaml-5w1s.yaml"
# (model.downsample, learner.inner_lr): the config's step size on both networks, and a smaller
# one on the max-pool network, where the config's step overshoots.
SETTINGS = (("maxpool", 0.4), ("stride", 0.4), ("maxpool", 0.1))


def meta_gradient(over: list[str], seed: int) -> tuple[dict[str, Tensor], float]:
    """The meta-gradient of one meta-batch, by parameter name, and its mean query loss after the
    inner steps."""
    cfg = load_config(CONFIG, over)
    problem, learner = from_config(cfg)
    batch = problem.tasks.sample(cfg.train.meta_batch, torch.Generator().manual_seed(seed))
    step = learner.meta_gradients(batch)
    return step.grads, step.loss.item()


def compare(first: dict[str, Tensor], exact: dict[str, Tensor], part: str) -> dict[str, float]:
    """Cosine and norm ratio of the two meta-gradients over the parameters of ``part``."""
    names = sorted(k for k in exact if k.startswith(f"model.{part}."))
    a = torch.cat([first[k].flatten() for k in names]).double()
    b = torch.cat([exact[k].flatten() for k in names]).double()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0)
    return {"cosine": cos.item(), "norm_ratio": (a.norm() / b.norm()).item()}


def mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5, help="initialisations (and meta-batches)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for setting, alpha in SETTINGS:
        per_seed: list[dict[str, Any]] = []
        for seed in range(args.seeds):
            over = [
                f"data.root={args.data}",
                f"model.downsample={setting}",
                f"learner.inner_lr={alpha}",
                f"seed={seed}",
            ]
            first, loss = meta_gradient(over, seed)
            exact, _ = meta_gradient([*over, "learner.name=maml"], seed)
            per_seed.append({p: compare(first, exact, p) for p in ("body", "head")})
            per_seed[-1]["adapted_query_loss"] = loss
        summary = {
            p: {k: mean_sd([s[p][k] for s in per_seed]) for k in ("cosine", "norm_ratio")}
            for p in ("body", "head")
        }
        loss = mean_sd([s["adapted_query_loss"] for s in per_seed])
        cfg = load_config(CONFIG, [f"data.root={args.data}", f"model.downsample={setting}"])
        rows.append(
            {
                "downsample": setting,
                "inner_lr": alpha,
                "protocol": describe(cfg),
                **summary,
                "adapted_query_loss": loss,
                "seeds": per_seed,
            }
        )
        body = summary["body"]
        print(
            f"{setting} α={alpha}: body cosine {body['cosine']['mean']:.3f} ± "
            f"{body['cosine']['sd']:.3f}, "
            f"norm ratio {body['norm_ratio']['mean']:.3f}",
            flush=True,
        )
    cfg = load_config(CONFIG, [f"data.root={args.data}"])
    out = {
        "benchmark": "first_order_gap",
        "command": command_line(),
        "config": "fomaml-5w1s",
        "meta_batch": cfg.train.meta_batch,
        "inner_steps": cfg.learner.inner_steps,
        "config_inner_lr": cfg.learner.inner_lr,
        "rows": rows,
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": cpu_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance("cpu", args.threads),
    }
    write_result(args.results / "first_order_gap.json", out)


if __name__ == "__main__":
    main()
