"""Channels-last pinning: true NHWC strides, at every order of differentiation, and Conv-4's block
order (pool before ReLU) computing the textbook conv → BN → ReLU → pool function exactly."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

from metamap.models import Conv4
from metamap.models.layout import (
    ChannelsLastConv2d,
    channels_last,
    default_layout,
    is_channels_last,
    pinning,
    pins_layout,
    set_channels_last,
)


def test_single_channel_images_get_true_nhwc_strides() -> None:
    x = torch.randn(3, 1, 5, 5)
    assert x.is_contiguous(memory_format=torch.channels_last)  # "already" channels-last ...
    assert not is_channels_last(x)  # ... but with NCHW strides, which convolutions follow
    y = channels_last(x)
    assert is_channels_last(y) and y.stride() == (25, 1, 5, 1)
    torch.testing.assert_close(y, x)
    z = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert channels_last(z).data_ptr() == z.data_ptr()  # a view when nothing to do
    v = torch.randn(2, 3)
    assert channels_last(v) is v  # other ranks untouched


def test_gradients_of_every_order_are_channels_last() -> None:
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    y = channels_last(x)
    (g,) = torch.autograd.grad(y.pow(3).sum(), x, create_graph=True)
    assert is_channels_last(g)
    torch.testing.assert_close(g, 3 * x.detach() ** 2)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert is_channels_last(h)
    torch.testing.assert_close(h, 6 * x.detach())


def test_identity_under_vmap_and_func_grad() -> None:
    x = torch.randn(4, 2, 3, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(torch.func.vmap(channels_last)(x), x)
    grads = torch.func.vmap(torch.func.grad(lambda t: channels_last(t).pow(2).sum()))(x)
    torch.testing.assert_close(grads, 2 * x)


def _textbook(m: Conv4) -> nn.Module:
    """The same weights in the usual conv → BN → ReLU → pool order, default layout."""
    ref = copy.deepcopy(m).to_channels_last(False)
    layers = list(ref.body)
    for i in range(0, 16, 4):
        conv, bn, pool, relu = layers[i : i + 4]
        assert isinstance(pool, nn.MaxPool2d) and isinstance(relu, nn.ReLU)
        layers[i : i + 4] = [conv, bn, relu, pool]
    return nn.Sequential(*layers, ref.head)


@pytest.mark.parametrize("fmt", ["default", "channels_last"])
def test_conv4_computes_the_textbook_function_to_second_order(fmt: str) -> None:
    torch.manual_seed(0)
    m = Conv4(3, width=4, image_size=16).double().to_channels_last(fmt == "channels_last")
    ref = _textbook(m)
    x = torch.randn(6, 1, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])

    def grads(model: nn.Module) -> list[Tensor]:
        params = list(model.parameters())
        loss = nn.functional.cross_entropy(model(x), y)
        g = torch.autograd.grad(loss, params, create_graph=True)
        hv = torch.autograd.grad(sum(gi.pow(2).sum() for gi in g), params)  # H · g
        return [*g, *hv]

    torch.testing.assert_close(m(x), ref(x), rtol=1e-12, atol=1e-12)
    for a, b in zip(grads(m), grads(ref), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_conv4_runs_every_block_channels_last() -> None:
    m = Conv4(3, width=4, image_size=16).to_channels_last()
    seen: list[bool] = []
    hooks = [
        mod.register_forward_hook(lambda _m, _i, out: seen.append(is_channels_last(out)))
        for mod in m.body
        if isinstance(mod, nn.BatchNorm2d | nn.MaxPool2d)
    ]
    # One channel: input and first-layer weights with the NCHW strides that a convolution would
    # follow (as inner-loop weights θ - α∇ can have), though "contiguous" in both formats.
    nchw = {
        k: torch.empty_like(v, memory_format=torch.contiguous_format).copy_(v)
        for k, v in m.named_parameters()
    }
    torch.func.functional_call(m, nchw, (torch.randn(5, 1, 16, 16),))
    for h in hooks:
        h.remove()
    assert seen == [True] * 8
    assert pins_layout(m) and all(
        mod.channels_last for mod in m.modules() if isinstance(mod, ChannelsLastConv2d)
    )
    set_channels_last(m, False)
    assert not any(mod.channels_last for mod in m.modules() if isinstance(mod, ChannelsLastConv2d))
    assert not pins_layout(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))


def test_default_layout_gives_plain_nchw_strides_differentiably() -> None:
    w = torch.randn(8, 1, 3, 3).contiguous(memory_format=torch.channels_last)
    w = torch.empty_like(w, memory_format=torch.channels_last).copy_(w)  # NHWC strides
    assert w.stride() == (9, 1, 3, 1) and w.is_contiguous()  # "contiguous", NHWC all the same
    w.requires_grad_(True)
    out = default_layout(w)
    assert out.stride() == (9, 9, 3, 1)
    torch.testing.assert_close(out, w)
    (g,) = torch.autograd.grad(out.pow(2).sum(), w)
    torch.testing.assert_close(g, 2 * w.detach())
    plain = torch.randn(2, 3, 4, 4)
    assert default_layout(plain) is plain


def test_pinning_switches_layers_temporarily() -> None:
    m = Conv4(3, width=4, image_size=16).to_channels_last()
    convs = [mod for mod in m.modules() if isinstance(mod, ChannelsLastConv2d)]
    with pinning(m, False):
        assert not any(c.channels_last for c in convs)
    assert all(c.channels_last for c in convs)
