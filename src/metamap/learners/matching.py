"""Matching Networks (without full context embeddings).

Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra, "Matching Networks for One Shot
Learning", NeurIPS 2016. The label of a query x̂ is a distribution: an attention-weighted sum of
the support labels (Eq. 1), the attention a softmax over cosine similarities (Eq. 2):

    P(ŷ | x̂, S) = Σ_i a(x̂, x_i) y_i,     a(x̂, x_i) = exp c(f(x̂), g(x_i)) / Σ_j exp c(f(x̂), g(x_j)),

with c the cosine similarity and y_i one-hot. Here f = g = the encoder; the *full context
embeddings* (a bidirectional LSTM over the support set for g and an attention LSTM for f,
paper §2.1.2) are **not implemented**.

Shapes: support embeddings ``(..., S, D)``, one-hot ``(..., S, W)``; query embeddings
``(..., Q, D)`` → attention ``(..., Q, S)`` → probabilities ``(..., Q, W)``. ``predict`` returns
the *log*-probabilities as logits: ``softmax(log P) = P``, so cross-entropy on them is the
paper's negative log-likelihood, and since cosines lie in [−1, 1] every probability is at least
``e^{-2}/S`` (no log of zero).

``scale`` (optional) multiplies the cosines by a learnable ``s`` before the softmax: the metric
scaling of Oreshkin, Rodríguez & Lacoste, "TADAM", NeurIPS 2018. Without it the attention is
nearly flat on an encoder whose last layer is a ReLU (as Conv-4's): its cosines lie in [0, 1],
so a query can put at most ``e / (e + N − 1)`` of its attention on the right one of N support
images however well it is embedded, and training makes slow progress. With it the bound on
the probabilities becomes ``e^{-2s}/S``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import PositiveFloat
from torch import Tensor, nn

from metamap.learners.base import AdaptedState
from metamap.learners.metric import EncoderLearner, EncoderSection, expect_state
from metamap.learners.registry import BuildContext, register_learner

__all__ = ["MatchingNet", "MatchingSection", "MatchingState"]


@dataclass(kw_only=True)
class MatchingState(AdaptedState):
    """The memory of the support set: unit-norm embeddings ``(S, D)`` and one-hot ``(S, W)``."""

    keys: Tensor
    labels: Tensor


class MatchingNet(EncoderLearner):
    """Matching Networks on any encoder ``(N, ...) -> (N, D)`` (f = g, no FCE)."""

    def __init__(
        self, encoder: nn.Module, scale: float | None = None, per_task_forward: bool = False
    ) -> None:
        super().__init__(encoder, per_task_forward)
        if scale is not None and not scale > 0:
            raise ValueError(f"scale must be positive (None: the paper's cosine), got {scale}")
        self.scale = None if scale is None else nn.Parameter(torch.tensor(float(scale)))

    def fit(self, support: Tensor, onehot: Tensor, steps: int | None = None) -> MatchingState:
        return MatchingState(keys=F.normalize(support, dim=-1), labels=onehot)

    def attention(self, state: MatchingState, query: Tensor) -> Tensor:
        """a(x̂, x_i): softmax over the support of cosine similarities, ``(..., Q, S)``."""
        cosine = F.normalize(query, dim=-1) @ state.keys.mT
        if self.scale is not None:
            cosine = self.scale * cosine
        return cosine.softmax(dim=-1)

    def score(self, state: AdaptedState, query: Tensor) -> Tensor:
        memory = expect_state(state, MatchingState)
        probs = self.attention(memory, query) @ memory.labels
        return probs.log()


@register_learner
class MatchingSection(EncoderSection):
    """``learner: {name: matching}`` — Matching Networks (Vinyals et al. 2016)."""

    name: Literal["matching"] = "matching"
    metric_scale: PositiveFloat | None = None
    """A learnable scale of the cosine attention, initialised to this (TADAM's metric scaling);
    ``None``: the paper's unscaled cosine."""

    def build(self, ctx: BuildContext) -> EncoderLearner:
        head = MatchingNet(self.encoder_of(ctx), scale=self.metric_scale)
        return head.use_label_smoothing(self.label_smoothing)
