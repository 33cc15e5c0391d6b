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

from metamap import learners, models, tasks
from metamap.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MetamapError,
    NonFiniteLossError,
    TaskShapeError,
)

__version__ = "0.1.0"

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
