"""Memory layout: keep image activations channels-last through every order of differentiation.

On CPUs (oneDNN) and GPUs (cuDNN), convolutions and 2×2 max-pooling run much faster on
channels-last (NHWC) tensors (``benchmarks/speed_learn2learn.py`` and
``benchmarks/speed_easyfsl.py`` measure the end-to-end gain). The gain is lost as soon as one
tensor in the chain arrives in the other format: mixed-format kernels fall back to slow paths
and copies. Two things cause that in meta-learning:

* a single-channel image batch ``(N, 1, H, W)`` counts as "contiguous in both formats", so
  ``x.contiguous(memory_format=torch.channels_last)`` leaves its NCHW strides and the first
  convolution picks NCHW for the whole first block;
* gradients — and, for second-order MAML, gradients of gradients — come back in whatever format
  the backward formulas produce.

:func:`channels_last` fixes both: it restrides any 4-D tensor to true NHWC strides, and its
backward is itself, so gradients of every order are channels-last at the same points.
:class:`ChannelsLastConv2d` and :class:`ChannelsLastReLU` apply it at block boundaries (before
each convolution, after each activation) once :func:`set_channels_last` switches them on; they
are plain ``nn.Conv2d`` / ``nn.ReLU`` otherwise, with the same parameter names.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "ChannelsLastConv2d",
    "ChannelsLastReLU",
    "channels_last",
    "default_layout",
    "is_channels_last",
    "pinning",
    "pins_layout",
    "set_channels_last",
]

_CL = torch.channels_last


def is_channels_last(x: Tensor) -> bool:
    """True if ``x`` (4-D) has NHWC strides, including for one channel (``stride(1) == 1``)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=_CL) and x.stride(1) == 1


class _ChannelsLast(torch.autograd.Function):
    """Identity on values; NHWC strides out, forward and backward (at every order)."""

    generate_vmap_rule = False

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        if is_channels_last(x):
            return x.view_as(x)
        return torch.empty_like(x, memory_format=_CL).copy_(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return channels_last(grad)

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None], x: Tensor) -> tuple[Tensor, int | None]:
        # Under vmap the layout of the batched tensor is the transform's business: identity.
        return x.view_as(x), in_dims[0]


def default_layout(x: Tensor) -> Tensor:
    """``x`` with plain NCHW strides (differentiable copy, or ``x`` itself if it has them).

    Also for one channel: a ``(C_out, 1, 3, 3)`` weight with NHWC strides counts as contiguous,
    yet makes a convolution choose channels-last.
    """
    if x.dim() != 4:
        return x
    _, c, h, w = x.shape
    if x.stride() == (c * h * w, h * w, w, 1):
        return x
    return torch.empty_like(x, memory_format=torch.contiguous_format).copy_(x)


def channels_last(x: Tensor) -> Tensor:
    """``x`` with NHWC strides (a view if it has them already); its gradient likewise.

    Shapes: ``(N, C, H, W) -> (N, C, H, W)``; other ranks are returned unchanged.
    """
    if x.dim() != 4:
        return x
    out: Tensor = _ChannelsLast.apply(x)  # type: ignore[no-untyped-call]
    return out


class ChannelsLastConv2d(nn.Conv2d):
    """``nn.Conv2d`` that pins its input to NHWC when :attr:`channels_last` is set."""

    channels_last: bool = False

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = super().forward(channels_last(x) if self.channels_last else x)
        return out


class ChannelsLastReLU(nn.ReLU):
    """``nn.ReLU`` that pins its output to NHWC when :attr:`channels_last` is set."""

    channels_last: bool = False

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = super().forward(x)
        return channels_last(out) if self.channels_last else out


def _pinning_layers(module: nn.Module) -> list[ChannelsLastConv2d | ChannelsLastReLU]:
    return [m for m in module.modules() if isinstance(m, ChannelsLastConv2d | ChannelsLastReLU)]


def set_channels_last(module: nn.Module, enabled: bool = True) -> nn.Module:
    """Convert ``module``'s parameters to channels-last (or back) and switch its pinning layers.

    Only :class:`ChannelsLastConv2d` / :class:`ChannelsLastReLU` pin layouts; other layers
    just see channels-last parameters. Returns ``module``.
    """
    module.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)  # type: ignore[call-overload]
    for m in _pinning_layers(module):
        m.channels_last = enabled
    return module


@contextmanager
def pinning(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Temporarily switch ``module``'s pinning layers on or off (restored on exit)."""
    layers = _pinning_layers(module)
    saved = [m.channels_last for m in layers]
    for m in layers:
        m.channels_last = enabled
    try:
        yield
    finally:
        for m, s in zip(layers, saved, strict=True):
            m.channels_last = s


def pins_layout(module: nn.Module) -> bool:
    """True if ``module`` contains layers that pin the channels-last layout."""
    return bool(_pinning_layers(module))
