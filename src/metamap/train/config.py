"""Typed run configuration, loaded from YAML (``safe_load``) with command-line overrides.

Every field can be overridden as ``section.field=value`` (the value is parsed as YAML). Unknown
keys and ill-typed values are rejected with a :class:`~metamap.errors.ConfigError` naming them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from metamap.errors import ConfigError

__all__ = [
    "SCHEDULE_FIELDS",
    "AugmentConfig",
    "DataConfig",
    "EvalConfig",
    "LearnerConfig",
    "ModelConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]


_ENCODER_LEARNERS = ("protonet", "matching", "relation", "r2d2", "svm", "pretrain")
_VARIABLE_WAY_LEARNERS = ("protonet", "matching", "relation", "r2d2", "svm")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AugmentConfig(_Section):
    """Training-time augmentation of every support and query image (off by default).

    MetaOptNet's recipe (see :mod:`metamap.tasks.augment`): ``padding: 8`` (mini/tiered-ImageNet)
    or ``4`` (CIFAR-FS, FC100) random crop, ``flip: true``, ``jitter: 0.4``. Validation and
    test episodes are never augmented.
    """

    padding: NonNegativeInt = 0
    flip: bool = False
    jitter: float = Field(default=0.0, ge=0.0, lt=1.0)


SplitName = Literal["train", "val", "trainval", "test"]


class DataConfig(_Section):
    """Where episodes come from (``task.family: episodes`` only).

    ``root`` falls back to the dataset's environment variable (``METAMAP_OMNIGLOT`` for Omniglot)
    and ``cache_dir`` to ``$METAMAP_CACHE`` or ``~/.cache/metamap``. ``protocol`` picks the
    class split: ``vinyals`` (ProtoNets: 1,028 / 172 / 423 characters, each in 4 rotations;
    ``trainval`` is the first two, 1,200), ``maml`` (seeded 1,100 / 100 / 423 characters) or
    ``metadataset`` (by alphabet: 25 / 5 / 20 alphabets, 883 / 81 / 659 characters) for
    Omniglot, ``folder`` for your own images
    (``root/<class>/*.png``; the split is a seeded class split by ``split_fractions``); the other
    datasets have one standard split each and ignore it. ``image_size``/``channels`` must match
    the dataset (Omniglot: any size, 1 channel; CIFAR: 32/3; ImageNet and CUB: any size, 3
    channels).
    """

    name: Literal[
        "omniglot", "folder", "mini_imagenet", "tiered_imagenet", "cifar_fs", "fc100", "cub"
    ] = "omniglot"
    root: str | None = None
    """The dataset's source: Omniglot's folder or archives, your image folder, an ImageNet
    train folder (mini/tiered-ImageNet), the CIFAR-100 *binary* archive or its folder (CIFAR-FS,
    FC100), the CUB-200-2011 folder or archive. Falls back to the dataset's environment
    variable (``METAMAP_OMNIGLOT``, ``METAMAP_IMAGENET``, ``METAMAP_CIFAR100``,
    ``METAMAP_CUB``)."""
    splits_root: str | None = None
    """Split lists where the dataset needs them: Omniglot's Vinyals lists (default: beside the
    data, in the cache, or downloaded), mini/tiered-ImageNet CSVs, optional CIFAR-FS lists."""
    download: bool = False
    """Download what is missing from its official address, checked against pinned checksums:
    Omniglot's zips and Vinyals lists, the CIFAR-100 binary archive (CIFAR-FS, FC100). ImageNet
    and CUB must be given with ``root``."""
    cache_dir: str | None = None
    protocol: Literal["vinyals", "maml", "metadataset", "folder"] = "vinyals"
    image_size: PositiveInt = 28
    channels: Literal[1, 3] = 1
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    train_split: SplitName = "train"
    """The split episodes are trained on: ``trainval`` (train and val classes together) for
    final models, as the ProtoNets and MetaOptNet papers report (with ``eval.checkpoint:
    last``); every dataset has it."""
    val_split: SplitName = "val"
    test_split: SplitName = "test"
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


class TaskConfig(_Section):
    """The task distribution p(T): a regression family, or N-way K-shot episodes of images."""

    family: Literal["sinusoid", "linear", "polynomial", "episodes"] = "sinusoid"
    sampler: Literal["fixed", "metadataset"] = "fixed"
    """``episodes`` only: the training episodes. ``fixed``: N-way K-shot with ``ways``,
    ``shots`` and ``queries``. ``metadataset``: Meta-Dataset's variable-way, variable-shot,
    class-imbalanced episodes (Triantafillou et al., ICLR 2020) of ``min_ways`` … ``max_ways``
    classes of the training split; ``ways``, ``shots`` and ``queries`` then shape only the
    (N-way K-shot) validation episodes. Metric and closed-form learners only."""
    min_ways: PositiveInt = 5
    """``sampler: metadataset``: fewest classes per training episode (the paper: 5)."""
    max_ways: PositiveInt = 50
    """``sampler: metadataset``: most classes per training episode (the paper: 50)."""
    hierarchy: bool = False
    """``sampler: metadataset`` on Omniglot: draw each episode's characters from one alphabet
    (Meta-Dataset's ``bilevel`` hierarchy for Omniglot)."""
    ways: PositiveInt = 5
    """Classes per episode (``episodes`` only)."""
    shots: PositiveInt = 10
    queries: PositiveInt = 10
    noise_std: NonNegativeFloat = 0.0
    degree: NonNegativeInt = 3
    """Polynomial degree (``family: polynomial`` only)."""


class ModelConfig(_Section):
    """The base network: ``mlp`` for regression, ``conv4`` or ``resnet12`` for images.

    Gradient-based learners use the whole network with a ``task.ways``-way head; metric and
    closed-form learners use its ``body`` as the encoder. Image size and channels come from
    ``data``.
    """

    name: Literal["mlp", "conv4", "resnet12"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [40, 40])
    width: PositiveInt = 64
    batch_norm: Literal["transductive", "inductive"] = "transductive"
    downsample: Literal["maxpool", "stride"] = "maxpool"
    """``conv4`` only: 2×2 max-pool after each conv, or stride-2 convs and the last maps averaged
    (MAML's Omniglot network, several times faster: ``benchmarks/downsample_speed.py``)."""
    head_init_std: PositiveFloat | None = None
    """``conv4`` with a gradient-based learner only: draw the head's weights from N(0, std²) with
    a zero bias (MAML's Omniglot code: 1.0) instead of PyTorch's default."""
    drop_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    """``resnet12`` only: MetaOptNet's regularisation, dropout of this rate after blocks 1-2 and
    DropBlock (Ghiasi et al. 2018) after blocks 3-4; 0 turns it off."""
    dropblock_size: PositiveInt = 5
    """Side of the dropped squares (MetaOptNet: 5 on mini-/tiered-ImageNet, 2 on CIFAR)."""
    drop_warmup_steps: NonNegativeInt = 0
    """DropBlock's rate rises linearly from 0 to ``drop_rate`` over these training steps."""


class LearnerConfig(_Section):
    """The meta-learner and its inner loop."""

    name: Literal[
        "maml",
        "fomaml",
        "anil",
        "metasgd",
        "reptile",
        "protonet",
        "matching",
        "relation",
        "r2d2",
        "svm",
        "pretrain",
    ] = "maml"
    """``pretrain`` is the supervised pre-train-then-fine-tune baseline (no episodes in
    training: batches of ``train.batch_size`` base-class images; a ``head`` per test task)."""
    inner_steps: PositiveInt = 1
    inner_lr: PositiveFloat | list[PositiveFloat] = 0.01
    learn_inner_lr: bool = False
    first_order: bool = False
    batching: Literal["auto", "vmap", "loop"] = "auto"
    metric_scale: PositiveFloat | None = None
    """Matching Networks: a learnable scale of the cosine attention, initialised to this (TADAM's
    metric scaling); ``None``: the paper's unscaled cosine."""
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Meta-train ProtoNet, Matching, R2D2 or SVM against targets 1 − ε / ε/(W − 1)
    (MetaOptNet: 0.1)."""
    class_feature: Literal["sum", "mean"] = "sum"
    """Relation Networks: a class's feature map is the sum of its support maps (the paper) or
    their mean (the same at one shot; shot-invariant when tested with more shots than trained,
    or on class-imbalanced episodes)."""
    head: Literal["prototype", "logistic"] = "prototype"
    """Test-time head of ``pretrain``: nearest centroid or logistic regression on normalised
    features."""

    @model_validator(mode="after")
    def _lrs(self) -> LearnerConfig:
        if isinstance(self.inner_lr, list) and len(self.inner_lr) not in (1, self.inner_steps):
            raise ValueError(
                f"inner_lr has {len(self.inner_lr)} values; give one or one per inner step "
                f"({self.inner_steps})"
            )
        if self.label_smoothing and self.name not in ("protonet", "matching", "r2d2", "svm"):
            raise ValueError(
                "label_smoothing applies to the cross-entropy of protonet, matching, r2d2 and "
                f"svm; learner {self.name!r} has no such loss"
            )
        if self.class_feature != "sum" and self.name != "relation":
            raise ValueError(
                f"class_feature is a Relation Networks setting; learner {self.name!r} ignores it"
            )
        if self.metric_scale is not None and self.name != "matching":
            raise ValueError(
                f"metric_scale is a Matching Networks setting; learner {self.name!r} ignores it"
            )
        return self


SCHEDULE_FIELDS = (
    "steps",
    "schedule",
    "warmup_steps",
    "decay_every",
    "decay_factor",
    "milestones",
    "factors",
)
"""The ``train`` keys that shape only the learning-rate schedule: outside the fingerprint, since
a resume is checked on the rates themselves (:func:`metamap.train.schedule.schedule_mismatch`)."""


class TrainConfig(_Section):
    """The outer loop: meta-optimizer, schedule, validation and checkpoints."""

    steps: PositiveInt = 1000
    meta_batch: PositiveInt = 25
    batch_size: PositiveInt = 128
    """Images per step of supervised pre-training (``learner.name: pretrain`` only)."""
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 1e-3
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    """SGD only (MetaOptNet: 0.9, with ``nesterov: true``)."""
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0
    """L2 penalty added to the gradients by the optimizer (MetaOptNet: 5e-4)."""
    schedule: Literal["constant", "cosine", "step", "piecewise"] = "constant"
    warmup_steps: NonNegativeInt = 0
    decay_every: PositiveInt = 2000
    """``schedule: step`` multiplies the rate by ``decay_factor`` every ``decay_every`` steps."""
    decay_factor: PositiveFloat = 0.5
    milestones: list[PositiveInt] = Field(default_factory=list)
    """``schedule: piecewise``: from step ``milestones[i]`` on, the rate is ``lr · factors[i]``
    (MetaOptNet: milestones [20000, 40000, 50000], factors [0.06, 0.012, 0.0024])."""
    factors: list[PositiveFloat] = Field(default_factory=list)
    grad_clip: PositiveFloat | None = None
    dtype: Literal["float32", "float64"] = "float32"
    device: str = "cpu"
    threads: PositiveInt | None = None
    """CPU threads for torch (``None``: torch's default). Small models run fastest on 1: more
    threads only add synchronisation, and on a shared machine they can slow a run many-fold."""
    val_every: PositiveInt = 500
    val_tasks: PositiveInt = 100
    ckpt_every: PositiveInt = 500
    log_every: PositiveInt = 50
    progress: bool = True

    @model_validator(mode="after")
    def _optimizer_and_schedule(self) -> TrainConfig:
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):
            raise ValueError(
                "momentum and nesterov are SGD settings: set train.optimizer sgd, or drop them "
                "(Adam keeps its own moment estimates)"
            )
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov needs momentum > 0 (e.g. train.momentum=0.9)")
        if self.schedule == "piecewise":
            m = self.milestones
            if not m or len(m) != len(self.factors):
                raise ValueError(
                    "schedule 'piecewise' needs train.milestones and train.factors of the same "
                    f"non-zero length, got {len(m)} milestones and {len(self.factors)} factors"
                )
            if any(b <= a for a, b in itertools.pairwise(m)):
                raise ValueError(f"train.milestones must increase, got {m}")
        elif self.milestones or self.factors:
            raise ValueError("train.milestones and train.factors need schedule 'piecewise'")
        return self


class EvalConfig(_Section):
    """The fixed, seeded evaluation protocol (``ways``: default ``task.ways``)."""

    tasks: PositiveInt = 600
    ways: PositiveInt | None = None
    shots: list[PositiveInt] = Field(default_factory=lambda: [5])
    steps: list[NonNegativeInt] = Field(default_factory=lambda: [1, 5, 10])
    queries: PositiveInt = 100
    seed: int = 1234
    metadataset_tasks: NonNegativeInt = 0
    """Also score this many fixed Meta-Dataset episodes (variable ways and shots) of the test
    split, as :class:`~metamap.tasks.MetaDatasetSampler` draws them with ``task.min_ways`` …
    ``task.max_ways`` (the paper: 600 per test dataset). 0: none. Metric and closed-form
    learners only."""
    checkpoint: Literal["best", "last"] = "best"
    """The weights that are the run's result (``metamap train --eval``, the benchmarks):
    ``best``, the best validation score (``checkpoints/best.pt``), or ``last``, the weights after
    ``train.steps`` (``checkpoints/last.pt``): a fixed budget, as when the final model trains on
    training + validation classes for a step count chosen on validation beforehand (ProtoNets'
    ``trainval`` models, Snell et al. 2017). A run whose training split holds its validation
    classes must use ``last``."""


def _check_dataset(d: DataConfig, key: str) -> None:
    """The image shape and split a dataset's config names are ones the dataset has."""
    if d.name in ("cifar_fs", "fc100") and (d.image_size, d.channels) != (32, 3):
        raise ValueError(f"{key}.name {d.name!r} has 3×32×32 images: set image_size 32, channels 3")
    if d.name == "omniglot" and d.channels != 1:
        raise ValueError(f"{key}.name 'omniglot' has grey images: set {key}.channels 1")
    if d.name in ("mini_imagenet", "tiered_imagenet", "cub") and d.channels != 3:
        raise ValueError(f"{key}.name {d.name!r} has colour images: set {key}.channels 3")
    if d.name != "omniglot" and d.protocol in ("maml", "metadataset"):
        raise ValueError(
            f"{key}.protocol {d.protocol!r} is an Omniglot split; {key}.name {d.name!r} has "
            f"its own (a folder: protocol 'folder', split by {key}.split_fractions)"
        )
    if d.name == "omniglot" and d.protocol == "folder":
        raise ValueError(f"{key}.protocol 'folder' is for data.name 'folder'")


class RunConfig(_Section):
    """A whole run: ``seed``, where it writes, and the five sections."""

    name: str = "run"
    seed: int = 0
    out_dir: str = "runs/run"
    data: DataConfig = Field(default_factory=DataConfig)
    extra_domains: list[DataConfig] = Field(default_factory=list)
    """More datasets for Meta-Dataset episodes (``task.sampler: metadataset``, or
    ``eval.metadataset_tasks``), each split as ``data`` is: an episode first picks one of
    ``data`` and these uniformly, then its classes there (Triantafillou et al. 2020). They must
    share ``data``'s ``image_size`` and ``channels``; augmentation is set once, in ``data``.
    Validation stays N-way K-shot on ``data``."""
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        _check_dataset(self.data, "data")
        images = self.task.family == "episodes"
        if images and self.model.name == "mlp":
            raise ValueError("task.family 'episodes' needs model.name 'conv4' or 'resnet12'")
        if not images and self.model.name != "mlp":
            raise ValueError(f"regression tasks need model.name 'mlp', not {self.model.name!r}")
        ways, test_ways = self.task.ways, self.eval.ways
        if images and self.learner.name not in _ENCODER_LEARNERS and test_ways not in (None, ways):
            raise ValueError(
                f"learner {self.learner.name!r} adapts a fixed {ways}-way head (task.ways), so "
                f"it cannot take {test_ways}-way test tasks: leave eval.ways unset (or {ways}), "
                f"or train a {test_ways}-way model (task.ways={test_ways})"
            )
        if not images and self.learner.name in _ENCODER_LEARNERS:
            raise ValueError(f"learner {self.learner.name!r} is for classification episodes")
        self._check_metadataset(images)
        if images:
            self._check_selection()
        if self.model.drop_rate > 0 and self.model.name != "resnet12":
            raise ValueError(
                f"model.drop_rate (DropBlock) is a ResNet-12 option; set it to 0 for "
                f"model.name {self.model.name!r}"
            )
        learner = self.learner.name
        if self.model.downsample != "maxpool":
            own = "the relation learner uses its own embedding (Sung et al.)"
            self._check_conv4_option("downsample", own if learner == "relation" else "")
        if self.model.head_init_std is not None:
            body = f"learner {learner!r} uses only the body, never the head"
            self._check_conv4_option("head_init_std", body if learner in _ENCODER_LEARNERS else "")
        if self.model.drop_rate > 0 and self.learner.batching == "vmap":
            raise ValueError(
                "model.drop_rate > 0 draws random masks, which torch.func.vmap refuses: "
                "set learner.batching to 'loop' or 'auto'"
            )
        return self

    def _check_selection(self) -> None:
        """Refuse choosing the best-validation checkpoint when validation classes are trained on
        (``trainval`` holds ``train`` and ``val``): the choice would be made on training data."""
        d, covers = self.data, {"trainval": {"train", "val", "trainval"}}
        tr, va = d.train_split, d.val_split
        overlap = tr == va or va in covers.get(tr, set()) or tr in covers.get(va, set())
        if overlap and self.eval.checkpoint == "best":
            raise ValueError(
                f"data.train_split {tr!r} holds the validation classes (data.val_split {va!r}), "
                "so the best-validation checkpoint would be chosen on training classes: set "
                "eval.checkpoint 'last' (a fixed budget, chosen beforehand on a run that "
                "trains on 'train') or train on data.train_split 'train'"
            )

    def _check_conv4_option(self, key: str, conv4_refusal: str) -> None:
        """Refuse a set ``model.<key>`` on models other than Conv-4, and on Conv-4 where
        ``conv4_refusal`` (empty when the option applies) says why it cannot apply."""
        name = self.model.name
        where = f"model.name is {name!r}" if name != "conv4" else conv4_refusal
        if where:
            raise ValueError(f"model.{key} is a Conv-4 option but {where}; remove model.{key}")

    def _check_metadataset(self, images: bool) -> None:
        t, learner = self.task, self.learner.name
        used = []
        if t.sampler == "metadataset":
            used.append("task.sampler 'metadataset'")
        if self.eval.metadataset_tasks > 0:
            used.append("eval.metadataset_tasks")
        if not used:
            for key, value in (
                ("task.hierarchy", t.hierarchy),
                ("extra_domains", self.extra_domains),
            ):
                if value:
                    raise ValueError(
                        f"{key} is for Meta-Dataset episodes (task.sampler 'metadataset' or "
                        "eval.metadataset_tasks > 0)"
                    )
            return
        what = " and ".join(used)
        if not images:
            raise ValueError(f"{what} needs task.family 'episodes' (images)")
        if learner not in _VARIABLE_WAY_LEARNERS:
            why = "a fixed head" if learner not in _ENCODER_LEARNERS else "labelled batches"
            raise ValueError(
                f"{what}: Meta-Dataset episodes have 5-50 ways, which learner {learner!r} "
                f"cannot take ({why}); use one of {', '.join(_VARIABLE_WAY_LEARNERS)}"
            )
        if not 2 <= t.min_ways <= t.max_ways:
            raise ValueError(
                f"task.min_ways {t.min_ways} and task.max_ways {t.max_ways}: need "
                "2 ≤ min_ways ≤ max_ways"
            )
        d = self.data
        for i, e in enumerate(self.extra_domains):
            key = f"extra_domains[{i}]"
            _check_dataset(e, key)
            if (e.image_size, e.channels) != (d.image_size, d.channels):
                raise ValueError(
                    f"{key} ({e.name}) has image_size {e.image_size}, channels {e.channels} but "
                    f"data ({d.name}) has {d.image_size}, {d.channels}: every domain of an "
                    "episode feeds the same network, so set them alike"
                )
            if e.augment != AugmentConfig():
                raise ValueError(f"{key}.augment: augmentation is set once, in data.augment")
        names = [d.name, *(e.name for e in self.extra_domains)]
        if t.hierarchy and "omniglot" not in names:
            raise ValueError(
                "task.hierarchy draws episodes within one Omniglot alphabet: it needs an "
                f"Omniglot domain (data.name 'omniglot'), not only {', '.join(names)}"
            )

    def fingerprint(self) -> str:
        """Hash of everything that changes the trained weights (not paths, logging or eval).

        The learning-rate schedule does not count here (``steps``, ``schedule``, warm-up, decay
        and milestones): a run may resume under another schedule when both give the same rates
        for every step it has taken, which the trainer checks (:func:`schedule_mismatch`). So a
        finished run can be extended by raising ``train.steps`` (not under cosine, whose rates
        depend on the total), or annealed by a piecewise decay from the step it reached. Where
        the data, its split lists and its cache live, and whether it may be downloaded, do not
        count either: moving the data does not stop a run from resuming.
        """
        d = self.model_dump(mode="json")
        for k in ("name", "out_dir", "eval"):
            d.pop(k)
        for data in (d["data"], *d["extra_domains"]):
            for k in ("root", "splits_root", "cache_dir", "download"):
                data.pop(k)
        if not self.extra_domains or self.task.sampler == "fixed":  # as before they existed
            d.pop("extra_domains")
        if self.task.family != "episodes":
            d.pop("data")
        if self.task.sampler == "fixed":  # as before Meta-Dataset training existed
            for k in ("sampler", "min_ways", "max_ways", "hierarchy"):
                d["task"].pop(k)
        if self.model.downsample == "maxpool":  # as before strided Conv-4 existed
            d["model"].pop("downsample")
        if self.model.head_init_std is None:  # as before the option existed
            d["model"].pop("head_init_std")
        if self.model.drop_rate == 0:  # as before DropBlock existed: older runs still resume
            for k in ("drop_rate", "dropblock_size", "drop_warmup_steps"):
                d["model"].pop(k)
        if self.learner.class_feature == "sum":  # as before the option existed
            d["learner"].pop("class_feature")
        for k in (
            "val_every",
            "val_tasks",
            "ckpt_every",
            "log_every",
            "progress",
            "device",
            "threads",
            *SCHEDULE_FIELDS,
        ):
            d["train"].pop(k)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{where}' (check the spelling; see configs/ for examples)")
        elif not err["loc"]:  # a check across sections: its input is the whole config
            lines.append(err["msg"].removeprefix("Value error, "))
        else:
            lines.append(f"'{where}': {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def parse_config(data: Mapping[str, Any]) -> RunConfig:
    """Validate a plain mapping into a :class:`RunConfig`."""
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as e:
        raise ConfigError(_format(e)) from None


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a config mapping."""
    out: dict[str, Any] = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from None
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: '{p}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (or the defaults when ``path`` is None) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"config file {str(p)!r} does not exist; see configs/ for examples "
                "(e.g. configs/sinusoid/maml.yaml)"
            )
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
        data = loaded
    return parse_config(apply_overrides(data, overrides))
