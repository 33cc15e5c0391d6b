"""Differentiable inner-loop optimizers: momentum SGD, Adam and AdamW as pure functions.

``torch.optim`` updates parameters in place, which autograd cannot differentiate through, so an
inner loop that adapts with momentum or Adam (higher's ``diffopt``, torchopt's ``MetaAdam``)
needs each update as a function that returns new tensors. Here an optimizer is a pair of pure
functions over parameter dicts ``{name: tensor}``:

* ``init(params) -> state``: the state before any step;
* ``step(params, grads, state, lr) -> (params', state')``: one update with step size ``lr`` (one
  scalar, or one tensor per parameter as Meta-SGD learns them).

Nothing is modified in place, so the adapted parameters stay functions of the initial ones to
any order: :func:`~metamap.learners.functional.inner_loop` (``optimizer=``) runs them with
``create_graph=True`` for the exact second-order meta-gradient (checked against finite
differences in float64, ``tests/learners/test_inner_optim.py``), and they run unchanged under
``torch.func.vmap`` and on batched parameter copies ``(B, *shape)``, the update being
elementwise. Each update equals one step of its ``torch.optim`` namesake (tested step for step).

Adam: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (Algorithm 1, in
``torch.optim.Adam``'s form: ε added to the bias-corrected √v̂). Where a coordinate's gradient has
been exactly zero at every step so far (a dead ReLU unit), v̂ = 0 and √ has no derivative; the
update there is 0 · g / (√v̂ + ε), whose derivative is finite, and :func:`_sqrt` gives √ the
derivative 0 at 0 so that autograd finds it instead of ∞ · 0 = NaN. AdamW: Loshchilov & Hutter,
"Decoupled Weight Decay Regularization", ICLR 2019 (``torch.optim.AdamW``'s form).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import torch
from pydantic import NonNegativeFloat, PositiveFloat, model_validator
from torch import Tensor

from metamap.core.learner import Params
from metamap.learners.functional import StepSize
from metamap.section import Section

__all__ = ["SGD", "Adam", "AdamState", "InnerOptimizer", "InnerOptimizerSection", "SGDState"]

S = TypeVar("S")


class InnerOptimizer(Protocol[S]):
    """A differentiable update rule with state of type ``S`` (see the module docstring)."""

    def init(self, params: Params) -> S:
        """The state before the first step."""
        ...

    def step(self, params: Params, grads: Params, state: S, lr: StepSize) -> tuple[Params, S]:
        """The parameters after one step, and the state after it; the inputs are unchanged."""
        ...

    def describe(self) -> str:
        """One line for run summaries, e.g. ``adam β=(0.9, 0.999) ε=1e-08``."""
        ...


def _rate(lr: StepSize, name: str) -> float | Tensor:
    return lr[name] if isinstance(lr, Mapping) else lr


def _check(name: str, value: float, low: float, high: float | None = None) -> None:
    ok = value >= low and (high is None or value < high)
    if not ok:  # NaN fails too
        span = f"in [{low:g}, {high:g})" if high is not None else f"at least {low:g}"
        raise ValueError(f"{name} must be {span}, got {value!r}")


def _with_decay(grads: Params, params: Params, weight_decay: float) -> Params:
    """The gradients with L2 weight decay added (``g + λ θ``), as torch.optim's
    ``weight_decay`` does; the gradients themselves for ``λ = 0``."""
    if not weight_decay:
        return grads
    return {k: grads[k] + weight_decay * p for k, p in params.items()}


@dataclass(frozen=True)
class SGDState:
    """The momentum buffer of each parameter; ``None`` before the first step."""

    momentum: Params | None


@dataclass(frozen=True)
class SGD:
    """Gradient descent with optional (Nesterov) momentum and L2 weight decay, as
    ``torch.optim.SGD`` (no dampening): ``b ← μ b + g`` (``b = g`` at the first step), then
    ``θ ← θ − α b``, or ``θ ← θ − α (g + μ b)`` with ``nesterov``. ``momentum=0`` is plain gradient
    descent, the inner loop's default."""

    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check("momentum", self.momentum, 0.0)
        _check("weight_decay", self.weight_decay, 0.0)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs a momentum above 0 (e.g. momentum=0.9)")

    def init(self, params: Params) -> SGDState:
        return SGDState(None)

    def step(
        self, params: Params, grads: Params, state: SGDState, lr: StepSize
    ) -> tuple[Params, SGDState]:
        g = _with_decay(grads, params, self.weight_decay)
        if not self.momentum:
            return {k: p - _rate(lr, k) * g[k] for k, p in params.items()}, state
        prev = state.momentum
        buf = {k: g[k] if prev is None else self.momentum * prev[k] + g[k] for k in params}
        direction = {k: g[k] + self.momentum * buf[k] for k in params} if self.nesterov else buf
        new = {k: p - _rate(lr, k) * direction[k] for k, p in params.items()}
        return new, SGDState(buf)

    def describe(self) -> str:
        kind = "nesterov" if self.nesterov else "momentum"
        parts = [f"{kind} {self.momentum:g}"] if self.momentum else []
        parts += [f"weight decay {self.weight_decay:g}"] if self.weight_decay else []
        return ", ".join(["sgd", *parts])


