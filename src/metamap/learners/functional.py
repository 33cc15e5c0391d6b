"""The functional core: losses, one gradient step, and the inner loop of gradient-based learners.

Everything here is a pure function of a parameter dict ``{name: tensor}`` so that it composes
with ``torch.func`` (``grad``, ``vmap``) as well as with ``torch.autograd``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor

from metamap.core.learner import LossName, Params

if TYPE_CHECKING:
    from metamap.learners.inner_optim import InnerOptimizer

__all__ = [
    "LossName",
    "Params",
    "StepSize",
    "gd_step",
    "inner_loop",
    "loss_function",
    "metric_function",
    "task_loss_function",
    "task_metric_function",
]


StepSize: TypeAlias = float | Tensor | Mapping[str, Tensor]
"""An inner learning rate: one scalar, or one tensor per parameter (Meta-SGD)."""


def _mse(pred: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(pred, y)


def _masked_mse(pred: Tensor, y: Tensor) -> Tensor:
    """MSE over the targets that are not NaN (a padded task's missing rows): exactly the MSE
    of the task without its padding. NaN never reaches the gradient (it is replaced first)."""
    present = ~torch.isnan(y)
    diff = torch.where(present, pred - torch.nan_to_num(y), torch.zeros_like(pred))
    return diff.square().sum() / present.sum().clamp_min(1).to(pred.dtype)


def _ce(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y)


def _accuracy(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.argmax(dim=-1) == y).to(logits.dtype).mean()


def loss_function(name: LossName) -> Callable[[Tensor, Tensor], Tensor]:
    """``"mse"`` for regression targets ``(N, d)``, ``"cross_entropy"`` for labels ``(N,)``."""
    if name == "mse":
        return _mse
    if name == "cross_entropy":
        return _ce
    if name == "masked_mse":
        return _masked_mse
    raise ValueError(f"unknown loss {name!r}; use 'mse', 'masked_mse' or 'cross_entropy'")


def metric_function(name: LossName) -> Callable[[Tensor, Tensor], Tensor]:
    """The reported metric: MSE for regression (over present targets for ``masked_mse``),
    accuracy for classification."""
    return {"mse": _mse, "masked_mse": _masked_mse}.get(name, _accuracy)


# ---- per task over a batch: (B, N, ...) -> (B,) -----------------------------------------------
# Each equals ``torch.func.vmap`` of its per-task function above (tested), without vmap's per-op
# overhead; the batched path of the gradient learners computes its B task losses with them.
def _task_mse(pred: Tensor, y: Tensor) -> Tensor:
    return (pred - y).square().flatten(1).mean(1)


def _task_masked_mse(pred: Tensor, y: Tensor) -> Tensor:
    present = ~torch.isnan(y)
    diff = torch.where(present, pred - torch.nan_to_num(y), torch.zeros_like(pred))
    count = present.flatten(1).sum(1).clamp_min(1).to(pred.dtype)
    return diff.square().flatten(1).sum(1) / count


def _task_ce(logits: Tensor, y: Tensor) -> Tensor:
    each = F.cross_entropy(logits.flatten(0, 1), y.flatten(0, 1), reduction="none")
    return each.reshape(len(y), -1).mean(1)


def _task_accuracy(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.argmax(dim=-1) == y).to(logits.dtype).flatten(1).mean(1)


def task_loss_function(name: LossName) -> Callable[[Tensor, Tensor], Tensor]:
    """:func:`loss_function` of each task of a batch: predictions ``(B, N, *out)`` and
    targets ``(B, N, ...)`` to losses ``(B,)``."""
    loss_function(name)  # the same error for an unknown name
    return {"mse": _task_mse, "masked_mse": _task_masked_mse}.get(name, _task_ce)


def task_metric_function(name: LossName) -> Callable[[Tensor, Tensor], Tensor]:
    """:func:`metric_function` of each task of a batch, ``(B,)``."""
    return {"mse": _task_mse, "masked_mse": _task_masked_mse}.get(name, _task_accuracy)


def gd_step(params: Params, grads: Params, lr: StepSize) -> Params:
    """``θ' = θ - α ⊙ ∇θ`` with a scalar ``α`` or one ``α`` tensor per parameter."""
    if isinstance(lr, Mapping):
        return {k: p - lr[k] * grads[k] for k, p in params.items()}
    return {k: p - lr * grads[k] for k, p in params.items()}


def inner_loop(
    loss_of: Callable[[Params], Tensor] | Sequence[Callable[[Params], Tensor]],
    params: Params,
    step_sizes: Sequence[StepSize],
    *,
    create_graph: bool,
    use_func: bool,
    optimizer: InnerOptimizer[Any] | None = None,
) -> tuple[Params, list[Tensor]]:
    """Run ``len(step_sizes)`` steps of gradient descent on ``loss_of`` from ``params``.

    ``loss_of`` is one loss for every step, or a sequence of one per step (inner minibatches:
    :mod:`metamap.learners.minibatch`).

    ``optimizer`` (:mod:`metamap.learners.inner_optim`: momentum SGD, Adam) makes the steps its
    updates, from its initial state, each with its step size; ``None`` is plain gradient descent.

    ``create_graph=True`` keeps the graph of each step so that the outer gradient is the exact
    second-order one (MAML); ``False`` treats inner gradients as constants (first-order MAML).
    ``use_func`` computes inner gradients with ``torch.func.grad`` (required inside ``vmap``);
    otherwise with ``torch.autograd.grad``, which is faster in a per-task Python loop.
    Returns the adapted parameters and the support loss before each step.

    Under ``torch.compile`` a second-order loop runs eagerly (a graph break; the code around it
    is still compiled). A graph compiled by AOTAutograd cannot be differentiated twice, so a
    traced second-order loop either fails in the outer backward ("does not currently support
    double backward") or, traced with the batched path, silently loses the second-order term:
    with torch 2.13 the compiled meta-gradient of MAML equals first-order MAML's (measured;
    pytorch/pytorch#91469, #181581).
    """
    if create_graph and torch.compiler.is_compiling():
        return _eager_inner_loop(
            loss_of,
            params,
            step_sizes,
            create_graph=create_graph,
            use_func=use_func,
            optimizer=optimizer,
        )
    state = None if optimizer is None else optimizer.init(params)
    losses: list[Tensor] = []
    if not callable(loss_of) and len(loss_of) != len(step_sizes):
        raise ValueError(f"{len(loss_of)} step losses for {len(step_sizes)} inner steps")
    for i, lr in enumerate(step_sizes):
        step_loss = loss_of if callable(loss_of) else loss_of[i]
        if use_func:
            grads, loss = torch.func.grad_and_value(step_loss)(params)
            if not create_graph:
                grads = {k: g.detach() for k, g in grads.items()}
        else:
            loss = step_loss(params)
            gs = torch.autograd.grad(loss, tuple(params.values()), create_graph=create_graph)
            grads = dict(zip(params, gs, strict=True))
        if optimizer is None:
            params = gd_step(params, grads, lr)
        else:
            params, state = optimizer.step(params, grads, state, lr)
        losses.append(loss.detach())
    return params, losses


_eager_inner_loop: Callable[..., tuple[Params, list[Tensor]]] = torch.compiler.disable(  # type: ignore[no-untyped-call]
    inner_loop
)
""":func:`inner_loop` run eagerly from compiled code (where ``is_compiling()`` is then false)."""
