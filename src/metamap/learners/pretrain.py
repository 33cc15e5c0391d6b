"""The pre-train-then-fine-tune baseline.

Chen, Liu, Kira, Wang & Huang, "A Closer Look at Few-shot Classification", ICLR 2019, and Tian,
Wang, Krishnan, Tenenbaum & Isola, "Rethinking Few-Shot Image Classification: a Good Embedding
Is All You Need?", ECCV 2020. No episodes: the encoder is trained by ordinary supervised learning
on all base classes with a linear classifier on top (cross-entropy), then frozen; at test time a
new head is fitted on the support features of each task:

* ``head="prototype"`` — nearest centroid on L2-normalised features: logits
  ``−‖ẑ − c_k‖²`` with c_k the mean normalised support feature of class k;
* ``head="logistic"`` — multinomial logistic regression on L2-normalised features (Tian et al.),
  ``min_{W,b} ½‖W‖² + C Σ_n CE(W ẑ_n + b, y_n)`` (scikit-learn's convention), solved from zero
  by full-batch L-BFGS with strong-Wolfe line search (deterministic) for ``logistic_steps``
  iterations.

Training: call :meth:`PretrainBaseline.supervised_gradients` on batches of base-class images
``(N, ...)`` and labels ``(N,)`` (or :meth:`PretrainBaseline.pretrain_step` with an optimizer).
``meta_gradients`` raises: the baseline has no episodic objective. Tian et al.'s
self-distillation and Chen et al.'s cosine classifier (Baseline++) are not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metamap.core.task import TaskBatch
from metamap.errors import TaskShapeError
from metamap.learners.base import AdaptedState, MetaStep
from metamap.learners.checks import check_same_length
from metamap.learners.metric import EncoderLearner, accuracy, expect_state
from metamap.learners.protonet import PrototypeState, class_means
from metamap.learners.registry import BuildContext, LearnerSection, register_learner

__all__ = ["LinearState", "PretrainBaseline", "PretrainSection", "fit_logistic"]

Head = Literal["prototype", "logistic"]


@dataclass(kw_only=True)
class LinearState(AdaptedState):
    """A linear classifier on normalised features: ``weight`` ``(W, D)``, ``bias`` ``(W,)``."""

    weight: Tensor
    bias: Tensor


def fit_logistic(
    z: Tensor, onehot: Tensor, c: float = 1.0, steps: int = 100
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression ``min ½‖W‖² + c Σ_n CE(W z_n + b, y_n)`` from zero.

    ``z`` ``(..., S, D)`` features, ``onehot`` ``(..., S, W)`` → ``weight`` ``(..., W, D)``,
    ``bias`` ``(..., W)`` (detached). Full-batch L-BFGS with strong-Wolfe line search:
    deterministic; every task of a batch is solved jointly (the objective is a sum over tasks).
    """
    z = z.detach()
    ways, lead = onehot.shape[-1], onehot.shape[:-2]
    w = z.new_zeros((*lead, ways, z.shape[-1]), requires_grad=True)
    b = z.new_zeros((*lead, ways), requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1,
        max_iter=steps,
        tolerance_grad=1e-9,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def objective() -> Tensor:
        logits = z @ w.mT + b.unsqueeze(-2)
        ce = -(onehot * logits.log_softmax(dim=-1)).sum()
        loss = 0.5 * w.pow(2).sum() + c * ce
        w.grad, b.grad = torch.autograd.grad(loss, (w, b))
        return loss.detach()

    with torch.enable_grad():
        opt.step(objective)  # type: ignore[no-untyped-call]
    return w.detach(), b.detach()


class PretrainBaseline(EncoderLearner):
    """Supervised pre-training on base classes; a prototype or logistic head per test task."""

    def __init__(
        self,
        encoder: nn.Module,
        num_base_classes: int,
        feature_dim: int | None = None,
        head: Head = "prototype",
        logistic_c: float = 1.0,
        logistic_steps: int = 100,
    ) -> None:
        """``feature_dim`` defaults to ``encoder.feature_dim`` where the encoder has one."""
        super().__init__(encoder)
        if head not in ("prototype", "logistic"):
            raise ValueError(f"head must be 'prototype' or 'logistic', got {head!r}")
        dim = feature_dim if feature_dim is not None else getattr(encoder, "feature_dim", None)
        if not isinstance(dim, int):
            raise ValueError("give feature_dim: the size D of the encoder's (N, D) features")
        self.head_type = head
        self.logistic_c = logistic_c
        self.logistic_steps = logistic_steps
        self.classifier = nn.Linear(dim, num_base_classes)

    # ---- supervised pre-training on the base classes ---------------------------------------
    def supervised_loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Base-classifier cross-entropy and accuracy on images ``(N, ...)``, labels ``(N,)``."""
        self.check_inputs(x, "x")
        n = self.classifier.out_features
        ok = y.dtype == torch.long and y.dim() == 1 and y.numel() > 0
        if not ok or int(y.min()) < 0 or int(y.max()) >= n:
            values = f" with values {int(y.min())}..{int(y.max())}" if ok else ""
            raise TaskShapeError(
                f"base-class labels must be int64 of shape (N,) in [0, {n}); got {y.dtype} "
                f"of shape {tuple(y.shape)}{values}"
            )
        check_same_length(x, y, "x", "y")
        logits = self.classifier(self.encode(x))
        return F.cross_entropy(logits, y), accuracy(logits.detach(), y)

    def supervised_gradients(self, x: Tensor, y: Tensor) -> MetaStep:
        """Loss, accuracy and gradients (keyed like ``named_parameters()``) of one batch."""
        loss, metric = self.supervised_loss(x, y)
        named = [(k, p) for k, p in self.named_parameters() if p.requires_grad]
        gs = torch.autograd.grad(loss, [p for _, p in named])
        return MetaStep(loss.detach(), metric, {k: g for (k, _), g in zip(named, gs, strict=True)})

    def pretrain_step(self, x: Tensor, y: Tensor, optimizer: torch.optim.Optimizer) -> MetaStep:
        """One optimizer step of supervised pre-training."""
        step = self.supervised_gradients(x, y)
        self.apply_gradients(step)
        optimizer.step()
        return step

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        raise NotImplementedError(
            "PretrainBaseline has no episodic meta-objective: train it with "
            "supervised_gradients(x, y) (or pretrain_step) on batches of base-class images"
        )

    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        raise NotImplementedError(
            "PretrainBaseline is not meta-trained: use supervised_gradients(x, y) (or "
            "pretrain_step) on batches of base-class images, then adapt/predict on test tasks"
        )

    # ---- the test-time head ------------------------------------------------------------------
    def fit(self, support: Tensor, onehot: Tensor, steps: int | None = None) -> AdaptedState:
        z = F.normalize(support, dim=-1).detach()
        if self.head_type == "prototype":
            return PrototypeState(prototypes=class_means(z, onehot))
        return self._logistic(z, onehot, self.logistic_steps if steps is None else steps)

    def _logistic(self, z: Tensor, onehot: Tensor, steps: int) -> LinearState:
        w, b = fit_logistic(z, onehot, self.logistic_c, steps)
        return LinearState(weight=w, bias=b)

    def score(self, state: AdaptedState, query: Tensor) -> Tensor:
        z = F.normalize(query, dim=-1)
        if isinstance(state, PrototypeState):
            return -(z.unsqueeze(-2) - state.prototypes.unsqueeze(-3)).pow(2).sum(dim=-1)
        linear = expect_state(state, LinearState)
        return z @ linear.weight.mT + linear.bias.unsqueeze(-2)


@register_learner
class PretrainSection(LearnerSection):
    """``learner: {name: pretrain}`` — the pre-train + fine-tune baseline: supervised batches of
    ``train.batch_size`` base-class images in training, a ``head`` per test task."""

    name: Literal["pretrain"] = "pretrain"
    head: Head = "prototype"
    """Test-time head: nearest centroid or logistic regression on normalised features."""

    regression = False
    fixed_head = False
    supervised = True
    problem = "pretrain"

    def build(self, ctx: BuildContext) -> PretrainBaseline:
        if ctx.base_classes is None:
            raise ValueError("learner 'pretrain' needs base_classes (the training classes)")
        model = ctx.model()
        dim = int(getattr(model, "feature_dim"))  # noqa: B009 - Conv4 and ResNet12 both have it
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed + 1)
            return PretrainBaseline(
                model.get_submodule("body"), ctx.base_classes, dim, head=self.head
            )
