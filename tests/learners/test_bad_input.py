"""Bad inputs to every learner are refused with a TaskShapeError that names the tensor and the
problem, before any work: parameters, buffers (BatchNorm running statistics) and the global RNG
are untouched. Before these checks, NaN inputs gave NaN outputs, 20×20 images ran silently
through a 16×16 Conv-4 encoder (both pool to 1×1), 3-channel images and mismatched lengths
raised raw torch errors, and one-class support sets were adapted on."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from metamap.errors import TaskShapeError
from metamap.learners import (
    ANIL,
    FOMAML,
    MAML,
    R2D2,
    EncoderLearner,
    MatchingNet,
    MetaLearner,
    MetaSGD,
    PretrainBaseline,
    ProtoNet,
    RelationNet,
    Reptile,
    SVMHead,
    relation_embedding,
    relation_feature_shape,
)
from metamap.learners.checks import check_classes, check_finite
from metamap.models import MLP, Conv4, ResNet12, input_shape_of
from metamap.tasks import SinusoidTasks, TaskBatch, make_generator

WAYS, SHOTS = 3, 2


def _conv4() -> Conv4:
    torch.manual_seed(0)  # inductive BatchNorm: a forward in train mode would move its statistics
    return Conv4(WAYS, width=4, image_size=16, batch_norm="inductive")


def _relation() -> RelationNet:
    torch.manual_seed(0)
    return RelationNet(
        relation_embedding(1, 4, "inductive"),
        relation_feature_shape(28, 4),
        width=4,
        hidden=4,
        batch_norm="inductive",
    )


# (make the learner, the image size it takes, a wrong size that used to run or raise raw errors)
LEARNERS: list[object] = [
    pytest.param(lambda: MAML(_conv4(), "cross_entropy", inner_lr=0.1), 16, 20, id="maml"),
    pytest.param(lambda: FOMAML(_conv4(), "cross_entropy"), 16, 20, id="fomaml"),
    pytest.param(lambda: ANIL(_conv4(), "cross_entropy"), 16, 20, id="anil"),
    pytest.param(lambda: MetaSGD(_conv4(), "cross_entropy"), 16, 20, id="metasgd"),
    pytest.param(lambda: Reptile(_conv4(), "cross_entropy", inner_steps=2), 16, 20, id="reptile"),
    pytest.param(lambda: ProtoNet(_conv4().body), 16, 20, id="protonet"),
    pytest.param(lambda: MatchingNet(_conv4().body), 16, 20, id="matching"),
    pytest.param(lambda: R2D2(_conv4().body), 16, 20, id="r2d2"),
    pytest.param(lambda: SVMHead(_conv4().body, 0.1, 3, 3), 16, 20, id="svm"),
    pytest.param(_relation, 28, 32, id="relation"),
    pytest.param(lambda: PretrainBaseline(_conv4().body, 5, feature_dim=4), 16, 20, id="pretrain"),
]
Make = Callable[[], MetaLearner]


def _images(n: int, size: int, channels: int = 1, seed: int = 0) -> Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _support(size: int) -> tuple[Tensor, Tensor]:
    return _images(WAYS * SHOTS, size), torch.arange(WAYS).repeat(SHOTS)


def _batch(size: int, tasks: int = 3) -> TaskBatch:
    sx = torch.stack([_images(WAYS * SHOTS, size, seed=i) for i in range(tasks)])
    qx = torch.stack([_images(WAYS, size, seed=10 + i) for i in range(tasks)])
    sy = torch.arange(WAYS).repeat(SHOTS).expand(tasks, -1).clone()
    qy = torch.arange(WAYS).expand(tasks, -1).clone()
    return TaskBatch(sx, sy, qx, qy)


@contextmanager
def refused(learner: nn.Module, match: str) -> Iterator[None]:
    """Expect a TaskShapeError matching ``match``, with parameters, buffers and the global RNG
    exactly as they were."""
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    rng = torch.get_rng_state()
    with pytest.raises(TaskShapeError, match=match):
        yield
    after = learner.state_dict()
    assert before.keys() == after.keys()
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert not changed, f"changed before the error: {changed}"
    assert torch.equal(torch.get_rng_state(), rng), "the check drew random numbers"


# ---- 1. non-finite inputs ---------------------------------------------------------------------
@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_nan_support_x_is_refused(make: Make, size: int, wrong: int) -> None:
    learner = make()
    sx, sy = _support(size)
    sx[0, 0, 0, :3] = float("nan")
    with refused(
        learner, r"support_x contains 3 NaN values \(of \d+\); every value must be finite"
    ):
        learner.adapt(sx, sy)


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_infinite_support_x_is_refused(make: Make, size: int, wrong: int) -> None:
    learner = make()
    sx, sy = _support(size)
    sx[1, 0, 2, 2], sx[2, 0, 3, 3] = float("inf"), -float("inf")
    with refused(learner, r"support_x contains 2 infinite values \(±inf\)"):
        learner.adapt(sx, sy)


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_non_finite_query_x_is_refused_by_predict(make: Make, size: int, wrong: int) -> None:
    learner = make()
    state = learner.adapt(*_support(size))
    x = _images(4, size)
    x[3, 0, 1, 1] = float("nan")
    x[0, 0, 0, 0] = float("inf")
    with refused(learner, r"x contains 1 NaN value and 1 infinite value"):
        learner.predict(state, x)


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_non_finite_inputs_in_a_training_batch_are_refused(
    make: Make, size: int, wrong: int
) -> None:
    learner = make()
    batch = _batch(size)
    batch.query_x[2, 1, 0, 5, 5] = float("nan")  # a task other than the first
    if isinstance(learner, PretrainBaseline):  # trained on plain batches, not episodes
        x = batch.query_x[2]
        with refused(learner, r"x contains 1 NaN value"):
            learner.supervised_gradients(x, torch.arange(len(x)))
        return
    with refused(learner, r"batch\.query_x contains 1 NaN value"):
        learner.meta_gradients(batch)


# ---- 3. images that do not fit the encoder ----------------------------------------------------
@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_support_images_of_another_size_are_refused(make: Make, size: int, wrong: int) -> None:
    learner = make()
    sx, sy = _support(wrong)
    with refused(learner, rf"support inputs of shape \(6, 1, {wrong}, {wrong}\) do not fit"):
        learner.adapt(sx, sy)
    if not isinstance(learner, RelationNet):  # its embedding takes any size: the maps differ
        with refused(learner, rf"support_x has images of {wrong}×{wrong} pixels.*{size}×{size}"):
            learner.adapt(sx, sy)


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_predict_refuses_images_of_another_size(make: Make, size: int, wrong: int) -> None:
    learner = make()
    state = learner.adapt(*_support(size))
    with refused(learner, rf"inputs of shape \(4, 1, {wrong}, {wrong}\) do not fit.*x has"):
        learner.predict(state, _images(4, wrong))


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_images_with_other_channels_are_refused(make: Make, size: int, wrong: int) -> None:
    learner = make()
    sx, sy = _support(size)
    with refused(learner, r"support_x has 3 channel\(s\), the model was built for 1"):
        learner.adapt(_images(len(sx), size, channels=3), sy)
    state = learner.adapt(sx, sy)
    with refused(learner, r"takes \(N, 1, .*x has 3 channel\(s\)"):
        learner.predict(state, _images(4, size, channels=3))


# ---- 4. support sets that cannot be adapted on ------------------------------------------------
@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_support_and_targets_of_different_lengths_are_refused(
    make: Make, size: int, wrong: int
) -> None:
    learner = make()
    sx, sy = _support(size)
    with refused(learner, r"support_x has 5 examples but support_y has 4 targets"):
        learner.adapt(sx[:5], sy[:4])


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_an_empty_support_set_is_refused(make: Make, size: int, wrong: int) -> None:
    learner = make()
    sx, sy = _support(size)
    with refused(learner, r"support_x is empty \(shape \(0, 1, \d+, \d+\)\)"):
        learner.adapt(sx[:0], sy[:0])


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_a_one_class_support_set_is_refused(make: Make, size: int, wrong: int) -> None:
    learner = make()
    sx, _ = _support(size)
    with refused(learner, r"support_y has a single class \(every label is 1\).*at least 2"):
        learner.adapt(sx, torch.ones(len(sx), dtype=torch.long))


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_support_labels_of_shape_n_by_1_are_refused_by_their_shape(
    make: Make, size: int, wrong: int
) -> None:
    # (S, 1) labels were read as S one-label tasks: "support_y of task 0 has a single class"
    learner = make()
    sx, sy = _support(size)
    with refused(
        learner,
        r"support_y must hold one class index per example, shape \(N,\); got "
        r"shape \(6, 1\).*support_y\.reshape\(-1\)",
    ):
        learner.adapt(sx, sy[:, None])


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_a_one_class_task_in_a_training_batch_is_refused(make: Make, size: int, wrong: int) -> None:
    learner = make()
    if isinstance(learner, PretrainBaseline):
        pytest.skip("the baseline is trained on plain batches, not episodes")
    batch = _batch(size)
    batch.support_y[1] = 0
    batch.query_y[1] = 0
    with refused(learner, r"support_y of task 1 has a single class"):
        learner.meta_gradients(batch)


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_inputs_of_another_dtype_or_type_are_refused(make: Make, size: int, wrong: int) -> None:
    learner = make()
    sx, sy = _support(size)
    with refused(learner, r"support_x is torch\.float64 but the model's parameters are"):
        learner.adapt(sx.double(), sy)
    with refused(learner, r"support_x must be a torch\.Tensor, got ndarray"):
        learner.adapt(sx.numpy(), sy)  # type: ignore[arg-type]
    state = learner.adapt(sx, sy)
    with refused(learner, r"x has dtype torch\.uint8; inputs must be floating point"):
        learner.predict(state, (255 * _images(2, size)).to(torch.uint8))
    with refused(learner, r"x is empty"):
        learner.predict(state, _images(0, size))


# ---- regression: non-finite targets, wrong feature counts -------------------------------------
REGRESSORS = [
    pytest.param(lambda m: MAML(m, inner_lr=0.1), id="maml"),
    pytest.param(lambda m: FOMAML(m, inner_lr=0.1), id="fomaml"),
    pytest.param(lambda m: ANIL(m, inner_lr=0.1), id="anil"),
    pytest.param(lambda m: MetaSGD(m, inner_lr=0.1), id="metasgd"),
    pytest.param(lambda m: Reptile(m, inner_lr=0.1), id="reptile"),
]


def _sinusoids() -> TaskBatch:
    return SinusoidTasks(5, 6).sample(3, make_generator(0)).to("cpu", torch.float32)


@pytest.mark.parametrize("make", REGRESSORS)
def test_non_finite_regression_targets_are_refused(
    make: Callable[[nn.Module], MetaLearner],
) -> None:
    torch.manual_seed(0)
    learner = make(MLP(1, 1, (8,)))
    batch = _sinusoids()
    sy = batch.support_y[0].clone()
    sy[2, 0] = float("nan")
    with refused(learner, r"support_y contains 1 NaN value"):
        learner.adapt(batch.support_x[0], sy)
    batch.query_y[2, 4, 0] = float("inf")
    with refused(learner, r"query_y contains 1 infinite value"):
        learner.meta_gradients(batch)


@pytest.mark.parametrize("make", REGRESSORS)
def test_predict_refuses_inputs_with_another_feature_count(
    make: Callable[[nn.Module], MetaLearner],
) -> None:
    torch.manual_seed(0)
    learner = make(MLP(1, 1, (8,)))
    batch = _sinusoids()
    state = learner.adapt(batch.support_x[0], batch.support_y[0])
    with refused(learner, r"takes \(N, 1\): x has 2 features per example, the model .* 1"):
        learner.predict(state, torch.zeros(4, 2))


# ---- encoders that declare no input shape ----------------------------------------------------
def test_predict_refuses_queries_of_another_shape_than_the_support_set() -> None:
    learner = ProtoNet(nn.Identity())  # an encoder that declares no input shape
    state = learner.adapt(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(TaskShapeError, match=r"adapted on support examples of shape \(3,\)"):
        learner.predict(state, torch.randn(2, 5))
    sliced = Conv4(2, width=4, image_size=64).body[:-1]  # slicing drops the declared shape
    assert input_shape_of(sliced) is None
    relation = RelationNet(sliced, (4, 4, 4), width=4, hidden=4, padding=1)
    with pytest.raises(TaskShapeError, match=r"do not fit the encoder: .*channels"):
        relation.adapt(torch.rand(4, 3, 64, 64), torch.tensor([0, 1, 0, 1]))
    state = relation.adapt(torch.rand(4, 1, 64, 64), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(TaskShapeError, match=r"adapted on support examples of shape \(1, 64, 64\)"):
        relation.predict(state, torch.rand(2, 1, 80, 80))


# ---- the checks themselves --------------------------------------------------------------------
def test_check_finite_counts_exactly_and_passes_large_finite_values() -> None:
    big = torch.full((8,), 3e38)  # the sum overflows to inf: the exact count says all finite
    check_finite(big, "big")
    check_finite(torch.tensor([1, 2, 3]), "ints")  # integer tensors cannot hold NaN
    x = torch.zeros(10)
    x[[1, 4]] = float("nan")
    x[7] = -float("inf")
    with pytest.raises(TaskShapeError, match=r"^x contains 2 NaN values and 1 infinite value"):
        check_finite(x, "x")
    x.requires_grad_(True)
    with pytest.raises(TaskShapeError, match="NaN"):
        check_finite(x, "x")


def test_check_classes_names_the_task() -> None:
    check_classes(torch.tensor([[0, 1, 0], [1, 1, 0]]), "support_y")
    with pytest.raises(TaskShapeError, match=r"support_y of task 1 has a single class"):
        check_classes(torch.tensor([[0, 1, 0], [2, 2, 2]]), "support_y")


@pytest.mark.parametrize(("make", "size", "wrong"), LEARNERS)
def test_checks_of_a_good_batch_change_nothing(make: Make, size: int, wrong: int) -> None:
    learner = make()
    batch = _batch(size)
    before = copy.deepcopy(learner.state_dict())
    rng = torch.get_rng_state()
    learner.check_batch(batch)
    learner.check_task(batch.support_x[0], batch.support_y[0])
    assert all(torch.equal(v, learner.state_dict()[k]) for k, v in before.items())
    assert torch.equal(torch.get_rng_state(), rng)


# ---- models record the input shape they were built for -----------------------------------------
def test_models_record_their_input_shape() -> None:
    conv = Conv4(5, in_channels=3, width=4, image_size=32)
    assert conv.input_shape == input_shape_of(conv.body) == (3, 32, 32)
    assert input_shape_of(copy.deepcopy(conv).body) == (3, 32, 32)
    mlp = MLP(4, 1)
    assert mlp.input_shape == input_shape_of(mlp.body) == (4,)
    res = ResNet12(5, widths=(2, 2, 2, 2))
    assert res.input_shape == input_shape_of(res.body) == (3, None, None)
    sized = ResNet12(5, widths=(2, 2, 2, 2), image_size=32)
    assert sized.input_shape == (3, 32, 32)
    assert sized.state_dict().keys() == res.state_dict().keys()  # not part of the weights
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 3, 32, 32\)"):
        sized(torch.rand(2, 3, 40, 40))
    with pytest.raises(ValueError, match="too small for ResNet12"):
        ResNet12(5, image_size=8)
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 3, 32, 32\)"):
        conv(torch.rand(2, 3, 20, 32))  # the height is checked as well as the width
    assert input_shape_of(relation_embedding(3)) == (3, None, None)


def test_encoder_learners_check_the_body_that_conv4_gives_them() -> None:
    learner: EncoderLearner = ProtoNet(_conv4().body)
    sx, sy = _support(16)
    state = learner.adapt(sx, sy)
    assert state.example_shape == (1, 16, 16)
    np.testing.assert_array_equal(learner.predict(state, sx).argmax(-1).shape, (6,))
