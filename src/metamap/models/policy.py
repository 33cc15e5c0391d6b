"""A Gaussian policy: an MLP gives the mean action, a learned vector the log standard deviation.

The policy of MAML's reinforcement-learning experiments (Finn, Abbeel & Levine, ICML 2017, §5.3
and App. A.2): two hidden layers of 100 ReLU units, ``π(a | s) = N(a; μ_φ(s), diag(σ²))`` with a
state-independent ``log σ`` (one learned number per action dimension, starting at 0, so σ = 1).
A plain ``nn.Module``: ``torch.func.functional_call(policy, params, (obs,))`` evaluates it with
adapted parameters, as MAML's inner policy-gradient step needs.

Shapes: ``obs: (*batch, obs_dim)`` → ``mean: (*batch, act_dim)``, ``log_std: (*batch, act_dim)``.
:func:`gaussian_log_prob` and :func:`gaussian_sample` (also ``GaussianMLP.log_prob`` and
``GaussianMLP.sample``) work on any such pair, so rollouts need not hold the module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from metamap.models.mlp import MLP
from metamap.models.registry import ModelContext, ModelSection, register_model

__all__ = ["GaussianMLP", "GaussianMLPSection", "gaussian_log_prob", "gaussian_sample"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """``log N(actions; mean, diag(exp(log_std)²))`` summed over the last (action) dimension.

    ``mean, actions: (*batch, act_dim)``, ``log_std`` broadcastable to them; returns ``(*batch,)``.
    """
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z**2 - log_std - _LOG_SQRT_2PI).sum(-1)


def gaussian_sample(
    mean: Tensor,
    log_std: Tensor,
    generator: torch.Generator,
    rows: tuple[int, int] | None = None,
) -> Tensor:
    """``mean + exp(log_std) · ε`` with ``ε ~ N(0, I)`` drawn from ``generator`` (which must live
    on ``mean``'s device); ``(*batch, act_dim)``. (``torch.distributions`` takes no generator.)
    Policy gradients score the sampled actions with :func:`gaussian_log_prob`; rollouts sample
    under ``torch.no_grad()``. ``rows = (first, total)``: ``mean`` holds rows ``[first, first +
    N)`` of ``total``; the noise of all ``total`` rows is drawn and these rows' used, so a share
    of a batch samples what the whole batch would."""
    first, total = (0, len(mean)) if rows is None else rows
    shape = (total, *mean.shape[1:])
    noise = torch.randn(shape, generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + torch.exp(log_std) * noise[first : first + len(mean)]


class GaussianMLP(nn.Module):
    """``obs → hidden[0] → … → mean`` (ReLU MLP) and a learned ``log_std`` of shape ``(act_dim,)``.

    Parameters: ``mean.body.*``, ``mean.head.*`` (the :class:`~metamap.models.MLP`) and
    ``log_std``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (100, 100),
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(
                f"GaussianMLP needs obs_dim and act_dim of at least 1, got {obs_dim} and "
                f"{act_dim} (2D navigation: GaussianMLP(2, 2))"
            )
        if not math.isfinite(init_log_std):
            raise ValueError(f"init_log_std must be finite, got {init_log_std}")
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.mean = MLP(obs_dim, act_dim, hidden)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``obs: (*batch, obs_dim)`` → ``(mean, log_std)``, each ``(*batch, act_dim)``."""
        if obs.dim() < 1 or obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"GaussianMLP expects observations of shape (..., {self.obs_dim}), "
                f"got {tuple(obs.shape)}"
            )
        batch = obs.shape[:-1]
        mean = self.mean(obs.reshape(-1, self.obs_dim)).reshape(*batch, self.act_dim)
        return mean, self.log_std.expand_as(mean)

    @staticmethod
    def log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
        """:func:`gaussian_log_prob`: ``(*batch, act_dim)`` → ``(*batch,)``."""
        return gaussian_log_prob(mean, log_std, actions)

    @staticmethod
    def sample(mean: Tensor, log_std: Tensor, generator: torch.Generator) -> Tensor:
        """:func:`gaussian_sample`: ``(*batch, act_dim)`` actions drawn from ``generator``."""
        return gaussian_sample(mean, log_std, generator)


@register_model
class GaussianMLPSection(ModelSection):
    """``model: {name: gaussian_mlp}`` — MAML's RL policy: a ReLU MLP (100-100) gives the mean
    action, a learned vector the log standard deviation (Finn et al. 2017, App. A.2)."""

    name: Literal["gaussian_mlp"] = "gaussian_mlp"
    hidden: list[PositiveInt] = Field(default_factory=lambda: [100, 100])
    init_log_std: float = 0.0
    images: ClassVar[bool] = False
    policy: ClassVar[bool] = True

    def build(self, ctx: ModelContext) -> GaussianMLP:
        return GaussianMLP(ctx.in_features, ctx.out_features, self.hidden, self.init_log_std)

    def describe(self) -> str:
        return f"Gaussian MLP policy {'-'.join(map(str, self.hidden))}"
