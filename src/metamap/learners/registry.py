"""The learner registry: each learner declares its config section and its builder beside its code.

A learner's section is a :class:`LearnerSection` subclass — a pydantic model discriminated on
``name`` that holds only that learner's settings, says what the learner can take
(class-level capabilities: regression tasks, a fixed head, Meta-Dataset's variable ways,
supervised batches) and builds the learner from explicit arguments (:class:`BuildContext`).
:func:`register_learner` adds it to :data:`LEARNERS`, from which the run config is assembled
(:mod:`metamap.train.config`). Adding a learner is one new module in this package (it is found
and imported with the package) plus a YAML config.

Configs and checkpoints written before sections existed held one flat learner section with every
learner's fields; :func:`split_legacy` reads them (a field another learner owns is dropped when it
holds the old default, kept aside for the fingerprint otherwise), so they still load and resume.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from torch import nn

from metamap.core.learner import LossName
from metamap.learners.base import MetaLearner
from metamap.section import Section, register, split_section

__all__ = [
    "LEARNERS",
    "LEGACY_DEFAULTS",
    "BuildContext",
    "LearnerSection",
    "register_learner",
    "split_legacy",
]


@dataclass(frozen=True)
class BuildContext:
    """What a learner's builder may use: the configured base network and the run's facts."""

    model: Callable[[], nn.Module]
    """A fresh, seeded base network with a ``ways``-way head, on the run's device and dtype."""
    loss: LossName
    seed: int
    ways: int
    channels: int = 1
    image_size: int = 28
    width: int = 64
    batch_norm: str = "transductive"
    base_classes: int | None = None
    """The training classes (learners trained on supervised batches only)."""


class LearnerSection(Section):
    """One learner's config section (``learner:`` in a run config)."""

    name: str

    regression: ClassVar[bool] = True
    """It takes regression tasks (a learner of image episodes only says ``False``)."""
    classification: ClassVar[bool] = True
    """It takes classification episodes (a learner of regression targets only says ``False``)."""
    reinforcement: ClassVar[bool] = False
    recurrent: ClassVar[bool] = False
    """It needs a recurrent policy (``model.recurrent``); the other policy learners adapt the
    parameters of a feed-forward one."""
    shards_exactly: ClassVar[bool] = False
    """Its meta-gradient is a mean of per-task terms (or, for policy learners, its outer update
    averages its per-task means across processes), so a meta-batch split across processes gives
    the same answer (``metamap train --nproc``); encoder learners normalise across the whole
    batch and supervised learners take other steps: ``False``."""
    """It meta-learns policies on environments as tasks (``task.loss: return``), and only that."""
    fixed_head: ClassVar[bool] = True
    """It adapts the model's ``task.ways``-way head, so it takes only that many ways."""
    variable_ways: ClassVar[bool] = False
    """It takes Meta-Dataset's variable-way, variable-shot episodes."""
    supervised: ClassVar[bool] = False
    """It trains on labelled batches of the training classes, not on episodes."""
    problem: ClassVar[str | None] = None
    """The registered problem that trains it whatever the tasks (``pretrain``: labelled
    batches); ``None``: the one its ``task`` section names."""
    own_network: ClassVar[str] = ""
    """Why model options do not apply to it ("" when it uses the configured model)."""

    def build(self, ctx: BuildContext) -> MetaLearner:
        """The learner these settings describe."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """Settings worth naming in a result's protocol line ("label smoothing 0.1")."""
        return []

    def model_note(self) -> str:
        """What it changes about the network, for the protocol line (", …"; "" for nothing)."""
        return ""

    def draws_in_vmap(self) -> bool:
        """Whether it batches tasks with ``torch.func.vmap`` (which refuses random masks)."""
        return False


LEARNERS: dict[str, type[LearnerSection]] = {}
"""Every registered learner's section, by name."""

S = TypeVar("S", bound=LearnerSection)


def register_learner(section: type[S]) -> type[S]:
    """Class decorator: register ``section`` under the name its ``name`` field is fixed to."""
    return register(LEARNERS, section, "learner")


LEGACY_DEFAULTS: dict[str, Any] = {
    "inner_steps": 1,
    "inner_lr": 0.01,
    "learn_inner_lr": False,
    "first_order": False,
    "batching": "auto",
    "metric_scale": None,
    "label_smoothing": 0.0,
    "class_feature": "sum",
    "head": "prototype",
}
"""The one flat learner section of metamap before sections existed, at its defaults."""


def split_legacy(data: Mapping[str, Any], keep: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A learner section split into its learner's fields and other learners' (see
    :func:`metamap.section.split_section`)."""
    return split_section(
        data, LEARNERS, LEGACY_DEFAULTS, where="learner", default_name="maml", keep=keep
    )
