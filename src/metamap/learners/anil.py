"""ANIL: Almost No Inner Loop.

Raghu, Raghu, Bengio & Vinyals, "Rapid Learning or Feature Reuse? Towards Understanding the
Effectiveness of MAML", ICLR 2020. The inner loop adapts only the head; the body φ_b is shared:

    z = f_body(x; φ_b),    w_T = w - Σ_k α ∇w L(head(z^tr; w_k), y^tr).

Because the body is not adapted, support and query features are computed once per task and the
inner loop runs on the head alone. The model must have ``body`` and ``head`` sub-modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from torch import Tensor, nn
from torch.func import functional_call

from metamap.learners.functional import LossName, Params, inner_loop
from metamap.learners.gradient import Batching, StepSizeSection
from metamap.learners.maml import MAML
from metamap.learners.registry import register_learner

__all__ = ["ANIL", "ANILSection"]


def _sub(params: Params, prefix: str) -> Params:
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


class ANIL(MAML):
    """MAML whose inner loop adapts ``model.head`` only."""

    adapt_prefixes = ("head.",)
    batched_objective: ClassVar[bool] = False  # its objective runs the body once per task

    def __init__(
        self,
        model: nn.Module,
        loss: LossName = "mse",
        inner_steps: int = 1,
        inner_lr: float | Sequence[float] = 0.01,
        learn_inner_lr: bool = False,
        first_order: bool = False,
        batching: Batching = "auto",
    ) -> None:
        if not (
            isinstance(getattr(model, "body", None), nn.Module)
            and isinstance(getattr(model, "head", None), nn.Module)
        ):
            raise ValueError("ANIL needs a model with `body` and `head` sub-modules (MLP, Conv4)")
        super().__init__(model, loss, inner_steps, inner_lr, learn_inner_lr, first_order, batching)

    def adapt_only(self, prefixes: Sequence[str]) -> ANIL:
        """As :meth:`GradientLearner.adapt_only`, within the head: ANIL computes the body's
        features once per task, so it cannot adapt the body."""
        outside = [p for p in prefixes if not p.startswith("head.")]
        if outside:
            raise ValueError(
                f"ANIL adapts only its head (the body's features are computed once per task); "
                f"{outside} name body parameters: use prefixes starting with 'head.', or MAML"
            )
        super().adapt_only(prefixes)
        return self

    def task_objective(
        self, meta: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor, use_func: bool
    ) -> tuple[Tensor, Tensor]:
        body, head = self.model.get_submodule("body"), self.model.get_submodule("head")
        fast, frozen = self._split(meta)
        body_state = (_sub(frozen, "body."), dict(body.named_buffers()))
        zs = functional_call(body, body_state, (sx,))
        zq = functional_call(body, body_state, (qx,))

        def run_head(p: Params, z: Tensor) -> Tensor:  # the head's non-adapted weights: frozen
            out: Tensor = functional_call(head, _sub({**frozen, **p}, "head."), (z,))
            return out

        fast, _ = inner_loop(
            lambda p: self._loss(run_head(p, zs), sy),
            fast,
            self.step_sizes(meta, self.inner_steps),
            create_graph=self.second_order,
            use_func=use_func,
            optimizer=self.inner_optimizer,
        )
        pred = run_head(fast, zq)
        return self._loss(pred, qy), self._metric(pred.detach(), qy)


@register_learner
class ANILSection(StepSizeSection):
    """``learner: {name: anil}`` — ANIL (Raghu et al. 2020): the inner loop adapts the head."""

    name: Literal["anil"] = "anil"
    first_order: bool = False
    learner_class = ANIL

    def is_first_order(self) -> bool:
        return self.first_order
