"""Meta-learners: each is a mapping g_φ from a task's support set to a model.

All share :class:`MetaLearner`'s interface: ``adapt`` (the mapping), ``predict``, and
``meta_gradients`` over a :class:`~metamap.tasks.TaskBatch`.
"""

import importlib
import pkgutil

from metamap.learners.anil import ANIL
from metamap.learners.base import AdaptedState, MetaLearner, MetaStep
from metamap.learners.functional import Params, gd_step, inner_loop, loss_function
from metamap.learners.gradient import Batching, GradientLearner, choose_batching
from metamap.learners.maml import FOMAML, MAML
from metamap.learners.matching import MatchingNet, MatchingState
from metamap.learners.metasgd import MetaSGD
from metamap.learners.metric import EncoderLearner, check_labels
from metamap.learners.pretrain import LinearState, PretrainBaseline, fit_logistic
from metamap.learners.protonet import ProtoNet, PrototypeState
from metamap.learners.r2d2 import R2D2, RidgeState
from metamap.learners.ragged import ragged_meta_gradients
from metamap.learners.registry import (
    LEARNERS,
    BuildContext,
    LearnerSection,
    register_learner,
    split_legacy,
)
from metamap.learners.relation import (
    RelationNet,
    RelationState,
    relation_embedding,
    relation_feature_shape,
)
from metamap.learners.reptile import Reptile
from metamap.learners.ridge import Ridge, RidgeRegressionState
from metamap.learners.svm import SVMHead, SVMState

# Every module of the package is imported, so that each learner's section registers itself:
# adding a learner is one new module here (plus a YAML config).
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "ANIL",
    "FOMAML",
    "LEARNERS",
    "MAML",
    "R2D2",
    "AdaptedState",
    "Batching",
    "BuildContext",
    "EncoderLearner",
    "GradientLearner",
    "LearnerSection",
    "LinearState",
    "MatchingNet",
    "MatchingState",
    "MetaLearner",
    "MetaSGD",
    "MetaStep",
    "Params",
    "PretrainBaseline",
    "ProtoNet",
    "PrototypeState",
    "RelationNet",
    "RelationState",
    "Reptile",
    "Ridge",
    "RidgeRegressionState",
    "RidgeState",
    "SVMHead",
    "SVMState",
    "check_labels",
    "choose_batching",
    "fit_logistic",
    "gd_step",
    "inner_loop",
    "loss_function",
    "ragged_meta_gradients",
    "register_learner",
    "relation_embedding",
    "relation_feature_shape",
    "split_legacy",
]
