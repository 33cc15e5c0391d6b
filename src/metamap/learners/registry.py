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
from typing import Any, ClassVar, TypeVar, get_args

from torch import nn

from metamap.core.learner import LossName
from metamap.core.section import Section, as_yaml
from metamap.learners.base import MetaLearner

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
    fixed_head: ClassVar[bool] = True
    """It adapts the model's ``task.ways``-way head, so it takes only that many ways."""
    variable_ways: ClassVar[bool] = False
    """It takes Meta-Dataset's variable-way, variable-shot episodes."""
    supervised: ClassVar[bool] = False
    """It trains on labelled batches of the training classes, not on episodes."""
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
    fields: dict[str, Any] = dict(section.__pydantic_fields__)
    names = get_args(fields["name"].annotation)
    if len(names) != 1 or not isinstance(names[0], str):
        raise TypeError(f"{section.__name__}.name must be a Literal of one learner name")
    if names[0] in LEARNERS and LEARNERS[names[0]] is not section:
        raise TypeError(f"learner {names[0]!r} is registered twice")
    LEARNERS[names[0]] = section
    return section


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


def _same(a: Any, b: Any) -> bool:
    """Equal, with booleans equal only to booleans (``True == 1`` in Python)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def split_legacy(data: Mapping[str, Any], keep: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(section, aside)``: a learner section split into the fields its learner has and the
    fields of other learners (as every section before sections existed held them all).

    Another learner's field at its old default is dropped. Otherwise it is kept ``aside`` when
    ``keep`` and it is one of the old flat section's (a stored config: it still counts for the
    fingerprint, so the run resumes), and refused otherwise, naming the learners that have it.
    Unknown keys are left for the section's own check to name.
    """
    name = data.get("name", "maml")
    section = LEARNERS.get(name) if isinstance(name, str) else None
    if section is None:  # the discriminated union names the choices
        return dict(data), {}
    own: dict[str, Any] = {"name": name}
    aside: dict[str, Any] = {}
    for key, value in data.items():
        owners = [n for n, s in LEARNERS.items() if key in s.model_fields]
        if key in section.model_fields or not owners:
            own[key] = value
        elif key in LEGACY_DEFAULTS and _same(value, LEGACY_DEFAULTS[key]):
            continue
        elif keep and key in LEGACY_DEFAULTS:
            aside[key] = value
        else:
            raise ValueError(
                f"learner.{key} ({as_yaml(value)}) is a setting of {', '.join(owners)}; "
                f"learner {name!r} has no such setting: remove it"
            )
    return own, aside
