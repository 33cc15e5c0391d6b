"""A recurrent Gaussian policy: a GRU reads, at every step, the observation together with the
previous action and reward, and its hidden state gives the mean action.

The policy of RL² (Duan, Schulman, Chen, Bartlett, Sutskever & Abbeel, "RL²: Fast Reinforcement
Learning via Slow Reinforcement Learning", 2016) and of Wang et al., "Learning to reinforcement
learn" (2016): ``x_t = [o_t, a_{t-1}, r_{t-1}, f_t]`` with ``f_t = 1`` at the first step of an
episode (and ``a``, ``r`` zero there), ``h_t = GRU(x_t, h_{t-1})``, ``π(a_t | history) =
N(W h_t + b, diag(σ²))`` with a learned, state-independent ``log σ``. What the hidden state
remembers across episodes is up to whoever carries it (:class:`metamap.rl.RL2`).

Shapes: :meth:`GaussianGRU.forward` takes ``x: (N, L, input_dim)`` and ``h0: (N, hidden)`` and
returns ``mean: (N, L, act_dim)``, ``log_std`` of the same shape and ``h_L: (N, hidden)``;
:meth:`GaussianGRU.step` is one step of it (``L = 1``), with the same weights and arithmetic.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import PositiveInt
from torch import Tensor, nn

from metamap.models.registry import ModelContext, ModelSection, register_model

__all__ = ["GaussianGRU", "GaussianGRUSection", "feedback_inputs"]


def feedback_inputs(obs: Tensor, prev_action: Tensor, prev_reward: Tensor, first: Tensor) -> Tensor:
    """``[o, a_prev, r_prev, first]`` along the last dimension: ``obs (*b, obs_dim)``,
    ``prev_action (*b, act_dim)``, ``prev_reward (*b)``, ``first (*b)`` → ``(*b, input_dim)``."""
    return torch.cat([obs, prev_action, prev_reward[..., None], first[..., None]], -1)


class GaussianGRU(nn.Module):
    """A GRU of ``hidden`` units over ``[o, a_prev, r_prev, first]`` and a linear mean head.

    Parameters: ``gru.*`` (one :class:`torch.nn.GRU` layer), ``head.*`` and ``log_std``.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: int = 100, init_log_std: float = 0.0
    ) -> None:
        super().__init__()
        if obs_dim < 1 or act_dim < 1 or hidden < 1:
            raise ValueError(
                f"GaussianGRU needs obs_dim, act_dim and hidden of at least 1, got {obs_dim}, "
                f"{act_dim} and {hidden} (2D navigation: GaussianGRU(2, 2))"
            )
        if not math.isfinite(init_log_std):
            raise ValueError(f"init_log_std must be finite, got {init_log_std}")
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, hidden
        self.input_dim = obs_dim + act_dim + 2
        self.gru = nn.GRU(self.input_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def initial_state(self, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
        """The hidden state before any experience: zeros ``(n, hidden)``."""
        return torch.zeros(n, self.hidden, dtype=dtype, device=device)

    def forward(self, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x: (N, L, input_dim)``, ``h0: (N, hidden)`` → ``(mean, log_std, h_L)``."""
        if x.dim() != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"GaussianGRU expects inputs of shape (N, L, {self.input_dim}) = "
                f"[observation, previous action, previous reward, first-step flag], "
                f"got {tuple(x.shape)}"
            )
        if h0.shape != (x.shape[0], self.hidden):
            raise ValueError(
                f"the hidden state must have shape {(x.shape[0], self.hidden)}, "
                f"got {tuple(h0.shape)}"
            )
        out, h = self.gru(x, h0[None].contiguous())
        mean = self.head(out)
        return mean, self.log_std.expand_as(mean), h[0]

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One step: ``x: (N, input_dim)``, ``h: (N, hidden)`` → ``(mean (N, act_dim),
        log_std, h')``."""
        mean, log_std, h = self(x[:, None], h)
        return mean[:, 0], log_std[:, 0], h


@register_model
class GaussianGRUSection(ModelSection):
    """``model: {name: gaussian_gru, hidden: 100}`` — RL²'s recurrent policy (Duan et al.
    2016): a GRU over observation, previous action, previous reward and a first-step flag."""

    name: Literal["gaussian_gru"] = "gaussian_gru"
    hidden: PositiveInt = 100
    init_log_std: float = 0.0
    images: ClassVar[bool] = False
    policy: ClassVar[bool] = True
    recurrent: ClassVar[bool] = True

    def build(self, ctx: ModelContext) -> GaussianGRU:
        return GaussianGRU(ctx.in_features, ctx.out_features, self.hidden, self.init_log_std)

    def describe(self) -> str:
        return f"Gaussian GRU policy ({self.hidden} units)"
