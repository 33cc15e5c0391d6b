"""MeLU's rating network: embeddings of a user's and an item's categorical features, then MLP
"decision-making layers" that output the rating.

Lee, Im, Jang, Cho & Chung, "MeLU: Meta-Learned User Preference Estimator for Cold-Start
Recommendation", KDD 2019, §3.1 (Fig. 2). Each categorical column is embedded (``dim`` each); a
multi-valued feature given as 0/1 flag columns (a film's genres) is embedded as the mean of its
flagged values' embeddings, as the paper does; the concatenation goes through the decision
layers ``hidden`` (ReLU) to one output. MeLU's local update adapts only the decision layers
(``decision.*``, output layer included): with :class:`~metamap.learners.MAML`, ``learner.adapt:
[decision.]``.

Options beyond the paper, because cold-start MAE depends on them (a recommender's baseline
predictor, Koren 2010, and its latent factors): ``item_bias`` adds a learned bias per value of
column 0 (the item id; id 0, an unknown item, has its own); ``item_embedding`` embeds the item id
as one more column; ``item_factors = K`` adds a K-d embedding of the item id that
:meth:`MeLU.start_from` sets to a matrix factorisation's item factors, fed to the decision layers
and exposed, with the last hidden layer, by :meth:`MeLU.features` (a closed-form head on them,
learner ``ridge``, starts as the factorisation's fold-in of a new user). The output layer's bias
starts at ``offset`` (about the mean rating).

Shapes: ``x: (N, F)`` int64 → ``(N, 1)`` float. ``forward(x, part="stem")`` and
``forward(z, part="top")`` split the network where MeLU's local update starts (the decision
layers, :attr:`MeLU.top_parameters`), so that a learner runs the embeddings once per user.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from pydantic import Field, NonNegativeInt, PositiveInt
from torch import Tensor, nn

from metamap.errors import ConfigError
from metamap.models.registry import Baseline, ModelContext, ModelSection, register_model
from metamap.models.shapes import set_input_dtype, set_input_shape

__all__ = ["MeLU", "MeLUSection"]


class MeLU(nn.Module):
    """Embeddings → decision layers → rating (+ an item bias)."""

    def __init__(
        self,
        vocabulary: Sequence[int],
        multi_hot: Sequence[int] = (),
        dim: int = 32,
        hidden: Sequence[int] = (64, 64),
        item_bias: bool = True,
        item_embedding: bool = True,
        offset: float = 3.5,
        item_factors: int = 0,
    ) -> None:
        super().__init__()
        if not vocabulary or any(v < 1 for v in vocabulary):
            raise ValueError(f"vocabulary must give each column's size (≥ 1), got {vocabulary}")
        bag = sorted(set(multi_hot))
        if any(not 0 <= c < len(vocabulary) for c in bag) or 0 in bag:
            raise ValueError(f"multi_hot columns {bag} must be columns 1..{len(vocabulary) - 1}")
        first = 0 if item_embedding else 1
        self.single = [c for c in range(first, len(vocabulary)) if c not in bag]
        self.bag_columns = bag
        self.embeddings = nn.ModuleList(nn.Embedding(vocabulary[c], dim) for c in self.single)
        self.bag = nn.Parameter(torch.randn(len(bag), dim)) if bag else None
        self.factors = nn.Embedding(vocabulary[0], item_factors) if item_factors else None
        if self.factors is not None:
            nn.init.normal_(self.factors.weight, std=0.1)
        width = dim * (len(self.single) + (1 if bag else 0)) + item_factors
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.feature_dim = width + item_factors
        """Width of :meth:`features`: the last hidden layer and the item factors."""
        out = nn.Linear(width, 1)
        nn.init.constant_(out.bias, offset)
        self.decision = nn.Sequential(*layers, out)
        self.item_bias = nn.Embedding(vocabulary[0], 1) if item_bias else None
        if self.item_bias is not None:
            nn.init.zeros_(self.item_bias.weight)
        self.columns = len(vocabulary)
        set_input_dtype(self, torch.long)
        set_input_shape(self, (self.columns,))

    def start_from(self, baseline: Baseline) -> None:
        """Start as the baseline predictor: item biases and output bias from it, the output
        weights shrunk 10× so the decision layers begin as a small residual; item factors
        (``item_factors > 0``) from its ``first_column_factors``."""
        if self.item_bias is None:
            raise ValueError("start_from needs item_bias=True")
        offsets = baseline.first_column.to(self.item_bias.weight)
        if offsets.shape != (self.item_bias.num_embeddings,):
            raise ValueError(
                f"baseline has {tuple(offsets.shape)} offsets for "
                f"{self.item_bias.num_embeddings} item ids"
            )
        factors = baseline.first_column_factors
        if self.factors is not None and (
            factors is None or factors.shape != self.factors.weight.shape
        ):
            got = None if factors is None else tuple(factors.shape)
            raise ValueError(
                f"item_factors={self.factors.embedding_dim} needs baseline factors of shape "
                f"{tuple(self.factors.weight.shape)}, got {got}"
            )
        out = self.decision[-1]
        assert isinstance(out, nn.Linear)
        with torch.no_grad():
            if self.factors is not None and factors is not None:
                self.factors.weight.copy_(factors)
            self.item_bias.weight.copy_(offsets[:, None])
            out.bias.fill_(baseline.mean)
            out.weight.mul_(0.1)

    def _embed(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.columns:
            raise ValueError(
                f"MeLU expects rows of shape (N, {self.columns}), got {tuple(x.shape)}"
            )
        parts = [emb(x[:, c]) for c, emb in zip(self.single, self.embeddings, strict=True)]
        if self.bag is not None:
            flags = x[:, self.bag_columns].to(self.bag.dtype)
            parts.append(flags @ self.bag / flags.sum(1, keepdim=True).clamp_min(1.0))
        if self.factors is not None:
            parts.append(self.factors(x[:, 0]))
        return torch.cat(parts, 1)

    def features(self, x: Tensor) -> Tensor:
        """The last decision layer's inputs ``(N, hidden[-1])`` (the embeddings' concatenation
        when there are no hidden layers), then the item factors ``(N, K)`` if any: what a
        closed-form head fits (learner ``ridge``)."""
        h: Tensor = self.decision[:-1](self._embed(x))
        return h if self.factors is None else torch.cat([h, self.factors(x[:, 0])], 1)

    top_parameters: ClassVar[tuple[str, ...]] = ("decision.",)
    """The parameters ``forward(z, part="top")`` uses: a learner that adapts only these runs
    the stem once per task and its inner steps on the top (MeLU's local update)."""

    def forward(self, x: Tensor, part: Literal["all", "stem", "top"] = "all") -> Tensor:
        """Ratings ``(N, 1)`` of rows ``x: (N, F)``. ``part="stem"``: what the decision layers
        do not change, ``(N, W + 1)`` (the embeddings, then the item bias); ``part="top"``: the
        ratings from the stem's output, ``top(stem(x)) == forward(x)``."""
        if part == "stem":
            z = self._embed(x)
            bias = z.new_zeros((len(x), 1)) if self.item_bias is None else self.item_bias(x[:, 0])
            return torch.cat([z, bias], 1)
        if part == "top":
            top: Tensor = self.decision(x[:, :-1]) + x[:, -1:]
            return top
        out: Tensor = self.decision(self._embed(x))
        if self.item_bias is not None:
            out = out + self.item_bias(x[:, 0])
        return out


@register_model
class MeLUSection(ModelSection):
    """``model: {name: melu}`` — MeLU's embeddings and decision layers (Lee et al. 2019)."""

    name: Literal["melu"] = "melu"
    dim: PositiveInt = 32
    hidden: list[PositiveInt] = Field(default_factory=lambda: [64, 64])
    item_bias: bool = True
    item_embedding: bool = True
    offset: float = 3.5
    item_factors: NonNegativeInt = 0
    """K > 0: a K-d item embedding started from the problem's matrix factorisation (its item
    factors on the training ratings; ``warm_start``), fed to the decision layers and to a
    closed-form head's features."""
    warm_start: bool = True
    """Start from the problem's baseline predictor (the training ratings' mean and damped item
    biases): the network learns the residual; ``false``: from ``offset`` and zero biases."""

    images: ClassVar[bool] = False
    categorical: ClassVar[bool] = True

    def build(self, ctx: ModelContext) -> nn.Module:
        if not ctx.vocabulary:
            raise ConfigError("model 'melu' takes categorical rows (task.family movielens)")
        model = MeLU(
            ctx.vocabulary,
            ctx.multi_hot,
            self.dim,
            self.hidden,
            self.item_bias,
            self.item_embedding,
            self.offset,
            self.item_factors,
        )
        if self.warm_start and self.item_bias and ctx.baseline is not None:
            model.start_from(ctx.baseline)
        return model

    def describe(self) -> str:
        extras = [
            n
            for n, on in (
                ("item bias", self.item_bias),
                ("item ids", self.item_embedding),
                (f"{self.item_factors} item factors", self.item_factors),
            )
            if on
        ]
        return f"MeLU {self.dim}-d embeddings, decision {'-'.join(map(str, self.hidden))}" + (
            f" + {', '.join(extras)}" if extras else ""
        )
