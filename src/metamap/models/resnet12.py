"""ResNet-12: four residual blocks, the backbone of TADAM and MetaOptNet.

Oreshkin, Rodríguez & Lacoste, "TADAM: Task dependent adaptive metric for improved few-shot
learning", NeurIPS 2018, and Lee, Maji, Ravichandran & Soatto, "Meta-Learning with
Differentiable Convex Optimization", CVPR 2019 (MetaOptNet). Each block is three
3×3 conv → BatchNorm → LeakyReLU(0.1) (the last without the activation), plus a
1×1 conv → BatchNorm shortcut, then LeakyReLU(0.1) and 2×2 max-pool. The widths are
(64, 160, 320, 640) as in MetaOptNet (about 12.4 M parameters); TADAM uses (64, 128, 256, 512).
A global average pool ends the ``body``; the ``head`` is a linear classifier.

Shapes: ``(N, C, H, W) -> body -> (N, widths[-1]) -> head -> (N, out_features)``;
84×84 inputs give 5×5 maps before the pool, 32×32 inputs 2×2 (H, W ≥ 16).

Regularisation as in MetaOptNet, off by default: with ``drop_rate > 0`` the output of each of
the first two blocks goes through dropout (rate ``drop_rate``, no warm-up) and that of the last
two through DropBlock (Ghiasi et al. 2018; rate ``drop_rate``, ``dropblock_size``-square blocks,
linear warm-up), see :mod:`metamap.models.dropblock`. The masks come from generators that the
trainer seeds from its own (:func:`~metamap.models.reseed_drop_layers`); none of it has
parameters or buffers, so the ``state_dict`` is the same with or without.

BatchNorm policy as in :class:`~metamap.models.Conv4`: ``"inductive"`` (default here, as in
TADAM and MetaOptNet) tracks running statistics and uses them in ``eval()`` mode;
``"transductive"`` always normalises with the statistics of the current batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt
from torch import Tensor, nn

from metamap.models.conv4 import BatchNormPolicy
from metamap.models.dropblock import DropBlock2d
from metamap.models.registry import ModelContext, ModelSection, register_model
from metamap.models.shapes import InputShape, describe_input_shape, set_input_shape

__all__ = ["ResBlock", "ResNet12", "ResNet12Section"]


class ResBlock(nn.Module):
    """``(N, c_in, H, W) -> (N, c_out, H/2, W/2)``: three 3×3 convs + 1×1 shortcut, max-pool,
    then ``drop`` (a :class:`DropBlock2d`, or the identity)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        batch_norm: BatchNormPolicy,
        drop: DropBlock2d | None = None,
    ) -> None:
        super().__init__()
        track = batch_norm == "inductive"

        def conv_bn(a: int, b: int, k: int) -> list[nn.Module]:
            return [
                nn.Conv2d(a, b, k, padding=k // 2, bias=False),
                nn.BatchNorm2d(b, track_running_stats=track),
            ]

        act = 0.1
        self.convs = nn.Sequential(
            *conv_bn(c_in, c_out, 3),
            nn.LeakyReLU(act),
            *conv_bn(c_out, c_out, 3),
            nn.LeakyReLU(act),
            *conv_bn(c_out, c_out, 3),
        )
        self.shortcut = nn.Sequential(*conv_bn(c_in, c_out, 1))
        self.out = nn.Sequential(nn.LeakyReLU(act), nn.MaxPool2d(2))
        self.drop: nn.Module = nn.Identity() if drop is None else drop

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.drop(self.out(self.convs(x) + self.shortcut(x)))
        return out


class ResNet12(nn.Module):
    """Four :class:`ResBlock` s and a global average pool (``body``), then a linear ``head``."""

    def __init__(
        self,
        out_features: int,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 160, 320, 640),
        batch_norm: BatchNormPolicy = "inductive",
        drop_rate: float = 0.0,
        dropblock_size: int = 5,
        image_size: int | None = None,
    ) -> None:
        """``image_size`` (optional) fixes the input size it takes; without it any H, W ≥ 16
        run (the global pool makes every size give ``widths[-1]`` features)."""
        super().__init__()
        if batch_norm not in ("transductive", "inductive"):
            raise ValueError(
                f"batch_norm must be 'transductive' or 'inductive', got {batch_norm!r}"
            )
        if len(widths) != 4 or any(w < 1 for w in widths) or out_features < 1:
            raise ValueError(
                f"ResNet12 needs 4 positive widths and out_features ≥ 1, got widths={widths}, "
                f"out_features={out_features}"
            )
        if image_size is not None and image_size < 16:
            raise ValueError(f"image_size {image_size} is too small for ResNet12 (needs ≥ 16)")
        if not 0.0 <= drop_rate < 1.0 or dropblock_size < 1:
            raise ValueError(
                f"ResNet12 needs 0 ≤ drop_rate < 1 and dropblock_size ≥ 1, got "
                f"drop_rate={drop_rate}, dropblock_size={dropblock_size}"
            )
        blocks: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            drop = None
            if drop_rate > 0:  # dropout in blocks 1-2, DropBlock in 3-4 (MetaOptNet)
                drop = (
                    DropBlock2d(drop_rate, 1, warmup=False)
                    if i < 2
                    else DropBlock2d(drop_rate, dropblock_size)
                )
            blocks.append(ResBlock(c, w, batch_norm, drop))
            c = w
        self.in_channels = in_channels
        self.batch_norm = batch_norm
        self.feature_dim = c
        self.body = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c, out_features)
        self.image_size = image_size
        self.input_shape: InputShape = (in_channels, image_size, image_size)
        """The shape of one image, ``(C, H, W)``; H, W are ``None`` without ``image_size``."""
        set_input_shape(self.body, self.input_shape)
        for m in self.body.modules():  # MetaOptNet's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")

    def forward(self, x: Tensor) -> Tensor:
        size = self.image_size
        if (
            x.dim() != 4
            or x.shape[1] != self.in_channels
            or min(x.shape[-2:]) < 16
            or (size is not None and tuple(x.shape[-2:]) != (size, size))
        ):
            where = "" if size is not None else " with H, W ≥ 16"
            raise ValueError(
                f"ResNet12 expects images of shape {describe_input_shape(self.input_shape)}"
                f"{where}, got {tuple(x.shape)}"
            )
        out: Tensor = self.head(self.body(x))
        return out


