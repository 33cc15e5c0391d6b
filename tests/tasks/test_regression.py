"""Regression task families: shapes, priors (MAML §5.1), targets, seeding and fixed eval sets."""

from __future__ import annotations

import math

import pytest
import torch

from metamap.errors import TaskShapeError
from metamap.tasks import (
    LinearTasks,
    PolynomialTasks,
    RegressionTasks,
    SinusoidTasks,
    TaskBatch,
    TaskDistribution,
    make_generator,
)

FAMILIES = [
    pytest.param(lambda **kw: SinusoidTasks(**kw), ["amplitude", "phase"], id="sinusoid"),
    pytest.param(lambda **kw: LinearTasks(**kw), ["slope", "intercept"], id="linear"),
    pytest.param(
        lambda **kw: PolynomialTasks(degree=3, **kw), ["c0", "c1", "c2", "c3"], id="polynomial"
    ),
]


def _formula(family: RegressionTasks, p: dict[str, float], x: torch.Tensor) -> torch.Tensor:
    """The family's function written out by hand from one task's stored parameters."""
    if isinstance(family, SinusoidTasks):
        return p["amplitude"] * torch.sin(x - p["phase"])
    if isinstance(family, LinearTasks):
        return p["slope"] * x + p["intercept"]
    assert isinstance(family, PolynomialTasks)
    return sum(p[f"c{i}"] * x**i for i in range(family.degree + 1))


@pytest.mark.parametrize(("make", "keys"), FAMILIES)
def test_sample_shapes_and_params(make, keys) -> None:
    family = make(shots=4, queries=9)
    assert isinstance(family, TaskDistribution)
    batch = family.sample(6, make_generator(0))
    assert isinstance(batch, TaskBatch)
    assert len(batch) == 6
    assert tuple(batch.support_x.shape) == (6, 4, 1)
    assert tuple(batch.support_y.shape) == (6, 4, 1)
    assert tuple(batch.query_x.shape) == (6, 9, 1)
    assert tuple(batch.query_y.shape) == (6, 9, 1)
    assert all(t.dtype == torch.float32 for t in batch.tensors())
    assert len(batch.params) == 6
    assert all(sorted(p) == sorted(keys) for p in batch.params)


@pytest.mark.parametrize(("make", "keys"), FAMILIES)
def test_targets_equal_the_formula_from_the_stored_params(make, keys) -> None:
    family = make(shots=5, queries=7)
    batch = family.sample(8, make_generator(1))
    for task in batch:
        torch.testing.assert_close(
            task.support_y, _formula(family, dict(task.params), task.support_x)
        )
        torch.testing.assert_close(task.query_y, _formula(family, dict(task.params), task.query_x))
    # and the same holds for the fixed evaluation tasks
    for task in family.fixed_tasks(4, seed=3):
        torch.testing.assert_close(task.query_y, _formula(family, dict(task.params), task.query_x))


def test_sinusoid_prior_is_maml_section_5_1() -> None:
    batch = SinusoidTasks(shots=10, queries=10).sample(2000, make_generator(0))
    amp = torch.tensor([p["amplitude"] for p in batch.params])
    phase = torch.tensor([p["phase"] for p in batch.params])
    x = torch.cat([batch.support_x.flatten(), batch.query_x.flatten()])
    assert amp.min() >= 0.1 and amp.max() <= 5.0
    assert phase.min() >= 0.0 and phase.max() <= math.pi
    assert x.min() >= -5.0 and x.max() <= 5.0
    # the whole ranges are used, not a narrower one
    assert amp.min() < 0.2 and amp.max() > 4.9
    assert phase.min() < 0.05 and phase.max() > math.pi - 0.05
    assert x.min() < -4.95 and x.max() > 4.95
    # and uniformly: the means sit in the middle of the ranges
    assert abs(float(amp.mean()) - 2.55) < 0.15
    assert abs(float(phase.mean()) - math.pi / 2) < 0.1


def test_linear_and_polynomial_priors_respect_their_ranges() -> None:
    lin = LinearTasks(slope=(1.0, 2.0), intercept=(-0.5, 0.0), x_range=(0.0, 3.0)).sample(
        500, make_generator(0)
    )
    slopes = torch.tensor([p["slope"] for p in lin.params])
    intercepts = torch.tensor([p["intercept"] for p in lin.params])
    assert slopes.min() >= 1.0 and slopes.max() <= 2.0
    assert intercepts.min() >= -0.5 and intercepts.max() <= 0.0
    assert lin.support_x.min() >= 0.0 and lin.support_x.max() <= 3.0
    poly = PolynomialTasks(degree=2, coef=(-0.3, 0.3)).sample(500, make_generator(0))
    coefs = torch.tensor([[p[f"c{i}"] for i in range(3)] for p in poly.params])
    assert coefs.abs().max() <= 0.3
    assert poly.query_x.min() >= -2.0 and poly.query_x.max() <= 2.0


