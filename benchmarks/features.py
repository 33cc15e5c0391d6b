"""Do meta-learned features transfer? Omniglot backbones against raw pixels and random features.

Every backbone takes 28×28 grey images with bright strokes on black (Omniglot as metamap decodes
it) and is used as a product would be, at the library's default settings:
``FewShotClassifier(extractor, head).fit(support).score(query)`` with heads ``prototype``,
``ridge`` and ``logistic`` (their default ``ridge_lambda``, ``logistic_c``, …; a
transductive-BatchNorm checkpoint is calibrated on each support set, the default).

Backbones:

* the Omniglot checkpoints of runs/bench/ named in :data:`BACKBONES` that exist (a missing one is
  skipped, and the result file says so under ``"skipped"``): ``protonet-lake``, ProtoNet trained
  on the 30 background alphabets only (configs/omniglot/protonet-lake.yaml, inductive
  BatchNorm, its last checkpoint); ``protonet``: the paper-level Vinyals ProtoNet,
  ``protonet-5w1s-trainval-inductive`` (train + val characters, the whole 8,500 episodes,
  inductive BatchNorm, its last weights); ``maml``, ``pretrain``: the Vinyals-split runs of
  benchmarks/omniglot.py (their best validated step);
* ``random``: the Conv-4 of the protonet-lake config at its initialisation (``cfg.seed``), its
  BatchNorm with the initial running statistics (``FeatureExtractor.random``);
* ``pixels``: no network: the image itself, flattened, 784 values in [0, 1]
  (:func:`pixel_extractor`).

Domains, 5-way, 1 and 5 shots, 15 queries per class, ``--episodes`` fixed episodes per cell
(seed 1234, as every method's test):

* held-out Omniglot: characters the backbone never trained on: its run's test split (for
  protonet-lake the 20 evaluation alphabets, ``omniglot("test", "metadataset")``; for the
  Vinyals-split runs the Vinyals test characters with rotations); ``random`` and ``pixels`` are
  scored on the evaluation alphabets;
* digits: scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``: 1,797
  real scanned digits 0–9 of 8×8 pixels, values 0–16, shipped inside scikit-learn, so no
  network), scaled to 0–255 and resized to 28×28 with a Lanczos filter (:func:`digits`). Their
  values count ink (a higher value is more ink; the 8×8 images are block counts of a 32×32
  bitmap), so they are already bright strokes on dark, the polarity of the Omniglot backbones'
  inputs, and are given as they are (not inverted). 10 classes, so each 5-way episode draws 5 of
  them;
* gratings: a synthetic texture domain generated here (:func:`gratings`): each class is a pair
  of oriented sinusoidal gratings with its own orientations and frequencies; its images vary in
  phase, contrast, ±6° of orientation and noise. Nothing like strokes.

Plus a linear probe on each domain: logistic regression (scikit-learn, C=1) on the features of
(at most) the first 100 classes, trained on half of each class's images, tested on the other
half; the features centred on the training half's mean and then L2-normalised (CL2N, Wang et al.
2019, "SimpleShot"), and, for comparison, L2-normalised only. On a domain far from its training a
backbone's features can all point one way (``mean_cosine``, the mean cosine similarity of two
images' features, is recorded): normalising without centring keeps that shared direction, and a
C=1 regression on what is left underfits (:func:`probe`).

Each image's feature is computed once per backbone (:class:`OnceEach`): the features of a
backbone whose BatchNorm uses fixed statistics do not depend on the other images of a batch,
so reusing them across heads and episodes changes no score, and the heads themselves run as
``FewShotClassifier`` runs them. A transductive-BatchNorm backbone is calibrated on each support
set, so its features are computed anew for every fit. The ``finetune`` head (50 Adam steps of
the whole encoder per episode) is left out for time: it is timed on a few episodes instead, and
``"left_out"`` in the result gives its seconds per episode and the hours it would add.

A backbone that does not beat raw pixels or random features on the digits is examined on them
(:func:`diagnose`, the prototype head on the same episodes): the other polarity, the digit framed
by a margin as Omniglot's characters are, framed and shifted by a few pixels, and its BatchNorm
statistics re-estimated on the digits (AdaBN).

Results: benchmarks/results/features.json (every episode's accuracy, provenance);
``python benchmarks/make_tables.py`` renders them into docs/results/features.md.

    python benchmarks/features.py --episodes 600 --threads 1
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
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch import Tensor, nn

from machine import (  # benchmarks/machine.py
    SHARED,
    command_line,
    portable,
    provenance,
    write_result,
)
from metamap.data import ImageClassDataset
from metamap.features import FeatureExtractor, FewShotClassifier
from metamap.features.extractor import Normalization
from metamap.features.inputs import ImageSource, input_spec
from metamap.tasks import EpisodeSampler
from metamap.train import build_tasks, load_config, summarize

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench"
BACKBONES = {
    "protonet-lake": RUNS / "omniglot-protonet-lake" / "checkpoints" / "last.pt",
    "protonet": RUNS / "omniglot-protonet-5w1s-trainval-inductive" / "checkpoints" / "last.pt",
    "maml": RUNS / "omniglot-maml-5w1s" / "checkpoints" / "best.pt",
    "pretrain": RUNS / "omniglot-pretrain" / "checkpoints" / "best.pt",
}
"""Omniglot checkpoints scored when they exist (the run's config.yaml sits two folders up)."""
OMNIGLOT_SPLITS = {
    "metadataset/test": "the 20 evaluation alphabets",
    "vinyals/test": "the Vinyals test characters with their rotations",
}
"""The held-out Omniglot split (``protocol/split`` of a run's config) in words."""
REFERENCE = ROOT / "configs" / "omniglot" / "protonet-lake.yaml"
"""The config of ``random`` and ``pixels``: its network, input and held-out split."""
HEADS = ("prototype", "ridge", "logistic")
SHOTS = (1, 5)
WAYS, QUERIES, SEED = 5, 15, 1234
PROBE_CLASSES = 100
FRAME, SHIFT = 20, 4
"""The digit's side in the ``framed`` diagnostic (centred in the 28×28 frame), and how far the
``shifted`` diagnostic moves it (at most, along each axis)."""
DIAGNOSTIC_HEAD = "prototype"
FINETUNE_TIMED = 5
"""Episodes of each shot count on which the left-out ``finetune`` head is timed."""
FEATURE_DOMAINS = ("omniglot", "digits", "gratings")


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


def digits(
    size: int = 28, invert: bool = False, inner: int | None = None, shift: int = 0
) -> ImageClassDataset:
    """scikit-learn's handwritten digits as uint8 ``(1797, 1, size, size)``, ink bright.

    ``load_digits`` gives 8×8 values 0–16 that count ink, so they are scaled to 0–255 as they
    are (bright strokes on dark, as Omniglot's decoded images) and resized with Lanczos to fill
    the frame. For the diagnostics: ``invert=True`` gives dark strokes on bright instead (the
    other polarity); ``inner`` resizes the digit to ``inner × inner`` and centres it in a dark
    ``size × size`` frame (as MNIST's 20×20 digits sit in 28×28, and Omniglot's characters
    leave a margin); ``shift`` then moves each digit by a random whole number of pixels in
    ``[-shift, shift]`` along each axis (seed 0), within the frame.
    """
    d = load_digits()
    pixels = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    if invert:
        pixels = 255 - pixels
    side = size if inner is None else inner
    at = (size - side) // 2
    if not 0 <= shift <= at:
        raise ValueError(f"shift must lie in [0, {at}] for a {side}-pixel digit in {size}")
    moves = np.random.default_rng(0).integers(-shift, shift + 1, (len(pixels), 2))
    images = np.full((len(pixels), 1, size, size), 255 if invert else 0, np.uint8)
    for i, (p, (dy, dx)) in enumerate(zip(pixels, moves, strict=True)):
        big = Image.fromarray(p, "L").resize((side, side), Image.Resampling.LANCZOS)
        images[i, 0, at + dy : at + dy + side, at + dx : at + dx + side] = np.asarray(big)
    tags = ["inverted"] * invert + [f"framed{inner}"] * (inner is not None)
    tags += [f"shifted{shift}"] * (shift > 0)
    return ImageClassDataset(
        images,
        np.asarray(d.target, np.int64),
        [str(c) for c in range(10)],
        name="-".join(["digits", *tags]),
    )


class Pixels(nn.Module):
    """The identity: an image's pixels are its feature (flattened by the extractor).

    It holds one empty parameter so that :class:`FeatureExtractor` can read the device and dtype
    of its encoder from its parameters; the parameter takes part in nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.empty(0))

    def forward(self, x: Tensor) -> Tensor:
        return x


def pixel_extractor(cfg: Any) -> FeatureExtractor:
    """Raw pixels as a feature extractor taking ``cfg``'s input (1×28×28 in [0, 1])."""
    return FeatureExtractor(
        Pixels(),
        input_spec(cfg),
        batch_norm="inductive",
        info={"run": "pixels", "learner": "pixels", "model": "identity", "step": 0},
    )


class OnceEach(FeatureExtractor):
    """``base`` computing each distinct image's feature once and reusing it.

    Only for a base whose features do not depend on the batch (fixed BatchNorm statistics or
    none): the feature reused is the one the base computes for that image in any batch. The
    heads of :class:`FewShotClassifier` see the same features as with ``base`` itself.
    """

    def __init__(self, base: FeatureExtractor) -> None:
        if base.batch_dependent:
            raise ValueError("features of a batch-dependent extractor cannot be reused")
        self.__dict__.update(base.__dict__)
        self._base = base
        self._seen: dict[bytes, Tensor] = {}

    def embed(
        self, source: ImageSource, batch_size: int | None = None, progress: bool = False
    ) -> Tensor:
        x = self.images(source)
        keys = [k.tobytes() for k in (x * 255).round().to(torch.uint8).numpy()]
        new = list({k: i for i, k in enumerate(keys) if k not in self._seen}.values())
        if new:
            z = self._base.embed(x[new], batch_size, progress)
            for i, row in zip(new, z, strict=True):
                self._seen[keys[i]] = row
        return torch.stack([self._seen[k] for k in keys])

    def calibrate(
        self, images: ImageSource, batch_size: int = 256, seed: int = 0
    ) -> FeatureExtractor:
        return OnceEach(self._base.calibrate(images, batch_size, seed))


def fewshot(ext: FeatureExtractor, sampler: EpisodeSampler, shots: int, n: int, head: str) -> Any:
    """Accuracy of ``FewShotClassifier(ext, head)`` on the fixed episodes ``(n, SEED)``."""
    accs = []
    start = time.perf_counter()
    for chunk in sampler.fixed_task_chunks(n, SEED, 100, shots=shots):
        for task in chunk:
            clf = FewShotClassifier(ext, head)  # type: ignore[arg-type]
            clf.fit(task.support_x, task.support_y.tolist())
            accs.append(clf.score(task.query_x, task.query_y.tolist()))
    out = summarize(accs).to_dict()  # mean, ci95, n, nonfinite and each episode's accuracy
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def probe(
    ext: FeatureExtractor, data: ImageClassDataset, classes: int = PROBE_CLASSES
) -> dict[str, float]:
    """Linear probes on the first ``classes`` classes (half of each class's images to train, the
    other half to test; a batch-dependent extractor is calibrated on the train half):
    ``centred`` (CL2N: features minus the train half's mean, then L2-normalised) and
    ``uncentred`` (L2-normalised only) accuracies, and ``mean_cosine``, the mean cosine
    similarity of two different images' features."""
    classes = min(classes, data.num_classes)
    keep = data.labels < classes
    x = torch.from_numpy(np.asarray(data.images)[keep])
    y = data.labels[keep]
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    rank = np.concatenate([np.arange((y == c).sum()) for c in range(classes)])
    train = rank % 2 == 0
    if ext.batch_dependent:
        ext = ext.calibrate(x[torch.from_numpy(train)])
    z = ext.embed(x).double()
    unit = F.normalize(z, dim=-1)
    total = unit.sum(0)
    n = len(unit)
    out = {"mean_cosine": float((total @ total - n) / (n * (n - 1)))}
    centred = F.normalize(z - z[torch.from_numpy(train)].mean(0), dim=-1)
    for key, feats in (("centred", centred), ("uncentred", unit)):
        f = feats.float().numpy()
        clf = LogisticRegression(C=1.0, max_iter=3000).fit(f[train], y[train])
        out[key] = float(clf.score(f[~train], y[~train]))
    return out


def diagnose(
    base: FeatureExtractor, ext: FeatureExtractor, episodes: int, data: ImageClassDataset
) -> dict[str, Any]:
    """What moves a backbone's digits score (the :data:`DIAGNOSTIC_HEAD` head, the same fixed
    episodes): ``inverted`` (the other polarity), ``framed`` (the digit :data:`FRAME` pixels
    wide in a dark margin, as Omniglot's characters are drawn), ``shifted`` (framed, then moved
    by up to :data:`SHIFT` pixels: how much a score owes to the digits being aligned) and, for a
    backbone with BatchNorm, ``adabn`` (its statistics re-estimated on all the unlabelled
    digits, AdaBN, Li et al. 2016: ``FeatureExtractor.calibrate``)."""
    variants: dict[str, tuple[FeatureExtractor, ImageClassDataset]] = {
        "inverted": (ext, digits(invert=True)),
        "framed": (ext, digits(inner=FRAME)),
        "shifted": (ext, digits(inner=FRAME, shift=SHIFT)),
    }
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in base.encoder.modules()):
        calibrated = base.calibrate(torch.from_numpy(np.asarray(data.images)))
        variants["adabn"] = (OnceEach(calibrated), data)
    out: dict[str, Any] = {}
    for key, (e, d) in variants.items():
        sampler = EpisodeSampler(d, WAYS, 1, QUERIES)
        for shots in SHOTS:
            r = fewshot(e, sampler, shots, episodes, DIAGNOSTIC_HEAD)
            out[f"{key}/5w{shots}s"] = r
            print(f"  digits {key:<9} 5w{shots}s {DIAGNOSTIC_HEAD} {r['mean']:.4f}", flush=True)
    return out


