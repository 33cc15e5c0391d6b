"""MAML++: MAML with the fixes of Antoniou, Edwards & Storkey, "How to train your MAML", ICLR 2019.

The mapping is MAML's (:mod:`metamap.learners.maml`), N inner steps of gradient descent from a
learned θ_0, with inner step i = 0..N-1 (support set ``(S, *feature)``, ``(S, *target)``)

    θ_{i+1}[l] = θ_i[l] - α_{l,i} ∇_{θ_i[l]} L(f(D^tr; θ_i, BN_i))              (LSLR, BNWB/BNRS)

and the meta-loss of one task, on its query set ``(Q, *feature)``, at training iteration t is

    L_meta(t) = Σ_i w_i(t) · L(f(D^ts; θ_{i+1}, BN_i))                                    (MSL)

The paper's five changes to MAML, as implemented here:

* **MSL**, multi-step loss: the query loss after *every* inner step, weighted by w(t)
  (:func:`msl_weights`): 1/N each at t = 0, annealed towards the last step over the first
  ``msl_steps`` iterations, then only the last step (MAML's meta-loss).
* **DA**, derivative-order annealing: first-order meta-gradients (inner gradients taken as
  constants, as FOMAML) for the first ``first_order_steps`` iterations, second-order after.
* **LSLR**, per-layer per-step learning rates: one learned α_{l,i} per parameter tensor l and
  step i, ``inner_lrs[l]: (N,)``, all initialised to ``inner_lr``.
* **BNWB + BNRS**, per-step BatchNorm: step i runs every BatchNorm layer with its own weight and
  bias ``(C,)`` (meta-learned; the inner loop adapts every other parameter, as the paper's code)
  and its own running mean and variance ``(C,)`` (buffers: updated by step i's forward passes in
  training, used in ``eval()`` under the model's ``"inductive"`` policy). Step 0 uses the
  model's own BatchNorm layers, so ``self.model`` alone is the network at θ_0; step i ≥ 1 uses
  the copies in ``step_norms[i - 1]``. The models know nothing of this: the learner swaps the
  copies in with :func:`torch.func.functional_call`.
* **CA**, cosine annealing of the meta learning rate, is the trainer's ``train.schedule: cosine``.

MSL and DA depend on the training iteration t alone, which the trainer passes with
:meth:`MAMLPlusPlus.set_training_step` before each step: no counter lives in the learner, so a
resumed run replays exactly (the per-step running statistics are buffers, in the checkpoint).
``adapt(steps=k)`` with k > N reuses step N-1's learning rates and BatchNorm; the model adapted
by k steps predicts with the BatchNorm of its last step (step k-1, or step 0 for k = 0).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal

import torch
from pydantic import NonNegativeInt, PositiveFloat, PositiveInt, model_validator
from torch import Tensor, nn
from torch.func import functional_call

from metamap.learners.base import AdaptedState
from metamap.learners.checks import check_step_counts
from metamap.learners.functional import LossName, Params, StepSize, inner_loop
from metamap.learners.gradient import Batching, GradientLearner, GradientSection
from metamap.learners.inner_optim import InnerOptimizer
from metamap.learners.registry import BuildContext, register_learner
from metamap.models.layout import default_layout, pinning

__all__ = ["MAMLPlusPlus", "MAMLPlusPlusSection", "msl_weights"]

_MODEL = "model."


def _key(name: str) -> str:
    """A dotted module path as a ``ModuleDict``/``ParameterDict`` key."""
    return name.replace(".", "__")


def msl_weights(inner_steps: int, msl_steps: int, step: int) -> list[float]:
    """MSL importance w_i(t) of the query loss after each inner step, at training iteration t.

    The paper's code, per iteration instead of per epoch: 1/N each at t = 0; the non-final
    weights fall by 1/(N · msl_steps) an iteration to a floor of 0.03/N and the last step gets
    the rest, so that they sum to 1; from t = ``msl_steps`` on, (0, …, 0, 1).
    """
    n = inner_steps
    if step >= msl_steps:
        return [0.0] * (n - 1) + [1.0]
    early = max(1.0 / n - step / (n * msl_steps), 0.03 / n)
    return [early] * (n - 1) + [1.0 - (n - 1) * early]


_PLAIN_STEPS = "MAML++ adapts with plain gradient steps at its learned per-layer, per-step rates"
"""Why neither ``use_inner_optimizer`` nor ``learner.inner_optimizer`` applies to MAML++."""


class MAMLPlusPlus(GradientLearner):
    """MAML++: MSL, DA, LSLR and per-step BatchNorm (BNWB + BNRS) on any model."""

    functional_adapt: ClassVar[bool] = False  # its inner steps carry per-step normalisation
    batched_objective: ClassVar[bool] = False

    def __init__(
        self,
        model: nn.Module,
        loss: LossName = "mse",
        inner_steps: int = 5,
        inner_lr: float = 0.1,
        msl_steps: int = 10000,
        first_order_steps: int = 25000,
        batching: Batching = "auto",
    ) -> None:
        """``inner_lr``: the initial α of every layer and step. ``msl_steps``/
        ``first_order_steps``: training iterations of MSL annealing and of first-order
        meta-gradients (0: none); the defaults are 20 epochs of 500 iterations (the MSL
        annealing of the paper's released Omniglot configs) and 50 epochs (DA, as the paper's
        text gives it; those configs switch DA off)."""
        super().__init__(model, loss, inner_steps, batching)
        if not inner_lr > 0:
            raise ValueError(f"inner_lr (the initial α) must be positive, got {inner_lr}")
        if msl_steps < 0 or first_order_steps < 0:
            raise ValueError(
                f"msl_steps and first_order_steps must be non-negative, got {msl_steps} and "
                f"{first_order_steps}"
            )
        self.msl_steps = msl_steps
        self.first_order_steps = first_order_steps
        norms = [
            n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        # Model-relative names of the BatchNorm entries every step has its own copy of.
        self._bn_params = [
            f"{n}.{a}" for n in norms for a, _ in model.get_submodule(n).named_parameters()
        ]
        self._bn_buffers = [
            f"{n}.{a}" for n in norms for a, _ in model.get_submodule(n).named_buffers()
        ]
        self._inner = [n for n, _ in model.named_parameters() if self._adapted(n)]
        # BNWB + BNRS: steps 1..N-1's BatchNorm layers (step 0's are the model's own).
        self.step_norms = nn.ModuleList(
            nn.ModuleDict({_key(n): copy.deepcopy(model.get_submodule(n)) for n in norms})
            for _ in range(inner_steps - 1)
        )
        # LSLR: α_{l,i} for each adapted parameter tensor l, one entry per inner step i.
        self.inner_lrs = nn.ParameterDict(
            {
                _key(n): nn.Parameter(
                    torch.full((inner_steps,), float(inner_lr), dtype=p.dtype, device=p.device)
                )
                for n, p in model.named_parameters()
                if self._adapted(n)
            }
        )
        self.set_training_step(0)

    # ---- the training iteration t: MSL and DA are functions of it ------------------------
    def use_inner_optimizer(self, optimizer: InnerOptimizer[Any] | None) -> MAMLPlusPlus:
        """MAML++ takes plain gradient steps with its learned per-layer, per-step rates (LSLR)."""
        if optimizer is not None:
            raise ValueError(
                f"{_PLAIN_STEPS}; another inner optimizer does not apply to it: use maml or "
                "metasgd for that"
            )
        return self

    def set_training_step(self, step: int) -> None:
        """Set the training iteration t about to be taken (the trainer calls it each step)."""
        if step < 0:
            raise ValueError(f"the training step must be non-negative, got {step}")
        self.training_step = int(step)
        self.second_order = step >= self.first_order_steps  # DA

    def loss_weights(self) -> list[float]:
        """MSL's w_i(t) at the current training iteration (:func:`msl_weights`)."""
        return msl_weights(self.inner_steps, self.msl_steps, self.training_step)

    # ---- per-step parameters: LSLR and BNWB/BNRS ------------------------------------------
    def _adapted(self, name: str) -> bool:
        return name not in self._bn_params  # BatchNorm weights/biases are per step, not adapted

    def step_sizes(self, meta: Params, steps: int) -> list[StepSize]:
        """LSLR: ``{parameter: α_{l,i}}`` for i < ``steps``; steps ≥ N reuse α_{l,N-1}."""
        last = self.inner_steps - 1
        return [
            {n: meta[f"inner_lrs.{_key(n)}"][min(i, last)] for n in self._inner}
            for i in range(steps)
        ]

    def _bn_name(self, step: int, entry: str) -> str:
        """The learner's name for inner step ``step``'s copy of BatchNorm ``entry``."""
        i = min(step, self.inner_steps - 1)
        if i == 0:
            return _MODEL + entry
        layer, attr = entry.rsplit(".", 1)
        return f"step_norms.{i - 1}.{_key(layer)}.{attr}"

    def _norms(self, meta: Params, step: int) -> tuple[Params, Params]:
        """Step ``step``'s BatchNorm weights/biases (from ``meta``) and the model's buffers with
        step ``step``'s running statistics, keyed as the model names them."""
        params = {e: meta[self._bn_name(step, e)] for e in self._bn_params}
        buffers = dict(self.model.named_buffers())
        buffers.update({e: self.get_buffer(self._bn_name(step, e)) for e in self._bn_buffers})
        return params, buffers

    def _forward(self, theta: Params, meta: Params, step: int, x: Tensor) -> Tensor:
        """f(x; θ, BN_step): ``(N, *feature) -> (N, *out)`` with step ``step``'s BatchNorm."""
        params, buffers = self._norms(meta, step)
        out: Tensor = functional_call(self.model, ({**theta, **params}, buffers), (x,))
        return out

    def _inner_step(
        self,
        meta: Params,
        theta: Params,
        step: int,
        alpha: StepSize,
        sx: Tensor,
        sy: Tensor,
        create_graph: bool,
        use_func: bool,
    ) -> tuple[Params, Tensor]:
        """θ_{i+1} = θ_i - α_i ⊙ ∇L(f(sx; θ_i, BN_i), sy) and the support loss, for i = ``step``."""

        def support_loss(p: Params) -> Tensor:
            return self._loss(self._forward(p, meta, step, sx), sy)

        # As GradientLearner: the twice-differentiated support pass runs in the default layout.
        layout: AbstractContextManager[None] = nullcontext()
        if self.channels_last:
            theta = {k: default_layout(v) for k, v in theta.items()}
            layout = pinning(self.model, False)
        with layout:
            theta, losses = inner_loop(
                support_loss, theta, [alpha], create_graph=create_graph, use_func=use_func
            )
        return theta, losses[0]

    # ---- the meta-loss and the mapping ----------------------------------------------------
    def task_objective(
        self, meta: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor, use_func: bool
    ) -> tuple[Tensor, Tensor]:
        """MSL: Σ_i w_i(t) L(f(qx; θ_{i+1}, BN_i), qy) as a function of φ = ``meta`` (second order
        unless DA says first), and the query metric after the last step."""
        weights = self.loss_weights()
        theta, _ = self._split(meta)
        terms: list[Tensor] = []
        for i, alpha in enumerate(self.step_sizes(meta, self.inner_steps)):
            theta, _ = self._inner_step(meta, theta, i, alpha, sx, sy, self.second_order, use_func)
            if weights[i] > 0:  # no query pass (nor its BatchNorm update) for a weight of 0
                pred = self._forward(theta, meta, i, qx)
                terms.append(weights[i] * self._loss(pred, qy))
        # the last step's weight is never 0, so ``pred`` is the prediction after the last step
        return torch.stack(terms).sum(), self._metric(pred.detach(), qy)

    def adapt_trace(
        self, support_x: Tensor, support_y: Tensor, steps: Sequence[int]
    ) -> dict[int, AdaptedState]:
        """The adapted model after each count in ``steps``, from one run of ``max(steps)``; a
        model adapted by k steps carries the BatchNorm of step k-1 (step 0 for k = 0)."""
        self.check_task(support_x, support_y)
        check_step_counts(steps)
        meta = {k: v.detach() for k, v in self.named_parameters()}
        theta, _ = self._split(meta)
        last = max(steps, default=0)
        sizes = self.step_sizes(meta, last)
        out: dict[int, AdaptedState] = {}
        losses: list[float] = []
        for k in range(last + 1):
            if k in steps:
                params, buffers = self._norms(meta, max(k - 1, 0))
                shape = tuple(support_x.shape[1:])
                out[k] = AdaptedState({**theta, **params}, buffers, list(losses), shape)
            if k < last:
                start = {n: v.detach().requires_grad_(True) for n, v in theta.items()}
                with torch.enable_grad():
                    theta, loss = self._inner_step(
                        meta, start, k, sizes[k], support_x, support_y, False, False
                    )
                theta = {n: v.detach() for n, v in theta.items()}
                losses.append(float(loss))
        return out


