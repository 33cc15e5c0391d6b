"""Conv-4: four blocks of 3×3 conv → BatchNorm → ReLU → 2×2 max-pool, then a linear head.

Vinyals et al. 2016 and Finn et al. 2017 (MAML) use it with 64 filters on Omniglot (28×28×1)
and 32 filters on mini-ImageNet (84×84×3). Shapes: ``(N, C, H, W) -> (N, out_features)``.

Two ways to halve the resolution in each block (``downsample``):

* ``"maxpool"`` (default) — 3×3 conv (stride 1, padding 1) then 2×2 max-pool; the features are
  the flattened last maps (``width × (size // 16)²``: 64 for Omniglot at 28×28, 1,600 for
  mini-ImageNet at 84×84). Vinyals et al., Prototypical Networks, and MAML on mini-ImageNet.
* ``"stride"`` — a 3×3 conv of stride 2 (padding 1), no pooling, and the last maps averaged over
  space, so the features are always ``width``: MAML's Omniglot network ("for Omniglot, strided
  convolutions were used instead of max-pooling", Finn et al. 2017 §5.2; its code averages the
  last maps). Each conv computes about a quarter of the outputs, so a second-order MAML step
  runs several times faster (``benchmarks/downsample_speed.py``). The map sides match that
  code's (28 → 14 → 7 → 4 → 2); padding is 1 on every side, where TensorFlow's ``SAME`` pads an
  even-sized map on the bottom and right only, so the sampling grid sits half a pixel apart.

Two choices make it fast without changing the function it computes:

* each max-pool block runs conv → BatchNorm → max-pool → ReLU. ReLU is monotone, so
  ``relu(maxpool(x)) == maxpool(relu(x))``, values and gradients, and the ReLU and its backward
  touch a quarter of the elements (tested against the textbook order);
* :meth:`Conv4.to_channels_last` runs it channels-last *throughout*, gradients of every order
  included (:mod:`metamap.models.layout`); learners switch it on by default.

The head starts as PyTorch's ``nn.Linear`` (uniform in ±1/√features) unless ``head_init_std`` is
given: then its weights are drawn from N(0, std²) and its bias is zero. MAML's Omniglot code
draws that head from N(0, 1), about 14 times PyTorch's spread for 64 features. The body is drawn
first, so it is the same network either way. (Trained here on 20-way Omniglot, the strided
network learned more slowly from that start: README, "Conv-4 downsampling".)

BatchNorm policy (explicit, since it changes results in episodic learning):

* ``"transductive"`` — statistics of the current batch always (``track_running_stats=False``),
  as in MAML's code; at test time the query set is normalised with its own batch statistics.
* ``"inductive"`` — running statistics are tracked in training and used in ``eval()`` mode.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import PositiveFloat, PositiveInt
from torch import Tensor, nn

from metamap.models.layout import ChannelsLastConv2d, ChannelsLastReLU, set_channels_last
from metamap.models.registry import BatchNormPolicy, ModelContext, ModelSection, register_model
from metamap.models.shapes import InputShape, describe_input_shape, set_input_shape

__all__ = ["BatchNormPolicy", "Conv4", "Conv4Section", "Downsample", "conv4_feature_dim"]

Downsample = Literal["maxpool", "stride"]


def conv4_feature_dim(width: int, image_size: int, downsample: Downsample = "maxpool") -> int:
    """Feature size: flattened maps after four conv + 2×2 pool blocks, or ``width`` if strided."""
    if image_size < 16:
        raise ValueError(f"image_size {image_size} is too small for Conv-4 (needs ≥ 16)")
    if downsample == "stride":
        return width
    side = image_size // 16
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
        downsample: Downsample = "maxpool",
        head_init_std: float | None = None,
    ) -> None:
        super().__init__()
        if batch_norm not in ("transductive", "inductive"):
            raise ValueError(
                f"batch_norm must be 'transductive' or 'inductive', got {batch_norm!r}"
            )
        if downsample not in ("maxpool", "stride"):
            raise ValueError(f"downsample must be 'maxpool' or 'stride', got {downsample!r}")
        if head_init_std is not None and not head_init_std > 0:
            raise ValueError(f"head_init_std must be a positive number, got {head_init_std!r}")
        self.feature_dim = conv4_feature_dim(width, image_size, downsample)
        strided = downsample == "stride"
        blocks: list[nn.Module] = []
        c = in_channels
        for _ in range(4):
            blocks += [
                ChannelsLastConv2d(c, width, 3, stride=2 if strided else 1, padding=1),
                nn.BatchNorm2d(width, track_running_stats=batch_norm == "inductive"),
                *([] if strided else [nn.MaxPool2d(2)]),
                ChannelsLastReLU(),
            ]
            c = width
        if strided:
            blocks.append(nn.AdaptiveAvgPool2d(1))
        self.in_channels = in_channels
        self.image_size = image_size
        self.batch_norm = batch_norm
        self.downsample = downsample
        self.body = nn.Sequential(*blocks, nn.Flatten())
        self.head = nn.Linear(self.feature_dim, out_features)
        self.input_shape: InputShape = (in_channels, image_size, image_size)
        """The shape of one image it was built for, ``(C, H, W)`` (also on ``body``)."""
        set_input_shape(self.body, self.input_shape)
        if head_init_std is not None:
            nn.init.normal_(self.head.weight, 0.0, head_init_std)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"Conv4 expects images of shape {describe_input_shape(self.input_shape)}, "
                f"got {tuple(x.shape)}"
            )
        out: Tensor = self.head(self.body(x))
        return out

    def to_channels_last(self, enabled: bool = True) -> Conv4:
        """Run channels-last (NHWC) throughout, or in the default layout if not ``enabled``.

        Faster on CPUs (oneDNN) and GPUs. The same function, but on a CPU torch's channels-last
        BatchNorm accumulates batch statistics less exactly than the default layout's (its error
        grows with the elements per channel), so float32 values differ by more than rounding:
        ``benchmarks/step_variants.py`` measures both against float64.
        """
        set_channels_last(self, enabled)
        return self


@register_model
class Conv4Section(ModelSection):
    """``model: {name: conv4}`` — Conv-4 (Vinyals et al. 2016; MAML's and ProtoNets' network)."""

    name: Literal["conv4"] = "conv4"
    width: PositiveInt = 64
    batch_norm: BatchNormPolicy = "transductive"
    downsample: Downsample = "maxpool"
    """2×2 max-pool after each conv, or stride-2 convs and the last maps averaged (MAML's
    Omniglot network, several times faster: ``benchmarks/downsample_speed.py``)."""
    head_init_std: PositiveFloat | None = None
    """With a gradient-based learner: draw the head's weights from N(0, std²) with a zero bias
    (MAML's Omniglot code: 1.0) instead of PyTorch's default."""

    min_image_size: ClassVar[int] = 16
    """Four 2×2 downsamplings need at least 16×16 images."""

    def build(self, ctx: ModelContext) -> Conv4:
        return Conv4(
            ctx.out_features,
            ctx.channels,
            self.width,
            ctx.image_size,
            self.batch_norm,
            self.downsample,
            self.head_init_std,
        )

    def base_width(self) -> int:
        return self.width

    def batch_norm_policy(self) -> BatchNormPolicy:
        return self.batch_norm

    def describe(self) -> str:
        strided = " strided" * (self.downsample == "stride")
        return f"conv4{strided} width {self.width}, BatchNorm {self.batch_norm}"

    def notes(self) -> list[str]:
        std = self.head_init_std
        return [] if std is None else [f"head init N(0, {std:g}²)"]

    def head_options(self) -> list[str]:
        return ["head_init_std"] * (self.head_init_std is not None)

    def network_options(self) -> list[str]:
        return ["downsample"] * (self.downsample != "maxpool")
