"""Conv-4: four blocks of 3×3 conv → BatchNorm → ReLU → 2×2 max-pool, then a linear head.

Vinyals et al. 2016 and Finn et al. 2017 (MAML) use it with 64 filters on Omniglot (28×28×1)
and 32 filters on mini-ImageNet (84×84×3). Shapes: ``(N, C, H, W) -> (N, out_features)``.

Two choices make it fast without changing the function it computes:

* each block runs conv → BatchNorm → max-pool → ReLU. ReLU is monotone, so
  ``relu(maxpool(x)) == maxpool(relu(x))``, values and gradients, and the ReLU and its backward
  touch a quarter of the elements (tested against the textbook order);
* :meth:`Conv4.to_channels_last` runs it channels-last *throughout*, gradients of every order
  included (:mod:`metamap.models.layout`); learners switch it on by default.

BatchNorm policy (explicit, since it changes results in episodic learning):

* ``"transductive"`` — statistics of the current batch always (``track_running_stats=False``),
  as in MAML's code; at test time the query set is normalised with its own batch statistics.
* ``"inductive"`` — running statistics are tracked in training and used in ``eval()`` mode.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from metamap.models.layout import ChannelsLastConv2d, ChannelsLastReLU, set_channels_last

__all__ = ["BatchNormPolicy", "Conv4", "conv4_feature_dim"]

BatchNormPolicy = Literal["transductive", "inductive"]


def conv4_feature_dim(width: int, image_size: int) -> int:
    """Flattened feature size after four conv (padding 1) + 2×2 pool blocks."""
    side = image_size
    for _ in range(4):
        side = side // 2
    if side < 1:
        raise ValueError(f"image_size {image_size} is too small for Conv-4 (needs ≥ 16)")
    return width * side * side


class Conv4(nn.Module):
    """Four conv blocks (``body``) then a linear classifier (``head``)."""

    def __init__(
        self,
        out_features: int,
        in_channels: int = 1,
        width: int = 64,
        image_size: int = 28,
        batch_norm: BatchNormPolicy = "transductive",
    ) -> None:
        super().__init__()
        if batch_norm not in ("transductive", "inductive"):
            raise ValueError(
                f"batch_norm must be 'transductive' or 'inductive', got {batch_norm!r}"
            )
        blocks: list[nn.Module] = []
        c = in_channels
        for _ in range(4):
            blocks += [
                ChannelsLastConv2d(c, width, 3, padding=1),
                nn.BatchNorm2d(width, track_running_stats=batch_norm == "inductive"),
                nn.MaxPool2d(2),
                ChannelsLastReLU(),
            ]
            c = width
        self.in_channels = in_channels
        self.image_size = image_size
        self.batch_norm = batch_norm
        self.feature_dim = conv4_feature_dim(width, image_size)
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Linear(self.feature_dim, out_features)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[-1] != self.image_size:
            raise ValueError(
                f"Conv4 expects images of shape (N, {self.in_channels}, {self.image_size}, "
                f"{self.image_size}), got {tuple(x.shape)}"
            )
        out: Tensor = self.head(self.body(x))
        return out

    def to_channels_last(self, enabled: bool = True) -> Conv4:
        """Run channels-last (NHWC) throughout, or in the default layout if not ``enabled``.

        Faster on CPUs (oneDNN) and GPUs; values agree with the default layout to rounding.
        """
        set_channels_last(self, enabled)
        return self
