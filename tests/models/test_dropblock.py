"""DropBlock (Ghiasi et al. 2018): dropped regions are whole squares, the average drop rate is
``drop_prob``, the expectation is kept, eval mode is the identity, masks follow the generator,
and ResNet-12 wires it as MetaOptNet does without changing its parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metamap.models import DropBlock2d, ResNet12, drop_layers, reseed_drop_layers

SMALL = (4, 6, 8, 10)


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def test_eval_mode_and_zero_rate_are_the_identity() -> None:
    x = torch.randn(2, 3, 9, 9)
    layer = DropBlock2d(0.3, 3).eval()
    assert layer(x) is x
    zero = DropBlock2d(0.0, 3).train()
    assert zero(x) is x
    warm = DropBlock2d(0.3, 3).train()
    warm.schedule = 0.0
    assert warm(x) is x


@pytest.mark.parametrize("block", [1, 3, 5])
def test_zeros_are_unions_of_whole_blocks(block: int) -> None:
    layer = DropBlock2d(0.2, block)
    layer.generator = _gen(0)
    m = layer.mask(torch.Size((4, 3, 12, 12)), torch.device("cpu"))
    assert set(m.unique().tolist()) <= {0.0, 1.0} and (m == 0).any()
    dropped = 1.0 - m
    # Opening (erosion then dilation) by a block×block square leaves a union of such squares
    # unchanged: every dropped pixel lies inside a fully dropped block.
    eroded = -F.max_pool2d(-F.pad(dropped, (0, block - 1, 0, block - 1), value=0.0), block, 1)
    opened = F.max_pool2d(F.pad(eroded, (block - 1, 0, block - 1, 0)), block, 1)
    assert torch.equal(opened, dropped)


@pytest.mark.parametrize(("p", "block"), [(0.1, 1), (0.1, 5), (0.25, 3)])
def test_average_drop_rate_is_drop_prob(p: float, block: int) -> None:
    layer = DropBlock2d(p, block)
    layer.generator = _gen(1)
    m = layer.mask(torch.Size((64, 16, 21, 21)), torch.device("cpu"))
    # γ counts overlapping blocks as separate, so the dropped fraction sits a little below p.
    assert 0.8 * p < float(1.0 - m.mean()) <= 1.05 * p


def test_expectation_is_kept_and_survivors_rescaled() -> None:
    layer = DropBlock2d(0.2, 3).train()
    layer.generator = _gen(2)
    x = torch.ones(32, 8, 10, 10)
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], float(x.numel() / kept.sum())))
    assert float(y.mean()) == pytest.approx(1.0, abs=1e-5)
    assert float(kept.float().mean()) < 0.9


def test_block_larger_than_the_map_is_clipped() -> None:
    layer = DropBlock2d(0.5, 7)
    layer.generator = _gen(3)
    m = layer.mask(torch.Size((200, 1, 3, 3)), torch.device("cpu"))
    per_map = m.flatten(1).sum(1)
    assert set(per_map.unique().tolist()) <= {0.0, 9.0}  # a map is dropped whole or kept whole


def test_masks_follow_the_generator() -> None:
    layer = DropBlock2d(0.2, 3).train()
    x = torch.randn(4, 3, 9, 9)
    layer.generator = _gen(5)
    a = layer(x)
    layer.generator = _gen(5)
    torch.testing.assert_close(layer(x), a)
    layer.generator = _gen(6)
    assert not torch.equal(layer(x), a)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="drop_prob"):
        DropBlock2d(1.0, 3)
    with pytest.raises(ValueError, match="block_size"):
        DropBlock2d(0.1, 0)
    with pytest.raises(ValueError, match="drop_rate"):
        ResNet12(5, drop_rate=-0.1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        DropBlock2d(0.1, 3).train()(torch.randn(3, 9, 9))


def test_resnet12_wiring_state_dict_and_eval() -> None:
    plain = ResNet12(5, widths=SMALL)
    reg = ResNet12(5, widths=SMALL, drop_rate=0.1, dropblock_size=3)
    assert plain.state_dict().keys() == reg.state_dict().keys()
    layers = drop_layers(reg)
    assert [(d.block_size, d.warmup) for d in layers] == [(1, False)] * 2 + [(3, True)] * 2
    assert drop_layers(plain) == []
    reg.load_state_dict(plain.state_dict())
    x = torch.randn(6, 3, 32, 32)
    plain.eval(), reg.eval()
    torch.testing.assert_close(reg(x), plain(x))  # eval: no dropping at all
    reg.train()
    reseed_drop_layers(reg, _gen(0), torch.device("cpu"))
    a = reg(x)
    reseed_drop_layers(reg, _gen(0), torch.device("cpu"))
    torch.testing.assert_close(reg(x), a)
    reseed_drop_layers(reg, _gen(1), torch.device("cpu"))
    assert not torch.allclose(reg(x), a)


def test_reseed_sets_the_warmup_of_blocks_only() -> None:
    reg = ResNet12(5, widths=SMALL, drop_rate=0.1)
    g = _gen(0)
    reseed_drop_layers(reg, g, torch.device("cpu"), schedule=0.25)
    assert [d.rate for d in drop_layers(reg)] == pytest.approx([0.1, 0.1, 0.025, 0.025])
    reseed_drop_layers(reg, g, torch.device("cpu"), schedule=3.0)
    assert [d.rate for d in drop_layers(reg)] == pytest.approx([0.1] * 4)
    state = g.get_state()
    reseed_drop_layers(ResNet12(5, widths=SMALL), g, torch.device("cpu"))
    assert torch.equal(g.get_state(), state)  # no DropBlock: the caller's RNG is not drawn from


def test_a_channels_last_input_stays_channels_last() -> None:
    layer = DropBlock2d(0.2, 3).train()
    layer.generator = _gen(7)
    x = torch.randn(4, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    y = layer(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    layer.generator = _gen(7)
    torch.testing.assert_close(layer(x.contiguous()), y)
