"""The contract every registered learner keeps, checked for each name in the registry.

On a tiny task of the kind its section says it takes (a sinusoid and an MLP where
``section.regression``, else 2-way 1-shot episodes of a generated folder of 28×28 grey images
with a width-8 Conv-4; labelled batches where ``section.supervised``), every learner

1. adapts and predicts: outputs ``(N, out)``, finite, also along ``adapt_trace``;
2. returns finite meta-gradients keyed by its parameter names, not all zero (or, trained on
   labelled batches, supervised gradients);
3. trained 4 steps straight, or killed after 2 and resumed, ends with the same weights, bit for
   bit;
4. refuses bad shapes with :class:`TaskShapeError` before any work: its parameters and buffers
   (inductive BatchNorm's running statistics) are untouched;
5. gives the same meta-gradients batched (vmap) and looped, where it has both paths.

The parametrisation is :func:`registered_learners`: registering a learner enrols it here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest
import torch
from torch import Tensor, nn

from metamap.core import MetaStep, TaskBatch
from metamap.errors import TaskShapeError
from metamap.learners import LEARNERS, LearnerSection, MetaLearner, register_learner
from metamap.tasks import make_generator
from metamap.train import Trainer, from_config, load_checkpoint, load_config


def registered_learners() -> list[str]:
    """The learners this suite checks: every name in the registry, now, but the policy learners
    (``section.reinforcement``), whose tasks are environments: their contract — adapting to
    rollouts, meta-gradients against finite differences, bit-identical resume, non-finite
    rollouts refused — is checked in tests/rl/ and tests/train/test_meta_rl.py."""
    return sorted(n for n, s in LEARNERS.items() if not s.reinforcement)


NAMES = registered_learners()

SCHEDULES: dict[str, list[str]] = {
    # MAML++'s multi-step loss and derivative-order annealing depend on the training step:
    # both switch inside the 4 steps, so that a resume must replay them.
    "mamlpp": ["learner.msl_steps=2", "learner.first_order_steps=2"],
}


@pytest.fixture(scope="module")
def images(
    tmp_path_factory: pytest.TempPathFactory, class_folder: Callable[..., Path]
) -> list[str]:
    """Overrides for 2-way 1-shot episodes of a generated folder (10 classes, split 6/2/2, of
    4 images each), on a width-8 Conv-4 with inductive BatchNorm (running statistics)."""
    root = tmp_path_factory.mktemp("contract")
    folder = class_folder(root / "images", list(range(10)), 4, 0)
    return [
        "task.family=episodes",
        "data.name=folder",
        "data.protocol=folder",
        f"data.root={folder}",
        f"data.cache_dir={root / 'cache'}",
        "task.ways=2",
        "task.shots=1",
        "task.queries=2",
        "model.name=conv4",
        "model.width=8",
        "model.batch_norm=inductive",
    ]


def overrides(name: str, images: list[str], *extra: str) -> list[str]:
    """A 4-step run of learner ``name`` on the task kind its capabilities call for."""
    task = ["model.hidden=[8,8]"] if LEARNERS[name].regression else images
    return [
        *task,
        f"learner.name={name}",
        *SCHEDULES.get(name, []),
        "train.steps=4",
        "train.meta_batch=2",
        "train.batch_size=8",
        "train.val_every=2",
        "train.val_tasks=2",
        "train.ckpt_every=1",
        "train.progress=false",
        *extra,
    ]


def built(name: str, images: list[str], *extra: str) -> tuple[MetaLearner, TaskBatch]:
    """The learner of a run of ``name`` and a batch of 2 tasks of its problem."""
    problem, learner = from_config(load_config(None, overrides(name, images, *extra)))
    batch = problem.tasks.sample(2, make_generator(0))
    return learner, batch.to(problem.device, problem.dtype)


def out_shape(learner: MetaLearner, x: Tensor, y: Tensor, ways: int) -> tuple[int, ...]:
    """The shape ``predict`` must give for inputs ``x`` with targets like ``y``."""
    if learner.loss_name == "cross_entropy":
        return (len(x), ways)
    return (len(x), *y.shape[1:])


def trainable(learner: nn.Module) -> set[str]:
    return {k for k, p in learner.named_parameters() if p.requires_grad}


def supervised(name: str) -> bool:
    return bool(LEARNERS[name].supervised)


def labelled(images: list[str], name: str, n: int = 8) -> tuple[MetaLearner, Tensor, Tensor]:
    """A supervised learner and a batch of ``n`` labelled training images."""
    problem, learner = from_config(load_config(None, overrides(name, images)))
    x, y = problem.tasks.sample_labelled(n, make_generator(0))
    return learner, x.to(problem.device, problem.dtype), y.to(problem.device)


# ---- 1. adapt → predict ----------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_adapts_and_predicts_outputs_of_the_right_shape(images: list[str], name: str) -> None:
    learner, batch = built(name, images)
    sx, sy, qx, qy = (t[0] for t in batch.tensors())
    ways = int(sy.max()) + 1
    shape = out_shape(learner, qx, qy, ways)
    out = learner.predict(learner.adapt(sx, sy), qx)
    assert tuple(out.shape) == shape and len(shape) == 2
    assert torch.isfinite(out).all()
    k = max(learner.inner_steps, 1)
    trace = learner.adapt_trace(sx, sy, [0, k])
    assert set(trace) == {0, k}
    for state in trace.values():
        out = learner.predict(state, qx)
        assert tuple(out.shape) == shape and torch.isfinite(out).all()


# ---- 2. meta-gradients --------------------------------------------------------------------------
def assert_gradients(learner: MetaLearner, step: MetaStep) -> None:
    assert set(step.grads) == trainable(learner)
    assert torch.isfinite(step.loss)
    bad = [k for k, g in step.grads.items() if not torch.isfinite(g).all()]
    assert not bad, f"non-finite gradients: {bad}"
    params = dict(learner.named_parameters())
    assert all(g.shape == params[k].shape for k, g in step.grads.items())
    assert any(bool(g.ne(0).any()) for g in step.grads.values()), "every gradient is zero"


@pytest.mark.parametrize("name", NAMES)
def test_returns_finite_gradients_keyed_by_parameter_name(images: list[str], name: str) -> None:
    if supervised(name):  # trained on labelled batches of the training classes
        learner, x, y = labelled(images, name)
        assert_gradients(learner, learner.supervised_gradients(x, y))  # type: ignore[attr-defined]
        return
    learner, batch = built(name, images)
    assert_gradients(learner, learner.meta_gradients(batch))


# ---- 3. kill and resume -------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_killed_and_resumed_training_ends_bit_identical(
    images: list[str], name: str, tmp_path: Path
) -> None:
    cfg = load_config(None, overrides(name, images))
    straight = Trainer(cfg, tmp_path / "straight")
    start = {k: v.clone() for k, v in straight.learner.state_dict().items()}
    straight.fit()
    killed = Trainer(cfg, tmp_path / "killed")
    killed.fit(stop_after=2)
    assert load_checkpoint(killed.last_path)["step"] == 2
    resumed = Trainer(cfg, tmp_path / "killed")
    resumed.fit()
    assert resumed.step == straight.step == 4
    a = load_checkpoint(straight.last_path)["learner"]
    b = load_checkpoint(resumed.last_path)["learner"]
    assert a.keys() == b.keys() == start.keys()
    assert any(not torch.equal(start[k], a[k]) for k in a), "training changed nothing"
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"weights differ after the resume: {differ}"


# ---- 4. bad shapes ------------------------------------------------------------------------------
def extra_dim(x: Tensor, y: Tensor, lead: int) -> tuple[Tensor, Tensor]:
    return x.unsqueeze(lead), y


def tripled(x: Tensor, y: Tensor, lead: int) -> tuple[Tensor, Tensor]:
    """Three times the channels of an image, or the features of a vector."""
    return torch.cat([x, x, x], dim=lead), y


def short_y(x: Tensor, y: Tensor, lead: int) -> tuple[Tensor, Tensor]:
    """One target fewer than examples (per task)."""
    return x, y.narrow(lead - 1, 0, y.shape[lead - 1] - 1)


def nan(x: Tensor, y: Tensor, lead: int) -> tuple[Tensor, Tensor]:
    x = x.clone(memory_format=torch.contiguous_format)
    x.view(-1)[-1] = float("nan")  # the last task's last example
    return x, y


Bad = Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]
CASES = [
    pytest.param(extra_dim, r"x has examples of \d dimension\(s\)", id="extra-feature-dim"),
    pytest.param(
        tripled, r"x has 3 (channel\(s\)|features per example)", id="wrong-channels-or-features"
    ),
    pytest.param(short_y, r"x has \d+ examples but \w+ has \d+ targets", id="x-y-lengths-differ"),
    pytest.param(nan, r"x contains 1 NaN value", id="nan-input"),
]


@contextmanager
def refused(learner: nn.Module, match: str) -> Iterator[None]:
    """A TaskShapeError matching ``match``, with parameters and buffers as they were."""
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    with pytest.raises(TaskShapeError, match=match):
        yield
    after = learner.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not changed, f"changed before the error: {changed}"


@pytest.mark.parametrize(("bad", "match"), CASES)
@pytest.mark.parametrize("name", NAMES)
def test_refuses_bad_shapes_before_any_work(
    images: list[str], name: str, bad: Bad, match: str
) -> None:
    learner, batch = built(name, images)
    learner.train()  # a forward would move inductive BatchNorm's running statistics
    sx, sy, qx, _ = (t[0] for t in batch.tensors())
    with refused(learner, match):
        learner.adapt(*bad(sx, sy, 1))
    if bad is not short_y:  # predict takes no targets
        state = learner.adapt(sx, sy)
        with refused(learner, match):
            learner.predict(state, bad(qx, sy, 1)[0])
    if supervised(name):
        learner, x, y = labelled(images, name)
        learner.train()
        with refused(learner, match):
            learner.supervised_gradients(*bad(x, y, 1))  # type: ignore[attr-defined]
    elif bad is short_y:  # a batch cannot even hold such a task
        with pytest.raises(TaskShapeError, match="disagree on the number of"):
            TaskBatch(*bad(batch.support_x, batch.support_y, 2), batch.query_x, batch.query_y)
    else:
        sx, sy = bad(batch.support_x, batch.support_y, 2)
        qx = batch.query_x if bad is nan else bad(batch.query_x, batch.query_y, 2)[0]
        bad_batch = TaskBatch(sx, sy, qx, batch.query_y)  # query of the support's shape
        with refused(learner, match):
            learner.meta_gradients(bad_batch)


# ---- 5. batched == looped -----------------------------------------------------------------------
def at_step(learner: MetaLearner, batch: TaskBatch, step: int) -> MetaStep:
    """The meta-gradients as the trainer takes them at training step ``step``."""
    learner.set_training_step(step)
    return learner.meta_gradients(batch)


@pytest.mark.parametrize("name", NAMES)
def test_batched_and_looped_meta_gradients_agree(images: list[str], name: str) -> None:
    section: type[LearnerSection] = LEARNERS[name]
    if "batching" not in section.model_fields:
        pytest.skip(f"{name} has one path only (its section has no `batching` setting)")
    paths: dict[str, tuple[MetaLearner, TaskBatch]] = {}
    for batching in ("vmap", "loop"):
        # transductive BatchNorm: vmap cannot update running statistics task by task
        extra = [f"learner.batching={batching}", "train.dtype=float64"]
        paths[batching] = built(name, images, *extra, "model.batch_norm=transductive")
        assert getattr(paths[batching][0], "batching", None) == batching
        assert paths[batching][1].support_x.dtype == torch.float64
    # At the first and the last training step: schedules inside a learner (MAML++'s multi-step
    # loss and first-order phase) have switched in between.
    for t in (0, 3):
        a, b = (at_step(learner, batch, t) for learner, batch in paths.values())
        assert set(a.grads) == set(b.grads) == trainable(paths["loop"][0])
        assert torch.allclose(a.loss, b.loss, rtol=1e-10, atol=1e-12)
        assert any(bool(g.ne(0).any()) for g in a.grads.values())
        differ = [
            k for k in a.grads if not torch.allclose(a.grads[k], b.grads[k], rtol=1e-10, atol=1e-12)
        ]
        assert not differ, f"vmap and loop differ at training step {t} on {differ}"


# ---- 6. the registry is the parametrisation -----------------------------------------------------
def test_the_suite_checks_every_registered_learner() -> None:
    policies = {n for n, s in LEARNERS.items() if s.reinforcement}
    assert NAMES == registered_learners() == sorted(set(LEARNERS) - policies) and NAMES


def test_registering_a_learner_enrols_it() -> None:
    assert "contract-probe" not in registered_learners()
    try:

        @register_learner
        class ProbeSection(LEARNERS["protonet"]):  # type: ignore[misc, valid-type]
            name: Literal["contract-probe"] = "contract-probe"  # type: ignore[assignment]

        assert LEARNERS["contract-probe"] is ProbeSection
        assert "contract-probe" in registered_learners()
    finally:
        LEARNERS.pop("contract-probe", None)
    assert "contract-probe" not in registered_learners()
    assert registered_learners() == NAMES
