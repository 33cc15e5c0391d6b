"""One trained network, both BatchNorm modes."""

from __future__ import annotations

import torch

from metamap.models import Conv4
from metamap.models.batchnorm import has_running_statistics, use_batch_statistics


def _pair() -> tuple[Conv4, Conv4]:
    torch.manual_seed(0)
    inductive = Conv4(5, 1, width=8, image_size=28, batch_norm="inductive")
    transductive = Conv4(5, 1, width=8, image_size=28, batch_norm="transductive")
    transductive.load_state_dict(inductive.state_dict(), strict=False)
    return inductive, transductive


def test_the_policy_does_not_change_training_only_what_test_time_uses() -> None:
    """Running statistics are kept, not used, in training: both train to the same weights."""
    inductive, transductive = _pair()
    g = torch.Generator().manual_seed(1)
    for net in (inductive, transductive):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        g.manual_seed(1)
        for _ in range(3):
            x = torch.rand(10, 1, 28, 28, generator=g)
            y = torch.randint(0, 5, (10,), generator=g)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for (name, a), b in zip(inductive.named_parameters(), transductive.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_batch_statistics_make_an_inductive_network_transductive_at_test_time() -> None:
    inductive, transductive = _pair()
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    inductive.train()(x)  # some running statistics
    inductive.eval(), transductive.eval()
    alone = inductive(x[:1])
    assert torch.allclose(alone, inductive(x)[:1], atol=1e-6)  # running statistics: per image
    assert has_running_statistics(inductive) and not has_running_statistics(transductive)
    assert use_batch_statistics(inductive) == 4
    assert not has_running_statistics(inductive)
    assert torch.allclose(inductive(x), transductive(x), atol=1e-6)
    assert not torch.allclose(inductive(x)[:2], inductive(x[:2]), atol=1e-4)  # batch-dependent
    assert use_batch_statistics(inductive) == 0
