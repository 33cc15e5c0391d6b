"""The batched task losses equal ``vmap`` of the per-task ones."""

from __future__ import annotations

import pytest
import torch

from metamap.learners.functional import (
    loss_function,
    metric_function,
    task_loss_function,
    task_metric_function,
)

B, N = 3, 7


def _regression() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(B, N, 2, generator=g, dtype=torch.float64)
    y = torch.randn(B, N, 2, generator=g, dtype=torch.float64)
    return pred, y


@pytest.mark.parametrize("name", ["mse", "masked_mse"])
def test_regression_task_losses_equal_vmap_of_the_loss(name: str) -> None:
    pred, y = _regression()
    if name == "masked_mse":  # padded rows of unequal tasks, and one task missing all but one
        y[0, 5:] = float("nan")
        y[2, 1:] = float("nan")
    for batched, single in (
        (task_loss_function(name), loss_function(name)),  # type: ignore[arg-type]
        (task_metric_function(name), metric_function(name)),  # type: ignore[arg-type]
    ):
        got = batched(pred, y)
        assert got.shape == (B,)
        torch.testing.assert_close(got, torch.func.vmap(single)(pred, y), rtol=1e-12, atol=0)
    if name == "masked_mse":
        assert float(got[2]) == pytest.approx(float((pred[2, 0] - y[2, 0]).square().mean()))


def test_classification_task_losses_equal_vmap_of_the_loss() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, N, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (B, N), generator=g)
    for batched, single in (
        (task_loss_function("cross_entropy"), loss_function("cross_entropy")),
        (task_metric_function("cross_entropy"), metric_function("cross_entropy")),
    ):
        torch.testing.assert_close(
            batched(logits, y), torch.func.vmap(single)(logits, y), rtol=1e-12, atol=0
        )
    acc = task_metric_function("cross_entropy")(logits, y)
    assert torch.equal(acc, (logits.argmax(-1) == y).double().mean(1))


def test_an_unknown_loss_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        task_loss_function("hinge")  # type: ignore[arg-type]
