"""``MLP.forward_each`` runs B copies of the network as ``vmap`` of ``functional_call`` does, and
``ensemble_forward`` offers it only where it computes the model's forward."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call

from metamap.models import MLP, Conv4, EnsembleForward, ensemble_forward

B, N = 4, 6


def _mlp(out: int = 2) -> MLP:
    torch.manual_seed(0)
    return MLP(3, out, (5, 7)).double()


def _copies(model: nn.Module, batched: set[str]) -> dict[str, Tensor]:
    """Parameters of ``model``, those named in ``batched`` as B distinct copies ``(B, *shape)``."""
    g = torch.Generator().manual_seed(1)
    return {
        k: (p + torch.randn(B, *p.shape, generator=g, dtype=p.dtype)) if k in batched else p
        for k, p in model.named_parameters()
    }


def _by_vmap(model: nn.Module, params: dict[str, Tensor], x: Tensor) -> Tensor:
    batched = {k: v for k, v in params.items() if v.dim() > dict(model.named_parameters())[k].dim()}
    shared = {k: v for k, v in params.items() if k not in batched}

    def one(p: dict[str, Tensor], xi: Tensor) -> Tensor:
        out: Tensor = functional_call(model, {**shared, **p}, (xi,))
        return out

    out: Tensor = torch.func.vmap(one)(batched, x)
    return out


@pytest.mark.parametrize(
    "batched",
    [
        pytest.param("all", id="every-parameter-per-copy"),
        pytest.param({"head.weight", "head.bias"}, id="head-per-copy"),
        pytest.param({"body.0.weight", "head.bias"}, id="mixed"),
    ],
)
def test_forward_each_equals_vmap_of_functional_call(batched: str | set[str]) -> None:
    model = _mlp()
    names = {k for k, _ in model.named_parameters()} if batched == "all" else batched
    assert isinstance(names, set)
    params = _copies(model, names)
    x = torch.randn(B, N, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = model.forward_each(params, x)
    assert got.shape == (B, N, 2)
    torch.testing.assert_close(got, _by_vmap(model, params, x), rtol=1e-12, atol=1e-12)
    # copy b is the network with parameter set b, on inputs b
    for b in (0, B - 1):
        one = {k: v[b] if k in names else v for k, v in params.items()}
        torch.testing.assert_close(got[b], functional_call(model, one, (x[b],)), rtol=1e-12, atol=0)


def test_forward_each_is_twice_differentiable_like_vmap() -> None:
    """MAML differentiates through the inner gradient: second derivatives must agree too."""
    model = _mlp(1)
    params = _copies(model, {k for k, _ in model.named_parameters()})
    x = torch.randn(B, N, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def hvp(forward: object) -> list[Tensor]:
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        loss = forward(p, x).square().sum()  # type: ignore[operator]
        gs = torch.autograd.grad(loss, list(p.values()), create_graph=True)
        inner = sum((g * g).sum() for g in gs)
        return list(torch.autograd.grad(inner, list(p.values())))

    for a, b in zip(hvp(model.forward_each), hvp(lambda p, x: _by_vmap(model, p, x)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_missing_parameters_are_the_modules_own() -> None:
    model = _mlp()
    x = torch.randn(B, N, 3, dtype=torch.float64)
    torch.testing.assert_close(model.forward_each({}, x), model(x.reshape(-1, 3)).reshape(B, N, 2))


def test_forward_each_names_the_input_shape_it_needs() -> None:
    with pytest.raises(ValueError, match=r"expects input of shape \(B, N, 3\), got \(6, 3\)"):
        _mlp().forward_each({}, torch.zeros(6, 3, dtype=torch.float64))


def test_ensemble_forward_is_offered_only_where_it_is_the_models_forward() -> None:
    model = _mlp()
    assert ensemble_forward(model) is model
    assert isinstance(model, EnsembleForward)
    assert ensemble_forward(Conv4(3, width=4, image_size=16)) is None  # no forward_each

    class Subclass(MLP):  # inherits both: still the same function
        pass

    assert ensemble_forward(Subclass(3, 2)) is not None

    class NewForward(MLP):
        def forward(self, x: Tensor) -> Tensor:
            return super().forward(x) * 2

    assert ensemble_forward(NewForward(3, 2)) is None

    hooked = _mlp()
    handle = hooked.body[0].register_forward_hook(lambda m, i, o: o * 0)
    assert ensemble_forward(hooked) is None  # functional_call would run the hook
    handle.remove()
    assert ensemble_forward(hooked) is hooked
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: o)
    try:
        assert ensemble_forward(hooked) is None  # a global hook runs under functional_call too
    finally:
        handle.remove()
    assert ensemble_forward(hooked) is hooked

    replaced = _mlp()
    replaced.body[1] = nn.Tanh()
    assert ensemble_forward(replaced) is None
    with pytest.raises(TypeError, match=r"cannot run layer body.1: Tanh"):
        replaced.forward_each({}, torch.zeros(B, N, 3, dtype=torch.float64))
