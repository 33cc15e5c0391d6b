"""Embedding throughput (images/s) of FeatureExtractor against a naive per-image loop, on CPU.

Backbones at random initialisation with inductive BatchNorm (throughput does not depend on the
weights): Conv-4 (64 filters) on 28×28×1 Omniglot-sized images, Conv-4 (64) and ResNet-12
(64-160-320-640) on 84×84×3 mini-ImageNet-sized images. Three ways to embed the same images:

* naive — ``with torch.no_grad(): for x_i in images: model.body(x_i[None])``;
* batch 256 — ``FeatureExtractor(..., channels_last=False).embed(images, batch_size=256)``
  (inference mode), the usual "batch it" advice;
* batch 256, channels-last — the same with ``channels_last=True``;
* metamap default — ``FeatureExtractor(...).embed(images)``: channels-last and the automatic
  batch size (largest activation of a batch within 8 MB, i.e. cache-sized batches on a CPU).

Each timing is the best of ``--repeats`` runs; outputs are checked to agree. Results:
benchmarks/results/embed_speed.json; `python benchmarks/make_tables.py` renders them.

    python benchmarks/embed_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import nn

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.features import FeatureExtractor, InputSpec
from metamap.models import Conv4, ResNet12

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeats: int, fn: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), torch.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cases: list[tuple[str, nn.Module, InputSpec, int]] = [
        ("Conv-4 (64), 28×28×1", Conv4(5, 1, 64, 28, "inductive"), InputSpec(1, 28), 2048),
        ("Conv-4 (64), 84×84×3", Conv4(5, 3, 64, 84, "inductive"), InputSpec(3, 84), 512),
        ("ResNet-12, 84×84×3", ResNet12(5, 3, batch_norm="inductive"), InputSpec(3, 84), 128),
    ]
    rows = []
    for name, model, spec, n in cases:
        body = model.get_submodule("body").eval()
        x = torch.rand(n, *spec.shape, generator=torch.Generator().manual_seed(1))

        def naive(body: nn.Module = body, x: torch.Tensor = x) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([body(x[i : i + 1]) for i in range(len(x))])

        plain = FeatureExtractor(body, spec, channels_last=False)
        default = FeatureExtractor(body, spec)
        t_naive, ref = best_of(args.repeats, naive)
        t_batch, z1 = best_of(args.repeats, lambda e=plain, x=x: e.embed(x, 256))
        t_last, z2 = best_of(args.repeats, lambda e=default, x=x: e.embed(x, 256))
        t_auto, z3 = best_of(args.repeats, lambda e=default, x=x: e.embed(x))
        err = max(float((z - ref).abs().max()) for z in (z1, z2, z3))
        assert err < 1e-3, (name, err)
        row = {
            "backbone": name,
            "images": n,
            "feature_dim": plain.feature_dim,
            "default_batch_size": default.default_batch_size,
            "naive_per_s": n / t_naive,
            "batch256_per_s": n / t_batch,
            "batch256_channels_last_per_s": n / t_last,
            "default_per_s": n / t_auto,
            "max_abs_diff": err,
        }
        rows.append(row)
        print(
            f"{name}: naive {row['naive_per_s']:.0f}/s, batch 256 {row['batch256_per_s']:.0f}/s, "
            f"+channels-last {row['batch256_channels_last_per_s']:.0f}/s, metamap default "
            f"(batch {default.default_batch_size}) {row['default_per_s']:.0f}/s",
            flush=True,
        )
    out = {
        "benchmark": "embed_speed",
        "command": command_line(),
        "threads": args.threads,
        "rows": rows,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance("cpu", args.threads),
    }
    write_result(args.results / "embed_speed.json", out)


if __name__ == "__main__":
    main()
