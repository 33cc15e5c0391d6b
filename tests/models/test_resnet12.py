"""ResNet-12: block structure, output shapes on 84×84×3 and 32×32×3, the published parameter
count, BatchNorm policies and torch.func compatibility."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from metamap.models import ResBlock, ResNet12

SMALL = (4, 6, 8, 10)


def test_full_size_shapes_and_parameter_count() -> None:
    torch.manual_seed(0)
    m = ResNet12(5).eval()
    body = sum(p.numel() for p in m.body.parameters())
    assert body == pytest.approx(12.4e6, rel=0.01)  # MetaOptNet's ResNet-12: ~12.4 M parameters
    assert m.feature_dim == 640 and (m.head.in_features, m.head.out_features) == (640, 5)
    with torch.no_grad():
        assert tuple(m(torch.randn(2, 3, 84, 84)).shape) == (2, 5)
        assert tuple(m.body(torch.randn(2, 3, 32, 32)).shape) == (2, 640)


@pytest.mark.parametrize(("size", "side"), [(84, 5), (32, 2), (16, 1)])
def test_map_sizes_before_the_global_pool(size: int, side: int) -> None:
    m = ResNet12(3, widths=SMALL)
    x = torch.randn(2, 3, size, size)
    maps = m.body[:4](x)
    assert tuple(maps.shape) == (2, 10, side, side)
    torch.testing.assert_close(m.body(x), maps.mean(dim=(2, 3)))
    torch.testing.assert_close(m(x), m.head(m.body(x)))


def test_block_structure() -> None:
    block = ResBlock(3, 8, "inductive")
    convs = [c for c in block.convs if isinstance(c, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3 and all(c.bias is None for c in convs)
    assert [c.kernel_size for c in block.shortcut if isinstance(c, nn.Conv2d)] == [(1, 1)]
    acts = [a for a in block.modules() if isinstance(a, nn.LeakyReLU)]
    assert len(acts) == 3 and all(a.negative_slope == 0.1 for a in acts)
    assert sum(isinstance(b, nn.BatchNorm2d) for b in block.modules()) == 4
    x = torch.randn(2, 3, 8, 8)
    expected = block.out(block.convs(x) + block.shortcut(x))
    torch.testing.assert_close(block(x), expected)
    assert tuple(block(x).shape) == (2, 8, 4, 4)


def test_batch_norm_policies() -> None:
    x = 2 + torch.randn(4, 3, 16, 16)
    trans = ResNet12(2, widths=SMALL, batch_norm="transductive")
    assert list(trans.named_buffers()) == []
    out = trans(x)
    torch.testing.assert_close(trans.eval()(x), out)
    ind = ResNet12(2, widths=SMALL, batch_norm="inductive")
    assert ind.batch_norm == "inductive" and len(list(ind.buffers())) == 16 * 3
    out = ind(x)
    assert not torch.allclose(ind.eval()(x), out)


def test_functional_call_and_grad() -> None:
    torch.manual_seed(0)
    m = ResNet12(2, widths=SMALL, batch_norm="transductive").double()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    params = dict(m.named_parameters())
    torch.testing.assert_close(functional_call(m, params, (x,)), m(x))
    shifted = {**params, "head.bias": params["head.bias"] + 1.0}
    torch.testing.assert_close(functional_call(m, shifted, (x,)), m(x) + 1.0)
    g = torch.func.grad(lambda p: functional_call(m, p, (x,)).square().sum())(params)
    assert set(g) == set(params) and float(g["body.0.convs.0.weight"].detach().abs().sum()) > 0


def test_rejects_bad_arguments_and_inputs() -> None:
    m = ResNet12(2, widths=SMALL)
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 3, H, W\)"):
        m(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match="H, W ≥ 16"):
        m(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="4 positive widths"):
        ResNet12(2, widths=(4, 4, 4))
    with pytest.raises(ValueError, match="batch_norm must be"):
        ResNet12(2, batch_norm="none")  # type: ignore[arg-type]
