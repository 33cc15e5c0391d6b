"""Do meta-learned features matter? Backbones compared under the same few-shot heads.

Backbones (all Conv-4, 64 filters, 28×28 grey), trained by benchmarks/omniglot.py on the Vinyals
training classes: ProtoNet, MAML, the supervised pre-train baseline, and the same network at its
random initialisation. Each is wrapped in a ``metamap.features.FeatureExtractor`` and used as a
product would be — ``FewShotClassifier(extractor, head).fit(support).predict_proba(query)`` —
on two domains:

* held-out Omniglot: the Vinyals *test* characters (with rotations), 5-way 1-shot and 5-shot,
  15 queries per class, ``--episodes`` fixed episodes (seed 1234, as every method's test);
* gratings: a synthetic texture domain generated here (no second image dataset is available
  offline on these machines): each class is a pair of oriented sinusoidal gratings with its own
  orientations and frequencies; its images vary in phase, contrast, ±6° of orientation and
  noise. Nothing like strokes, so it tests transfer to another domain.

``pretrain+adabn`` is the pre-trained backbone with its BatchNorm statistics re-estimated on
2,000 unlabelled images of each domain (AdaBN, Li et al. 2016: ``FeatureExtractor.calibrate``).
Plus a linear probe on each domain: logistic regression (scikit-learn, C=1) on L2-normalised
features of the first 100 classes, trained on half of each class's images, tested on the
other half. Transductive-BatchNorm backbones are calibrated on the probe's training images.
Results: benchmarks/results/features.json; `python benchmarks/make_tables.py` renders them.

    python benchmarks/features.py --episodes 600
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from machine import (  # benchmarks/machine.py
    SHARED,
    command_line,
    portable,
    provenance,
    write_result,
)
from metamap.data import ImageClassDataset
from metamap.features import FeatureExtractor, FewShotClassifier
from metamap.tasks import EpisodeSampler, TaskBatch
from metamap.train import build_tasks, load_config, summarize

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench"
BACKBONES = {
    "protonet": RUNS / "omniglot-protonet-5w1s" / "checkpoints" / "best.pt",
    "maml": RUNS / "omniglot-maml-5w1s" / "checkpoints" / "best.pt",
    "pretrain": RUNS / "omniglot-pretrain" / "checkpoints" / "best.pt",
}
HEADS = ("prototype", "ridge", "logistic")


def gratings(
    classes: int = 120, per_class: int = 20, size: int = 28, seed: int = 0
) -> ImageClassDataset:
    """The synthetic gratings domain (see the module docstring), uint8 ``(N, 1, size, size)``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    images, labels = [], []
    for c in range(classes):
        th = rng.uniform(0, np.pi, 2)
        fr = rng.uniform(2.0, 7.0, 2)
        wt = rng.uniform(0.3, 1.0)
        for _ in range(per_class):
            img = np.zeros((size, size))
            for j, w in enumerate((1.0, wt)):
                t = th[j] + rng.normal(0, np.deg2rad(6))
                phase = rng.uniform(0, 2 * np.pi)
                u = xx * np.cos(t) + yy * np.sin(t)
                img += w * np.sin(2 * np.pi * fr[j] * u + phase)
            img = img * rng.uniform(0.6, 1.0) + rng.normal(0, 0.25, img.shape)
            img = (img - img.min()) / (img.max() - img.min() + 1e-9)
            images.append((255 * img).astype(np.uint8)[None])
            labels.append(c)
    return ImageClassDataset(
        np.stack(images),
        np.asarray(labels, np.int64),
        [f"grating{c:03d}" for c in range(classes)],
        name="gratings",
    )


def fewshot(ext: FeatureExtractor, episodes: TaskBatch, head: str) -> dict[str, Any]:
    accs = []
    for task in episodes:
        clf = FewShotClassifier(ext, head).fit(task.support_x, task.support_y.tolist())  # type: ignore[arg-type]
        accs.append(clf.score(task.query_x, task.query_y.tolist()))
    return summarize(accs).to_dict()  # mean, ci95, n, nonfinite and each episode's accuracy


