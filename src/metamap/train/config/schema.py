"""The run configuration's schema: its sections, their fields and the checks across them.

A :class:`RunConfig` holds ``seed``, ``data``, ``task``, ``model``, ``learner``, ``train`` and
``eval``; ``data``, ``task``, ``model`` and ``learner`` are the registered sections their ``name``
(or ``family``) picks. Reading YAML and overrides into it is :mod:`.loading`'s; turning pydantic's
errors into one line is :mod:`.messages`'.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import (
    AfterValidator,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

import metamap.rl  # noqa: F401 - its policy learners register their sections
from metamap.data import DATASETS, AugmentConfig, DatasetSection
from metamap.data.registry import DATA_LEGACY_DEFAULTS, split_data
from metamap.learners import LEARNERS, LearnerSection, split_legacy
from metamap.learners.registry import LEGACY_DEFAULTS
from metamap.models import MODEL_LEGACY_DEFAULTS, MODELS, ModelSection, split_model
from metamap.section import Section, own_error, show
from metamap.tasks import TASKS, TaskSection
from metamap.tasks.registry import TASK_LEGACY_DEFAULTS, split_task

__all__ = [
    "MAX_SEED",
    "REGISTERED_SECTIONS",
    "SCHEDULE_FIELDS",
    "AugmentConfig",
    "DataConfig",
    "EvalConfig",
    "LearnerConfig",
    "ModelConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
]


MAX_SEED = 2**63 - 1
"""The largest ``seed`` and ``eval.seed``. Runs derive further seeds from them (``seed + 1``,
``seed + 10_000`` for validation tasks), which must stay within what ``torch.manual_seed`` takes
(0 … 2**64 - 1); negative seeds would alias large ones (torch reduces them modulo 2**64)."""


def _seed_in_range(seed: int) -> int:
    """``seed`` if it is in ``0 … MAX_SEED`` (see :data:`MAX_SEED`)."""
    if not 0 <= seed <= MAX_SEED:
        raise own_error(
            f"a seed must be a whole number from 0 to 2**63 - 1 ({MAX_SEED}), got "
            f"{show(seed)}; use one in that range (e.g. 0)"
        )
    return seed


Seed = Annotated[int, AfterValidator(_seed_in_range)]
"""An integer seed, ``0 … MAX_SEED``."""


DataConfig = DatasetSection
"""The ``data`` section: the registered section of the dataset ``name`` picks (a pydantic model
discriminated on ``name``; :data:`metamap.data.DATASETS`), for ``task.family: episodes`` only.
Its shared settings are :class:`~metamap.data.DatasetSection`'s; Omniglot adds ``protocol``, a
folder ``split_fractions``."""

if TYPE_CHECKING:  # to a type checker, any dataset's section
    DataChoice = DatasetSection
else:  # to pydantic, the union of the registered sections, told apart by ``name``
    DataChoice = Annotated[Union[tuple(DATASETS.values())], Field(discriminator="name")]  # noqa: UP007


TaskConfig = TaskSection
"""The ``task`` section, the task distribution p(T): the registered section of the kind of task
``family`` names (a pydantic model discriminated on ``family``; :data:`metamap.tasks.TASKS`):
``sinusoid``, ``linear``, ``polynomial`` (regression) or ``episodes`` (images)."""

if TYPE_CHECKING:  # to a type checker, any kind of task's section
    TaskChoice = TaskSection
else:  # to pydantic, the union of the registered sections, told apart by ``family``
    TaskChoice = Annotated[Union[tuple(TASKS.values())], Field(discriminator="family")]  # noqa: UP007


ModelConfig = ModelSection
"""The ``model`` section: the registered section of the network it names (a pydantic model
discriminated on ``name``; :data:`metamap.models.MODELS`): ``mlp`` for regression, ``conv4`` or
``resnet12`` for images. Gradient-based learners use the whole network with a ``task.ways``-way
head; metric and closed-form learners use its ``body`` as the encoder. Image size and channels
come from ``data``."""

if TYPE_CHECKING:  # to a type checker, any network's section
    ModelChoice = ModelSection
else:  # to pydantic, the union of the registered sections, told apart by ``name``
    ModelChoice = Annotated[Union[tuple(MODELS.values())], Field(discriminator="name")]  # noqa: UP007


LearnerConfig = LearnerSection
"""The ``learner`` section: the registered section of the learner it names (a pydantic model
discriminated on ``name``; :data:`metamap.learners.LEARNERS`)."""

if TYPE_CHECKING:  # to a type checker, any learner's section
    LearnerChoice = LearnerSection
else:  # to pydantic, the union of the registered sections, told apart by ``name``
    LearnerChoice = Annotated[Union[tuple(LEARNERS.values())], Field(discriminator="name")]  # noqa: UP007


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


class TrainConfig(Section):
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
    schedule: Literal["constant", "cosine", "linear", "step", "piecewise"] = "constant"
    """The rate's factor by step: ``cosine`` and ``linear`` fall to 0 at ``steps`` (after any
    ``warmup_steps``; ``linear`` is Reptile's annealed meta step size, Nichol et al. 2018)."""
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
    autocast: Literal["none", "bf16"] = "none"
    """Mixed precision of the training step: ``bf16`` runs its forward passes, inner loops
    included, under ``torch.autocast`` with bfloat16 (float32's exponent range, so no loss
    scaling), while parameters, gradients and the optimizer stay float32; validation and
    evaluation run in float32. Off by default: ``benchmarks/autocast.py`` measures how far
    second-order MAML's meta-gradient moves under it and what it does to a step's time
    (docs/results/speed.md); on the CPUs measured it is slower. fp16 is not offered: its
    inner-loop gradients would need a loss scale of their own."""
    layout: Literal["auto", "default"] = "auto"
    """Memory layout of image activations: ``auto`` lets the learner choose (channels-last for
    convolutions on the per-task loop: much faster on CPUs and GPUs); ``default`` keeps NCHW
    throughout. On a CPU torch's channels-last BatchNorm accumulates batch statistics less
    exactly, so ``default`` gives float32 meta-gradients closer to float64's, at a cost in speed
    (``benchmarks/step_variants.py`` measures both; docs/results/speed.md)."""
    compile: bool = False
    """Run the training step's meta-gradient under ``torch.compile`` (TorchInductor): the first
    step compiles it, later ones reuse the code (:mod:`metamap.train.compiled`). Equal to the
    eager meta-gradient to rounding; a second-order inner loop stays eager inside (compiled, it
    would silently become first order). Off by default: ``benchmarks/step_variants.py`` measures
    it (docs/results/speed.md); on the CPUs measured it is not faster."""
    device: str = "cpu"
    collective_timeout_minutes: PositiveFloat = 120.0
    """With ``--nproc`` or torchrun: how long a process waits for the others in a collective
    (the step's all-reduce) before it gives up. Process 0 validates and writes checkpoints alone
    while the others wait at the next step's all-reduce, so this must exceed the longest
    validation. A process that dies ends the others at once (``--nproc`` and torchrun stop
    them); the timeout only bounds the wait for a process that hangs."""
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
        if self.autocast != "none" and self.dtype == "float64":
            raise ValueError(
                "train.autocast bf16 lowers float32 work to bfloat16; with train.dtype float64 "
                "use autocast none (float64 runs are the reference it is checked against)"
            )
        return self


