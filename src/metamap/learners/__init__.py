"""Meta-learners: each is a mapping g_φ from a task's support set to a model.

All share :class:`MetaLearner`'s interface: ``adapt`` (the mapping), ``predict``, and
``meta_gradients`` over a :class:`~metamap.tasks.TaskBatch`.
"""

from metamap.learners.anil import ANIL
from metamap.learners.base import AdaptedState, MetaLearner, MetaStep
from metamap.learners.functional import Params, gd_step, inner_loop, loss_function
from metamap.learners.gradient import Batching, GradientLearner, choose_batching
from metamap.learners.maml import FOMAML, MAML
from metamap.learners.metasgd import MetaSGD
from metamap.learners.reptile import Reptile

__all__ = [
    "ANIL",
    "FOMAML",
    "MAML",
    "AdaptedState",
    "Batching",
    "GradientLearner",
    "MetaLearner",
    "MetaSGD",
    "MetaStep",
    "Params",
    "Reptile",
    "choose_batching",
    "gd_step",
    "inner_loop",
    "loss_function",
]
