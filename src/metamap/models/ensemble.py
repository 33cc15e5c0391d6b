"""Running B copies of a network with B parameter sets, without ``vmap`` (a model capability).

``torch.func.vmap(lambda p, x: functional_call(model, p, (x,)))`` runs an ensemble of parameter
sets ``{name: (B, *shape)}`` on inputs ``(B, N, *in)``. It is general, but each torch op under
``vmap`` becomes several (a batched ``linear`` is a ``bmm`` wrapped in expands, views and
transposes, each one more autograd node), and ``functional_call`` swaps the module's attributes in
Python on every call. Where the network is a few small layers that overhead is most of the
time: on the sinusoid MLP of MAML §5.1, one ``baddbmm`` per layer instead is most of metamap's
lead over learn2learn's per-task loop (``benchmarks/speed_learn2learn.py``).

A model that can do this itself provides :class:`EnsembleForward`; :func:`ensemble_forward` says
whether a given model may use it. The answer is no for a subclass that redefines ``forward``
below the class that wrote ``forward_each`` (the two would compute different functions), for a
model with forward hooks, its own or global ones (``functional_call`` would run them,
``forward_each`` does not), and where the model itself says no
(:meth:`EnsembleForward.can_forward_each`, e.g. after one of its layers was replaced). Callers
fall back to ``vmap`` then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, cast, runtime_checkable

from torch import Tensor, nn

__all__ = ["EnsembleForward", "ensemble_forward"]


@runtime_checkable
class EnsembleForward(Protocol):
    """A network that runs B copies of itself at once."""

    def can_forward_each(self) -> bool:
        """Whether :meth:`forward_each` computes this module's forward as it is now built."""
        ...

    def forward_each(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """Inputs ``x: (B, N, *in)`` through B copies: each parameter of ``params`` is either
        ``(B, *shape)`` (copy b uses slice b) or of its own shape (shared by every copy); missing
        ones are the module's own. Returns ``(B, N, *out)``, equal to
        ``vmap(functional_call)`` over the copies (up to rounding)."""
        ...


def ensemble_forward(model: nn.Module) -> EnsembleForward | None:
    """``model`` as an :class:`EnsembleForward` when its ``forward_each`` is the function its
    ``forward`` computes; ``None`` otherwise (use ``vmap`` of ``functional_call``)."""
    cls = type(model)
    owner = next((c for c in cls.__mro__ if "forward_each" in vars(c)), None)
    if owner is None:
        return None
    for c in cls.__mro__:  # a forward redefined below forward_each's class is not its function
        if c is owner:
            break
        if "forward" in vars(c):
            return None
    module = nn.modules.module  # torch's registries of hooks, per module and global
    if module._global_forward_hooks or module._global_forward_pre_hooks:
        return None
    if any(m._forward_hooks or m._forward_pre_hooks for m in model.modules()):
        return None
    ensemble = cast(EnsembleForward, model)
    return ensemble if ensemble.can_forward_each() else None