@register_model
class ResNet12Section(ModelSection):
    """``model: {name: resnet12}`` — ResNet-12 (TADAM, MetaOptNet) with block widths
    ``width · (1, 2.5, 5, 10)`` (MetaOptNet: width 64 → 64-160-320-640)."""

    name: Literal["resnet12"] = "resnet12"
    width: PositiveInt = 64
    batch_norm: BatchNormPolicy = "transductive"
    drop_rate: float = Field(default=0.0, ge=0.0, lt=1.0)
    """MetaOptNet's regularisation: dropout of this rate after blocks 1-2 and DropBlock (Ghiasi
    et al. 2018) after blocks 3-4; 0 turns it off."""
    dropblock_size: PositiveInt = 5
    """Side of the dropped squares (MetaOptNet: 5 on mini-/tiered-ImageNet, 2 on CIFAR)."""
    drop_warmup_steps: NonNegativeInt = 0
    """DropBlock's rate rises linearly from 0 to ``drop_rate`` over these training steps."""

    min_image_size: ClassVar[int] = 16
    """Four 2×2 downsamplings need at least 16×16 images."""

    def build(self, ctx: ModelContext) -> ResNet12:
        w = self.width
        return ResNet12(
            ctx.out_features,
            ctx.channels,
            (w, int(2.5 * w), 5 * w, 10 * w),
            self.batch_norm,
            self.drop_rate,
            self.dropblock_size,
            image_size=ctx.image_size,
        )

    def base_width(self) -> int:
        return self.width

    def batch_norm_policy(self) -> BatchNormPolicy:
        return self.batch_norm

    def describe(self) -> str:
        return f"resnet12 width {self.width}, BatchNorm {self.batch_norm}"

    def notes(self) -> list[str]:
        b = self.dropblock_size
        return [f"DropBlock {self.drop_rate:g} ({b}×{b})"] * bool(self.drop_rate)

    def draws_random_masks(self) -> bool:
        return self.drop_rate > 0

    def drop_schedule(self, step: int) -> float:
        warmup = self.drop_warmup_steps
        return (step + 1) / warmup if warmup else 1.0
