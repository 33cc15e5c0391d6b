"""MLP and Conv4: shapes, body/head split, BatchNorm policies and torch.func compatibility."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from metamap.models import MLP, Conv4, conv4_feature_dim


# ---- MLP ----------------------------------------------------------------------------------------
def test_mlp_shapes_and_layers() -> None:
    m = MLP(3, 2, hidden=(8, 5))
    assert tuple(m(torch.randn(7, 3)).shape) == (7, 2)
    assert m.feature_dim == 5
    linears = [mod for mod in m.body if isinstance(mod, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(3, 8), (8, 5)]
    assert sum(isinstance(mod, nn.ReLU) for mod in m.body) == 2
    assert (m.head.in_features, m.head.out_features) == (5, 2)


def test_mlp_is_body_then_head() -> None:
    torch.manual_seed(0)
    m = MLP(1, 1, hidden=(8, 8))
    x = torch.randn(4, 1)
    z = m.body(x)
    assert tuple(z.shape) == (4, 8)
    assert (z >= 0).all()  # body ends with a ReLU
    torch.testing.assert_close(m(x), m.head(z))
    names = {n for n, _ in m.named_parameters()}
    assert names == {
        "body.0.weight",
        "body.0.bias",
        "body.2.weight",
        "body.2.bias",
        "head.weight",
        "head.bias",
    }


def test_mlp_without_hidden_layers_is_linear() -> None:
    m = MLP(4, 3, hidden=())
    x = torch.randn(5, 4)
    assert m.feature_dim == 4
    torch.testing.assert_close(m(x), x @ m.head.weight.T + m.head.bias)


def test_mlp_maml_sinusoid_network_size() -> None:
    m = MLP(1, 1, hidden=(40, 40))  # MAML §5.1: 1-40-40-1
    assert sum(p.numel() for p in m.parameters()) == (1 * 40 + 40) + (40 * 40 + 40) + (40 + 1)


def test_mlp_rejects_bad_sizes_and_bad_input() -> None:
    with pytest.raises(ValueError, match="sizes must be positive"):
        MLP(0, 1)
    with pytest.raises(ValueError, match="sizes must be positive"):
        MLP(1, 1, hidden=(4, 0))
    m = MLP(1, 1, hidden=(4,))
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 1\), got \(5, 2\)"):
        m(torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"got \(5,\)"):
        m(torch.randn(5))


def test_mlp_functional_call_uses_the_given_parameters() -> None:
    m = MLP(2, 1, hidden=(4,))
    x = torch.randn(3, 2)
    params = {k: torch.zeros_like(v) for k, v in m.named_parameters()}
    params["head.bias"] = torch.tensor([1.5])
    torch.testing.assert_close(functional_call(m, params, (x,)), torch.full((3, 1), 1.5))
    # and is differentiable with torch.func.grad
    same = dict(m.named_parameters())
    g = torch.func.grad(lambda p: functional_call(m, p, (x,)).sum())(same)
    assert set(g) == set(same)
    torch.testing.assert_close(g["head.bias"], torch.tensor([3.0]))


# ---- Conv4 --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("width", "size", "expected"),
    [(64, 28, 64), (32, 84, 32 * 5 * 5), (4, 16, 4), (8, 32, 8 * 2 * 2)],
)
def test_conv4_feature_dim(width: int, size: int, expected: int) -> None:
    assert conv4_feature_dim(width, size) == expected


def test_conv4_feature_dim_rejects_too_small_images() -> None:
    with pytest.raises(ValueError, match="too small"):
        conv4_feature_dim(4, 8)


@pytest.mark.parametrize(("in_channels", "size"), [(1, 16), (3, 20)])
def test_conv4_shapes_and_split(in_channels: int, size: int) -> None:
    m = Conv4(5, in_channels=in_channels, width=4, image_size=size)
    x = torch.randn(6, in_channels, size, size)
    assert tuple(m(x).shape) == (6, 5)
    z = m.body(x)
    assert tuple(z.shape) == (6, m.feature_dim)
    torch.testing.assert_close(m(x), m.head(z))
    convs = [mod for mod in m.body if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 4
    assert convs[0].in_channels == in_channels and all(c.out_channels == 4 for c in convs)
    assert sum(isinstance(mod, nn.MaxPool2d) for mod in m.body) == 4
    assert sum(isinstance(mod, nn.BatchNorm2d) for mod in m.body) == 4
    assert (m.head.in_features, m.head.out_features) == (m.feature_dim, 5)


def test_conv4_rejects_wrong_image_shape() -> None:
    m = Conv4(5, width=4, image_size=16)
    with pytest.raises(
        ValueError, match=r"expects images of shape \(N, 1, 16, 16\), got \(2, 3, 16, 16\)"
    ):
        m(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="expects images"):
        m(torch.randn(2, 256))
    with pytest.raises(ValueError, match="batch_norm must be"):
        Conv4(5, batch_norm="none")


def test_conv4_transductive_has_no_running_buffers_and_always_uses_batch_stats() -> None:
    torch.manual_seed(0)
    m = Conv4(3, width=4, image_size=16, batch_norm="transductive")
    assert m.batch_norm == "transductive"
    assert list(m.named_buffers()) == []
    x = torch.randn(8, 1, 16, 16)
    train_out = m(x)
    m.eval()
    torch.testing.assert_close(m(x), train_out)  # eval mode still normalises with batch stats


def test_conv4_inductive_tracks_running_stats_and_uses_them_in_eval() -> None:
    torch.manual_seed(0)
    m = Conv4(3, width=4, image_size=16, batch_norm="inductive")
    names = {n for n, _ in m.named_buffers()}
    assert names == {
        f"body.{i}.{b}"
        for i in (1, 5, 9, 13)
        for b in ("running_mean", "running_var", "num_batches_tracked")
    }
    x = 3.0 + 2.0 * torch.randn(8, 1, 16, 16)
    before = m.body[1].running_mean.clone()
    train_out = m(x)
    assert not torch.equal(m.body[1].running_mean, before)
    m.eval()
    assert not torch.allclose(m(x), train_out)


def test_conv4_works_with_functional_call_and_grad() -> None:
    torch.manual_seed(0)
    m = Conv4(2, width=4, image_size=16).double()
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    params = dict(m.named_parameters())
    torch.testing.assert_close(functional_call(m, params, (x,)), m(x))
    shifted = {**params, "head.bias": params["head.bias"] + 1.0}
    torch.testing.assert_close(functional_call(m, shifted, (x,)), m(x) + 1.0)
    g = torch.func.grad(lambda p: functional_call(m, p, (x,)).square().sum())(params)
    assert set(g) == set(params)
    assert all(v.shape == params[k].shape for k, v in g.items())
    assert g["body.0.weight"].abs().sum() > 0


def test_conv4_inductive_functional_call_with_buffers() -> None:
    m = Conv4(2, width=4, image_size=16, batch_norm="inductive").eval()
    x = torch.randn(3, 1, 16, 16)
    params = dict(m.named_parameters())
    buffers = {k: v.clone() for k, v in m.named_buffers()}
    buffers["body.13.running_mean"] = buffers["body.13.running_mean"] + 1.0
    out = functional_call(m, (params, buffers), (x,))
    assert not torch.allclose(out, m(x))
    torch.testing.assert_close(functional_call(m, (params, dict(m.named_buffers())), (x,)), m(x))


def test_conv4_channels_last_gives_the_same_outputs() -> None:
    torch.manual_seed(0)
    m = Conv4(3, width=4, image_size=16)
    x = torch.randn(4, 1, 16, 16)
    ref = m(x)
    assert m.to_channels_last() is m
    torch.testing.assert_close(m(x.contiguous(memory_format=torch.channels_last)), ref)


# ---- Conv4, strided (MAML's Omniglot network) ---------------------------------------------------
@pytest.mark.parametrize(("width", "size"), [(64, 28), (32, 84), (4, 16)])
def test_strided_conv4_features_are_its_width(width: int, size: int) -> None:
    assert conv4_feature_dim(width, size, "stride") == width
    m = Conv4(5, width=width, image_size=size, downsample="stride")
    assert m.feature_dim == width and m.head.in_features == width
    assert tuple(m.body(torch.randn(2, 1, size, size)).shape) == (2, width)


def test_strided_conv4_is_the_textbook_network() -> None:
    """Four (3×3 conv of stride 2, padding 1 → BatchNorm → ReLU), the maps averaged, a linear
    head (Finn et al. 2017 §5.2); its convs see 28 → 14 → 7 → 4 → 2 pixels a side."""
    torch.manual_seed(0)
    m = Conv4(5, width=4, image_size=28, downsample="stride").double()
    assert not any(isinstance(mod, nn.MaxPool2d) for mod in m.modules())
    convs = [mod for mod in m.body if isinstance(mod, nn.Conv2d)]
    bns = [mod for mod in m.body if isinstance(mod, nn.BatchNorm2d)]
    for bn in bns:  # non-trivial affine parameters, so that their use is checked too
        nn.init.normal_(bn.weight)
        nn.init.normal_(bn.bias)
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    h, sides = x, []
    for conv, bn in zip(convs, bns, strict=True):
        h = torch.nn.functional.conv2d(h, conv.weight, conv.bias, stride=2, padding=1)
        mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
        h = (h - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1)
        h = torch.relu(h + bn.bias.view(1, -1, 1, 1))
        sides.append(h.shape[-1])
    assert sides == [14, 7, 4, 2]
    expected = m.head(h.mean((2, 3)))
    torch.testing.assert_close(m(x), expected)
    m.to_channels_last()
    torch.testing.assert_close(m(x), expected)


def test_strided_conv4_is_cheaper_than_max_pool() -> None:
    """The point of the variant: each conv computes about a quarter of the outputs (counted)."""

    def conv_outputs(m: Conv4) -> int:
        count = 0

        def hook(_: nn.Module, __: object, out: torch.Tensor) -> None:
            nonlocal count
            count += out.numel()

        handles = [
            mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, nn.Conv2d)
        ]
        m(torch.randn(1, 1, 28, 28))
        for h in handles:
            h.remove()
        return count

    pooled = conv_outputs(Conv4(5, width=4, image_size=28))
    strided = conv_outputs(Conv4(5, width=4, image_size=28, downsample="stride"))
    assert pooled == 4 * (28 * 28 + 14 * 14 + 7 * 7 + 3 * 3)
    assert strided == 4 * (14 * 14 + 7 * 7 + 4 * 4 + 2 * 2)


def test_conv4_rejects_an_unknown_downsampling() -> None:
    with pytest.raises(ValueError, match="downsample must be 'maxpool' or 'stride'"):
        Conv4(5, downsample="avg")  # type: ignore[arg-type]


# ---- Conv4 head initialisation (MAML's Omniglot code: N(0, 1)) ---
def test_conv4_head_init_std_draws_the_head_only() -> None:
    torch.manual_seed(3)
    default = Conv4(20, width=64, downsample="stride")
    torch.manual_seed(3)
    wide = Conv4(20, width=64, downsample="stride", head_init_std=1.0)
    d, w = default.state_dict(), wide.state_dict()
    assert all(torch.equal(d[k], w[k]) for k in d if k.startswith("body."))  # same body
    assert torch.count_nonzero(wide.head.bias) == 0
    assert 0.9 < wide.head.weight.std().item() < 1.1  # 1,280 draws of N(0, 1)
    assert default.head.weight.abs().max().item() <= 1 / 8  # PyTorch: uniform in ±1/√64


@pytest.mark.parametrize("std", [0.0, -1.0, float("nan")])
def test_conv4_rejects_a_non_positive_head_init_std(std: float) -> None:
    with pytest.raises(ValueError, match="head_init_std must be a positive number"):
        Conv4(5, head_init_std=std)