@dataclass(frozen=True)
class AdamState:
    """Steps taken, and the first and second moment estimates of each parameter."""

    count: int
    m: Params
    v: Params


def _sqrt(v: Tensor) -> Tensor:
    """√v for ``v ≥ 0``, with derivative 0 (not ∞) at ``v = 0``: a coordinate whose gradients
    were all zero has v = 0, and every path to it from the gradient is multiplied by 0."""
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, torch.ones_like(v)).sqrt(), 0.0)


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba 2015) as ``torch.optim.Adam`` computes it, with optional L2 weight
    decay (added to the gradient, as torch's ``weight_decay``):
    ``m ← β₁ m + (1 − β₁) g``, ``v ← β₂ v + (1 − β₂) g²`` and
    ``θ ← θ − α m / (1 − β₁ᵗ) / (√(v / (1 − β₂ᵗ)) + ε)``.

    ``decoupled=True`` is AdamW (Loshchilov & Hutter 2019, ``torch.optim.AdamW``): the decay
    leaves the gradient and the moments alone and shrinks the weights directly,
    ``θ ← θ (1 − α λ)`` before the step above."""

    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False

    def __post_init__(self) -> None:
        _check("betas[0]", self.betas[0], 0.0, 1.0)
        _check("betas[1]", self.betas[1], 0.0, 1.0)
        _check("weight_decay", self.weight_decay, 0.0)
        if not self.eps > 0:
            raise ValueError(f"eps must be above 0 (e.g. 1e-8), got {self.eps!r}")

    def init(self, params: Params) -> AdamState:
        zeros = {k: torch.zeros_like(p) for k, p in params.items()}
        return AdamState(0, zeros, dict(zeros))

    def step(
        self, params: Params, grads: Params, state: AdamState, lr: StepSize
    ) -> tuple[Params, AdamState]:
        b1, b2 = self.betas
        t = state.count + 1
        g = grads if self.decoupled else _with_decay(grads, params, self.weight_decay)
        m = {k: b1 * state.m[k] + (1 - b1) * g[k] for k in params}
        v = {k: b2 * state.v[k] + (1 - b2) * g[k] * g[k] for k in params}
        c1, c2 = 1 - b1**t, (1 - b2**t) ** 0.5
        shrunk = (
            {k: p * (1 - _rate(lr, k) * self.weight_decay) for k, p in params.items()}
            if self.decoupled and self.weight_decay
            else params
        )
        new = {
            k: p - (_rate(lr, k) / c1) * m[k] / (_sqrt(v[k]) / c2 + self.eps)
            for k, p in shrunk.items()
        }
        return new, AdamState(t, m, v)

    def describe(self) -> str:
        kind = "decoupled weight decay" if self.decoupled else "weight decay"
        decay = f", {kind} {self.weight_decay:g}" if self.weight_decay else ""
        name = "adamw" if self.decoupled else "adam"
        return f"{name} β=({self.betas[0]:g}, {self.betas[1]:g}) ε={self.eps:g}{decay}"


class InnerOptimizerSection(Section):
    """``learner.inner_optimizer`` — the update rule of a gradient learner's inner loop:
    ``{name: sgd}`` (the default: plain gradient descent, as MAML), ``{name: sgd, momentum: 0.9,
    nesterov: true}``, ``{name: adam, betas: [0.9, 0.999], eps: 1e-8}`` or ``{name: adamw,
    weight_decay: 0.01}`` (decoupled decay, which it needs); ``weight_decay`` for each. The step
    sizes stay the learner's (``inner_lr``, learned ones for Meta-SGD)."""

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    momentum: NonNegativeFloat = 0.0
    nesterov: bool = False
    betas: tuple[float, float] = Adam.betas
    eps: PositiveFloat = Adam.eps
    weight_decay: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _settings_of_its_rule(self) -> InnerOptimizerSection:
        if self.name != "sgd" and (self.momentum or self.nesterov):
            raise ValueError(
                f"momentum and nesterov are sgd's settings; {self.name}'s are betas, eps and "
                "weight_decay"
            )
        if self.name == "adamw" and not self.weight_decay:
            raise ValueError(
                "adamw without weight_decay is adam: set weight_decay (torch.optim.AdamW's "
                "default is 0.01), or use name: adam"
            )
        if self.name == "sgd" and (self.betas, self.eps) != (Adam.betas, Adam.eps):
            raise ValueError(
                "betas and eps are adam's and adamw's settings; sgd's are momentum, nesterov and "
                "weight_decay"
            )
        self.build()  # the optimizer's own checks (betas in [0, 1), nesterov with momentum)
        return self

    def build(self) -> InnerOptimizer[Any] | None:
        """The optimizer, or ``None`` for plain gradient descent (the inner loop's own step)."""
        if self.name != "sgd":
            return Adam(self.betas, self.eps, self.weight_decay, decoupled=self.name == "adamw")
        if self.momentum or self.weight_decay:
            return SGD(self.momentum, self.nesterov, self.weight_decay)
        if self.nesterov:
            return SGD(self.momentum, self.nesterov)  # refuses it, with the reason
        return None
