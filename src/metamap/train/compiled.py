"""``train.compile``: the training step's meta-gradient under ``torch.compile``.

:class:`CompiledLearner` is a :class:`~metamap.train.learner_view.LearnerView` whose
``meta_gradients`` is the learner's, compiled once (TorchInductor, torch's default backend): the
first step compiles it (seconds to a minute on a CPU), later steps reuse the code, and a batch of
another shape compiles again (variable-way episodes: dynamic shapes from the second shape on).
Validation and evaluation stay eager.

What it may not change: the function. A second-order inner loop runs eagerly inside the compiled
step (:func:`metamap.learners.functional.inner_loop`: AOTAutograd's graphs cannot be
differentiated twice, and traced they silently give first-order MAML's meta-gradient), so
second-order learners compile only what lies around it. The compiled meta-gradient equals the
eager one to float32 rounding (tested), not bit for bit, so the option counts in the run's
fingerprint. Off by default: ``benchmarks/step_variants.py`` measures it (docs/results/speed.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from metamap.core import MetaStep, TaskBatch
from metamap.learners import MetaLearner
from metamap.train.learner_view import LearnerView

__all__ = ["CompiledLearner"]


class CompiledLearner(LearnerView):
    """``learner`` whose ``meta_gradients`` runs compiled; everything else is the learner's."""

    def __init__(self, learner: MetaLearner | LearnerView) -> None:
        super().__init__(learner)
        self._compiled: Callable[[TaskBatch], MetaStep] = torch.compile(learner.meta_gradients)

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        return self._compiled(batch)
