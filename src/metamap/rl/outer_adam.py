"""Adam for outer updates that a policy learner applies itself (PPO's epochs), its state kept in
the learner's buffers so that every checkpoint holds it and a resumed run continues bit for bit.

Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015: β = (0.9, 0.999),
ε = 1e-8, bias-corrected moments. With several processes, :func:`reduced_grads` first turns each
process's gradients into the mean over every process's tasks, as one flat bucket.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from metamap.rl.protocol import Reduce

__all__ = ["adam_step", "init_adam", "reduced_grads"]


def init_adam(module: nn.Module, params: Sequence[nn.Parameter]) -> None:
    """Register Adam's step count and moments of ``params`` as buffers of ``module``."""
    module.register_buffer("adam_step", torch.zeros(()))
    for i, p in enumerate(params):
        module.register_buffer(f"adam_m_{i}", torch.zeros_like(p))
        module.register_buffer(f"adam_v_{i}", torch.zeros_like(p))


def reduced_grads(
    grads: Sequence[Tensor], params: Sequence[Tensor], reduce: Reduce | None
) -> tuple[Tensor, ...]:
    """``grads`` as the mean over every process's tasks (one all-reduced bucket), or as given."""
    if reduce is None:
        return tuple(grads)
    flat = reduce(torch.cat([g.reshape(-1) for g in grads]))
    pieces = torch.split(flat, [p.numel() for p in params])
    return tuple(f.view_as(p) for f, p in zip(pieces, params, strict=True))


@torch.no_grad()
def adam_step(
    module: nn.Module, params: Sequence[nn.Parameter], grads: Sequence[Tensor], lr: float
) -> None:
    """One Adam step of ``params`` from ``grads``; the moments are ``module``'s buffers."""
    step = module.get_buffer("adam_step")
    step += 1
    t = float(step)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        m, v = module.get_buffer(f"adam_m_{i}"), module.get_buffer(f"adam_v_{i}")
        m.mul_(0.9).add_(g, alpha=0.1)
        v.mul_(0.999).addcmul_(g, g, value=0.001)
        denom = (v / (1 - 0.999**t)).sqrt_().add_(1e-8)
        p.addcdiv_(m, denom, value=-lr / (1 - 0.9**t))
