"""Relation Networks.

Sung, Yang, Zhang, Xiang, Torr & Hospedales, "Learning to Compare: Relation Network for Few-Shot
Learning", CVPR 2018. An embedding module f_φ maps images to feature *maps*; the class feature
is the element-wise sum of the support maps of the class (K-shot, §3.3); a relation module g_ϕ
scores the depth-concatenation of each (class, query) pair (Eq. 1), trained by regressing the
scores to the match indicator with MSE (Eq. 2):

    r_{i,j} = g_ϕ(C(Σ_{k: y_k = i} f_φ(x_k), f_φ(x_j))) ∈ [0, 1],
    φ, ϕ ← argmin Σ_i Σ_j (r_{i,j} − 1(y_i == y_j))².

Shapes: support maps ``(..., S, C, h, w)``, one-hot ``(..., S, W)`` → class maps
``(..., W, C, h, w)``; query maps ``(..., Q, C, h, w)`` → pairs ``(..., Q, W, 2C, h, w)`` →
scores ``(..., Q, W)``.

The encoder must return un-pooled, un-flattened maps ``(N, C, h, w)``: use
:func:`relation_embedding` (the paper's four 64-filter blocks, the last two without pooling) or
e.g. ``Conv4(...).body[:-1]`` (Conv-4 without its ``Flatten``). The relation module is two
conv-BN-ReLU-max-pool blocks and two fully connected layers (ReLU, then sigmoid).

BatchNorm in the relation module follows ``batch_norm`` (as in the embedding); in train mode it
normalises over all (class, query) pairs of one forward: all pairs of the batch, or of one task
with ``per_task_forward=True``.

Loss: ``loss="mse"`` (the paper) makes ``predict`` return the scores r ∈ [0, 1] and trains
on MSE against one-hot; ``loss="cross_entropy"`` returns the pre-sigmoid scores and trains
on softmax cross-entropy. ``loss_name`` stays ``"cross_entropy"`` either way: it tells the
library that targets are class labels and that the metric is accuracy (argmax of the scores).

Class feature: ``class_feature="sum"`` (the paper) sums the K support maps, so a model trained
at one number of shots sees inputs of another scale when tested at another (K times larger at K
shots after 1-shot training), and classes with more shots in a class-imbalanced episode
(Meta-Dataset) get larger features. ``class_feature="mean"`` averages them instead: the same at
one shot, shot-invariant otherwise (not in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metamap.errors import TaskShapeError
from metamap.learners.base import AdaptedState
from metamap.learners.metric import EncoderLearner, expect_state
from metamap.learners.registry import BuildContext, LearnerSection, register_learner
from metamap.models.conv4 import BatchNormPolicy
from metamap.models.shapes import set_input_shape

__all__ = [
    "RelationNet",
    "RelationSection",
    "RelationState",
    "relation_embedding",
    "relation_feature_shape",
]

RelationLoss = Literal["mse", "cross_entropy"]
ClassFeature = Literal["sum", "mean"]


def _block(c_in: int, c_out: int, padding: int, pool: bool, bn: BatchNormPolicy) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, padding=padding),
        nn.BatchNorm2d(c_out, track_running_stats=bn == "inductive"),
        nn.ReLU(),
    ]
    return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)


def relation_embedding(
    in_channels: int = 1, width: int = 64, batch_norm: BatchNormPolicy = "transductive"
) -> nn.Sequential:
    """The paper's embedding module: 4 × (3×3 conv, BN, ReLU); 2×2 max-pool after the first two.

    As in the authors' code, the first two convolutions are unpadded: 28×28 → 5×5 maps,
    84×84 → 19×19 (see :func:`relation_feature_shape`).
    """
    embedding = nn.Sequential(
        _block(in_channels, width, 0, True, batch_norm),
        _block(width, width, 0, True, batch_norm),
        _block(width, width, 1, False, batch_norm),
        _block(width, width, 1, False, batch_norm),
    )
    set_input_shape(embedding, (in_channels, None, None))  # the size shows in the maps' shape
    return embedding


def relation_feature_shape(image_size: int, width: int = 64) -> tuple[int, int, int]:
    """``(C, h, w)`` of :func:`relation_embedding` maps for square ``image_size`` inputs."""
    side = ((image_size - 2) // 2 - 2) // 2
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for the relation embedding")
    return (width, side, side)


@dataclass(kw_only=True)
class RelationState(AdaptedState):
    """Class feature maps ``(W, C, h, w)``: the sum (or mean) of each class's support maps."""

    class_maps: Tensor


