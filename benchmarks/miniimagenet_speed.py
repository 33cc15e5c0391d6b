"""Training speed of the mini-ImageNet configs, on a CPU or a GPU (meta-iterations per second).

Runs the real `configs/miniimagenet/*.yaml` through the real trainer for a short, fixed number of
steps, on a *mini-ImageNet-shaped* dataset: 100 classes of random 84×84 RGB images, written as a
class-per-folder image tree and decoded by metamap's own folder loader, with the 64/16/20 class
split of Ravi & Larochelle. Only the shape of the data matters for speed, so no ImageNet is
needed, and the figures say nothing about accuracy. ``--max-meta-batch`` caps each config's
meta-batch where memory is short (ResNet-12 at meta-batch 8 needs more than a 24 GiB CPU machine
holds); rates are compared as episodes per second. Each config's first ``--warmup`` steps
(allocator, cuDNN autotuning, caches) are not timed; the rate is read from the trainer's own
``metrics.jsonl`` clock, so validation and checkpoints are excluded.

    python benchmarks/miniimagenet_speed.py --device cpu --threads 1 --steps 3 --max-meta-batch 2
    python3 benchmarks/miniimagenet_speed.py --device cuda --steps 50   # on a GPU machine

Results: benchmarks/results/miniimagenet_speed_<device type>.json (``--results`` to change);
`python benchmarks/make_tables.py` puts CPU and GPU side by side in the README.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from machine import (  # benchmarks/
    clock_overrides,
    clocked_seconds,
    command_line,
    device_name,
    provenance,
    write_result,
)
from metamap.train import (
    Trainer,
    apply_overrides,
    describe,
    load_config,
    parse_config,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ["maml-5w1s", "protonet-5w1s", "svm-resnet12-5w1s"]
CLASSES, PER_CLASS = 100, 30  # 64 / 16 / 20 classes; 30 images ≥ 15 shots + 6 queries (SVM)


def fake_imagenet(root: Path, seed: int = 0) -> Path:
    """A class-per-folder tree of random 84×84 RGB PNGs (100 classes × 30 images)."""
    rng = np.random.default_rng(seed)
    for c in range(CLASSES):
        d = root / f"class{c:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            pixels = rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(d / f"{i:02d}.png")
    return root


def time_config(
    name: str,
    data: Path,
    work: Path,
    device: str,
    warmup: int,
    steps: int,
    max_meta_batch: int | None = None,
) -> Any:
    """Train ``warmup + steps`` steps of one config; the rate over the last ``steps``."""
    path = ROOT / "configs" / "miniimagenet" / f"{name}.yaml"
    published = load_config(path)
    meta_batch = published.train.meta_batch
    capped = meta_batch if max_meta_batch is None else min(meta_batch, max_meta_batch)
    cfg = parse_config(
        apply_overrides(
            published.model_dump(mode="json"),
            [
                f"train.meta_batch={capped}",
                "data.name=folder",
                "data.protocol=folder",
                f"data.root={data}",
                f"data.cache_dir={work / 'cache'}",
                "data.split_fractions=[0.64, 0.16, 0.20]",
                f"train.device={device}",
                *clock_overrides(warmup, steps),
            ],
        )
    )
    trainer = Trainer(cfg, work / name)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    trainer.fit()
    wall = time.perf_counter() - t0
    seconds = clocked_seconds(work / name / "metrics.jsonl", warmup, steps)
    row: dict[str, Any] = {
        "config": name,
        "protocol": describe(cfg),
        "meta_batch": cfg.train.meta_batch,
        "config_meta_batch": meta_batch,
        "episodes_per_step": cfg.train.meta_batch,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "seconds": round(seconds, 3),
        "it_per_s": steps / seconds,
        "episodes_per_s": steps * cfg.train.meta_batch / seconds,
        "wall_seconds_with_setup": round(wall, 1),
    }
    if (batching := getattr(trainer.learner, "batching", None)) is not None:
        row["batching"] = batching  # gradient learners: how the meta-batch ran (loop or vmap)
    if device.startswith("cuda"):
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    # Peak resident memory of this process so far (configs run in order, so it is this config's
    # peak only where it exceeds every earlier one's; Linux reports KiB).
    row["process_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(
        f"{name} on {device}: {row['it_per_s']:.3g} it/s, {row['episodes_per_s']:.3g} episodes/s "
        f"(meta-batch {capped} of {meta_batch}) [{row['protocol']}]",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", nargs="+", default=CONFIGS, help="names in configs/miniimagenet")
    ap.add_argument("--steps", type=int, default=20, help="timed meta-iterations per config")
    ap.add_argument("--warmup", type=int, default=2, help="untimed meta-iterations first")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument(
        "--max-meta-batch",
        type=int,
        default=None,
        help="cap each config's meta-batch (memory); rates compare as episodes/s",
    )
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = fake_imagenet(work / "images")
        rows = [
            time_config(c, data, work, args.device, args.warmup, args.steps, args.max_meta_batch)
            for c in args.configs
        ]
    kind = torch.device(args.device).type
    out = {
        "benchmark": "miniimagenet_speed",
        "device": args.device,
        "device_name": device_name(args.device),
        "threads": args.threads,
        "rows": rows,
        "command": command_line(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance(args.device, args.threads),
    }
    write_result(args.results / f"miniimagenet_speed_{kind}.json", out)


if __name__ == "__main__":
    main()
