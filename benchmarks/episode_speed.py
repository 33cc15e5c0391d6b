"""Episode sampling speed on Omniglot (episodes per second, one core).

Timed on the real Omniglot when it is there (``--data``, default ``../shared/data/omniglot`` or
``$METAMAP_SHARED_DATA/omniglot``): the Vinyals ``trainval`` split from metamap's decoded cache,
1,200 characters × 20 images of 1×28×28, each character in 4 rotations = 4,800 classes, as the
trainer samples it. Also timed, with no data files needed, on synthetic random uint8 images of
the same shape: ``rotations`` (1,200 dataset classes × 4 quarter turns, the same set-up) and
``plain`` (4,800 dataset classes, no rotation). Each setting (5/20-way, 1/5-shot, 15 queries per
class, batches of 1 and 32 episodes) is timed for ``--seconds`` several times; the best repeat
is reported (the machine may be shared). Also timed: the Meta-Dataset sampler (one episode per
call) on the ``plain`` dataset. The target (issue 3): ≥ 2,000 5-way 5-shot 15-query Omniglot
episodes per second.

    OMP_NUM_THREADS=1 python benchmarks/episode_speed.py   # → benchmarks/results/episode_speed.json
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from machine import (  # benchmarks/machine.py
    SHARED,
    command_line,
    portable,
    provenance,
    write_result,
)
from metamap.data import omniglot
from metamap.data.dataset import ImageClassDataset
from metamap.tasks import EpisodeSampler, MetaDatasetSampler, make_generator

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [(5, 1), (5, 5), (20, 1), (20, 5)]  # (ways, shots)
QUERIES = 15
BATCHES = [1, 32]


def synthetic(num_classes: int, per_class: int = 20, seed: int = 0) -> ImageClassDataset:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (num_classes * per_class, 1, 28, 28), dtype=np.uint8)
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
    return ImageClassDataset(images, labels, [f"char{c}" for c in range(num_classes)], name="syn")


def rate(fn: Callable[[], object], per_call: int, seconds: float, repeats: int) -> float:
    """Best-of-``repeats`` episodes per second of ``fn`` (which makes ``per_call`` episodes)."""
    fn()
    best = 0.0
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            fn()
            calls += 1
        best = max(best, calls * per_call / elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=1.0, help="time per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot", help="Omniglot folder")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    datasets: dict[str, ImageClassDataset] = {}
    rotations: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name: (class_base, rotations)
    if (args.data / "images_background").is_dir():
        real = omniglot("trainval", "vinyals", root=args.data)
        datasets["omniglot"] = real
        rotations["omniglot"] = (real.class_base, real.class_rotations)
        real_note = (
            f"'omniglot': the real Omniglot ({portable(args.data)}), Vinyals trainval split from "
            f"the decoded cache: {real.num_classes} characters × 4 rotations = "
            f"{real.num_episode_classes} classes, {len(real)} images of 1×28×28"
        )
    else:
        real_note = f"'omniglot': not timed, no Omniglot copy at {args.data}"
        print(real_note)
    datasets |= {"rotations": synthetic(1200), "plain": synthetic(4800, seed=1)}
    rotations["rotations"] = (np.repeat(np.arange(1200), 4), np.tile(np.arange(4), 1200))
    results: dict[str, dict[str, float]] = {}
    for name, data in datasets.items():
        base, rot = rotations.get(name, (None, None))
        for ways, shots in SETTINGS:
            sampler = EpisodeSampler(
                data, ways, shots, QUERIES, class_base=base, class_rotations=rot
            )
            for b in BATCHES:
                g = make_generator(0)
                eps = rate(lambda: sampler.sample(b, g), b, args.seconds, args.repeats)  # noqa: B023
                results.setdefault(name, {})[f"{ways}w{shots}s_b{b}"] = round(eps, 1)
                print(
                    f"{name:9s} {ways:2d}-way {shots}-shot {QUERIES}q, "
                    f"batch {b:2d}: {eps:7.0f} episodes/s"
                )
    md = MetaDatasetSampler(datasets["plain"])
    g = make_generator(0)
    md_rate = rate(lambda: md.sample_task(g), 1, args.seconds, args.repeats)
    print(f"Meta-Dataset sampler (variable ways/shots), one episode per call: {md_rate:.0f} ep/s")

    res = {
        "benchmark": "episode_speed",
        "command": command_line(),
        "dataset": f"{real_note}; synthetic uint8, 1×28×28, 20 images per class: 'rotations': "
        "1200 classes × 4 quarter turns = 4800 sampler classes; 'plain': 4800 classes",
        "queries_per_class": QUERIES,
        "unit": "episodes per second (best of repeats), keys '<ways>w<shots>s_b<batch size>'",
        "episodes_per_second": results,
        "metadataset_episodes_per_second": round(md_rate, 1),
        "threads": args.threads,
        "seconds_per_repeat": args.seconds,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance("cpu", args.threads),
    }
    write_result(args.out / "episode_speed.json", res)


if __name__ == "__main__":
    main()
