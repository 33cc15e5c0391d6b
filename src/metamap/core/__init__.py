"""The core every kind of task and learner plugs into: tasks, the learner protocol, problems.

Plain tensors and protocols only: nothing here reads files, imports a dataset or a model, so
that :mod:`metamap.learners` (which depends on this package, never on :mod:`metamap.tasks` or
:mod:`metamap.data`) stays free of data and I/O code.
"""

from metamap.core.learner import (
    AdaptedState,
    Learner,
    LossName,
    MetaStep,
    Params,
    predict_each,
)
from metamap.core.task import (
    Task,
    TaskBatch,
    even_ranges,
    pad_tasks,
    size_groups,
    stack_tasks,
)

__all__ = [
    "AdaptedState",
    "Learner",
    "LossName",
    "MetaStep",
    "Params",
    "Task",
    "TaskBatch",
    "even_ranges",
    "pad_tasks",
    "predict_each",
    "size_groups",
    "stack_tasks",
]
