"""The learning-rate multipliers of each schedule, and the check that lets a run resume under
another schedule only where the rates of the steps it took agree."""

import pytest

from metamap.train import TrainConfig, lr_factor, schedule_mismatch


def _rates(n: int, **train: object) -> list[float]:
    f = lr_factor(TrainConfig.model_validate(train))
    return [f(s) for s in range(n)]


def test_each_schedule_gives_its_formula() -> None:
    assert _rates(3) == [1.0, 1.0, 1.0]
    assert _rates(5, schedule="step", decay_every=2, decay_factor=0.5) == [1, 1, 0.5, 0.5, 0.25]
    piecewise = _rates(6, schedule="piecewise", milestones=[2, 4], factors=[0.1, 0.01])
    assert piecewise == [1, 1, 0.1, 0.1, 0.01, 0.01]
    assert _rates(5, schedule="cosine", steps=4) == pytest.approx([1, 0.8536, 0.5, 0.1464, 0], 1e-3)
    assert _rates(4, warmup_steps=2, schedule="step", decay_every=3) == [0.5, 1, 1, 0.5]
    # Reptile's meta step size: 1 - i/N at iteration i (Nichol et al.'s frac_done), 0 at N on
    assert _rates(6, schedule="linear", steps=4) == [1, 0.75, 0.5, 0.25, 0, 0]
    assert _rates(5, schedule="linear", steps=4, warmup_steps=2) == [0.5, 1, 1, 0.5, 0]


def test_a_mismatch_names_the_first_step_taken_whose_rate_differs() -> None:
    constant = TrainConfig(lr=1e-3)
    anneal = TrainConfig(lr=1e-3, schedule="piecewise", milestones=[100], factors=[0.1])
    assert schedule_mismatch(constant, anneal, 100) is None  # steps 0..99 agree
    at, before, after = schedule_mismatch(constant, anneal, 101) or (0, 0.0, 0.0)
    assert (at, before) == (100, 1e-3) and after == pytest.approx(1e-4)
    short, long = TrainConfig(schedule="cosine", steps=10), TrainConfig(schedule="cosine", steps=20)
    assert schedule_mismatch(short, long, 1) is None and schedule_mismatch(short, long, 2)
    assert schedule_mismatch(TrainConfig(steps=10), TrainConfig(steps=99), 10) is None