@pytest.mark.parametrize(("make", "keys"), FAMILIES)
def test_same_seed_same_batch_different_seed_different_batch(make, keys) -> None:
    family = make(shots=5, queries=5)
    a = family.sample(4, make_generator(7))
    b = family.sample(4, make_generator(7))
    c = family.sample(4, make_generator(8))
    for x, y in zip(a.tensors(), b.tensors(), strict=True):
        assert torch.equal(x, y)
    assert a.params == b.params
    assert not torch.equal(a.support_x, c.support_x)
    assert a.params != c.params
    # one generator moves on: consecutive batches differ
    g = make_generator(7)
    first, second = family.sample(4, g), family.sample(4, g)
    assert torch.equal(first.support_x, a.support_x)
    assert not torch.equal(first.support_x, second.support_x)


def test_sampling_never_touches_the_global_rng() -> None:
    families = [
        SinusoidTasks(noise_std=0.1),
        LinearTasks(noise_std=0.1),
        PolynomialTasks(noise_std=0.1),
    ]
    state = torch.random.get_rng_state()
    for family in families:
        family.sample(3, make_generator(0))
        family.fixed_tasks(3, seed=0, shots=5)
        family.curve({k: 0.5 for k in family.sample_params(1, make_generator(0))})
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize(("make", "keys"), FAMILIES)
def test_fixed_tasks_are_deterministic_and_seeded(make, keys) -> None:
    family = make(shots=10, queries=6)
    a = family.fixed_tasks(5, seed=11)
    b = family.fixed_tasks(5, seed=11)
    c = family.fixed_tasks(5, seed=12)
    for x, y in zip(a.tensors(), b.tensors(), strict=True):
        assert torch.equal(x, y)
    assert a.params == b.params
    assert a.params != c.params
    assert tuple(a.support_x.shape) == (5, 10, 1) and tuple(a.query_x.shape) == (5, 6, 1)
    # the fixed set is independent of the family's own training generator state
    assert not torch.equal(a.support_x, family.sample(5, make_generator(11)).support_x)


@pytest.mark.parametrize("noise_std", [0.0, 0.3])
@pytest.mark.parametrize(("small", "large"), [(5, 10), (1, 20), (10, 100)])
def test_fixed_tasks_have_nested_supports_and_shared_queries(
    noise_std: float, small: int, large: int
) -> None:
    family = SinusoidTasks(shots=10, queries=8, noise_std=noise_std)
    a = family.fixed_tasks(4, seed=5, shots=small)
    b = family.fixed_tasks(4, seed=5, shots=large)
    assert a.support_x.shape[1] == small and b.support_x.shape[1] == large
    assert a.params == b.params
    assert torch.equal(a.support_x, b.support_x[:, :small])
    assert torch.equal(a.support_y, b.support_y[:, :small])
    assert torch.equal(a.query_x, b.query_x)
    assert torch.equal(a.query_y, b.query_y)


def test_fixed_tasks_default_shots_comes_from_the_family() -> None:
    a = SinusoidTasks(shots=5, queries=8).fixed_tasks(3, seed=2)
    b = SinusoidTasks(shots=10, queries=8).fixed_tasks(3, seed=2, shots=5)
    assert a.support_x.shape[1] == 5
    for x, y in zip(a.tensors(), b.tensors(), strict=True):
        assert torch.equal(x, y)


def test_noise_is_added_with_the_requested_scale() -> None:
    family = SinusoidTasks(shots=50, queries=50, noise_std=0.5)
    batch = family.sample(40, make_generator(0))
    residuals = torch.cat(
        [(t.support_y - _formula(family, dict(t.params), t.support_x)).flatten() for t in batch]
    )
    assert abs(float(residuals.std()) - 0.5) < 0.03
    assert abs(float(residuals.mean())) < 0.03


def test_curve_is_the_noiseless_function_on_a_grid() -> None:
    family = SinusoidTasks(noise_std=1.0)
    x, y = family.curve({"amplitude": 2.0, "phase": 0.5}, points=50)
    assert tuple(x.shape) == (50, 1) and tuple(y.shape) == (50, 1)
    assert float(x[0]) == -5.0 and float(x[-1]) == 5.0
    torch.testing.assert_close(y, 2.0 * torch.sin(x - 0.5))


def test_invalid_family_arguments_are_rejected() -> None:
    with pytest.raises(TaskShapeError, match="shots must be at least 1"):
        SinusoidTasks(shots=0)
    with pytest.raises(TaskShapeError, match="queries must be at least 1"):
        LinearTasks(queries=0)
    with pytest.raises(ValueError, match="x_range must be"):
        SinusoidTasks(x_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="noise_std must be non-negative"):
        SinusoidTasks(noise_std=-0.1)
    with pytest.raises(ValueError, match="degree must be non-negative"):
        PolynomialTasks(degree=-1)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        SinusoidTasks().sample(0, make_generator(0))
    with pytest.raises(TaskShapeError, match="shots must be at least 1"):
        SinusoidTasks().fixed_tasks(3, seed=0, shots=0)
