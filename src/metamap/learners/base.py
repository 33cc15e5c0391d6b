"""The base class every meta-learner derives from: :class:`~metamap.core.Learner` (the
protocol, in :mod:`metamap.core.learner`) with the defaults of its optional capabilities and the
input checks every learner runs before work.

``adapt(support_x, support_y) -> state`` is g_φ(D^tr); ``predict(state, x)`` runs the adapted
model; ``meta_gradients(batch)`` returns ∇φ of the meta-loss
L_meta(φ) = (1/B) Σ_T L(predict(adapt(D^tr_T)), D^ts_T) over a batch of tasks, which the trainer
hands to any ``torch.optim`` optimizer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from metamap.core.learner import AdaptedState, LossName, MetaStep, predict_each
from metamap.core.task import TaskBatch
from metamap.errors import TaskShapeError
from metamap.learners.checks import (
    check_classes,
    check_examples,
    check_finite,
    check_fits_model,
    check_label_shape,
    check_same_length,
)
from metamap.models.layout import set_channels_last

__all__ = ["AdaptedState", "MetaLearner", "MetaStep"]


class MetaLearner(nn.Module, ABC):
    """Base class of all meta-learners. ``self.model`` is the base network."""

    model: nn.Module
    loss_name: LossName
    channels_last: bool = False
    inner_steps: int = 0
    """Adaptation steps the learner was trained with; 0: its mapping has no steps."""

    # ---- optional capabilities, with their defaults (see metamap.core.learner) -------------
    def adapt_trace(
        self, support_x: Tensor, support_y: Tensor, steps: Sequence[int]
    ) -> dict[int, AdaptedState]:
        """The adapted model after each count in ``steps``; without inner steps, the one
        mapping for every count."""
        state = self.adapt(support_x, support_y)
        return dict.fromkeys(steps, state)

    def set_training_step(self, step: int) -> None:
        """Told the outer iteration about to be taken; learners without schedules ignore it."""

    def predict_tasks(self, batch: TaskBatch, steps: int | None = None) -> Tensor:
        """Each task adapted to its support set (NaN-target rows are padding, left out) and its
        query set predicted, ``(B, Q, *out)``, detached: task by task here; learners that batch
        the adaptation override it (and are tested against this)."""
        return predict_each(self, batch, steps)

    def encoder(self) -> nn.Module:
        """The feature extractor its mapping is built on, ``(N, *feature) -> (N, D)``."""
        body = getattr(self.model, "body", None)
        if isinstance(body, nn.Module) and hasattr(self.model, "in_channels"):
            return body
        raise TaskShapeError(
            f"a {type(self).__name__} on {type(self.model).__name__} has no image encoder; "
            "feature extraction needs an image model (conv4 or resnet12)"
        )

    def use_channels_last(self, enabled: bool = True) -> MetaLearner:
        """Run the model's convolutions channels-last (NHWC), or in the default layout.

        Learners switch it on for convolutional models (encoder learners for any, gradient
        learners for models whose layers pin the layout, as Conv-4's do; see
        :mod:`metamap.models.layout`). The same function; on a CPU its float32 meta-gradients
        are further from float64's than the default layout's (torch's channels-last BatchNorm
        accumulates batch statistics less exactly): switch it off where that matters more than
        speed. ``benchmarks/step_variants.py`` measures both (docs/results/speed.md).
        """
        set_channels_last(self.model, enabled)
        self.channels_last = enabled
        return self

    @abstractmethod
    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        """Map one task's support set ``(S, *feature)``, ``(S, *target)`` to a model."""

    @abstractmethod
    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Outputs of the adapted model on ``x: (N, *feature)``: ``(N, *out)``."""

    @abstractmethod
    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        """∇φ L_meta over ``batch``, keyed like ``self.named_parameters()``."""

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """The differentiable meta-loss (per-task loop); ``meta_gradients`` is the fast path."""
        raise NotImplementedError(f"{type(self).__name__} has no differentiable meta-loss")

    def gradients_of(self, loss: Tensor) -> dict[str, Tensor]:
        """∇ ``loss`` for every trainable parameter, by name (zeros where ``loss`` does not use
        one): the meta-gradients of a learner whose meta-loss autograd differentiates whole."""
        named = [(k, p) for k, p in self.named_parameters() if p.requires_grad]
        gs = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        return {
            k: torch.zeros_like(p) if g is None else g for (k, p), g in zip(named, gs, strict=True)
        }

    def apply_gradients(self, step: MetaStep) -> None:
        """Store ``step.grads`` in ``.grad`` of each parameter, ready for ``optimizer.step()``."""
        for name, p in self.named_parameters():
            g = step.grads.get(name)
            p.grad = None if g is None else g.detach().to(p.dtype)

    # ---- input checks, run before any work --------------------------------------------
    # The public entry points call these first: ``adapt`` → check_task, ``predict`` →
    # check_query, ``meta_gradients``/``meta_loss`` → check_batch. Each raises TaskShapeError
    # naming the tensor; none draws random numbers or touches parameters or buffers.
    def check_batch(self, batch: TaskBatch) -> None:
        """Raise :class:`TaskShapeError` naming the problem if ``batch`` cannot be used.

        Task 0 goes through :meth:`check_task`; every task's inputs must be finite (one sum per
        tensor: negligible next to a training step) and its targets valid
        (:meth:`check_batch_targets`).
        """
        self.check_task(batch.support_x[0], batch.support_y[0])
        check_finite(batch.support_x, "batch.support_x")
        check_finite(batch.query_x, "batch.query_x")
        self.check_batch_targets(batch)

    def check_batch_targets(self, batch: TaskBatch) -> None:
        """The support and query targets of every task of ``batch`` are valid."""
        self.check_targets(batch.support_y, "support")
        self.check_targets(batch.query_y, "query")

    def check_support(self, support_x: Tensor, support_y: Tensor) -> None:
        """A support set the model can take: tensors with one target per example (class labels
        ``(S,)`` for cross-entropy), at least one example, inputs of the model's dtype, device
        and input shape, and finite."""
        check_examples(support_x, "support_x")
        if not isinstance(support_y, Tensor):
            raise TaskShapeError(
                f"support_y must be a torch.Tensor, got {type(support_y).__name__}; convert it "
                "with torch.as_tensor(...)"
            )
        check_same_length(support_x, support_y, "support_x", "support_y")
        if self.loss_name == "cross_entropy":
            check_label_shape(support_y, "support_y")
        self.check_inputs(support_x, "support_x", "support inputs")

    def check_inputs(self, x: Tensor, name: str = "x", label: str = "inputs") -> None:
        """Inputs ``(N, *feature)`` for the model: non-empty, of its dtype, device and declared
        input shape (:func:`~metamap.models.input_shape_of`), and finite."""
        check_examples(x, name)
        check_fits_model(x, self.model, name, label)
        check_finite(x, name)

    def check_query(self, state: AdaptedState, x: Tensor, name: str = "x") -> None:
        """Inputs for :meth:`predict`: as :meth:`check_inputs`, and of the shape of the support
        examples ``state`` was adapted on."""
        check_examples(x, name)
        check_fits_model(x, self.model, name, "inputs")
        shape = state.example_shape
        if shape is not None and tuple(x.shape[1:]) != shape:
            raise TaskShapeError(
                f"inputs of shape {tuple(x.shape)} do not fit the adapted model: it was adapted "
                f"on support examples of shape {shape}, but {name} has examples of shape "
                f"{tuple(x.shape[1:])}; give queries of the support set's shape"
            )
        check_finite(x, name)

    def check_task(self, support_x: Tensor, support_y: Tensor) -> None:
        """Raise :class:`TaskShapeError` if ``adapt`` cannot use this support set."""
        self.check_support(support_x, support_y)
        self.check_targets(support_y, "support")
        # On copies of the buffers, so that the check never updates BatchNorm running statistics.
        buffers = {k: v.clone() for k, v in self.model.named_buffers()}
        try:
            with torch.no_grad():
                x = support_x[:1]
                if x.is_floating_point():
                    x = x.to(_param_dtype(self.model))
                out = functional_call(self.model, buffers, (x,))
        except (ValueError, RuntimeError) as e:
            raise TaskShapeError(
                f"support inputs of shape {tuple(support_x.shape)} do not fit the model: {e}"
            ) from e
        if self.loss_name != "cross_entropy" and out.shape[1:] != support_y.shape[1:]:
            raise TaskShapeError(
                f"targets have shape {tuple(support_y.shape)} but the model outputs "
                f"{tuple(out.shape[1:])} per point"
            )

    def check_targets(self, y: Tensor, name: str) -> None:
        """Targets ``(N, ...)`` or ``(B, N, ...)`` of the ``name`` ("support"/"query") set:
        int64 labels in the head's range (support sets with at least 2 classes) for
        cross-entropy, finite floating-point targets otherwise."""
        if self.loss_name == "cross_entropy":
            ways = _out_features(self.model)
            if y.dtype != torch.long:
                raise TaskShapeError(f"{name} labels must be int64 class indices, got {y.dtype}")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or (ways is not None and hi >= ways):
                raise TaskShapeError(
                    f"{name} labels must lie in [0, {ways}) for a {ways}-way model; "
                    f"got labels from {lo} to {hi}. Remap labels to 0..ways-1 per task."
                )
            if name == "support":
                check_classes(y, "support_y")
        elif not y.is_floating_point():
            raise TaskShapeError(f"{name} regression targets must be floating point, got {y.dtype}")
        elif self.loss_name == "masked_mse":  # NaN marks a missing (padding) target
            if bool(torch.isnan(y).all()):
                raise TaskShapeError(f"every {name} target is NaN (missing): nothing to fit")
            check_finite(torch.nan_to_num(y, nan=0.0), f"{name}_y")
        else:
            check_finite(y, f"{name}_y")


def _param_dtype(model: nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return torch.get_default_dtype() if p is None else p.dtype


def _out_features(model: nn.Module) -> int | None:
    head = getattr(model, "head", None)
    out = getattr(head, "out_features", None)
    return int(out) if out is not None else None
