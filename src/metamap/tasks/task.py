"""Tasks and batches of tasks: defined in :mod:`metamap.core.task`, re-exported here."""

from metamap.core.task import Task, TaskBatch, pad_tasks, size_groups, stack_tasks

__all__ = ["Task", "TaskBatch", "pad_tasks", "size_groups", "stack_tasks"]
