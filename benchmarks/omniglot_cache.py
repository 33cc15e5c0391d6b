"""Omniglot decode-once cache: time of the first decode, and of every later open.

Decodes all 32,460 Omniglot PNGs (Lake et al. 2015) to 28×28 into a fresh cache folder, then
re-opens the cache (no decoding: a memory map plus the sidecar) and opens the Vinyals train split
on top of it. Results: benchmarks/results/omniglot_cache.json.

    OMP_NUM_THREADS=1 python benchmarks/omniglot_cache.py [--root PATH] [--repeats 3]

The data folder defaults to $METAMAP_SHARED_DATA/omniglot, else ../shared/data/omniglot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from machine import SHARED, command_line, provenance, write_result  # benchmarks/machine.py
from metamap.data.omniglot import omniglot, omniglot_images

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=SHARED / "omniglot")
    parser.add_argument("--repeats", type=int, default=3, help="re-opens to time")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/omniglot_cache.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="metamap-omniglot-") as cache:
        t0 = time.perf_counter()
        full = omniglot_images(args.root, cache_dir=cache)
        first = time.perf_counter() - t0
        checksum = int(np.asarray(full.images, dtype=np.int64).sum())  # touch every page
        reopen, split = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            again = omniglot_images(args.root, cache_dir=cache)
            reopen.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            train = omniglot("train", root=args.root, cache_dir=cache)
            split.append(time.perf_counter() - t0)
        assert int(np.asarray(again.images, dtype=np.int64).sum()) == checksum
        (npy,) = Path(cache).glob("omniglot-*.npy")
        (sidecar,) = Path(cache).glob("omniglot-*.json")
        result = {
            "benchmark": "omniglot_cache",
            "command": command_line(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "platform": platform.platform(),
            },
            "images": int(full.images.shape[0]),
            "classes": full.num_classes,
            "image_shape": list(full.image_shape),
            "cache_npy_bytes": npy.stat().st_size,
            "cache_json_bytes": sidecar.stat().st_size,
            "first_decode_s": round(first, 3),
            "reopen_s": [round(t, 4) for t in reopen],
            "reopen_median_s": round(statistics.median(reopen), 4),
            "vinyals_train_open_s": [round(t, 4) for t in split],
            "vinyals_train": {
                "characters": train.num_classes,
                "classes": train.num_episode_classes,
            },
            "note": "first decode includes listing and stat-ing the 32,460 files; a re-open "
            "lists and stats them again (to compute the cache key), maps the .npy and reads "
            "the JSON sidecar, but decodes nothing",
            "provenance": provenance("cpu"),
        }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
