"""Build tasks, models and learners from a :class:`~metamap.train.config.RunConfig`.

This is the only place that maps config names to classes; learners and models stay unaware of
configs, files and datasets.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch
from torch import nn

from metamap.data import DATASETS, ImageClassDataset
from metamap.data.dataset import ClassSplit
from metamap.errors import ConfigError, TaskShapeError
from metamap.learners import BuildContext, LearnerSection, MetaLearner
from metamap.learners.functional import LossName
from metamap.models import Baseline, ModelContext
from metamap.tasks import (
    ClassHierarchy,
    EpisodeSampler,
    MetaDatasetSampler,
    RegressionTasks,
    TaskDistribution,
)
from metamap.tasks.episodes import SUBSET_HINT
from metamap.tasks.pixels import Normalize
from metamap.train.config import DataConfig, RunConfig

__all__ = [
    "Split",
    "build_episodes",
    "build_learner",
    "build_metadataset",
    "build_model",
    "build_regression",
    "build_run_learner",
    "build_tasks",
    "dtype_of",
    "load_images",
    "preprocessing",
    "resolve_device",
]

Split = Literal["train", "val", "test"]


@functools.lru_cache(maxsize=8)
def _load_images(name: str, data_json: str, split: ClassSplit, progress: bool) -> ImageClassDataset:
    return DATASETS[name].model_validate_json(data_json).load(split, progress)


def load_images(cfg: RunConfig, split: Split, data: DataConfig | None = None) -> ImageClassDataset:
    """The decoded (cached) images of one split named by ``cfg.data`` (or by ``data``, one of
    ``cfg.extra_domains``)."""
    d = cfg.data if data is None else data
    name = {"train": d.train_split, "val": d.val_split, "test": d.test_split}
    return _load_images(d.name, d.model_dump_json(), name[split], cfg.train.progress)


def build_tasks(
    cfg: RunConfig,
    split: Split = "train",
    queries: int | None = None,
    ways: int | None = None,
    shots: int | None = None,
) -> TaskDistribution:
    """The fixed-shape task distribution of ``split``: image episodes (:func:`build_episodes`)
    where ``task`` is images, else its regression family (:func:`build_regression`).

    ``queries``, ``ways`` and ``shots`` replace ``task.queries``, ``task.ways`` and
    ``task.shots`` (evaluation passes ``eval.*``). (``task.sampler: metadataset`` trains on
    :func:`build_metadataset`'s episodes instead.)
    """
    if cfg.task.images:
        return build_episodes(cfg, split, queries, ways, shots)
    return build_regression(cfg, queries)


def build_regression(cfg: RunConfig, queries: int | None = None) -> RegressionTasks:
    """The regression family ``task.family`` names (regression tasks have no splits)."""
    return cfg.task.regression().build(queries)


def preprocessing(cfg: RunConfig, data: DataConfig | None = None) -> dict[str, Any]:
    """How an image file becomes the run's network input (``cfg.data``'s, or ``data``'s, one of
    ``cfg.extra_domains``): the dataset's decoding (:meth:`~metamap.data.DatasetSection.
    preprocessing`), normalised as the dataset or else the network asks
    (:meth:`~metamap.models.ModelSection.normalization`). Training applies it, the checkpoint's
    config records it, and every feature tool applies it again to new images."""
    d = cfg.data if data is None else data
    out = d.preprocessing()
    model = cfg.model.normalization(d.channels)
    if out["mean"] is None and model is not None:
        out["mean"], out["std"] = model
    return out


def _normalize(cfg: RunConfig, data: DataConfig | None = None) -> Normalize | None:
    p = preprocessing(cfg, data)
    return None if p["mean"] is None else (p["mean"], p["std"])


def build_episodes(
    cfg: RunConfig,
    split: Split = "train",
    queries: int | None = None,
    ways: int | None = None,
    shots: int | None = None,
) -> EpisodeSampler:
    """N-way K-shot episodes of ``split`` of ``cfg.data``. Episodes the split cannot give (more
    ways than it has classes, more shots + queries than a class holds) raise
    :class:`ConfigError` naming the config keys that set them."""
    t = cfg.task.episodes()
    q = t.queries if queries is None else queries
    data = load_images(cfg, split)
    rot, base = data.episode_classes() or (None, None)
    w = t.ways if ways is None else ways
    k = t.shots if shots is None else shots
    try:
        return EpisodeSampler(
            data, w, k, q, class_rotations=rot, class_base=base, normalize=_normalize(cfg)
        )
    except TaskShapeError as e:
        keys = _episode_keys(cfg, split, ways=w, shots=k, queries=q)
        why = str(e).replace(SUBSET_HINT, _subset_hint(cfg))  # class_base is Python's
        raise ConfigError(f"the {split} split cannot give these episodes ({keys}): {why}") from e


def _subset_hint(cfg: RunConfig) -> str:
    """How a config leaves classes out of the episodes: a folder's class lists."""
    if cfg.data.name != "folder":
        return ""
    return (
        " (name the classes of each split with data.train_classes, data.val_classes and "
        "data.test_classes)"
    )


def build_metadataset(cfg: RunConfig, split: Split) -> MetaDatasetSampler:
    """Meta-Dataset's variable-way, variable-shot episodes of ``split`` of ``data`` and
    ``extra_domains`` (each episode from one of them, picked uniformly): ``task.min_ways`` …
    ``task.max_ways`` classes, within one alphabet of an Omniglot domain with
    ``task.hierarchy``."""
    t = cfg.task.episodes()
    configs = [cfg.data, *cfg.extra_domains]
    domains = [load_images(cfg, split, d) for d in configs]
    hierarchies = [
        ClassHierarchy.from_class_names(data.class_names)
        if t.hierarchy and d.hierarchical
        else None
        for d, data in zip(configs, domains, strict=True)
    ]
    try:
        return MetaDatasetSampler(
            domains,
            min_ways=t.min_ways,
            max_ways=t.max_ways,
            hierarchies=hierarchies,
            normalize=_normalize(cfg),
        )
    except TaskShapeError as e:
        raise ConfigError(
            f"the {split} split cannot give Meta-Dataset episodes (task.min_ways {t.min_ways}, "
            f"task.max_ways {t.max_ways}, task.hierarchy {str(t.hierarchy).lower()}): {e}"
        ) from e


def _episode_keys(cfg: RunConfig, split: Split, ways: int, shots: int, queries: int) -> str:
    """The config keys (and values) behind an episode of ``split``, for error messages."""
    held_out = "task.ways"
    if split != "train":
        held_out = "eval.ways" if cfg.eval.ways is not None else "eval.ways unset, so task.ways"
    if split == "test":
        names = (held_out, "eval.shots", "eval.queries")
    else:
        names = (held_out, "task.shots", "task.queries")
    return ", ".join(f"{n} {v}" for n, v in zip(names, (ways, shots, queries), strict=True))


def build_model(
    cfg: RunConfig, pretrained: bool = True, baseline: Baseline | None = None
) -> nn.Module:
    """The base network the ``model`` section describes, with a ``task.ways``-way head for
    images (one output for regression), initialised from ``cfg.seed`` without touching the
    global RNG; ``pretrained=False`` skips the weights a backbone section names (a checkpoint
    replaces them)."""
    context = ModelContext(
        out_features=cfg.task.out_features(),
        in_features=cfg.task.in_features(),
        channels=cfg.data.channels,
        image_size=cfg.data.image_size,
        pretrained=pretrained,
        vocabulary=cfg.task.vocabulary(),
        multi_hot=cfg.task.multi_hot(),
        baseline=baseline,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return cfg.model.build(context)


def build_learner(cfg: LearnerSection, model: nn.Module, loss: LossName) -> MetaLearner:
    """The meta-learner ``cfg`` (a registered learner's section) describes, around ``model``
    (encoder learners use ``model.body``); learners with their own network need the run
    (:func:`build_run_learner`)."""
    if cfg.own_network or cfg.supervised:  # its network or head needs the run's facts
        raise ValueError(f"learner {cfg.name!r} is built by build_run_learner (it needs the run)")
    return cfg.build(BuildContext(model=lambda: model, loss=loss, seed=0, ways=0))


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a :class:`torch.device`, checked before any work starts.

    Raises :class:`ConfigError` for a name torch does not know, and for a CUDA or MPS device this
    machine does not have (a config written for a GPU, run on a CPU-only machine), saying how to
    run it on the CPU instead.
    """
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device {name!r} is not a torch device; use cpu, cuda, cuda:1 or mps"
        ) from None
    on_cpu = "run it on the CPU with -o train.device=cpu (or train.device: cpu in the config)"
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"train.device is {name!r} but this torch ({torch.__version__}) sees no CUDA "
                f"device; {on_cpu}, or install a CUDA build of torch on a machine with a GPU"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"train.device is {name!r} but this machine has {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1}); pick one of those"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device is {name!r} but MPS is not available here; {on_cpu}")
    return device


def dtype_of(cfg: RunConfig) -> torch.dtype:
    return torch.float64 if cfg.train.dtype == "float64" else torch.float32


def build_run_learner(
    cfg: RunConfig,
    base_classes: int | None = None,
    pretrained: bool = True,
    baseline: Baseline | None = None,
) -> MetaLearner:
    """The run's learner, on the configured device and dtype, without loading any data: the
    learner's own section builds it (:mod:`metamap.learners.registry`) from the configured base
    network and the run's facts.

    ``base_classes`` (learners trained on supervised batches) is the number of training classes
    (rotations included); ``pretrained=False``: a checkpoint's weights come next (see
    :func:`build_model`); ``baseline``: the problem's baseline predictor, which a network of
    categorical rows may start from (:class:`~metamap.models.Baseline`).
    """
    device = resolve_device(cfg.train.device)
    dtype = dtype_of(cfg)
    d, m = cfg.data, cfg.model
    context = BuildContext(
        # the model is placed first: learner.batching 'auto' depends on the device
        model=lambda: build_model(cfg, pretrained, baseline).to(device=device, dtype=dtype),
        loss=cfg.task.loss,
        seed=cfg.seed,
        ways=cfg.task.out_features(),
        channels=d.channels,
        image_size=d.image_size,
        width=m.base_width(),
        batch_norm=m.batch_norm_policy(),
        base_classes=base_classes,
    )
    learner = cfg.learner.build(context).to(device=device, dtype=dtype)
    if cfg.train.layout == "default" and learner.channels_last:
        learner.use_channels_last(False)
    return learner


def describe(cfg: RunConfig) -> str:
    """One line naming the protocol, printed beside every result (BatchNorm policy included)."""
    t, m = cfg.task, cfg.model
    if not t.images:
        return f"{t.describe()}, {m.describe()}"
    split = cfg.data.split_note()
    a = cfg.data.augment
    tricks = [f"crop ±{a.padding}"] * bool(a.padding) + ["flip"] * a.flip
    tricks += [f"jitter {a.jitter:g}"] * bool(a.jitter)
    tricks += cfg.learner.notes() + m.notes()
    episodes = t.describe()
    if t.variable_ways() and cfg.extra_domains:
        names = [cfg.data.name, *(d.name for d in cfg.extra_domains)]
        episodes += f" over {len(names)} domains ({', '.join(names)})"
    mean = cfg.learner.model_note()
    if cfg.eval.batch_norm == "transductive" and m.batch_norm_policy() == "inductive":
        mean += " (tested with each episode's BatchNorm statistics)"
    return f"{cfg.data.name}{split}, {episodes}, {m.describe()}{mean}" + (
        f", trained with {', '.join(tricks)}" if tricks else ""
    )
