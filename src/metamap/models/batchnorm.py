"""BatchNorm modes of a trained network (nothing here knows of meta-learning).

A network built with ``batch_norm="inductive"`` keeps running statistics and, in evaluation
mode, normalises every image with them: an image's output does not depend on the others in its
batch. :func:`use_batch_statistics` turns such a network *transductive* for evaluation, each
batch normalised with its own statistics (as MAML's code and transductive BatchNorm do at test
time), without changing its weights: so one trained network can be scored both ways and
compared with a paper in the mode the paper used.
"""

from __future__ import annotations

from torch import nn

__all__ = ["has_running_statistics", "use_batch_statistics"]


def _norms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_running_statistics(module: nn.Module) -> bool:
    """Whether every BatchNorm layer of ``module`` has running statistics (``True`` with none)."""
    return all(m.running_mean is not None for m in _norms(module))


def use_batch_statistics(module: nn.Module) -> int:
    """Drop the running statistics of every BatchNorm layer of ``module``, in place, so that it
    normalises each batch with the batch's own statistics in evaluation mode too (and keeps
    none when trained). Returns how many layers changed. Its ``state_dict`` then has no
    running statistics: use it to evaluate, not to save a checkpoint."""
    changed = 0
    for m in _norms(module):
        if m.running_mean is not None or m.running_var is not None:
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None
            changed += 1
    return changed
