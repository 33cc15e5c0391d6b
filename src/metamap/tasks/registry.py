"""The task registry: each kind of task declares its ``task`` config section beside its code.

A run's ``task`` section is the :class:`TaskSection` that ``family`` picks from :data:`TASKS`:
the settings of that task distribution and the facts the rest of the run is built and checked
from — whether its tasks are labelled images (which need a ``data`` section and an image
network), the loss its learners minimise, the size of the base network's head, and the name of
the *problem* that trains on it (:data:`metamap.train.PROBLEMS`: how tasks are drawn, how an
outer update is computed and how runs are scored). Adding a kind of task is one section class
with :func:`register_task` (and, for a new way of training, one registered problem); neither the
trainer nor the run config changes.

Example (``tasks/regression.py``)::

    @register_task
    class SinusoidTask(RegressionTaskSection):
        family: Literal["sinusoid"] = "sinusoid"

        def build(self, queries: int | None = None) -> SinusoidTasks:
            return SinusoidTasks(self.shots, queries or self.queries, noise_std=self.noise_std)

Older configs held one flat ``task`` section with every family's settings;
:data:`TASK_LEGACY_DEFAULTS` lets :func:`split_task` drop another family's setting at its old
default and keep it aside in a stored config, so old runs keep their fingerprints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import PositiveInt

from metamap.errors import ConfigError
from metamap.section import Section, register, split_section

if TYPE_CHECKING:
    from metamap.tasks.episode_task import EpisodeTask
    from metamap.tasks.regression import RegressionTaskSection

__all__ = [
    "TASKS",
    "TASK_LEGACY_DEFAULTS",
    "EnvironmentTaskSection",
    "TaskLoss",
    "TaskSection",
    "register_task",
    "split_task",
]

TaskLoss = Literal["cross_entropy", "mse", "masked_mse", "return"]
"""The loss a task's learners minimise (the names of :mod:`metamap.learners.functional`)."""


class TaskSection(Section):
    """One kind of task: its settings, its facts, and which problem trains on it."""

    family: str

    images: ClassVar[bool] = False
    """Its tasks are labelled images: the run needs a ``data`` section and an image network."""
    loss: ClassVar[TaskLoss] = "mse"
    """What learners minimise on its tasks (and whether a regression learner can take them:
    ``mse``)."""
    tensor_tasks: ClassVar[bool] = False
    """Its test tasks are equal-shaped tensors that ``metamap.train.build_tasks`` draws (image
    episodes, regression families): ``metamap explain`` profiles parameters and embeddings on
    them. Other kinds (users, environments) are explained from their problem's evaluation."""
    unfingerprinted: ClassVar[tuple[str, ...]] = ()
    """Its settings that say where data live, not what is trained (a data root, a cache):
    they do not count in a run's fingerprint, so moving the data does not stop a resume."""

    def problem(self) -> str:
        """The registered problem that trains on these tasks (:data:`metamap.train.PROBLEMS`)."""
        raise NotImplementedError(f"task family {self.family!r} names no problem")

    def out_features(self) -> int:
        """The size of the base network's head: the ways of a classification task, 1 for a
        scalar regression, the action's size for a policy."""
        return 1

    def in_features(self) -> int:
        """Inputs per example of a feature-vector network: 1 for the regression families, the
        observation's size for a policy."""
        return 1

    def vocabulary(self) -> tuple[int, ...]:
        """For tasks whose inputs are int64 categorical columns (users and items): how many
        values each column takes; ``()`` for others."""
        return ()

    def multi_hot(self) -> tuple[int, ...]:
        """The columns (of :meth:`vocabulary`) that are 0/1 flags of one multi-valued feature
        (a film's genres), embedded together as a bag."""
        return ()

    def variable_ways(self) -> bool:
        """Whether the training tasks differ in ways and shots (Meta-Dataset's episodes)."""
        return False

    def grouped(self) -> bool:
        """Whether a training task's classes come from one group (one Omniglot alphabet)."""
        return False

    def describe(self) -> str:
        """The tasks in the protocol line ("5-way 1-shot", "sinusoid regression, 10-shot")."""
        return self.family

    def episodes(self) -> EpisodeTask:
        """This section as N-way K-shot image episodes, for code that needs ``ways``, ``shots``
        and ``queries`` of images; other kinds refuse, naming the family."""
        raise ConfigError(f"task.family {self.family!r} is not image classification episodes")

    def regression(self) -> RegressionTaskSection:
        """This section as a regression family; other kinds refuse, naming the family."""
        raise ConfigError(f"task.family {self.family!r} is not a regression family")


class EnvironmentTaskSection(TaskSection):
    """Environments as tasks: its tasks' data are rollouts (``rollouts`` episodes per task and
    adaptation step), trained by the ``meta_rl`` problem; a subclass gives the family
    (``family_of_tasks()``), the policy's input and output sizes and its ``horizon``."""

    rollouts: PositiveInt = 20
    """Episodes per task and adaptation step (MAML: 20 trajectories)."""

    loss: ClassVar[TaskLoss] = "return"
    planar: ClassVar[bool] = False
    """Its observations are positions in the plane (2D navigation): ``metamap plot`` draws the
    paths a policy takes before and after adapting."""

    def problem(self) -> str:
        return "meta_rl"


TASKS: dict[str, type[TaskSection]] = {}
"""Every registered kind of task's section, by ``family``."""

TASK_LEGACY_DEFAULTS: Mapping[str, Any] = {
    "sampler": "fixed",
    "min_ways": 5,
    "max_ways": 50,
    "hierarchy": False,
    "ways": 5,
    "shots": 10,
    "queries": 10,
    "noise_std": 0.0,
    "degree": 3,
}
"""The settings of the one flat ``task`` section of older versions, at their defaults: another
family's setting at this value is dropped from a config, and a stored run's fingerprint counts
these (:meth:`metamap.train.RunConfig.fingerprint`)."""


def register_task(section: type[TaskSection]) -> type[TaskSection]:
    """Class decorator: make ``section`` the ``task`` section of the family it names."""
    return register(TASKS, section, "task family", key="family")


def split_task(data: Mapping[str, Any], keep: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(section, aside)``: a ``task`` section split into the settings of the family it names
    and those of others (:func:`~metamap.section.split_section`)."""
    return split_section(
        data,
        TASKS,
        TASK_LEGACY_DEFAULTS,
        where="task",
        default_name="sinusoid",
        keep=keep,
        key="family",
    )
