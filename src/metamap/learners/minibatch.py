"""Inner minibatches: which support examples each inner step trains on.

Nichol, Achiam & Schulman, "On First-Order Meta-Learning Algorithms", 2018 (their Omniglot
and mini-ImageNet runs; the reference code's ``--inner-batch``): Reptile's inner loop takes its
k steps on minibatches of the task's data rather than on all of it (Omniglot: 5 steps of 10
examples over 5 ways × 10 shots, so one pass over the task). The reference code draws them
from a fresh shuffle of each task's data; here the order is fixed, so a run and its resume take
the same minibatches without a random state to carry:

* the positions are put in one pseudo-random order, the same for every task of that size
  (a permutation from NumPy's generator seeded with 0, drawn outside any ``vmap``), so data
  stored sorted (a regression task's points by ``x``) still gives mixed minibatches;
* with class labels (integer targets) the examples are then *stratified*: every class's first
  example in that order, then every class's second, … so each minibatch holds the classes as
  evenly as its size allows, where a shuffle would leave some out;
* rows whose float targets are not finite (the NaN padding of :func:`~metamap.core.task.pad_tasks`)
  come last, and the steps cycle over the others only.

Step ``i`` (0-based) takes the next ``size`` positions of that order, cycling:
``order[(i·size + j) mod n]`` for ``j < size``.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torch import Tensor

__all__ = ["step_indices"]


@cache
def _shuffle(n: int) -> Tensor:
    """A fixed pseudo-random order of ``n`` positions (CPU), the same on every machine. NumPy's,
    not torch's: under ``torch.func.vmap`` a torch random op is refused (and one draw serves
    every task)."""
    return torch.from_numpy(np.random.default_rng(0).permutation(n))


def step_indices(y: Tensor, size: int, steps: int, first: int = 0) -> Tensor:
    """The support positions ``(steps, size)`` of inner steps ``first … first + steps - 1``.

    ``y: (S, *target)`` is one task's support targets: integer class labels (stratified
    minibatches) or float targets (NaN rows are padding and are never drawn). ``size`` must be
    smaller than ``S`` (with ``size >= S`` every step takes the whole support, which callers do
    without indexing). Works under ``torch.func.vmap`` over tasks.
    """
    s = y.shape[0]
    if not 0 < size < s:
        raise ValueError(f"a minibatch of {size} needs a support set larger than it, got {s}")
    perm = _shuffle(s).to(y.device)
    flat = y.reshape(s, -1)[perm]
    if y.is_floating_point():
        valid = torch.isfinite(flat).all(1)
        key = (~valid).long()  # the padding last
    else:
        valid = torch.ones(s, dtype=torch.bool, device=y.device)
        same = (flat[:, None, :] == flat[None, :, :]).all(-1)
        key = torch.tril(same, diagonal=-1).sum(1)  # earlier examples of the same class
    slot = torch.arange(s, device=y.device)
    order = perm[torch.argsort(key * s + slot)]
    k = torch.arange(first * size, (first + steps) * size, device=y.device)
    return order[k % valid.sum().clamp(min=1)].reshape(steps, size)