@register_learner
class MAMLPlusPlusSection(GradientSection):
    """``learner: {name: mamlpp}`` — MAML++ (Antoniou et al. 2019). The paper's cosine
    annealing of the meta learning rate is ``train.schedule: cosine``."""

    name: Literal["mamlpp"] = "mamlpp"
    unused_fields: ClassVar[frozenset[str]] = frozenset({"inner_optimizer", "adapt"})
    inner_steps: PositiveInt = 5
    inner_lr: PositiveFloat = 0.1
    """The initial value of every learned per-layer, per-step rate."""
    msl_steps: NonNegativeInt = 10000
    """Training iterations over which the multi-step loss anneals to the last step's alone."""
    first_order_steps: NonNegativeInt = 25000
    """Training iterations with first-order meta-gradients before second order."""

    @model_validator(mode="after")
    def _adapts_all(self) -> MAMLPlusPlusSection:
        if self.inner_optimizer.build() is not None:
            raise ValueError(
                f"{_PLAIN_STEPS}; learner.inner_optimizer does not apply to it: drop it, or use "
                "maml or metasgd with learner.inner_optimizer"
            )
        if self.adapt:
            raise ValueError(
                "MAML++ adapts every parameter but its per-step BatchNorm ones; learner.adapt "
                "does not apply to it: drop it, or use maml/metasgd with learner.adapt"
            )
        return self

    def build(self, ctx: BuildContext) -> MAMLPlusPlus:
        return MAMLPlusPlus(
            ctx.model(),
            ctx.loss,
            self.inner_steps,
            self.inner_lr,
            self.msl_steps,
            self.first_order_steps,
            self.batching,
        )