class EvalConfig(Section):
    """The fixed, seeded evaluation protocol (``ways``: default ``task.ways``)."""

    tasks: PositiveInt = 600
    ways: PositiveInt | None = None
    shots: list[PositiveInt] = Field(default_factory=lambda: [5])
    steps: list[NonNegativeInt] = Field(default_factory=lambda: [1, 5, 10])
    queries: PositiveInt = 100
    seed: Seed = 1234
    metadataset_tasks: NonNegativeInt = 0
    """Also score this many fixed Meta-Dataset episodes (variable ways and shots) of the test
    split, as :class:`~metamap.tasks.MetaDatasetSampler` draws them with ``task.min_ways`` …
    ``task.max_ways`` (the paper: 600 per test dataset). 0: none. Metric and closed-form
    learners only."""
    batch_norm: Literal["as_trained", "transductive"] = "as_trained"
    """How BatchNorm normalises test images: ``as_trained`` (the network's policy: running
    statistics for ``model.batch_norm: inductive``, each episode's for ``transductive``) or
    ``transductive``, each episode's own statistics even for an inductive network, to score one
    trained network in both modes (the ProtoNets code tests with running statistics, MAML's
    with the episode's). Does not change the fingerprint."""
    checkpoint: Literal["best", "last"] = "best"
    """The weights that are the run's result (``metamap train --eval``, the benchmarks):
    ``best``, the best validation score (``checkpoints/best.pt``), or ``last``, the weights after
    ``train.steps`` (``checkpoints/last.pt``): a fixed budget, as when the final model trains on
    training + validation classes for a step count chosen on validation beforehand (ProtoNets'
    ``trainval`` models, Snell et al. 2017). A run whose training split holds its validation
    classes must use ``last``."""

    @field_validator("shots", "steps")
    @classmethod
    def _not_empty(cls, values: list[int], info: ValidationInfo) -> list[int]:
        """Refuse an empty ``eval.shots`` or ``eval.steps``: there would be nothing to score."""
        if not values:
            example = "[5]" if info.field_name == "shots" else "[0, 1, 5]"
            raise own_error(f"give at least one value, e.g. {example}")
        return values


