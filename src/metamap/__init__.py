"""metamap: meta-learning as a mapping from tasks to models, θ_T = g_φ(D_T).

Quick start::

    import torch, metamap as mm
    tasks = mm.tasks.SinusoidTasks(shots=10, queries=10)
    learner = mm.learners.MAML(mm.models.MLP(1, 1, (40, 40)), inner_lr=0.01)
    opt = torch.optim.Adam(learner.parameters(), 1e-3)
    g = mm.tasks.make_generator(0)
    for _ in range(1000):
        step = learner.meta_gradients(tasks.sample(25, g))
        learner.apply_gradients(step); opt.step()
"""

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from metamap.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MetamapError,
    NonFiniteLossError,
    TaskShapeError,
)

if TYPE_CHECKING:
    from metamap import learners, models, tasks

__version__ = "0.1.0"

_LAZY = (
    "core",
    "data",
    "features",
    "learners",
    "models",
    "recommend",
    "recsys",
    "rl",
    "tasks",
    "train",
    "viz",
)


def __getattr__(name: str) -> ModuleType:
    """Sub-packages load on first use (PEP 562), so that ``import metamap.learners`` imports no
    data or file code (:mod:`metamap.tasks` pulls in the dataset loaders)."""
    if name in _LAZY:
        return importlib.import_module(f"metamap.{name}")
    raise AttributeError(f"module 'metamap' has no attribute {name!r}")


__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MetamapError",
    "NonFiniteLossError",
    "TaskShapeError",
    "__version__",
    "learners",
    "models",
    "tasks",
]
