"""ProtoNet training speed: metamap against easyfsl 1.5.0, same episodes, same initial weights.

One training step = encode one episode's support and query images with a Conv-4 (64 filters,
transductive BatchNorm), prototypes, query loss, backward, Adam step:

* easyfsl — its documented loop: ``model.process_support_set(sx, sy); scores = model(qx);
  F.cross_entropy(scores, qy).backward(); optimizer.step()`` with ``PrototypicalNetworks``, on
  the textbook Conv-4 (conv → BN → ReLU → pool, default layout; ``benchmarks/textbook.py``);
* metamap — ``ProtoNet.meta_gradients(batch)``, ``apply_gradients``, ``optimizer.step()`` on its
  ``Conv4`` body (pool before ReLU; its default: channels-last, pinned, for convolutional
  encoders). Same weights, same function;
* metamap, contiguous — the same with ``use_channels_last(False)``, to show where the gain is.

Scenarios: Omniglot-shaped 60-way 1-shot 5-query episodes of 28×28×1 images (ProtoNet's
Omniglot training), and mini-ImageNet-shaped 20-way 5-shot 15-query episodes of 84×84×3 images
(its mini-ImageNet training). The episodes are random tensors (speed does not depend on pixel
values), identical for all variants. Before timing, the script checks on one episode, with
BatchNorm in eval mode (so that support and query statistics do not differ between the two
libraries' forward passes), that both compute the same prototypes and distances: easyfsl scores
with −‖z − c‖ and metamap with −‖z − c‖² (the ProtoNets paper's squared distance), so
easyfsl's scores squared must equal metamap's. Variants run interleaved over rounds; the median
episodes/s over rounds is reported.

    make bench-env                       # installs easyfsl 1.5.0 (without torchvision)
    python benchmarks/speed_easyfsl.py --threads 1
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from metamap.learners import ProtoNet
from metamap.models import Conv4
from metamap.tasks import TaskBatch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_stubs import install_stubs
from machine import command_line, provenance, write_result  # benchmarks/machine.py
from textbook import textbook

install_stubs(["torchvision"])  # easyfsl.modules imports it; PrototypicalNetworks never does
from easyfsl.methods import PrototypicalNetworks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {
    "omniglot-60w1s5q": (60, 1, 5, 1, 28),
    "miniimagenet-20w5s15q": (20, 5, 15, 3, 84),
}


def episode(ways: int, shots: int, queries: int, c: int, size: int, seed: int) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(1, ways * shots, c, size, size, generator=g)
    qx = torch.rand(1, ways * queries, c, size, size, generator=g)
    sy = torch.arange(ways).repeat_interleave(shots)[None]
    qy = torch.arange(ways).repeat_interleave(queries)[None]
    return TaskBatch(sx, sy, qx, qy)


def check_same_computation(body: nn.Module, batch: TaskBatch) -> float:
    """max |easyfsl score² − (−metamap logit)| relative to the largest distance, eval-mode BN."""
    ours = ProtoNet(copy.deepcopy(body)).eval()
    theirs = PrototypicalNetworks(textbook(body)).eval()
    with torch.no_grad():
        want = -ours.predict(ours.adapt(batch.support_x[0], batch.support_y[0]), batch.query_x[0])
        theirs.process_support_set(batch.support_x[0], batch.support_y[0])
        got = theirs(batch.query_x[0]).pow(2)
    return float((got - want).abs().max() / want.abs().max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="training steps per variant per round")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name, (ways, shots, queries, c, size) in SCENARIOS.items():
        torch.manual_seed(0)
        # inductive BN for the check only (eval mode with running statistics); same weights.
        check_body = Conv4(ways, c, 64, size, "inductive").body
        rel = check_same_computation(check_body, episode(ways, shots, queries, c, size, 99))
        assert rel < 1e-4, (name, rel)
        body = Conv4(ways, c, 64, size, "transductive").body
        batches = [episode(ways, shots, queries, c, size, s) for s in range(args.steps)]

        def easyfsl_variant(body: nn.Module, batches: list[TaskBatch]) -> Callable[[], None]:
            model = PrototypicalNetworks(textbook(body)).train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)

            def run() -> None:
                for b in batches:
                    model.process_support_set(b.support_x[0], b.support_y[0])
                    loss = F.cross_entropy(model(b.query_x[0]), b.query_y[0])
                    opt.zero_grad()
                    loss.backward()  # type: ignore[no-untyped-call]
                    opt.step()

            return run

        def metamap_variant(
            body: nn.Module, batches: list[TaskBatch], channels_last: bool
        ) -> Callable[[], None]:
            learner = ProtoNet(copy.deepcopy(body)).use_channels_last(channels_last).train()
            opt = torch.optim.Adam(learner.parameters(), lr=1e-3)

            def run() -> None:
                for b in batches:
                    learner.apply_gradients(learner.meta_gradients(b))
                    opt.step()

            return run

        variants = {
            "easyfsl": easyfsl_variant(body, batches),
            "metamap": metamap_variant(body, batches, True),
            "metamap_contiguous": metamap_variant(body, batches, False),
        }
        for fn in variants.values():
            fn()  # warm-up
        rates: dict[str, list[float]] = {k: [] for k in variants}
        keys = list(variants)
        for r in range(args.rounds):
            for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
                start = time.perf_counter()
                variants[k]()
                rates[k].append(args.steps / (time.perf_counter() - start))
        med = {k: statistics.median(v) for k, v in rates.items()}
        row = {
            "scenario": name,
            "episode": f"{ways}-way {shots}-shot {queries}-query, {c}×{size}×{size}",
            "easyfsl_eps": med["easyfsl"],
            "metamap_eps": med["metamap"],
            "metamap_contiguous_eps": med["metamap_contiguous"],
            "ratio": med["metamap"] / med["easyfsl"],
            "ratio_contiguous": med["metamap_contiguous"] / med["easyfsl"],
            "check_rel_err": rel,
        }
        rows.append(row)
        print(
            f"{name}: easyfsl {row['easyfsl_eps']:.3f} eps/s, metamap {row['metamap_eps']:.3f} "
            f"({row['ratio']:.2f}×), metamap contiguous {row['metamap_contiguous_eps']:.3f} "
            f"({row['ratio_contiguous']:.2f}×)",
            flush=True,
        )
    import easyfsl

    out = {
        "benchmark": "speed_easyfsl",
        "command": command_line(),
        "threads": args.threads,
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "rows": rows,
        "torch": torch.__version__,
        "easyfsl": easyfsl.__version__,
        "machine": platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance("cpu", args.threads),
    }
    write_result(args.results / "speed_easyfsl.json", out)


if __name__ == "__main__":
    main()
