"""Multi-layer perceptron, split into a ``body`` (features) and a linear ``head``.

The sinusoid network of MAML §5.1 is ``MLP(1, 1, hidden=(40, 40))``: 1-40-40-1 with ReLU.
Shapes: ``(N, in_features) -> (N, out_features)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from metamap.models.registry import ModelContext, ModelSection, register_model
from metamap.models.shapes import InputShape, set_input_shape

__all__ = ["MLP", "MLPSection"]


class MLP(nn.Module):
    """``in → hidden[0] → … → hidden[-1] → out`` with ReLU between layers."""

    def __init__(
        self, in_features: int, out_features: int, hidden: Sequence[int] = (40, 40)
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1 or any(h < 1 for h in hidden):
            raise ValueError(
                f"MLP sizes must be positive: in={in_features}, out={out_features}, hidden={hidden}"
            )
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.in_features = in_features
        self.feature_dim = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_features)
        self.input_shape: InputShape = (in_features,)
        """The shape of one input, ``(in_features,)`` (also on ``body``)."""
        set_input_shape(self.body, self.input_shape)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"MLP expects input of shape (N, {self.in_features}), got {tuple(x.shape)}"
            )
        out: Tensor = self.head(self.body(x))
        return out

    def features(self, x: Tensor) -> Tensor:
        """The body's output ``(N, hidden[-1])``, the head's input."""
        out: Tensor = self.body(x)
        return out

    # ---- B copies at once (metamap.models.ensemble) -------------------------------------------
    def can_forward_each(self) -> bool:
        """Whether the layers are still the ones :meth:`forward_each` knows (Linear, ReLU)."""
        return isinstance(self.head, nn.Linear) and all(
            isinstance(m, nn.Linear | nn.ReLU) for m in self.body
        )

    def forward_each(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """B copies of the network: ``x: (B, N, in_features) -> (B, N, out_features)``.

        Each parameter in ``params`` is ``(B, *shape)`` (one per copy) or of its own shape
        (shared); missing ones are the module's own. One ``baddbmm`` per layer: the same
        function as ``vmap`` of :func:`torch.func.functional_call`, without its per-op overhead
        (see :mod:`metamap.models.ensemble`).
        """
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"MLP.forward_each expects input of shape (B, N, {self.in_features}), "
                f"got {tuple(x.shape)}"
            )
        h = x
        layers = [(f"body.{i}", m) for i, m in enumerate(self.body)] + [("head", self.head)]
        for name, m in layers:
            if isinstance(m, nn.ReLU):
                h = torch.relu(h)
                continue
            if not isinstance(m, nn.Linear):
                raise TypeError(f"MLP.forward_each cannot run layer {name}: {m}")
            w = params.get(f"{name}.weight", m.weight)
            b = params.get(f"{name}.bias", m.bias)
            h = _linear_each(h, w, b)
        return h


def _linear_each(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """``h: (B, N, in)`` through a linear layer of weight ``(B, out, in)`` or ``(out, in)`` and
    bias ``(B, out)``, ``(out,)`` or none."""
    if b is not None and b.dim() == 2:
        b = b.unsqueeze(-2)  # (B, 1, out): broadcast over the N inputs of each copy
    if w.dim() == 3:
        return torch.bmm(h, w.mT) if b is None else torch.baddbmm(b, h, w.mT)
    out = torch.matmul(h, w.mT)
    return out if b is None else out + b


@register_model
class MLPSection(ModelSection):
    """``model: {name: mlp}`` — the MLP of MAML's regression experiments (1-40-40-1)."""

    name: Literal["mlp"] = "mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [40, 40])
    images = False

    def build(self, ctx: ModelContext) -> MLP:
        return MLP(ctx.in_features, ctx.out_features, self.hidden)

    def describe(self) -> str:
        return f"mlp {self.hidden}"
