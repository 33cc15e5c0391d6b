"""Task generation: tasks, batches of tasks, and task distributions p(T).

Each kind of task also registers its ``task`` config section (:mod:`metamap.tasks.registry`,
:data:`TASKS`): the regression families beside their distributions, image episodes in
:mod:`metamap.tasks.episode_task`.
"""

from metamap.tasks.augment import ImageAugment
from metamap.tasks.distribution import TaskDistribution, check_counts, make_generator
from metamap.tasks.episode_task import EpisodeTask
from metamap.tasks.episodes import EpisodePlan, EpisodeSampler
from metamap.tasks.hierarchy import ClassHierarchy
from metamap.tasks.locomotion import LocomotionFamily, LocomotionTask
from metamap.tasks.metadataset import MetaDatasetEpisode, MetaDatasetSampler
from metamap.tasks.metaworld import MetaWorldFamily, MetaWorldTask
from metamap.tasks.navigation import EnvStep, Navigation2D, NavigationEnvs
from metamap.tasks.pendulum import PendulumFamily, PendulumTask
from metamap.tasks.registry import TASKS, TaskSection, register_task
from metamap.tasks.regression import (
    LinearTasks,
    PolynomialTasks,
    RegressionTasks,
    RegressionTaskSection,
    SinusoidTasks,
)
from metamap.tasks.task import Task, TaskBatch, stack_tasks
from metamap.tasks.users import ColdStartTask, UserTasks, cold_start_split

__all__ = [
    "TASKS",
    "ClassHierarchy",
    "ColdStartTask",
    "EnvStep",
    "EpisodePlan",
    "EpisodeSampler",
    "EpisodeTask",
    "ImageAugment",
    "LinearTasks",
    "LocomotionFamily",
    "LocomotionTask",
    "MetaDatasetEpisode",
    "MetaDatasetSampler",
    "MetaWorldFamily",
    "MetaWorldTask",
    "Navigation2D",
    "NavigationEnvs",
    "PendulumFamily",
    "PendulumTask",
    "PolynomialTasks",
    "RegressionTaskSection",
    "RegressionTasks",
    "SinusoidTasks",
    "Task",
    "TaskBatch",
    "TaskDistribution",
    "TaskSection",
    "UserTasks",
    "check_counts",
    "cold_start_split",
    "make_generator",
    "register_task",
    "stack_tasks",
]
