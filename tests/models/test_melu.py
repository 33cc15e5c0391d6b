"""MeLU's rating network (:mod:`metamap.models.melu`): shapes, the genre bag, the start from the
baseline predictor, and the config checks that pair it with categorical tasks only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from metamap.errors import ConfigError
from metamap.models import MODELS, Baseline, MeLU, MeLUSection, ModelContext
from metamap.tasks.users import ColdStartTask, feature_sizes
from metamap.train import load_config

CONFIG = Path(__file__).parents[2] / "configs" / "movielens" / "melu.yaml"
VOCAB = (20, 5, 3, 4)  # item ids 0..19, a year-like column, two user columns
BAG = (4, 5, 6)  # then three genre flags
SIZES = (*VOCAB, 2, 2, 2)


def rows(n: int, seed: int = 0, flags: Tensor | None = None) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    cols = [torch.randint(0, v, (n,), generator=g) for v in VOCAB]
    bag = torch.randint(0, 2, (n, len(BAG)), generator=g) if flags is None else flags
    return torch.cat([torch.stack(cols, 1), bag], 1)


def net(**kw: object) -> MeLU:
    torch.manual_seed(0)
    return MeLU(SIZES, BAG, **{"dim": 6, "hidden": (8, 8), **kw})  # type: ignore[arg-type]


def decision_input(model: MeLU, x: Tensor) -> Tensor:
    seen: list[Tensor] = []
    handle = model.decision.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    model(x)
    handle.remove()
    return seen[0]


def test_output_shape_and_embedding_layout() -> None:
    model = net()
    x = rows(7)
    out = model(x)
    assert out.shape == (7, 1) and out.dtype == torch.float32
    # item, year, two user columns: one embedding each (item_embedding on), plus the bag
    assert len(model.embeddings) == 4 and model.bag is not None and model.bag.shape == (3, 6)
    assert decision_input(model, x).shape == (7, 6 * 5)
    first = model.decision[0]
    assert isinstance(first, nn.Linear) and first.in_features == 30
    no_ids = net(item_embedding=False)
    assert len(no_ids.embeddings) == 3 and decision_input(no_ids, x).shape == (7, 24)
    # the output bias starts at `offset`, item biases at 0: a fresh net predicts near it
    last = net(offset=2.0).decision[-1]
    assert isinstance(last, nn.Linear) and last.bias.item() == 2.0
    assert no_ids.item_bias is not None and (no_ids.item_bias.weight == 0).all()


def test_the_genre_bag_is_the_mean_of_the_flagged_embeddings() -> None:
    model = net()
    flags = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 1, 1], [0, 0, 0]])
    x = rows(len(flags), flags=flags)
    bag = decision_input(model, x)[:, -6:]
    assert model.bag is not None
    for f, got in zip(flags, bag, strict=True):
        on = f.bool()
        want = model.bag[on].mean(0) if on.any() else torch.zeros(6)
        assert torch.allclose(got, want, atol=1e-6), f
    # the single columns come first, one embedding each, in column order
    front = decision_input(model, x)[:, :6]
    assert torch.equal(front, model.embeddings[0](x[:, 0]))


def test_start_from_a_baseline_predicts_mean_plus_item_offset_plus_a_small_residual() -> None:
    model = net()
    out = model.decision[-1]
    assert isinstance(out, nn.Linear) and model.item_bias is not None
    w0 = out.weight.detach().clone()
    offsets = torch.linspace(-1.0, 1.0, VOCAB[0])
    model.start_from(Baseline(3.6, offsets))
    assert torch.equal(out.weight, 0.1 * w0)  # output weights shrunk ten times
    assert out.bias.item() == pytest.approx(3.6)
    assert torch.equal(model.item_bias.weight[:, 0], offsets)
    x = rows(50, seed=1)
    with torch.no_grad():
        hidden = model.decision[:-1](decision_input(model, x))
        pred = model(x)
    residual = pred[:, 0] - 3.6 - offsets[x[:, 0]]
    assert torch.allclose(residual, 0.1 * (hidden @ w0.T)[:, 0], atol=1e-5)
    assert residual.abs().max() < 0.2 * offsets.abs().max()  # small beside the baseline
    assert residual.abs().max() > 0  # but the decision layers do take part
    # a baseline for another vocabulary, or a net without item biases, is refused
    with pytest.raises(ValueError, match=r"baseline has \(19,\) offsets for 20 item ids"):
        model.start_from(Baseline(3.6, offsets[:-1]))
    with pytest.raises(ValueError, match="start_from needs item_bias=True"):
        net(item_bias=False).start_from(Baseline(3.6, offsets))


def test_the_section_builds_with_the_warm_start_unless_told_not_to() -> None:
    offsets = torch.linspace(-0.5, 0.5, VOCAB[0])
    ctx = ModelContext(1, vocabulary=SIZES, multi_hot=BAG, baseline=Baseline(3.1, offsets))
    built = MeLUSection(dim=4, hidden=[5]).build(ctx)
    assert isinstance(built, MeLU) and built.item_bias is not None
    assert torch.equal(built.item_bias.weight[:, 0], offsets)
    cold = MeLUSection(dim=4, hidden=[5], warm_start=False).build(ctx)
    assert isinstance(cold, MeLU) and cold.item_bias is not None
    assert (cold.item_bias.weight == 0).all()
    with pytest.raises(ConfigError, match="takes categorical rows"):
        MeLUSection().build(ModelContext(1))
    assert MODELS["melu"] is MeLUSection


def test_bad_rows_and_vocabularies_are_refused() -> None:
    model = net()
    with pytest.raises(ValueError, match=r"expects rows of shape \(N, 7\), got \(3, 6\)"):
        model(rows(3)[:, :6])
    with pytest.raises(ValueError, match=r"expects rows of shape \(N, 7\), got \(7,\)"):
        model(rows(1)[0])
    with pytest.raises(ValueError, match="vocabulary must give each column's size"):
        MeLU((5, 0, 3))
    with pytest.raises(ValueError, match=r"multi_hot columns \[0, 1\] must be columns 1\.\.2"):
        MeLU((5, 2, 2), (0, 1))
    with pytest.raises(ValueError, match=r"multi_hot columns \[3\]"):
        MeLU((5, 2, 2), (3,))


def test_the_shipped_config_builds_melu_for_movielens_rows() -> None:
    cfg = load_config(CONFIG)
    assert isinstance(cfg.model, MeLUSection) and isinstance(cfg.task, ColdStartTask)
    section = cfg.task
    model = cfg.model.build(
        ModelContext(1, vocabulary=section.vocabulary(), multi_hot=section.multi_hot())
    )
    x = torch.zeros(2, len(feature_sizes("100k")), dtype=torch.long)
    assert model(x).shape == (2, 1)


def test_melu_with_a_task_without_ids_is_refused_at_config_time() -> None:
    with pytest.raises(
        ConfigError, match=r"task\.family 'sinusoid' has no ids: it needs model"
    ) as e:
        load_config(None, ["model.name=melu"])
    assert "model.name" in str(e.value) and "'mlp'" in str(e.value) and "not 'melu'" in str(e.value)


def test_the_fix_named_for_melu_on_sinusoid_is_only_a_model_that_fits() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, ["model.name=melu"])
    assert "it needs model.name 'mlp', not 'melu'" in str(e.value)
    load_config(None, ["model.name=mlp"])  # the fix named works


def test_movielens_with_a_network_without_embeddings_is_refused_at_config_time() -> None:
    for over in (["task.family=movielens"], ["task.family=movielens", "model.name=mlp"]):
        with pytest.raises(ConfigError) as e:
            load_config(None, over)
        assert str(e.value) == (
            "invalid configuration: task.family 'movielens' has categorical columns (users and "
            "items): it needs model.name 'melu', not 'mlp'"
        )
    with pytest.raises(ConfigError, match=r"'movielens' has no images: it needs model.name 'melu'"):
        load_config(None, ["task.family=movielens", "model.name=conv4"])
    load_config(None, ["task.family=movielens", "model.name=melu"])  # the fix named works


def test_item_factors_start_from_the_baseline_and_join_the_features() -> None:
    g = torch.Generator().manual_seed(3)
    factors = torch.randn(VOCAB[0], 3, generator=g)
    offsets = torch.zeros(VOCAB[0])
    model = net(item_factors=3)
    assert model.factors is not None and model.feature_dim == 8 + 3
    model.start_from(Baseline(3.6, offsets, factors))
    assert torch.equal(model.factors.weight, factors)
    x = rows(9, seed=4)
    h = model.features(x)
    assert h.shape == (9, model.feature_dim)
    assert torch.equal(h[:, -3:], factors[x[:, 0]])  # each row's item factors, last
    assert torch.equal(decision_input(model, x)[:, -3:], factors[x[:, 0]])  # fed to the layers
    assert net().feature_dim == 8 and net().features(x).shape == (9, 8)
    with pytest.raises(ValueError, match=r"item_factors=3 needs baseline factors of shape"):
        net(item_factors=3).start_from(Baseline(3.6, offsets))  # the baseline has none
    with pytest.raises(ValueError, match=r"got \(20, 2\)"):
        net(item_factors=3).start_from(Baseline(3.6, offsets, factors[:, :2]))
