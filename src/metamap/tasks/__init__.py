"""Task generation: tasks, batches of tasks, and task distributions p(T)."""

from metamap.tasks.augment import ImageAugment
from metamap.tasks.distribution import TaskDistribution, check_counts, make_generator
from metamap.tasks.episodes import EpisodePlan, EpisodeSampler
from metamap.tasks.hierarchy import ClassHierarchy
from metamap.tasks.metadataset import MetaDatasetEpisode, MetaDatasetSampler
from metamap.tasks.regression import LinearTasks, PolynomialTasks, RegressionTasks, SinusoidTasks
from metamap.tasks.task import Task, TaskBatch, stack_tasks

__all__ = [
    "ClassHierarchy",
    "EpisodePlan",
    "EpisodeSampler",
    "ImageAugment",
    "LinearTasks",
    "MetaDatasetEpisode",
    "MetaDatasetSampler",
    "PolynomialTasks",
    "RegressionTasks",
    "SinusoidTasks",
    "Task",
    "TaskBatch",
    "TaskDistribution",
    "check_counts",
    "make_generator",
    "stack_tasks",
]
