"""The meta-learner protocol: a mapping g_φ from a task's support set to a model θ_T.

``adapt(support_x, support_y) -> state`` is g_φ(D^tr); ``predict(state, x)`` runs the adapted
model; ``meta_gradients(batch)`` returns ∇φ of the meta-loss
L_meta(φ) = (1/B) Σ_T L(predict(adapt(D^tr_T)), D^ts_T) over a batch of tasks.

Optional capabilities are part of the protocol, with defaults in
:class:`~metamap.learners.MetaLearner` (the base class every learner derives from), so that no
caller asks a learner what it is:

* ``inner_steps`` — the number of adaptation steps it was trained with (0: its mapping has no
  steps, e.g. prototypes or a closed-form head);
* ``adapt_trace(support_x, support_y, steps)`` — the adapted model after each step count (an
  adaptation curve; a learner without steps returns its one mapping for every count);
* ``set_training_step(step)`` — told the outer iteration before each training step (for
  schedules inside the learner, e.g. MAML++'s annealed multi-step loss);
* ``encoder()`` — the feature extractor its mapping is built on, for the feature tools;
* ``predict_tasks(batch, steps)`` — every task of a batch adapted to its support set and its
  query set predicted, ``(B, Q, *out)``: the default goes task by task (:func:`predict_each`),
  learners that can batch the adaptation (vmap, a batched closed form) override it. Evaluation
  over many tasks (users as tasks) goes through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from metamap.core.task import TaskBatch

__all__ = [
    "AdaptedState",
    "Learner",
    "LossName",
    "MetaStep",
    "Params",
    "predict_each",
]

Params = dict[str, Tensor]
"""Parameters or buffers by name, as :func:`torch.func.functional_call` takes them."""

LossName = Literal["mse", "cross_entropy", "masked_mse", "return"]
"""``mse`` (regression), ``cross_entropy`` (class labels), ``masked_mse`` (regression whose NaN
targets are missing values: the padding of ragged tasks stacked into one batch), ``return``
(environments as tasks: the learner maximises the expected return by its own objective)."""


@dataclass
class AdaptedState:
    """What ``adapt`` returns: the task-specific model θ_T.

    Gradient-based learners fill ``params``/``buffers`` (fast weights); other families subclass
    this with their own state (prototypes, a closed-form head, ...).
    """

    params: Params = field(default_factory=dict)
    buffers: Params = field(default_factory=dict)
    support_losses: list[float] = field(default_factory=list)
    example_shape: tuple[int, ...] | None = None
    """Shape of one support example it was adapted on (``adapt`` sets it): ``predict`` refuses
    inputs of another shape, also for models that declare no input shape."""


@dataclass
class MetaStep:
    """One outer step's result: the detached mean query ``loss``/``metric`` and ∇φ by parameter
    name (``grads``), for an optimizer to apply. ``applied=True`` (with no ``grads``) says the
    step already updated the parameters itself: an outer update that is not an optimizer step,
    such as TRPO's constrained step in meta-reinforcement learning."""

    loss: Tensor
    metric: Tensor
    grads: Params
    applied: bool = False


class Learner(Protocol):
    """What the trainer, the evaluation and the feature tools need of a meta-learner."""

    loss_name: LossName
    inner_steps: int

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        """Map one task's support set ``(S, *feature)``, ``(S, *target)`` to a model."""
        ...

    def adapt_trace(
        self, support_x: Tensor, support_y: Tensor, steps: Sequence[int]
    ) -> dict[int, AdaptedState]:
        """The adapted model after each count in ``steps``."""
        ...

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Outputs ``(N, *out)`` of the adapted model on ``x: (N, *feature)``."""
        ...

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        """∇φ L_meta over ``batch``, keyed like ``named_parameters()``."""
        ...

    def set_training_step(self, step: int) -> None:
        """The outer iteration about to be taken (0-based)."""
        ...

    def encoder(self) -> nn.Module:
        """The feature extractor ``(N, *feature) -> (N, D)``; raises if there is none."""
        ...

    def predict_tasks(self, batch: TaskBatch, steps: int | None = None) -> Tensor:
        """Each task of ``batch`` adapted (``steps`` inner steps; default: the trained number)
        to its support set, NaN-target rows left out as padding; its query set's outputs
        ``(B, Q, *out)``, detached."""
        ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...


class _Adapts(Protocol):
    def adapt(
        self, support_x: Tensor, support_y: Tensor, steps: int | None = None
    ) -> AdaptedState: ...

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor: ...


def predict_each(model: _Adapts, batch: TaskBatch, steps: int | None = None) -> Tensor:
    """:meth:`Learner.predict_tasks` task by task: ``model.adapt`` on each task's present
    support rows (float targets that are NaN anywhere are the padding of
    :func:`~metamap.core.task.pad_tasks`, left out), then ``model.predict`` on its query rows
    (padded ones included; callers drop them). Returns ``(B, Q, *out)``, detached."""
    out = []
    for sx, sy, qx, _ in zip(*batch.tensors(), strict=True):
        if sy.is_floating_point():
            present = ~torch.isnan(sy.reshape(len(sy), -1)).any(1)
            sx, sy = sx[present], sy[present]
        state = model.adapt(sx, sy, steps)
        with torch.no_grad():
            out.append(model.predict(state, qx))
    return torch.stack(out)
