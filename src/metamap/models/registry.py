"""The model registry: each base network declares its config section and builder beside its code.

A model's section (``model:`` in a run config) is a :class:`ModelSection` subclass, a pydantic
model discriminated on ``name`` holding only that network's settings; it builds the network from
explicit arguments (:class:`ModelContext`) and says what it takes (images or feature vectors) and
what the protocol line should name. Configs and checkpoints of older versions held one flat model
section with every network's settings; :func:`split_model` reads them as
:func:`metamap.section.split_section` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from torch import Tensor, nn

from metamap.section import Section, register, split_section

__all__ = [
    "MODELS",
    "MODEL_LEGACY_DEFAULTS",
    "Baseline",
    "BatchNormPolicy",
    "ModelContext",
    "ModelSection",
    "register_model",
    "split_model",
]


@dataclass(frozen=True)
class Baseline:
    """A baseline predictor of a task of categorical rows, fitted on the training data by the
    problem: the mean target and an offset per value of the first column (a recommender's
    damped item biases, Koren 2010, "Factor in the neighbors", §2.1). A network may start from
    it and learn what the baseline misses as a residual."""

    mean: float
    first_column: Tensor
    """``(vocabulary[0],)`` offsets; 0 where the training data have no example."""
    first_column_factors: Tensor | None = None
    """``(vocabulary[0], K)`` latent factors per value of the first column (a matrix
    factorisation's item factors on the training ratings; 0 where they have no example), or
    ``None`` where the problem fits none."""


BatchNormPolicy = Literal["transductive", "inductive"]
"""``transductive``: batch statistics always (MAML's and ProtoNets' code); ``inductive``: running
statistics at test time."""


@dataclass(frozen=True)
class ModelContext:
    """What a network's builder may use: the task's output size and the data's shape."""

    out_features: int
    """The head's size: the ways of an episode, or 1 for regression."""
    in_features: int = 1
    """Inputs per example of a feature-vector network (regression: 1)."""
    channels: int = 1
    image_size: int = 28
    pretrained: bool = True
    """Load the weights the section names (a file, or a hub): ``False`` when a checkpoint's
    weights replace them next, so that rebuilding a trained model reads nothing else."""
    vocabulary: tuple[int, ...] = ()
    """Inputs of int64 categorical columns (users and items): the values each column takes."""
    multi_hot: tuple[int, ...] = ()
    """The columns that are 0/1 flags of one multi-valued feature (embedded as a bag)."""
    baseline: Baseline | None = None
    """The problem's baseline predictor for categorical rows (``None``: none, or the weights
    come from a checkpoint)."""


class ModelSection(Section):
    """One base network's config section."""

    name: str

    images: ClassVar[bool] = True
    """It takes images ``(C, H, W)`` (``False``: feature vectors, for regression)."""
    categorical: ClassVar[bool] = False
    """It takes rows of int64 categorical columns (``ModelContext.vocabulary``: users and items),
    and only those."""
    policy: ClassVar[bool] = False
    """It is a stochastic policy (observations → an action distribution), for environments as
    tasks, and only for those."""
    recurrent: ClassVar[bool] = False
    """It is a recurrent policy, stepped with a hidden state and fed back its previous action
    and reward (RL²'s), not a function of the observation alone."""
    min_image_size: ClassVar[int] = 1
    """The smallest image side it takes (a run config with smaller images is refused)."""

    def build(self, ctx: ModelContext) -> nn.Module:
        """The network these settings describe (initialised from the global RNG: the caller
        seeds it)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The network in the protocol line ("conv4 width 64, BatchNorm transductive")."""
        return self.name

    def notes(self) -> list[str]:
        """Training settings worth naming in the protocol line ("DropBlock 0.1 (5×5)")."""
        return []

    def head_options(self) -> list[str]:
        """Its settings that change only the head: they cannot apply to a learner that uses the
        body alone."""
        return []

    def network_options(self) -> list[str]:
        """Its settings that cannot apply to a learner that builds a network of its own."""
        return []

    def draws_random_masks(self) -> bool:
        """Whether training draws random masks (DropBlock), which ``torch.func.vmap`` refuses."""
        return False

    def drop_schedule(self, step: int) -> float:
        """The fraction of its drop rate in force at training step ``step`` (0-based)."""
        return 1.0

    def base_width(self) -> int:
        """Channels of its first block (for learners that build a network of their own)."""
        return 64

    def normalization(
        self, channels: int = 3
    ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """The per-channel ``(mean, std)`` its inputs in [0, 1] (``channels`` of them) must be
        normalised with (a pretrained backbone's), or ``None``: it takes pixels as the dataset
        gives them."""
        return None

    def batch_norm_policy(self) -> BatchNormPolicy:
        """Its BatchNorm policy: ``transductive`` (batch statistics) or ``inductive``."""
        return "transductive"


MODELS: dict[str, type[ModelSection]] = {}
"""Every registered network's section, by name."""

M = TypeVar("M", bound=ModelSection)


def register_model(section: type[M]) -> type[M]:
    """Class decorator: register ``section`` under the name its ``name`` field is fixed to."""
    return register(MODELS, section, "model")


MODEL_LEGACY_DEFAULTS: dict[str, Any] = {
    "hidden": [40, 40],
    "width": 64,
    "batch_norm": "transductive",
    "downsample": "maxpool",
    "head_init_std": None,
    "drop_rate": 0.0,
    "dropblock_size": 5,
    "drop_warmup_steps": 0,
}
"""The one flat model section of metamap before sections existed, at its defaults."""


def split_model(data: Mapping[str, Any], keep: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A model section split into its network's fields and other networks' (see
    :func:`metamap.section.split_section`)."""
    return split_section(
        data, MODELS, MODEL_LEGACY_DEFAULTS, where="model", default_name="mlp", keep=keep
    )