class RelationNet(EncoderLearner):
    """Relation Network on an encoder returning maps ``(N, *feature_shape)``."""

    flatten = False

    def __init__(
        self,
        encoder: nn.Module,
        feature_shape: tuple[int, int, int],
        width: int = 64,
        hidden: int = 8,
        padding: int = 1,
        loss: RelationLoss = "mse",
        batch_norm: BatchNormPolicy = "transductive",
        per_task_forward: bool = False,
        class_feature: ClassFeature = "sum",
    ) -> None:
        """``padding`` of the relation convolutions: the authors used 1 for Omniglot's 5×5 maps
        and 0 for mini-ImageNet's 19×19 maps."""
        super().__init__(encoder, per_task_forward)
        if loss not in ("mse", "cross_entropy"):
            raise ValueError(f"loss must be 'mse' or 'cross_entropy', got {loss!r}")
        if class_feature not in ("sum", "mean"):
            raise ValueError(f"class_feature must be 'sum' or 'mean', got {class_feature!r}")
        self.class_feature = class_feature
        c, h, w = feature_shape
        for _ in range(2):
            h, w = (h + 2 * padding - 2) // 2, (w + 2 * padding - 2) // 2
        if min(h, w) < 1:
            raise ValueError(f"feature maps {feature_shape} are too small for the relation module")
        self.feature_shape = tuple(feature_shape)
        self.relation_loss = loss
        self.relation = nn.Sequential(
            _block(2 * c, width, padding, True, batch_norm),
            _block(width, width, padding, True, batch_norm),
            nn.Flatten(),
            nn.Linear(width * h * w, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def fit(self, support: Tensor, onehot: Tensor, steps: int | None = None) -> RelationState:
        sums = onehot.mT @ support.flatten(-3)  # (..., W, C·h·w)
        if self.class_feature == "mean":  # a class without support examples keeps a zero map
            sums = sums / onehot.sum(-2).clamp_min(1).unsqueeze(-1)
        return RelationState(class_maps=sums.reshape(*sums.shape[:-1], *support.shape[-3:]))

    def score(self, state: AdaptedState, query: Tensor) -> Tensor:
        classes = expect_state(state, RelationState).class_maps  # (..., W, C, h, w)
        lead = (*query.shape[:-3], classes.shape[-4])  # (..., Q, W)
        pairs = torch.cat(
            [
                classes.unsqueeze(-5).expand(*lead, *classes.shape[-3:]),
                query.unsqueeze(-4).expand(*lead, *query.shape[-3:]),
            ],
            dim=-3,
        )  # (..., Q, W, 2C, h, w)
        if self.per_task_forward and pairs.dim() > 5:  # one relation-module forward per task
            r = torch.stack([self.relate(p) for p in pairs])
        else:
            r = self.relate(pairs)
        return r.sigmoid() if self.relation_loss == "mse" else r

    def relate(self, pairs: Tensor) -> Tensor:
        """Pre-sigmoid relation scores ``(...)`` of pairs ``(..., 2C, h, w)``, in one forward."""
        r: Tensor = self.relation(pairs.flatten(0, -4))
        return r.reshape(pairs.shape[:-3])

    def query_loss(self, out: Tensor, y: Tensor) -> Tensor:
        if self.relation_loss == "mse":
            return F.mse_loss(out, self.onehot(y, out.shape[-1], out))
        return super().query_loss(out, y)

    def check_embedding(self, z: Tensor) -> None:
        if tuple(z.shape[1:]) != self.feature_shape:
            raise TaskShapeError(
                f"the encoder gives features of shape {tuple(z.shape[1:])}, but this Relation "
                f"Network expects maps of shape {self.feature_shape} (C, h, w)"
            )


@register_learner
class RelationSection(LearnerSection):
    """``learner: {name: relation}`` — Relation Networks (Sung et al. 2018), on their own
    embedding (unpooled maps, ``model.width`` channels) and relation module, seeded like the
    models."""

    name: Literal["relation"] = "relation"
    class_feature: ClassFeature = "sum"
    """A class's feature map: the sum of its support maps (the paper) or their mean (the same at
    one shot; shot-invariant when tested with more shots than trained, or on class-imbalanced
    episodes)."""

    regression = False
    fixed_head = False
    variable_ways = True
    own_network = "the relation learner uses its own embedding (Sung et al.)"

    def model_note(self) -> str:
        return ", relation class maps: mean of the support maps" * (self.class_feature == "mean")

    def build(self, ctx: BuildContext) -> RelationNet:
        c, size, w = ctx.channels, ctx.image_size, ctx.width
        policy: BatchNormPolicy = "inductive" if ctx.batch_norm == "inductive" else "transductive"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            encoder = relation_embedding(c, w, policy)
            return RelationNet(
                encoder,
                relation_feature_shape(size, w),
                width=w,
                padding=1 if size < 40 else 0,
                batch_norm=policy,
                class_feature=self.class_feature,
            )
