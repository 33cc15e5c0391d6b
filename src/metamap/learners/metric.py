"""Shared base of the encoder-based (metric and closed-form head) few-shot learners.

ProtoNet, Matching Networks, Relation Networks, R2D2 and MetaOptNet-SVM all map a task the same
way: embed the support set with a shared encoder φ, build a task head from the embeddings
in closed form (prototypes, an attention kernel, ridge regression, an SVM), and classify the
queries with it:

    θ_T = fit(f_φ(x^tr), y^tr),        logits = score(θ_T, f_φ(x^ts)).

Only the encoder (and the head's few meta-parameters) are learned, by plain autograd through
``fit`` and ``score``. Subclasses implement :meth:`EncoderLearner.fit` and
:meth:`EncoderLearner.score` on tensors with any leading batch dimensions ``...``: one task
``(S, *E)`` in :meth:`adapt`, a batch ``(B, S, *E)`` in :meth:`meta_loss`.

Labels. A task's support labels must be exactly ``0 .. ways-1`` with every class present
(``ways = support_y.max() + 1``, at least 2), and query labels must lie in ``[0, ways)``; every
task of a batch must have the same number of ways. Anything else raises :class:`TaskShapeError`,
as do inputs that are not finite or do not fit the encoder (:mod:`metamap.learners.checks`).

BatchNorm. By default :meth:`meta_loss` encodes the support and query images of *all* tasks of
the batch in one encoder forward, ``(B, S, C, H, W) -> (B·S, C, H, W)``. In train mode a
BatchNorm layer then normalises with statistics over all ``B·(S+Q)`` images of the batch (and,
under the ``"inductive"`` policy, updates its running statistics once per batch): the result
depends on the other tasks in the batch. ``per_task_forward=True`` encodes task by task (support
and query of one task in one forward), so that each task is normalised with its own statistics
and the batch gradient is exactly the mean of the per-task gradients. In ``eval()`` mode with
running statistics both paths agree. At test time (:meth:`adapt`, :meth:`predict`) the support
and the query set are encoded separately; with ``"transductive"`` BatchNorm each is normalised
with its own statistics, so prefer the ``"inductive"`` policy for these learners (as ProtoNet
and MetaOptNet do).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TypeVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn
from torch.func import functional_call

from metamap.core.task import TaskBatch
from metamap.errors import TaskShapeError
from metamap.learners.base import AdaptedState, MetaLearner, MetaStep
from metamap.learners.checks import check_classes
from metamap.learners.registry import BuildContext, LearnerSection
from metamap.models.layout import channels_last

__all__ = [
    "EncoderLearner",
    "EncoderSection",
    "accuracy",
    "check_labels",
    "expect_state",
]

StateT = TypeVar("StateT", bound=AdaptedState)


def check_labels(support_y: Tensor, query_y: Tensor | None = None) -> int:
    """Validate classification labels of one task ``(S,)`` or a batch ``(B, S)``; return ways.

    Support labels must be exactly ``0..ways-1``, each present, with ``ways ≥ 2``; query labels
    ``(Q,)`` or ``(B, Q)`` must be classes of their task's support set.
    """
    _check_label_tensor(support_y, "support")
    if query_y is not None:
        _check_label_tensor(query_y, "query")
    check_classes(support_y, "support_y")
    sy = support_y.reshape(-1, support_y.shape[-1])
    ways = -1
    for b, y in enumerate(sy):
        classes = torch.unique(y)
        if not torch.equal(classes, torch.arange(len(classes), device=y.device)):
            raise TaskShapeError(
                f"support labels of task {b} are {classes.tolist()}: they must be exactly "
                f"0..ways-1 with every class present in the support set; remap labels per task"
            )
        if ways not in (-1, len(classes)):
            raise TaskShapeError(
                f"task {b} has {len(classes)} ways but task 0 has {ways}; "
                "every task of a batch must have the same number of ways"
            )
        ways = len(classes)
    if query_y is not None:
        qy = query_y.reshape(-1, query_y.shape[-1])
        if len(qy) != len(sy):
            raise TaskShapeError(f"{len(qy)} query label sets for {len(sy)} support sets")
        for b, y in enumerate(qy):
            bad = y[(y < 0) | (y >= ways)]
            if bad.numel():
                raise TaskShapeError(
                    f"query labels of task {b} include {sorted(set(bad.tolist()))}, which have "
                    f"no support example (the support set has classes 0..{ways - 1})"
                )
    return ways


def _check_label_tensor(y: Tensor, name: str) -> None:
    if y.dtype != torch.long or y.dim() not in (1, 2):
        raise TaskShapeError(
            f"{name} labels must be int64 class indices of shape (N,) or (tasks, N); "
            f"got {y.dtype} of shape {tuple(y.shape)}"
        )


def expect_state(state: AdaptedState, cls: type[StateT]) -> StateT:
    """``state`` if it is a ``cls`` (a state from this learner's ``adapt``), else TypeError."""
    if not isinstance(state, cls):
        raise TypeError(f"expected a {cls.__name__} from this learner, got {type(state).__name__}")
    return state


def accuracy(out: Tensor, y: Tensor) -> Tensor:
    """Fraction of ``argmax(out) == y`` over all leading dimensions."""
    return (out.argmax(dim=-1) == y).to(out.dtype).mean()


class EncoderLearner(MetaLearner):
    """Encoder ``self.model`` (images ``(N, ...)`` → embeddings ``(N, *E)``) + closed-form head.

    Subclass hooks: :meth:`fit` (the head from support embeddings), :meth:`score` (query
    outputs, argmax = predicted class) and optionally :meth:`query_loss` (default: cross-entropy).
    """

    flatten: bool = True
    """Flatten embeddings to ``(N, D)`` (all but Relation Networks, which need feature maps)."""

    def __init__(self, encoder: nn.Module, per_task_forward: bool = False) -> None:
        super().__init__()
        self.model = encoder
        self.loss_name = "cross_entropy"
        self.per_task_forward = per_task_forward
        # Episodes of hundreds of images train faster channels-last: 1.62x against 1.03-1.05x
        # in the default layout, relative to easyfsl (benchmarks/speed_easyfsl.py).
        self.use_channels_last(any(isinstance(m, nn.Conv2d) for m in encoder.modules()))

    # ---- hooks ---------------------------------------------------------------------------
    @abstractmethod
    def fit(self, support: Tensor, onehot: Tensor, steps: int | None = None) -> AdaptedState:
        """The task head from support embeddings ``(..., S, *E)`` and one-hot ``(..., S, W)``.

        ``steps`` (from :meth:`adapt`) sets the iterations of iterative heads; others ignore it.
        """

    @abstractmethod
    def score(self, state: AdaptedState, query: Tensor) -> Tensor:
        """Class scores ``(..., Q, W)`` for query embeddings ``(..., Q, *E)``."""

    label_smoothing: float = 0.0
    """ε of :meth:`use_label_smoothing` (0: plain cross-entropy)."""

    def use_label_smoothing(self, eps: float) -> EncoderLearner:
        """Meta-train against smoothed targets: 1 − ε on the true class, ε/(W − 1) on each other.

        MetaOptNet's convention (Lee et al. 2019, ε = 0.1); torch's ``label_smoothing`` spreads
        ε over all W classes instead, so it is given ``ε·W/(W − 1)``. Training loss only.
        """
        if type(self).query_loss is not EncoderLearner.query_loss:
            raise ValueError(
                f"{type(self).__name__} has its own query loss; label smoothing applies to the "
                "cross-entropy of the other encoder learners"
            )
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"label smoothing ε must be in [0, 1), got {eps}")
        self.label_smoothing = float(eps)
        return self

    def query_loss(self, out: Tensor, y: Tensor) -> Tensor:
        """Meta-training loss of ``score`` outputs ``(..., Q, W)`` against labels ``(..., Q)``."""
        ways = out.shape[-1]
        eps = self.label_smoothing * ways / (ways - 1) if ways > 1 else 0.0
        return F.cross_entropy(out.flatten(0, -2), y.flatten(), label_smoothing=eps)

    # ---- the mapping g_φ -------------------------------------------------------------------
    def encoder(self) -> nn.Module:
        """The embedding network itself (``self.model``)."""
        return self.model

    def encode(self, x: Tensor) -> Tensor:
        """Embeddings ``(N, *E)`` of inputs ``(N, ...)``: ``(N, D)`` if :attr:`flatten`."""
        if self.channels_last:
            x = channels_last(x)
        out: Tensor = self.model(x)
        return out.flatten(1) if self.flatten else out

    def onehot(self, y: Tensor, ways: int, like: Tensor) -> Tensor:
        return F.one_hot(y, ways).to(like.dtype)

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        """The task head, detached (``steps``: solver iterations of iterative heads)."""
        self.check_task(support_x, support_y)
        ways = int(support_y.max()) + 1
        with torch.no_grad():
            z = self.encode(support_x)
            state = self.fit(z, self.onehot(support_y, ways, z), steps)
        state.example_shape = tuple(support_x.shape[1:])
        return state

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Class scores ``(N, W)`` for inputs ``(N, ...)``."""
        self.check_query(state, x)
        return self.score(state, self.encode(x))

    # ---- the meta-objective -----------------------------------------------------------------
    def encode_batch(self, support_x: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, S, ...)``, ``(B, Q, ...)`` → embeddings ``(B, S, *E)``, ``(B, Q, *E)``."""
        b, s, q = support_x.shape[0], support_x.shape[1], query_x.shape[1]
        if self.per_task_forward:
            zs = [
                self.encode(torch.cat([sx, qx])) for sx, qx in zip(support_x, query_x, strict=True)
            ]
            return torch.stack([z[:s] for z in zs]), torch.stack([z[s:] for z in zs])
        z = self.encode(torch.cat([support_x.flatten(0, 1), query_x.flatten(0, 1)]))
        return z[: b * s].reshape(b, s, *z.shape[1:]), z[b * s :].reshape(b, q, *z.shape[1:])

    def batch_objective(self, batch: TaskBatch) -> tuple[Tensor, Tensor]:
        """Mean query loss over the tasks of ``batch`` (differentiable) and query accuracy."""
        self.check_batch(batch)
        ways = int(batch.support_y[0].max()) + 1
        zs, zq = self.encode_batch(batch.support_x, batch.query_x)
        out = self.score(self.fit(zs, self.onehot(batch.support_y, ways, zs)), zq)
        return self.query_loss(out, batch.query_y), accuracy(out.detach(), batch.query_y)

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        return self.batch_objective(batch)[0]

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        loss, metric = self.batch_objective(batch)
        return MetaStep(loss.detach(), metric, self.gradients_of(loss))

    # ---- input checks ------------------------------------------------------------------------
    def check_batch_targets(self, batch: TaskBatch) -> None:
        check_labels(batch.support_y, batch.query_y)

    def check_task(self, support_x: Tensor, support_y: Tensor) -> None:
        self.check_support(support_x, support_y)
        self.check_targets(support_y, "support")
        # On copies of the buffers, so that the check never updates BatchNorm running statistics.
        buffers = {k: v.clone() for k, v in self.model.named_buffers()}
        p = next(self.model.parameters(), None)
        try:
            with torch.no_grad():
                x = support_x[:2].to(torch.get_default_dtype() if p is None else p.dtype)
                out: Tensor = functional_call(self.model, buffers, (x,))
        except (ValueError, RuntimeError) as e:
            raise TaskShapeError(
                f"support inputs of shape {tuple(support_x.shape)} do not fit the encoder: {e}"
            ) from e
        try:
            self.check_embedding(out)
        except TaskShapeError as e:
            raise TaskShapeError(
                f"support inputs of shape {tuple(support_x.shape)} do not fit this "
                f"{type(self).__name__}: {e}; give support_x images of the size and channels "
                "the encoder was trained on"
            ) from e

    def check_embedding(self, z: Tensor) -> None:
        """Hook: raise :class:`TaskShapeError` if encoder outputs ``z`` do not suit the head."""

    def check_targets(self, y: Tensor, name: str) -> None:
        if name == "support":
            check_labels(y)
        else:
            _check_label_tensor(y, name)


class EncoderSection(LearnerSection):
    """Settings of the learners built on the model's body alone (metric and closed-form heads):
    image episodes only, any number of ways, Meta-Dataset's variable ones included."""

    regression = False
    fixed_head = False
    variable_ways = True

    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Meta-train against targets 1 − ε / ε/(W − 1) (MetaOptNet: 0.1)."""

    def notes(self) -> list[str]:
        return [f"label smoothing {self.label_smoothing:g}"] * bool(self.label_smoothing)

    def encoder_of(self, ctx: BuildContext) -> nn.Module:
        """The configured model's body: the encoder a head is built on."""
        return ctx.model().get_submodule("body")
