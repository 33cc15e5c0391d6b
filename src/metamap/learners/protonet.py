"""Prototypical Networks.

Snell, Swersky & Zemel, "Prototypical Networks for Few-shot Learning", NeurIPS 2017. Each class
is represented by the mean of its support embeddings (Eq. 1), and a query is classified by a
softmax over negative squared Euclidean distances to the prototypes (Eq. 2):

    c_k = (1/|S_k|) Σ_{(x_i, y_i) ∈ S_k} f_φ(x_i),      p(y = k | x) ∝ exp(−‖f_φ(x) − c_k‖²).

Shapes: support embeddings ``(..., S, D)``, one-hot labels ``(..., S, W)`` → prototypes
``(..., W, D)``; query embeddings ``(..., Q, D)`` → logits ``(..., Q, W)``.

``distance="cosine"`` replaces −‖·‖² by ``s · cos(f_φ(x), c_k)`` with a learnable scale ``s``
(the cosine classifier with metric scaling of Oreshkin et al. 2018, TADAM, and Chen et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metamap.learners.base import AdaptedState
from metamap.learners.metric import EncoderLearner, EncoderSection, expect_state
from metamap.learners.registry import BuildContext, register_learner

__all__ = ["ProtoNet", "ProtoNetSection", "PrototypeState", "class_means"]

Distance = Literal["euclidean", "cosine"]


@dataclass(kw_only=True)
class PrototypeState(AdaptedState):
    """One prototype per class: ``prototypes`` ``(W, D)`` (``(B, W, D)`` inside a batch)."""

    prototypes: Tensor


def class_means(z: Tensor, onehot: Tensor) -> Tensor:
    """Class means ``(..., W, D)`` of embeddings ``(..., S, D)`` with one-hot ``(..., S, W)``."""
    return onehot.mT @ z / onehot.sum(dim=-2).unsqueeze(-1)


class ProtoNet(EncoderLearner):
    """Prototypical Networks on any encoder ``(N, ...) -> (N, D)``."""

    def __init__(
        self,
        encoder: nn.Module,
        distance: Distance = "euclidean",
        scale: float = 10.0,
        per_task_forward: bool = False,
    ) -> None:
        super().__init__(encoder, per_task_forward)
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")
        self.distance = distance
        if distance == "cosine":
            self.scale = nn.Parameter(torch.tensor(float(scale)))

    def fit(self, support: Tensor, onehot: Tensor, steps: int | None = None) -> PrototypeState:
        return PrototypeState(prototypes=class_means(support, onehot))

    def score(self, state: AdaptedState, query: Tensor) -> Tensor:
        c = expect_state(state, PrototypeState).prototypes
        if self.distance == "cosine":
            return self.scale * F.normalize(query, dim=-1) @ F.normalize(c, dim=-1).mT
        return -(query.unsqueeze(-2) - c.unsqueeze(-3)).pow(2).sum(dim=-1)


@register_learner
class ProtoNetSection(EncoderSection):
    """``learner: {name: protonet}`` — Prototypical Networks (Snell et al. 2017)."""

    name: Literal["protonet"] = "protonet"

    def build(self, ctx: BuildContext) -> EncoderLearner:
        return ProtoNet(self.encoder_of(ctx)).use_label_smoothing(self.label_smoothing)