def finetune_cost(
    extractors: dict[str, FeatureExtractor],
    rows: dict[str, Any],
    omniglot: dict[str, EpisodeSampler],
    episodes: int,
) -> dict[str, Any]:
    """Why the ``finetune`` head is left out: its seconds per episode, timed on
    :data:`FINETUNE_TIMED` held-out Omniglot episodes of the first trained backbone (else the
    first with parameters to tune), against the three heads scored here together on the same
    cells, and the hours it would add to this benchmark (its cost per episode on Omniglot taken
    for every domain of every backbone with a network)."""
    tunable = [k for k, e in extractors.items() if sum(p.numel() for p in e.encoder.parameters())]
    if not tunable:
        return {"reason": "no backbone has parameters to fine-tune"}
    name = next((k for k in tunable if "checkpoint" in extractors[k].info), tunable[0])
    sampler = omniglot[rows[name]["omniglot_split"]]
    per_episode, others = {}, {}
    for shots in SHOTS:
        r = fewshot(extractors[name], sampler, shots, FINETUNE_TIMED, "finetune")
        per_episode[f"5w{shots}s"] = r["seconds"] / FINETUNE_TIMED
        others[f"5w{shots}s"] = (
            sum(rows[name][f"omniglot/5w{shots}s/{h}"]["seconds"] for h in HEADS) / episodes
        )
        print(f"finetune {name} omniglot 5w{shots}s: {per_episode[f'5w{shots}s']:.2f} s/episode")
    cells = len(tunable) * len(FEATURE_DOMAINS)
    hours = cells * episodes * sum(per_episode.values()) / 3600
    return {
        "reason": "left out for time",
        "timed_on": name,
        "episodes_timed": FINETUNE_TIMED,
        "seconds_per_episode": per_episode,
        "other_heads_seconds_per_episode": others,
        "estimated_hours": round(hours, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--episodes", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--backbones", nargs="+", default=[*BACKBONES, "random", "pixels"])
    ap.add_argument("--out-name", default="features", help="results file name (no suffix)")
    ap.add_argument("--data", type=Path, default=SHARED / "omniglot")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = [f"data.root={args.data}"]
    reference = load_config(REFERENCE, root)

    extractors: dict[str, FeatureExtractor] = {}
    configs: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in args.backbones:
        if name == "random":
            extractors[name], configs[name] = FeatureExtractor.random(reference), reference
        elif name == "pixels":
            extractors[name], configs[name] = pixel_extractor(reference), reference
        elif name not in BACKBONES:
            raise SystemExit(
                f"unknown backbone {name!r}: one of {[*BACKBONES, 'random', 'pixels']}"
            )
        elif not BACKBONES[name].exists():
            skipped[name] = f"{portable(str(BACKBONES[name]))} does not exist"
            print(f"skipping {name}: {skipped[name]}", flush=True)
        else:
            extractors[name] = FeatureExtractor.from_checkpoint(BACKBONES[name])
            configs[name] = load_config(BACKBONES[name].parents[1] / "config.yaml", root)
    if not extractors:
        raise SystemExit("no backbone to score")

    # held-out Omniglot: each run's test split, shared by runs with the same one
    omniglot: dict[str, EpisodeSampler] = {}
    for cfg in configs.values():
        split = f"{cfg.data.protocol}/{cfg.data.test_split}"
        if split not in omniglot:
            omniglot[split] = build_tasks(cfg, "test", queries=QUERIES, ways=WAYS)  # type: ignore[assignment]
    unseen = {"digits": digits(), "gratings": gratings()}
    domains_info: dict[str, Any] = {
        "omniglot": {
            "splits": {
                split: {
                    "description": OMNIGLOT_SPLITS.get(split, split),
                    "classes": s.num_classes,
                    "characters": s.dataset.num_classes,
                    "images": len(s.dataset),
                }
                for split, s in omniglot.items()
            }
        },
        "digits": {
            "classes": unseen["digits"].num_classes,
            "images": len(unseen["digits"]),
            "source": "sklearn.datasets.load_digits (8×8, 0–16 ink), ×255/16, Lanczos to 28×28, "
            "not inverted",
        },
        "gratings": {
            "classes": unseen["gratings"].num_classes,
            "images": len(unseen["gratings"]),
            "source": "generated by gratings() (seed 0)",
        },
    }

    rows: dict[str, Any] = {}
    for name, base in extractors.items():
        cfg = configs[name]
        split = f"{cfg.data.protocol}/{cfg.data.test_split}"
        ext = base if base.batch_dependent else OnceEach(base)
        normalization: Normalization = base.normalization
        row: dict[str, Any] = {
            "info": portable(base.info),
            "batch_norm": base.batch_norm,
            "normalization": normalization,
            "feature_dim": base.feature_dim,
            "omniglot_split": split,
        }
        samplers = {"omniglot": omniglot[split]} | {
            k: EpisodeSampler(d, WAYS, 1, QUERIES) for k, d in unseen.items()
        }
        for dom, sampler in samplers.items():
            start = time.perf_counter()
            for shots in SHOTS:
                for head in HEADS:
                    r = fewshot(ext, sampler, shots, args.episodes, head)
                    row[f"{dom}/5w{shots}s/{head}"] = r
                    cell = f"{r['mean']:.4f} ± {r['ci95']:.4f}"
                    print(f"{name:<13} {dom:<9} 5w{shots}s {head:<9} {cell}", flush=True)
            pr = probe(ext, sampler.dataset)
            row[f"{dom}/probe"] = pr["centred"]
            row[f"{dom}/probe_uncentred"] = pr["uncentred"]
            row[f"{dom}/mean_cosine"] = pr["mean_cosine"]
            row[f"{dom}/seconds"] = round(time.perf_counter() - start, 1)
            print(
                f"{name:<13} {dom:<9} linear probe {pr['centred']:.4f} (uncentred "
                f"{pr['uncentred']:.4f}, mean cosine {pr['mean_cosine']:.3f}; "
                f"{row[f'{dom}/seconds']} s)",
                flush=True,
            )
        start = time.perf_counter()
        row["digits_diagnostics"] = diagnose(base, ext, args.episodes, unseen["digits"])
        row["digits_diagnostics/seconds"] = round(time.perf_counter() - start, 1)
        rows[name] = row
    left_out = {"finetune": finetune_cost(extractors, rows, omniglot, args.episodes)}
    assert all(
        math.isfinite(v["mean"])
        for r in rows.values()
        for v in r.values()
        if isinstance(v, dict) and "mean" in v
    )
    out = {
        "benchmark": "features",
        "command": command_line(),
        "episodes": args.episodes,
        "ways": WAYS,
        "shots": list(SHOTS),
        "queries": QUERIES,
        "seed": SEED,
        "heads": list(HEADS),
        "left_out": left_out,
        "domains": domains_info,
        "probe_classes": PROBE_CLASSES,
        "diagnostics": {"head": DIAGNOSTIC_HEAD, "frame": FRAME, "shift": SHIFT},
        "backbones": rows,
        "skipped": skipped,
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": platform.machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "provenance": provenance("cpu", args.threads),
    }
    write_result(args.results / f"{args.out_name}.json", out)


if __name__ == "__main__":
    main()
