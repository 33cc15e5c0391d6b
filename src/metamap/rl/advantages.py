"""Returns, advantages and the linear feature baseline, for ``(T, E, H)`` rollouts of ``T`` tasks.

MAML's policy-gradient steps (Finn, Abbeel & Levine, ICML 2017, §5.3 and App. A.2) weight each
action's log-probability by an advantage: the discounted return minus a *linear feature baseline*
fitted to each task's trajectories, as rllab's ``LinearFeatureBaseline`` does (Duan et al., ICML
2016): ridge regression, regularisation 1e-5, on the features
``[o, o², t/100, (t/100)², (t/100)³, 1]`` of the observation ``o`` (clipped to ±10) and the step
``t``. :func:`gae` gives generalised advantage estimation (Schulman et al., ICLR 2016); its
``λ = 1`` is the plain return-minus-baseline of MAML's code.

Layout (:class:`~metamap.rl.Rollouts`): rewards, values and masks are ``(*batch, H)``, one
episode a row, ``masks`` 1 while the episode runs and 0 after it ended (never again 1). An
episode that reaches the horizon is not bootstrapped: the value after the last step is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "LinearFeatureBaseline",
    "baseline_features",
    "discounted_returns",
    "gae",
    "normalize_advantages",
]


def _check_steps(masks: Tensor, **tensors: Tensor) -> None:
    for name, x in tensors.items():
        if x.shape != masks.shape:
            raise ValueError(
                f"{name} has shape {tuple(x.shape)} but masks {tuple(masks.shape)}; both must be "
                "(*batch, H), e.g. Rollouts.rewards and Rollouts.masks"
            )
    if masks.dim() < 1 or masks.shape[-1] < 1:
        raise ValueError(f"masks must be (*batch, H) with H >= 1, got {tuple(masks.shape)}")
    if bool((masks[..., 1:] > masks[..., :-1]).any()):
        raise ValueError(
            "masks must hold one episode a row: 1 while it runs, then 0 (a 0 followed by a 1 "
            "was found); split restarted episodes into separate rows"
        )


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value} (MAML: γ = 0.99, λ = 1)")


def discounted_returns(rewards: Tensor, masks: Tensor, gamma: float) -> Tensor:
    """``G_t = Σ_{k ≥ t} γ^{k-t} r_k`` within the episode, 0 after it; ``(*batch, H)``."""
    _check_steps(masks, rewards=rewards)
    _check_rate("gamma", gamma)
    out = torch.zeros_like(rewards)
    after = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        after = masks[..., t] * (rewards[..., t] + gamma * after)
        out[..., t] = after
    return out


def gae(rewards: Tensor, values: Tensor, masks: Tensor, gamma: float, lam: float) -> Tensor:
    """Generalised advantage estimates ``A_t = Σ_k (γλ)^k δ_{t+k}`` with
    ``δ_t = r_t + γ V_{t+1} - V_t`` (``V`` is 0 after the episode); ``(*batch, H)``, 0 after the
    episode. ``λ = 1`` gives ``G_t - V_t``; ``λ = 0`` the one-step TD error."""
    _check_steps(masks, rewards=rewards, values=values)
    _check_rate("gamma", gamma)
    _check_rate("lam", lam)
    values = values * masks
    out = torch.zeros_like(rewards)
    after = torch.zeros_like(rewards[..., 0])
    next_value = torch.zeros_like(values[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        after = masks[..., t] * (delta + gamma * lam * after)
        out[..., t] = after
        next_value = values[..., t]
    return out


def normalize_advantages(advantages: Tensor, masks: Tensor, eps: float = 1e-8) -> Tensor:
    """Each task's advantages shifted to mean 0 and scaled to standard deviation 1 over its
    running steps (rllab's ``center_adv``); ``advantages, masks: (T, ...)``, 0 where masked."""
    _check_steps(masks, advantages=advantages)
    dims = tuple(range(1, masks.dim()))
    count = masks.sum(dims, keepdim=True).clamp_min(1)
    mean = (advantages * masks).sum(dims, keepdim=True) / count
    var = (((advantages - mean) * masks) ** 2).sum(dims, keepdim=True) / count
    return masks * (advantages - mean) / (var.sqrt() + eps)


def baseline_features(observations: Tensor, time_scale: float = 100.0) -> Tensor:
    """``[o, o², s, s², s³, 1]`` with ``o`` clipped to ±10 and ``s = t / time_scale``:
    ``(*batch, H, obs_dim)`` → ``(*batch, H, 2·obs_dim + 4)``."""
    if observations.dim() < 2:
        raise ValueError(
            f"observations must be (*batch, H, obs_dim), got {tuple(observations.shape)}"
        )
    o = observations.clamp(-10.0, 10.0)
    horizon = o.shape[-2]
    s = torch.arange(horizon, dtype=o.dtype, device=o.device) / time_scale
    s = s[:, None].expand(*o.shape[:-1], 1)
    return torch.cat([o, o**2, s, s**2, s**3, torch.ones_like(s)], dim=-1)


@dataclass(frozen=True)
class LinearFeatureBaseline:
    """One linear value function per task: ``V(o, t) = features(o, t) · w_i``, ``coeffs: (T, F)``.

    :meth:`fit` solves ``(XᵀX + c I) w = Xᵀ G`` per task over its running steps (in float64), with
    ``c = 1e-5`` raised tenfold, up to 5 times, for a task whose solve fails, as rllab does.
    """

    coeffs: Tensor

    @classmethod
    def fit(
        cls, observations: Tensor, returns: Tensor, masks: Tensor, reg_coeff: float = 1e-5
    ) -> LinearFeatureBaseline:
        """Fit to ``returns: (T, E, H)`` (discounted) from ``observations: (T, E, H, obs_dim)``
        at the steps where ``masks: (T, E, H)`` is 1."""
        _check_steps(masks, returns=returns)
        if observations.shape[:-1] != masks.shape:
            raise ValueError(
                f"observations have shape {tuple(observations.shape)}, masks "
                f"{tuple(masks.shape)}: they must be (T, E, H, obs_dim) and (T, E, H)"
            )
        if reg_coeff <= 0:
            raise ValueError(f"reg_coeff must be positive, got {reg_coeff} (rllab: 1e-5)")
        if not (bool(torch.isfinite(observations).all()) and bool(torch.isfinite(returns).all())):
            raise ValueError("observations or returns hold NaN or infinite values")
        tasks = masks.shape[0]
        m = masks.double().reshape(tasks, -1, 1)
        x = baseline_features(observations.double()).reshape(tasks, m.shape[1], -1) * m
        y = returns.double().reshape(tasks, -1, 1) * m
        gram, target = x.mT @ x, (x.mT @ y)[..., 0]
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        reg = torch.full((tasks, 1, 1), float(reg_coeff), dtype=gram.dtype, device=gram.device)
        for _ in range(5):
            coeffs, info = torch.linalg.solve_ex(gram + reg * eye, target)
            failed = (info != 0) | ~torch.isfinite(coeffs).all(-1)
            if not bool(failed.any()):
                return cls(coeffs.to(returns.dtype))
            reg = torch.where(failed[:, None, None], reg * 10, reg)
        bad = failed.nonzero().flatten().tolist()
        raise RuntimeError(
            f"the linear baseline could not be fitted for tasks {bad} even with reg_coeff "
            f"{reg_coeff * 1e4:g}; check their observations and returns"
        )

    def __call__(self, observations: Tensor) -> Tensor:
        """Values ``(T, E, H)`` of ``observations: (T, E, H, obs_dim)``."""
        features = baseline_features(observations).to(self.coeffs.dtype)
        if features.shape[-1] != self.coeffs.shape[-1] or features.shape[0] != self.coeffs.shape[0]:
            raise ValueError(
                f"observations {tuple(observations.shape)} do not fit a baseline of "
                f"{self.coeffs.shape[0]} tasks and {self.coeffs.shape[-1]} features"
            )
        return torch.einsum("t...f,tf->t...", features, self.coeffs)