def probe(ext: FeatureExtractor, data: ImageClassDataset, classes: int = 100) -> float:
    keep = data.labels < classes
    x = torch.from_numpy(np.asarray(data.images)[keep])
    y = data.labels[keep]
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    rank = np.concatenate([np.arange((y == c).sum()) for c in range(classes)])
    train = rank % 2 == 0
    if ext.normalization == "batch":
        ext = ext.calibrate(x[torch.from_numpy(train)])
    z = F.normalize(ext.embed(x), dim=-1).numpy()
    clf = LogisticRegression(C=1.0, max_iter=3000).fit(z[train], y[train])
    return float(clf.score(z[~train], y[~train]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backbones", nargs="+", default=[*BACKBONES, "pretrain+adabn", "random"])
    ap.add_argument("--out-name", default="features", help="results file name (no suffix)")
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen = {k: p for k, p in BACKBONES.items() if k in args.backbones}
    missing = [f"{k}: {p}" for k, p in chosen.items() if not p.exists()]
    if missing:
        raise SystemExit(
            "train the backbones first with benchmarks/omniglot.py (see the README); missing "
            + ", ".join(missing)
        )
    cfg = load_config(
        ROOT / "configs" / "omniglot" / "protonet-5w1s.yaml", [f"data.root={args.data}"]
    )
    extractors = {k: FeatureExtractor.from_checkpoint(p) for k, p in chosen.items()}
    if "random" in args.backbones:
        extractors["random"] = FeatureExtractor.random(cfg)
    if "pretrain+adabn" in args.backbones:
        extractors["pretrain+adabn"] = FeatureExtractor.from_checkpoint(BACKBONES["pretrain"])
    omni: EpisodeSampler = build_tasks(cfg, "test", queries=15, ways=5)  # type: ignore[assignment]
    grat = gratings()
    domains = {
        "omniglot": (omni, omni.dataset),
        "gratings": (EpisodeSampler(grat, 5, 1, 15), grat),
    }
    rows: dict[str, Any] = {}
    for name, ext in extractors.items():
        row: dict[str, Any] = {"info": portable(ext.info), "batch_norm": ext.batch_norm}
        base = ext
        for dom, (sampler, data) in domains.items():
            start = time.perf_counter()
            ext = base
            if name.endswith("+adabn"):  # BatchNorm statistics re-estimated on the domain
                pick = np.random.default_rng(0).choice(len(data), 2000, replace=False)
                ext = base.calibrate(torch.from_numpy(np.asarray(data.images)[np.sort(pick)]))
            for shots in (1, 5):
                eps = sampler.fixed_tasks(args.episodes, 1234, shots=shots)
                for head in HEADS:
                    r = fewshot(ext, eps, head)
                    row[f"{dom}/5w{shots}s/{head}"] = r
                    cell = f"{r['mean']:.4f} ± {r['ci95']:.4f}"
                    print(f"{name:<9} {dom:<9} 5w{shots}s {head:<9} {cell}", flush=True)
            row[f"{dom}/probe"] = probe(ext, data)
            row[f"{dom}/seconds"] = round(time.perf_counter() - start, 1)
            print(f"{name:<9} {dom:<9} linear probe {row[f'{dom}/probe']:.4f}", flush=True)
        rows[name] = row
    out = {
        "benchmark": "features",
        "command": command_line(),
        "episodes": args.episodes,
        "queries": 15,
        "heads": list(HEADS),
        "probe_classes": 100,
        "backbones": rows,
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance("cpu", args.threads),
    }
    assert all(
        math.isfinite(v["mean"])
        for r in rows.values()
        for v in r.values()
        if isinstance(v, dict) and "mean" in v
    )
    write_result(args.results / f"{args.out_name}.json", out)


if __name__ == "__main__":
    main()
