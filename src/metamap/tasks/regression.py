"""Regression task families: sinusoid (MAML §5.1), linear and polynomial functions.

Each task is a function ``f_p`` with parameters ``p`` drawn from the family's prior; its support
and query sets are points ``x ~ U[x_lo, x_hi]`` with targets ``y = f_p(x) (+ noise)``.
Shapes: ``x`` and ``y`` are ``(points, 1)`` per task, ``(B, points, 1)`` in a batch.

Reference: Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", ICML 2017, §5.1: amplitude ~ U[0.1, 5.0], phase ~ U[0, π], x ~ U[-5.0, 5.0].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import torch
from pydantic import NonNegativeFloat, NonNegativeInt, PositiveInt
from torch import Tensor

from metamap.tasks.distribution import check_counts, make_generator
from metamap.tasks.registry import TaskSection, register_task
from metamap.tasks.task import TaskBatch

__all__ = [
    "LinearTask",
    "LinearTasks",
    "PolynomialTask",
    "PolynomialTasks",
    "RegressionTaskSection",
    "RegressionTasks",
    "SinusoidTask",
    "SinusoidTasks",
]


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, *shape: int) -> Tensor:
    return torch.rand((n, *shape), generator=g, dtype=torch.float32) * (hi - lo) + lo


class RegressionTasks(ABC):
    """A family of 1-D regression functions; subclasses give the prior and the function."""

    def __init__(
        self,
        shots: int = 10,
        queries: int = 10,
        x_range: tuple[float, float] = (-5.0, 5.0),
        noise_std: float = 0.0,
    ) -> None:
        check_counts(shots, queries)
        if not x_range[0] < x_range[1]:
            raise ValueError(f"x_range must be (low, high) with low < high, got {x_range}")
        if noise_std < 0:
            raise ValueError(f"noise_std must be non-negative, got {noise_std}")
        self.shots = shots
        self.queries = queries
        self.x_range = (float(x_range[0]), float(x_range[1]))
        self.noise_std = float(noise_std)

    @abstractmethod
    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Draw ``n`` parameter sets; each value has shape ``(n,)``."""

    @abstractmethod
    def function(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        """``f_p(x)`` for ``x: (n, P, 1)`` and params of shape ``(n,)``; returns ``(n, P, 1)``."""

    def _points(self, n: int, count: int, g: torch.Generator) -> Tensor:
        return _uniform(n, *self.x_range, g, count, 1)

    def _targets(self, params: dict[str, Tensor], x: Tensor, g: torch.Generator) -> Tensor:
        y = self.function(params, x)
        if self.noise_std > 0:
            y = y + self.noise_std * torch.randn(y.shape, generator=g)
        return y

    def _batch(
        self, params: dict[str, Tensor], sx: Tensor, qx: Tensor, g: torch.Generator
    ) -> TaskBatch:
        n = sx.shape[0]
        per_task = [{k: float(v[i]) for k, v in params.items()} for i in range(n)]
        return TaskBatch(
            sx, self._targets(params, sx, g), qx, self._targets(params, qx, g), per_task
        )

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """``batch_size`` tasks of ``shots`` support and ``queries`` query points each."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        params = self.sample_params(batch_size, generator)
        sx = self._points(batch_size, self.shots, generator)
        qx = self._points(batch_size, self.queries, generator)
        return self._batch(params, sx, qx, generator)

    def fixed_task_chunks(
        self, n: int, seed: int, chunk_size: int = 100, shots: int | None = None
    ) -> Iterator[TaskBatch]:
        """:meth:`fixed_tasks` in one piece: regression tasks are small."""
        yield self.fixed_tasks(n, seed, shots)

    def fixed_task_class_names(self, seed: int, shots: int | None = None) -> list[str] | None:
        """``None``: regression tasks have no classes."""
        return None

    def fixed_tasks(self, n: int, seed: int, shots: int | None = None) -> TaskBatch:
        """``n`` evaluation tasks, the same for the same ``seed`` whatever ``shots`` is.

        The function parameters and query points depend on ``seed`` only, and the ``k``-shot
        support set is the first ``k`` of a fixed sequence of points, so 5-, 10- and 20-shot
        evaluations see the same functions with nested support sets.
        """
        k = self.shots if shots is None else shots
        check_counts(k, self.queries)
        g = make_generator(seed)
        params = self.sample_params(n, g)
        qx = self._points(n, self.queries, g)
        # The support pool (points and noise) is drawn in blocks of 64 points per task, and the
        # query noise before it, so that neither the first k points nor the query set depend on k.
        blocks = range((k + 63) // 64)
        pool = torch.cat([self._points(n, 64, g) for _ in blocks], dim=1)
        g_noise = make_generator(seed + 1)
        qy = self._targets(params, qx, g_noise)
        sy = torch.cat(
            [self._targets(params, pool[:, 64 * b : 64 * (b + 1)], g_noise) for b in blocks], 1
        )
        per_task = [{name: float(v[i]) for name, v in params.items()} for i in range(n)]
        return TaskBatch(pool[:, :k], sy[:, :k], qx, qy, per_task)

    def curve(self, params: dict[str, float], points: int = 200) -> tuple[Tensor, Tensor]:
        """The noiseless true function of one task on a grid, for plots: ``(points, 1)`` each."""
        x = torch.linspace(*self.x_range, points).reshape(1, points, 1)
        p = {k: torch.tensor([v]) for k, v in params.items()}
        return x[0], self.function(p, x)[0]


class SinusoidTasks(RegressionTasks):
    """``y = A sin(x - φ)``, ``A ~ U[amplitude]``, ``φ ~ U[phase]`` (MAML §5.1)."""

    def __init__(
        self,
        shots: int = 10,
        queries: int = 10,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
        noise_std: float = 0.0,
    ) -> None:
        super().__init__(shots, queries, x_range, noise_std)
        self.amplitude = amplitude
        self.phase = phase

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {
            "amplitude": _uniform(n, *self.amplitude, generator),
            "phase": _uniform(n, *self.phase, generator),
        }

    def function(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        a = params["amplitude"].reshape(-1, 1, 1)
        p = params["phase"].reshape(-1, 1, 1)
        return a * torch.sin(x - p)


class LinearTasks(RegressionTasks):
    """``y = a x + b`` with ``a ~ U[slope]`` and ``b ~ U[intercept]``."""

    def __init__(
        self,
        shots: int = 10,
        queries: int = 10,
        slope: tuple[float, float] = (-3.0, 3.0),
        intercept: tuple[float, float] = (-3.0, 3.0),
        x_range: tuple[float, float] = (-5.0, 5.0),
        noise_std: float = 0.0,
    ) -> None:
        super().__init__(shots, queries, x_range, noise_std)
        self.slope = slope
        self.intercept = intercept

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {
            "slope": _uniform(n, *self.slope, generator),
            "intercept": _uniform(n, *self.intercept, generator),
        }

    def function(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return params["slope"].reshape(-1, 1, 1) * x + params["intercept"].reshape(-1, 1, 1)


class PolynomialTasks(RegressionTasks):
    """``y = Σ_{i≤d} c_i x^i`` with each ``c_i ~ U[coef]`` (parameters ``c0 … cd``)."""

    def __init__(
        self,
        shots: int = 10,
        queries: int = 10,
        degree: int = 3,
        coef: tuple[float, float] = (-1.0, 1.0),
        x_range: tuple[float, float] = (-2.0, 2.0),
        noise_std: float = 0.0,
    ) -> None:
        super().__init__(shots, queries, x_range, noise_std)
        if degree < 0:
            raise ValueError(f"degree must be non-negative, got {degree}")
        self.degree = degree
        self.coef = coef

    def sample_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {f"c{i}": _uniform(n, *self.coef, generator) for i in range(self.degree + 1)}

    def function(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        y = torch.zeros_like(x)
        for i in range(self.degree + 1):
            y = y + params[f"c{i}"].reshape(-1, 1, 1) * x**i
        return y


class RegressionTaskSection(TaskSection):
    """The ``task`` section of a regression family: ``shots`` support and ``queries`` query
    points a task, targets with Gaussian noise of ``noise_std``; trained by the ``regression``
    problem, with MSE. A family names its distribution class in ``tasks``."""

    shots: PositiveInt = 10
    queries: PositiveInt = 10
    noise_std: NonNegativeFloat = 0.0

    tensor_tasks: ClassVar[bool] = True
    tasks: ClassVar[type[RegressionTasks]]
    """The family's distribution, built from ``shots``, ``queries``, ``noise_std`` and the
    section's own settings (:meth:`options`)."""

    def options(self) -> dict[str, Any]:
        """The family's own settings, as keyword arguments of :attr:`tasks`."""
        return {}

    def build(self, queries: int | None = None) -> RegressionTasks:
        """The family's task distribution (``queries`` replaces ``self.queries``)."""
        q = self.queries if queries is None else queries
        return type(self).tasks(self.shots, q, noise_std=self.noise_std, **self.options())

    def problem(self) -> str:
        return "regression"

    def describe(self) -> str:
        return f"{self.family} regression, {self.shots}-shot"

    def regression(self) -> RegressionTaskSection:
        return self


@register_task
class SinusoidTask(RegressionTaskSection):
    """``task.family: sinusoid``: :class:`SinusoidTasks` (MAML §5.1)."""

    family: Literal["sinusoid"] = "sinusoid"
    tasks = SinusoidTasks


@register_task
class LinearTask(RegressionTaskSection):
    """``task.family: linear``: :class:`LinearTasks`."""

    family: Literal["linear"] = "linear"
    tasks = LinearTasks


@register_task
class PolynomialTask(RegressionTaskSection):
    """``task.family: polynomial``: :class:`PolynomialTasks` of degree ``degree``."""

    family: Literal["polynomial"] = "polynomial"
    degree: NonNegativeInt = 3
    tasks = PolynomialTasks

    def options(self) -> dict[str, Any]:
        return {"degree": self.degree}