class RunConfig(Section):
    """A whole run: ``seed``, where it writes, and the five sections."""

    name: str = "run"
    seed: Seed = 0
    out_dir: str = "runs/run"
    data: DataChoice = Field(
        default_factory=lambda: DATASETS["omniglot"].model_validate({"name": "omniglot"})
    )
    """Where episodes come from: the section of the registered dataset ``data.name`` names."""
    extra_domains: list[DataChoice] = Field(default_factory=list)
    """More datasets for Meta-Dataset episodes (``task.sampler: metadataset``, or
    ``eval.metadataset_tasks``), each split as ``data`` is: an episode first picks one of
    ``data`` and these uniformly, then its classes there (Triantafillou et al. 2020). They must
    share ``data``'s ``image_size`` and ``channels``; augmentation is set once, in ``data``.
    Validation stays N-way K-shot on ``data``."""
    task: TaskChoice = Field(
        default_factory=lambda: TASKS["sinusoid"].model_validate({"family": "sinusoid"})
    )
    """The tasks: the section of the registered kind of task ``task.family`` names."""
    model: ModelChoice = Field(
        default_factory=lambda: MODELS["mlp"].model_validate({"name": "mlp"})
    )
    """The base network: the section of the registered network ``model.name`` names."""
    learner: LearnerChoice = Field(
        default_factory=lambda: LEARNERS["maml"].model_validate({"name": "maml"})
    )
    """The meta-learner: the section of the registered learner ``learner.name`` names."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    _model_aside: dict[str, Any] = PrivateAttr(default_factory=dict)
    _learner_aside: dict[str, Any] = PrivateAttr(default_factory=dict)
    _data_aside: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _task_aside: dict[str, Any] = PrivateAttr(default_factory=dict)
    """Another learner's settings in a config stored before sections existed: not used, but
    counted by the fingerprint as they were (:func:`~metamap.learners.split_legacy`)."""

    @model_validator(mode="before")
    @classmethod
    def _learner_section(cls, data: Any, info: ValidationInfo) -> Any:
        """Default the learner's ``name`` and split off other learners' settings, as the one
        flat section of older configs held them (kept aside when ``parse_config(legacy=True)``
        reads a stored config, refused otherwise)."""
        if not isinstance(data, dict):
            return data
        context = info.context if isinstance(info.context, dict) else {}
        keep = bool(context.get("legacy"))
        for key, split in (("learner", split_legacy), ("model", split_model), ("task", split_task)):
            section = data.get(key)
            if isinstance(section, Mapping):
                own, context[f"{key}_aside"] = split(section, keep)
                data = {**data, key: own}
        domains = data.get("extra_domains")
        sections = [("data", data.get("data", {}))]
        if isinstance(domains, list):
            sections += [(f"extra_domains[{i}]", e) for i, e in enumerate(domains)]
        split_up = [
            split_data(d, keep, where) if isinstance(d, Mapping) else (d, {})
            for where, d in sections
        ]
        context["data_aside"] = [aside for _, aside in split_up]
        data = {**data, "data": split_up[0][0]}
        if isinstance(domains, list):
            data["extra_domains"] = [own for own, _ in split_up[1:]]
        return data

    @model_validator(mode="after")
    def _keep_aside(self, info: ValidationInfo) -> RunConfig:
        if isinstance(info.context, dict):
            self._learner_aside = dict(info.context.get("learner_aside") or {})
            self._model_aside = dict(info.context.get("model_aside") or {})
            self._data_aside = list(info.context.get("data_aside") or [])
            self._task_aside = dict(info.context.get("task_aside") or {})
        return self

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        task, model, learner = self.task, self.model, self.learner
        images, ids, rl = task.images, bool(task.vocabulary()), task.loss == "return"
        # the networks that take this task's inputs (images, feature vectors, id columns or
        # observations of environments) and fit the learner (a recurrent policy or not)
        able = ", ".join(
            repr(n)
            for n, s in MODELS.items()
            if s.images == images
            and s.categorical == ids
            and s.policy == rl
            and s.recurrent == learner.recurrent
        )
        if rl != model.policy:
            kind = "environments: it needs a policy" if rl else "no environments: it needs"
            raise ValueError(
                f"task.family {task.family!r} has {kind} model.name {able}, not {model.name!r}"
            )
        if rl != learner.reinforcement:
            fit = sorted(n for n, s in LEARNERS.items() if s.reinforcement == rl)
            raise ValueError(
                f"learner {learner.name!r} does not fit task.family {task.family!r}"
                + (" (environments as tasks)" if rl else "")
                + f": use one of {', '.join(map(repr, fit))}"
            )
        if rl and self.train.autocast != "none":
            raise ValueError(
                "train.autocast applies to the meta-gradients of labelled tasks; meta-RL's "
                "rollouts and TRPO/PPO steps stay float32: use train.autocast none"
            )
        if rl and self.train.compile:
            raise ValueError(
                "train.compile compiles the meta-gradients of labelled tasks; meta-RL's step "
                "rolls out environments and takes TRPO/PPO updates: use train.compile false"
            )
        if rl and model.recurrent != learner.recurrent:
            kind = (
                "adapts a recurrent policy's hidden state"
                if learner.recurrent
                else "adapts the parameters of a feed-forward policy"
            )
            raise ValueError(f"learner {learner.name!r} {kind}: use model.name {able}, "
                             f"not {model.name!r}")  # fmt: skip
        if images and not model.images:
            raise ValueError(f"task.family {task.family!r} needs an image model.name ({able})")
        if not images and model.images:
            raise ValueError(
                f"task.family {task.family!r} has no images: it needs model.name {able}, "
                f"not {model.name!r}"
            )
        if ids != model.categorical:
            kind = "categorical columns (users and items)" if ids else "no ids"
            raise ValueError(
                f"task.family {task.family!r} has {kind}: it needs model.name {able}, "
                f"not {model.name!r}"
            )
        if images and self.data.image_size < model.min_image_size:
            raise ValueError(
                f"model {model.name!r} needs images of at least {model.min_image_size}×"
                f"{model.min_image_size}, but data.image_size is {self.data.image_size}: set "
                f"data.image_size {model.min_image_size} or more (images are resized)"
            )
        ways, test_ways = task.out_features(), self.eval.ways
        if images and learner.fixed_head and test_ways not in (None, ways):
            raise ValueError(
                f"learner {learner.name!r} adapts a fixed {ways}-way head (task.ways), so "
                f"it cannot take {test_ways}-way test tasks: leave eval.ways unset (or {ways}), "
                f"or train a {test_ways}-way model (task.ways={test_ways})"
            )
        if task.loss not in ("cross_entropy", "return") and not learner.regression:
            raise ValueError(f"learner {learner.name!r} is for classification episodes")
        if task.loss == "cross_entropy" and not learner.classification:
            raise ValueError(
                f"learner {learner.name!r} fits regression targets, not class labels; for "
                "classification episodes use a closed-form head such as 'r2d2'"
            )
        self._check_metadataset(images)
        if images:
            self._check_selection()
        refused = [(k, learner.own_network) for k in model.network_options()]
        body = f"learner {learner.name!r} uses only the body, never the head"
        refused += [(k, body) for k in model.head_options() if not learner.fixed_head]
        for key, why in refused:
            if why:
                raise ValueError(f"model.{key} cannot apply: {why}; remove model.{key}")
        if model.draws_random_masks() and learner.draws_in_vmap():
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

    def _check_metadataset(self, images: bool) -> None:
        t, learner = self.task, self.learner
        used = []
        if t.variable_ways():
            used.append("task.sampler 'metadataset'")
        if self.eval.metadataset_tasks > 0:
            used.append("eval.metadataset_tasks")
        if not used:
            for key, value in (
                ("task.hierarchy", t.grouped()),
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
        if not learner.variable_ways:
            why = "a fixed head" if learner.fixed_head else "labelled batches"
            able = [n for n, s in LEARNERS.items() if s.variable_ways]
            raise ValueError(
                f"{what}: Meta-Dataset episodes have 5-50 ways, which learner {learner.name!r} "
                f"cannot take ({why}); use one of {', '.join(able)}"
            )
        episodes = t.episodes()
        if not 2 <= episodes.min_ways <= episodes.max_ways:
            raise ValueError(
                f"task.min_ways {episodes.min_ways} and task.max_ways {episodes.max_ways}: need "
                "2 ≤ min_ways ≤ max_ways"
            )
        d = self.data
        for i, e in enumerate(self.extra_domains):
            key = f"extra_domains[{i}]"
            if (e.image_size, e.channels) != (d.image_size, d.channels):
                raise ValueError(
                    f"{key} ({e.name}) has image_size {e.image_size}, channels {e.channels} but "
                    f"data ({d.name}) has {d.image_size}, {d.channels}: every domain of an "
                    "episode feeds the same network, so set them alike"
                )
            normalised = [(p["mean"], p["std"]) for p in (x.preprocessing() for x in (d, e))]
            if normalised[0] != normalised[1]:
                raise ValueError(
                    f"{key} ({e.name}) is normalised with mean/std {normalised[1]} but data "
                    f"({d.name}) with {normalised[0]}: one network takes both, so set them alike"
                )
            if e.augment != AugmentConfig():
                raise ValueError(f"{key}.augment: augmentation is set once, in data.augment")
        names = [d.name, *(e.name for e in self.extra_domains)]
        if t.grouped() and not any(x.hierarchical for x in (d, *self.extra_domains)):
            grouped = ", ".join(repr(n) for n, s in DATASETS.items() if s.hierarchical)
            raise ValueError(
                "task.hierarchy draws episodes within one group of classes (an Omniglot "
                f"alphabet): it needs a domain whose classes are grouped ({grouped}), not only "
                f"{', '.join(names)}"
            )

    def fingerprint(self) -> str:
        """Hash of everything that changes the trained weights (not paths, logging or eval).

        The learning-rate schedule does not count here (``steps``, ``schedule``, warm-up, decay
        and milestones): a run may resume under another schedule when both give the same rates
        for every step it has taken, which the trainer checks (:func:`schedule_mismatch`). So a
        finished run can be extended by raising ``train.steps`` (not under cosine or linear,
        whose rates depend on the total), or annealed by a piecewise decay from the step it
        reached. Where the data, its split lists and its cache live, and whether it may be
        downloaded, do not count either: moving the data does not stop a run from resuming.
        """
        d = self.model_dump(mode="json")
        for k in ("name", "out_dir", "eval"):
            d.pop(k)
        # Each dataset as the one flat section of older versions held it (so old runs resume).
        domains = [d["data"], *d["extra_domains"]]
        asides = [*self._data_aside, *({} for _ in domains)]  # none when built in code
        for i, (data, aside) in enumerate(zip(domains, asides, strict=False)):
            if data.get("protocol", "") is None:  # a folder's unused protocol, not given
                del data["protocol"]
            preprocessing = (("invert", False), ("mean", None), ("std", None))
            lists = (("train_classes", None), ("val_classes", None), ("test_classes", None))
            for k, default in (*preprocessing, *lists):
                if k in data and data[k] == default:  # as before a folder's preprocessing
                    del data[k]
            data = {**DATA_LEGACY_DEFAULTS, **aside, **data}
            for k in ("root", "splits_root", "cache_dir", "download", "verify_checksums"):
                data.pop(k)
            # a run that started without it had no non-image file to skip: the same images
            data.pop("skip_non_images", None)
            if i == 0:
                d["data"] = data
            else:
                d["extra_domains"][i - 1] = data
        # The task as the one flat section of older versions held it (so old runs resume).
        d["task"] = {**TASK_LEGACY_DEFAULTS, **self._task_aside, **d["task"]}
        for k in self.task.unfingerprinted:
            d["task"].pop(k)
        if d["task"].get("other_users") is False:  # as before the option existed
            d["task"].pop("other_users")
        if d["task"].get("actions") == "velocity":  # as before navigation's option existed
            d["task"].pop("actions")
        fixed = not self.task.variable_ways()
        if not self.extra_domains or fixed:  # as before they existed
            d.pop("extra_domains")
        if not self.task.images:
            d.pop("data")
        if fixed and d["task"]["sampler"] == "fixed":  # as before Meta-Dataset training existed
            for k in ("sampler", "min_ways", "max_ways", "hierarchy"):
                d["task"].pop(k)
        # The model as the one flat section of older versions held it (so old runs resume).
        d["model"] = {**MODEL_LEGACY_DEFAULTS, **self._model_aside, **d["model"]}
        if d["model"]["downsample"] == "maxpool":  # as before strided Conv-4 existed
            d["model"].pop("downsample")
        if d["model"]["head_init_std"] is None:  # as before the option existed
            d["model"].pop("head_init_std")
        if d["model"].get("item_factors") == 0:  # as before MeLU's item factors existed
            d["model"].pop("item_factors")
        if d["model"]["drop_rate"] == 0:  # as before DropBlock existed: older runs still resume
            for k in ("drop_rate", "dropblock_size", "drop_warmup_steps"):
                d["model"].pop(k)
        # The learner as the one flat section of older versions held it: every learner's
        # fields, at their defaults where this learner has none (so old runs still resume).
        d["learner"] = {**LEGACY_DEFAULTS, **self._learner_aside, **d["learner"]}
        if d["learner"]["class_feature"] == "sum":  # as before the option existed
            d["learner"].pop("class_feature")
        if d["learner"].get("adapt") == []:  # as before the option existed
            d["learner"].pop("adapt")
        if "inner_batch" in d["learner"] and d["learner"]["inner_batch"] is None:  # as before
            d["learner"].pop("inner_batch")
        inner = getattr(self.learner, "inner_optimizer", None)
        if inner is not None and inner.build() is None:  # plain steps: as before the option
            d["learner"].pop("inner_optimizer")
        for k in (
            "val_every",
            "val_tasks",
            "ckpt_every",
            "log_every",
            "progress",
            "device",
            "collective_timeout_minutes",
            "threads",
            *SCHEDULE_FIELDS,
        ):
            d["train"].pop(k)
        if d["train"]["autocast"] == "none":  # as before the option existed
            d["train"].pop("autocast")
        if not d["train"]["compile"]:  # as before the option existed
            d["train"].pop("compile")
        if d["train"]["layout"] == "auto":  # as before the option existed
            d["train"].pop("layout")
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


REGISTERED_SECTIONS: dict[str, tuple[str, str, Mapping[str, type[Section]]]] = {
    "learner": ("learner", "name", LEARNERS),
    "model": ("model", "name", MODELS),
    "data": ("dataset", "name", DATASETS),
    "extra_domains": ("dataset", "name", DATASETS),
    "task": ("task family", "family", TASKS),
}
"""The sections of :class:`RunConfig` that a registry assembles, by config key: what a member is
called, the key that names it, and the registry."""
