"""MetaOptNet-SVM: a differentiable multi-class (Crammer–Singer) SVM head.

Lee, Maji, Ravichandran & Soatto, "Meta-Learning with Differentiable Convex Optimization",
CVPR 2019 (MetaOptNet), with the SVM of Crammer & Singer, JMLR 2001. On support embeddings
x_n ``(S, D)`` with labels y_n the head solves

    min_{w, ξ} ½ Σ_k ‖w_k‖² + C Σ_n ξ_n   s.t.  w_{y_n}·x_n − w_k·x_n ≥ 1 − δ_{y_n,k} − ξ_n  ∀ n, k,

through its dual (MetaOptNet Eq. 9–10), over α ``(S, W)``:

    min_α ½ tr(αᵀKα) − tr(Yᵀα)   s.t.  α_n ≤ C y_n,  Σ_k α_{n,k} = 0,       w_k = Σ_n α_{n,k} x_n,

with K = XXᵀ ``(S, S)`` and Y one-hot ``(S, W)``. Logits of queries X' ``(Q, D)``: ``s · X'W``
with a learned scale s (MetaOptNet's ``scale``).

Solver (no QP library). Substituting α = C(Y − P) turns the constraints into "each row of P lies
on the probability simplex", so the dual is solved by FISTA (Beck & Teboulle 2009): accelerated
projected gradient with step 1/λ_max(K), Euclidean projection onto the simplex per row
(Duchi et al. 2008), from P = Y (α = 0), with adaptive momentum restart (which makes it converge
linearly in practice), for a **fixed number of iterations**: ``iterations`` (default 50) in
meta-training, ``test_iterations`` (default 200, or ``adapt(steps=...)``) in :meth:`adapt`.
In checks on random 5-way 5-shot problems with C = 0.1, 50 iterations left the primal weights
within about 1% of the optimum and 200 iterations a duality gap below 1e-6. Gradients come
from **unrolling** the iterations with autograd: exact derivatives of the computed head (not of
the exact optimum), robust where the dual solution is not unique (K is rank-deficient whenever
S > D or points repeat), at a memory cost of O(iterations · S · W) per task. λ_max comes from
``torch.linalg.eigvalsh`` and is differentiated too. :func:`duality_gap` certifies convergence.

Unlike MetaOptNet's code, K gets no added ridge term (they add I to make qpth's problem strictly
convex). Shapes: X ``(..., S, D)``, Y ``(..., S, W)`` → α ``(..., S, W)``, W ``(..., D, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from metamap.learners.base import AdaptedState
from metamap.learners.metric import EncoderLearner, EncoderSection, expect_state
from metamap.learners.registry import BuildContext, register_learner

__all__ = [
    "SVMHead",
    "SVMSection",
    "SVMState",
    "crammer_singer_dual",
    "duality_gap",
    "project_simplex",
]


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of each row ``(..., W)`` onto {p ≥ 0, Σ p = 1} (Duchi et al. 2008)."""
    u = v.sort(dim=-1, descending=True).values
    css = u.cumsum(dim=-1) - 1
    k = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    rho = (u - css / k > 0).sum(dim=-1, keepdim=True)  # the condition holds on a prefix
    theta = css.gather(-1, rho - 1) / rho
    return (v - theta).clamp_min(0)


def crammer_singer_dual(k: Tensor, y: Tensor, c: float, iterations: int) -> Tensor:
    """Dual variables α ``(..., S, W)`` from kernel ``(..., S, S)`` and one-hot ``(..., S, W)``.

    FISTA on P (α = C(Y − P)) minimising ½ tr((Y−P)ᵀK(Y−P)) − tr(Yᵀ(Y−P))/C over row simplices,
    with gradient-based momentum restart per task (O'Donoghue & Candès 2015).
    """
    step = 1 / torch.linalg.eigvalsh(k)[..., -1:].clamp_min(1e-12).unsqueeze(-1)
    p = z = y
    t = torch.ones_like(step)
    for _ in range(iterations):
        p_next = project_simplex(z - step * (y / c - k @ (y - z)))
        restart = ((z - p_next) * (p_next - p)).sum(dim=(-2, -1), keepdim=True) > 0
        t = torch.where(restart, 1.0, t)
        t_next = (1 + (1 + 4 * t * t).sqrt()) / 2
        z = p_next + (t - 1) / t_next * (p_next - p)
        p, t = p_next, t_next
    return c * (y - p)


def duality_gap(k: Tensor, y: Tensor, alpha: Tensor, c: float) -> Tensor:
    """Primal minus dual objective ``(...,)`` at w = Xᵀα (≥ 0; zero exactly at the optimum)."""
    quad = 0.5 * (alpha * (k @ alpha)).sum(dim=(-2, -1))
    scores = k @ alpha  # w_k · x_n
    margins = 1 - y + scores - (scores * y).sum(dim=-1, keepdim=True)
    primal = quad + c * margins.amax(dim=-1).sum(dim=-1)
    dual = (alpha * y).sum(dim=(-2, -1)) - quad
    return primal - dual


@dataclass(kw_only=True)
class SVMState(AdaptedState):
    """The SVM: primal weights ``weight`` ``(D, W)`` and dual variables ``dual`` ``(S, W)``."""

    weight: Tensor
    dual: Tensor


class SVMHead(EncoderLearner):
    """MetaOptNet with a Crammer–Singer SVM head on any encoder ``(N, ...) -> (N, D)``."""

    def __init__(
        self,
        encoder: nn.Module,
        c: float = 0.1,
        iterations: int = 50,
        test_iterations: int = 200,
        scale: float = 1.0,
        per_task_forward: bool = False,
    ) -> None:
        super().__init__(encoder, per_task_forward)
        if c <= 0 or min(iterations, test_iterations) < 1:
            raise ValueError(
                f"need c > 0 and at least one iteration, got c={c}, "
                f"iterations={iterations}, test_iterations={test_iterations}"
            )
        self.c = c
        self.iterations = iterations
        self.test_iterations = test_iterations
        self.scale = nn.Parameter(torch.tensor(float(scale)))

    def fit(self, support: Tensor, onehot: Tensor, steps: int | None = None) -> SVMState:
        """The SVM after ``steps`` solver iterations (default ``iterations``)."""
        iterations = self.iterations if steps is None else steps
        alpha = crammer_singer_dual(support @ support.mT, onehot, self.c, iterations)
        return SVMState(weight=support.mT @ alpha, dual=alpha)

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        """The SVM after ``steps`` solver iterations (default ``test_iterations``), detached."""
        return super().adapt(support_x, support_y, self.test_iterations if steps is None else steps)

    def score(self, state: AdaptedState, query: Tensor) -> Tensor:
        return self.scale * query @ expect_state(state, SVMState).weight


@register_learner
class SVMSection(EncoderSection):
    """``learner: {name: svm}`` — MetaOptNet's multi-class SVM head (Lee et al. 2019)."""

    name: Literal["svm"] = "svm"

    def build(self, ctx: BuildContext) -> EncoderLearner:
        return SVMHead(self.encoder_of(ctx)).use_label_smoothing(self.label_smoothing)
