"""``learner.adapt``: the inner loop of a gradient learner adapts only the parameters whose names
start with the given prefixes (MeLU's local update of its decision layers); the others are
meta-learned and shared by every task."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from metamap.cli import main
from metamap.core import TaskBatch
from metamap.errors import ConfigError
from metamap.learners import ANIL, MAML, GradientLearner, MetaSGD, Reptile
from metamap.learners.gradient import GradientSection
from metamap.models import MLP, MeLU
from metamap.tasks import SinusoidTasks, make_generator
from metamap.train import load_config, parse_config
from metamap.train.build import build_run_learner

CONFIGS = Path(__file__).parents[2] / "configs"
VOCAB = (30, 4, 3, 2, 2, 2)


def melu() -> MeLU:
    torch.manual_seed(0)
    return MeLU(VOCAB, (3, 4, 5), dim=4, hidden=[6])


def users(n: int, rows: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, v, (n, rows), generator=g) for v in VOCAB], -1)
    return x, 1 + 4 * torch.rand(n, rows, 1, generator=g)


def sinusoids(n: int = 4) -> TaskBatch:
    return SinusoidTasks(queries=5).sample(n, make_generator(0)).to("cpu", torch.float64)


def changed(learner: GradientLearner, sx: Tensor, sy: Tensor, steps: int = 3) -> set[str]:
    state = learner.adapt(sx, sy, steps)
    meta = dict(learner.model.named_parameters())
    assert state.params.keys() == meta.keys()
    return {k for k, v in state.params.items() if not torch.equal(v, meta[k])}


def test_only_the_prefixed_parameters_change_in_adapt() -> None:
    x, y = users(1, 12)
    everything = MAML(melu(), "masked_mse", inner_lr=0.5)
    names = {n for n, _ in everything.model.named_parameters()}
    assert changed(everything, x[0], y[0]) == names  # by default every parameter adapts
    local = MAML(melu(), "masked_mse", inner_lr=0.5).adapt_only(["decision."])
    assert local.adapt_prefixes == ("decision.",)
    assert changed(local, x[0], y[0]) == {n for n in names if n.startswith("decision.")}
    two = MAML(melu(), "masked_mse", inner_lr=0.5).adapt_only(["decision.2.", "item_bias."])
    assert changed(two, x[0], y[0]) == {"decision.2.weight", "decision.2.bias", "item_bias.weight"}
    assert changed(local, x[0], y[0], steps=0) == set()  # zero steps: the meta-parameters
    # the frozen parameters are still meta-learned: they get meta-gradients
    batch = TaskBatch(x[:, :8], y[:, :8], x[:, 8:], y[:, 8:])
    grads = local.meta_gradients(batch).grads
    assert grads.keys() == {f"model.{n}" for n in names}
    assert grads["model.bag"].abs().sum() > 0 and grads["model.embeddings.0.weight"].abs().sum() > 0


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_maml_adapting_the_head_only_is_anil(batching: str) -> None:
    batch = sinusoids()
    torch.manual_seed(0)
    maml = MAML(MLP(1, 1, [8, 8]), inner_steps=2, inner_lr=0.1, batching=batching)  # type: ignore[arg-type]
    torch.manual_seed(0)
    anil = ANIL(MLP(1, 1, [8, 8]), inner_steps=2, inner_lr=0.1, batching=batching)  # type: ignore[arg-type]
    a = maml.double().adapt_only(["head."]).meta_gradients(batch)
    b = anil.double().meta_gradients(batch)
    assert torch.allclose(a.loss, b.loss, rtol=1e-12)
    for k in a.grads:
        assert torch.allclose(a.grads[k], b.grads[k], rtol=1e-9, atol=1e-12), k


@pytest.mark.parametrize("prefixes", [["head.weight"], ["body.0."]])
def test_anil_with_learner_adapt_is_refused_or_right(prefixes: list[str]) -> None:
    batch = sinusoids()
    grads = {}
    for batching in ("vmap", "loop"):
        torch.manual_seed(0)
        anil = ANIL(MLP(1, 1, [8, 8]), inner_lr=0.1, batching=batching).double()
        try:
            anil.adapt_only(prefixes)
        except ValueError:
            return  # refused: fine
        grads[batching] = anil.meta_gradients(batch).grads
    for k in grads["vmap"]:
        assert torch.allclose(grads["vmap"][k], grads["loop"][k], rtol=1e-9, atol=1e-12), k


def test_reptile_adapts_only_the_prefixed_parameters() -> None:
    x, y = users(1, 12)
    reptile = Reptile(melu(), "masked_mse", inner_steps=2, inner_lr=0.5).adapt_only(["decision."])
    names = {n for n, _ in reptile.model.named_parameters()}
    assert changed(reptile, x[0], y[0]) == {n for n in names if n.startswith("decision.")}


@pytest.mark.parametrize("batching", ["vmap", "loop"])
def test_reptile_gives_the_parameters_it_does_not_adapt_no_update(batching: str) -> None:
    x, y = users(3, 12)
    reptile = Reptile(melu(), "masked_mse", inner_steps=2, inner_lr=0.5, batching=batching)  # type: ignore[arg-type]
    reptile.adapt_only(["decision."])
    grads = reptile.meta_gradients(TaskBatch(x[:, :8], y[:, :8], x[:, 8:], y[:, 8:])).grads
    assert grads["model.decision.0.weight"].abs().sum() > 0
    frozen = {k: float(g.abs().max()) for k, g in grads.items() if "decision." not in k}
    assert frozen == dict.fromkeys(frozen, 0.0)


def test_an_unknown_prefix_is_refused_naming_the_parameters() -> None:
    learner = MAML(melu(), "masked_mse")
    with pytest.raises(ValueError, match=r"no model parameter name starts with 'decoder\.'") as e:
        learner.adapt_only(["decision.", "decoder."])
    assert "decision.0.weight" in str(e.value) and "item_bias.weight" in str(e.value)
    assert learner.adapt_prefixes == ("",)  # unchanged by the refused call
    with pytest.raises(ValueError, match="at least one parameter-name prefix"):
        learner.adapt_only([])
    cfg = load_config(CONFIGS / "sinusoid" / "maml.yaml", ["learner.adapt=[decoder.]"])
    with pytest.raises(ValueError, match=r"the model has: body\.0\.weight, .*head\.bias"):
        build_run_learner(cfg)


def test_an_unknown_prefix_in_a_config_is_a_config_mistake_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METAMAP_CRASH_DIR", str(tmp_path))
    over = ["-o", "learner.adapt=[decoder.]", "-o", "train.steps=1", "-o", "train.progress=false"]
    rc = main(
        ["train", str(CONFIGS / "sinusoid" / "maml.yaml"), *over, "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert "decoder." in err and "internal error" not in err
    assert rc == 2


def test_meta_sgd_keeps_a_step_size_only_for_the_adapted_parameters() -> None:
    x, y = users(2, 12)
    full = MetaSGD(melu(), "masked_mse", inner_lr=0.3)
    names = [n for n, _ in full.model.named_parameters()]
    assert set(full.inner_lrs.keys()) == {n.replace(".", "__") for n in names}
    local = MetaSGD(melu(), "masked_mse", inner_lr=0.3).adapt_only(["decision."])
    kept = {n.replace(".", "__") for n in names if n.startswith("decision.")}
    assert set(local.inner_lrs.keys()) == kept and len(kept) == 4
    assert {k for k in local.state_dict() if k.startswith("inner_lrs.")} == {
        f"inner_lrs.{k}" for k in kept
    }
    assert changed(local, x[0], y[0]) == {n for n in names if n.startswith("decision.")}
    batch = TaskBatch(x[:, :8], y[:, :8], x[:, 8:], y[:, 8:])
    step = local.meta_gradients(batch)
    assert {k for k in step.grads if k.startswith("inner_lrs.")} == {f"inner_lrs.{k}" for k in kept}
    assert all(torch.isfinite(g).all() for g in step.grads.values())
    assert all(step.grads[f"inner_lrs.{k}"].abs().sum() > 0 for k in kept)  # α is learned
    # built from a config, and rebuilt alike (a checkpoint's weights load)
    cfg = load_config(
        CONFIGS / "sinusoid" / "metasgd.yaml", ["learner.adapt=[head.]", "model.hidden=[8]"]
    )
    built = build_run_learner(cfg)
    assert isinstance(built, MetaSGD)
    assert set(built.inner_lrs.keys()) == {"head__weight", "head__bias"}
    again = build_run_learner(cfg)
    again.load_state_dict(built.state_dict())


def test_the_config_option_builds_each_gradient_learner_restricted() -> None:
    for name in ("maml", "fomaml", "metasgd", "reptile", "anil"):
        cfg = load_config(None, [f"learner.name={name}", "learner.adapt=[head.]"])
        learner = build_run_learner(cfg)
        assert isinstance(learner, GradientLearner)
        assert learner.adapt_prefixes == ("head.",), name
        plain = build_run_learner(load_config(None, [f"learner.name={name}"]))
        assert isinstance(plain, GradientLearner)
        assert plain.adapt_prefixes == (("head.",) if name == "anil" else ("",)), name
    episodes = ["task.family=episodes", "model.name=conv4", "learner.name=protonet"]
    with pytest.raises(ConfigError, match=r"learner\.adapt"):
        load_config(None, [*episodes, "learner.adapt=[head.]"])


def test_mamlpp_honours_learner_adapt_or_refuses_it() -> None:
    try:
        cfg = load_config(None, ["learner.name=mamlpp", "learner.adapt=[head.]"])
    except ConfigError:
        return  # refused: fine
    learner = build_run_learner(cfg)
    batch = sinusoids(1).to("cpu", torch.float32)
    assert changed(learner, batch.support_x[0], batch.support_y[0]) == {  # type: ignore[arg-type]
        "head.weight",
        "head.bias",
    }


# Fingerprints computed by metamap at 2019b8a, before learner.adapt existed: a run trained then
# resumes now.
OLD_FINGERPRINTS = {
    "sinusoid/maml": "3c23d0191bb74f64",
    "sinusoid/metasgd": "e50a516336b10751",
    "sinusoid/reptile": "25dcb6ad727a01d4",
    "sinusoid/fomaml": "6d6059f72e464f7f",
    "sinusoid/anil": "a7a806bf9746ae9f",
    "omniglot/maml-5w1s": "3a7364e9d50d1300",
    "omniglot/anil-5w1s": "3d3534d548decc4a",
    "omniglot/mamlpp-5w1s": "e6e197e92bfe165a",
}


@pytest.mark.parametrize(("name", "fingerprint"), sorted(OLD_FINGERPRINTS.items()))
def test_a_config_without_adapt_keeps_its_fingerprint(name: str, fingerprint: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.fingerprint() == fingerprint
    stored = cfg.model_dump(mode="json")
    assert stored["learner"]["adapt"] == []
    del stored["learner"]["adapt"]  # a config stored before the option existed
    assert parse_config(stored, legacy=True).fingerprint() == fingerprint
    # naming the parameters does change the fingerprint (it changes the trained weights)
    if "mamlpp" in name:  # MAML++ refuses learner.adapt
        return
    prefix = "head." if name.startswith("sinusoid") else "classifier."
    other = load_config(CONFIGS / f"{name}.yaml", [f"learner.adapt=[{prefix}]"])
    assert other.fingerprint() != fingerprint


def test_adapt_is_a_list_of_prefixes() -> None:
    cfg = load_config(None, ["learner.adapt=[head., body.2.]"])
    assert isinstance(cfg.learner, GradientSection)
    assert cfg.learner.adapt == ["head.", "body.2."]
    with pytest.raises(ConfigError, match=r"learner\.adapt"):
        load_config(None, ["learner.adapt=3"])


def _generic(learner: GradientLearner) -> GradientLearner:
    """The same learner made to run the whole network at every inner step."""
    learner.model.top_parameters = None  # type: ignore[assignment]
    assert not learner.stem_once
    return learner


@pytest.mark.parametrize(
    "make",
    [
        lambda m: MAML(m, "masked_mse", inner_steps=3, inner_lr=0.1),
        lambda m: MAML(m, "masked_mse", inner_steps=2, inner_lr=0.1, first_order=True),
        lambda m: MetaSGD(m, "masked_mse", inner_steps=1, inner_lr=0.1),
        lambda m: Reptile(m, "masked_mse", inner_steps=3, inner_lr=0.05),
    ],
    ids=["maml", "fomaml", "metasgd", "reptile"],
)
def test_melu_s_local_update_runs_the_stem_once_with_the_same_numbers(
    make: Callable[[MeLU], GradientLearner],
) -> None:
    """Adapting only MeLU's decision layers, the embeddings are computed once per task
    (``part="stem"``) and the inner steps run on the top: the meta-gradient, adaptation and
    predictions equal those of the whole network run at every step, in float64."""
    fast = make(melu().double()).adapt_only(["decision."])
    slow = _generic(make(melu().double()).adapt_only(["decision."]))
    assert fast.stem_once and not make(melu().double()).stem_once  # all adapted: the whole net
    sx, sy = users(3, 7)
    qx, qy = users(3, 5, seed=1)
    batch = TaskBatch(sx, sy.double(), qx, qy.double())
    a, b = fast.meta_gradients(batch).grads, slow.meta_gradients(batch).grads
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=1e-12) for k in a)
    torch.testing.assert_close(fast.predict_tasks(batch), slow.predict_tasks(batch))
    state = fast.adapt(sx[0], sy[0].double())
    torch.testing.assert_close(
        fast.predict(state, qx[0]), slow.predict(slow.adapt(sx[0], sy[0].double()), qx[0])
    )


def test_melu_s_stem_and_top_compose_to_the_network() -> None:
    model = melu().double()
    x, _ = users(1, 9)
    torch.testing.assert_close(model(model(x[0], part="stem"), part="top"), model(x[0]))
    no_bias = MeLU(VOCAB, (3, 4, 5), dim=4, hidden=[6], item_bias=False)
    torch.testing.assert_close(no_bias(no_bias(x[0], part="stem"), part="top"), no_bias(x[0]))
