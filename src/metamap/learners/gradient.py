"""Shared machinery of the gradient-based learners (MAML, first-order MAML, ANIL, Meta-SGD).

They differ only in *which* parameters the inner loop adapts, *how large* its steps are, and
whether the outer gradient flows through the inner gradients. Subclasses set those three.

A batch of tasks runs on one of two paths that give the same numbers (tested):

* ``"vmap"``: the tasks in one batched call. For a model without normalisation layers, only
  the forward passes are vmapped and autograd runs on the batched graph: every task adapts its
  own copy of the parameters ``(B, *shape)``, and the gradient of the *summed* support losses
  with respect to those copies is each task's own gradient, tasks being independent (faster than
  nesting ``torch.func.grad`` under ``vmap`` where per-op overhead dominates, as on the sinusoid
  MLP: one transform level instead of three). Otherwise, and for learners with their own per-task
  objective (``batched_objective = False``: ANIL, MAML++), ``vmap(grad(task_objective))``; autograd
  outside ``vmap`` is avoided there since it gave wrong second-order gradients through
  BatchNorm/LayerNorm (pytorch/functorch#534) in the torch releases this library supports.
  Fastest for small fully-connected models.
* ``"loop"``: a Python loop over tasks with ``torch.autograd.grad(create_graph=True)``,
  accumulating each task's gradient. Faster and leaner for convolutional models on CPU.

``"auto"`` (:func:`choose_batching`) picks vmap for models without convolutions, and for
convolutional ones on a CUDA device, where one batched launch beats many small ones; the loop
for running BatchNorm statistics, random masks, and convolutions on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, ClassVar, Literal, TypeVar

import torch
from pydantic import Field, PositiveFloat, PositiveInt, model_validator
from torch import Tensor, nn
from torch.func import functional_call

from metamap.core.task import TaskBatch
from metamap.errors import ConfigError
from metamap.learners.base import AdaptedState, MetaLearner, MetaStep
from metamap.learners.checks import check_step_counts
from metamap.learners.functional import (
    LossName,
    Params,
    StepSize,
    inner_loop,
    loss_function,
    metric_function,
    task_loss_function,
    task_metric_function,
)
from metamap.learners.inner_optim import InnerOptimizer, InnerOptimizerSection
from metamap.learners.minibatch import step_indices
from metamap.learners.registry import BuildContext, LearnerSection
from metamap.models.dropblock import DropBlock2d
from metamap.models.ensemble import ensemble_forward
from metamap.models.layout import default_layout, pinning, pins_layout

__all__ = ["Batching", "GradientLearner", "GradientSection", "StepSizeSection", "choose_batching"]

Batching = Literal["auto", "vmap", "loop"]
_MODEL = "model."
G = TypeVar("G", bound="GradientLearner")


def choose_batching(
    model: nn.Module, batching: Batching, device: torch.device | str | None = None
) -> Literal["vmap", "loop"]:
    """Resolve ``"auto"``; refuse ``"vmap"`` where it cannot work (running BN statistics).

    ``"auto"`` is the loop for models that update running BatchNorm statistics or draw random
    masks (dropout, DropBlock: vmap refuses randomness), ``vmap`` for models without
    convolutions, and for convolutional models ``vmap`` on a CUDA device (measured 11.8× faster
    than the loop for MAML's Conv-4 on an H200) but the loop elsewhere (faster on a CPU, with a
    fraction of the memory: the batching table of docs/design.md).
    ``device`` is where the model will run (default: where its parameters are now).
    """
    running_bn = any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        for m in model.modules()
    )
    if batching == "vmap" and running_bn:
        raise ValueError(
            "batching='vmap' cannot update BatchNorm running statistics per task; "
            "use batch_norm='transductive' or batching='loop'"
        )
    if batching != "auto":
        return batching
    random = any(
        (isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0)
        or (isinstance(m, DropBlock2d) and m.drop_prob > 0)
        for m in model.modules()
    )
    if running_bn or random:
        return "loop"
    if not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        return "vmap"
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return "vmap" if torch.device(device).type == "cuda" else "loop"


class GradientLearner(MetaLearner):
    """θ_T = θ - Σ_k α_k ∇L_support(θ_k): a few steps of gradient descent from a learned θ.

    Subclass hooks: :meth:`step_sizes` (α_k, possibly learned), :attr:`adapt_prefixes` (which
    parameters the inner loop adapts; ``("",)`` = all) and :attr:`second_order`.
    """

    adapt_prefixes: tuple[str, ...] = ("",)
    second_order: bool = True
    functional_adapt: ClassVar[bool] = True
    """Its adaptation is :meth:`_adapt` (so :meth:`predict_tasks` may vmap it); a learner that
    adapts otherwise (MAML++'s per-step normalisation) says ``False``."""
    batched_objective: ClassVar[bool] = True
    """Its per-task objective is :meth:`task_objective` as written here (adapt, then the query
    loss), so the vmap path may run it on batched parameter copies (:meth:`_batched_step`); a
    learner that overrides the objective says ``False``."""

    def __init__(
        self,
        model: nn.Module,
        loss: LossName = "mse",
        inner_steps: int = 1,
        batching: Batching = "auto",
    ) -> None:
        super().__init__()
        if inner_steps < 1:
            raise ValueError(f"inner_steps must be at least 1, got {inner_steps}")
        if batching not in ("auto", "vmap", "loop"):
            raise ValueError(f"batching must be 'auto', 'vmap' or 'loop', got {batching!r}")
        self.model = model
        self.loss_name = loss
        self.inner_steps = inner_steps
        self.batching = choose_batching(model, batching)
        self._normalises = _normalises(model)  # layers are not added after construction
        self._loss = loss_function(loss)
        self._metric = metric_function(loss)
        self._task_losses = task_loss_function(loss)
        self._task_metrics = task_metric_function(loss)
        self.inner_batch: int | None = None
        """Examples of the support set each inner step trains on (Reptile's inner minibatches,
        :mod:`metamap.learners.minibatch`); ``None``: all of them."""
        self.inner_optimizer: InnerOptimizer[Any] | None = None
        """The inner loop's update rule (:mod:`metamap.learners.inner_optim`); ``None``: plain
        gradient descent."""
        # Channels-last pays only where the model pins the layout through second-order gradients
        # (Conv-4 does: 1.33x learn2learn on Omniglot-shaped MAML); elsewhere layouts mix.
        self.use_channels_last(pins_layout(model) and self.batching == "loop")

    def use_channels_last(self, enabled: bool = True) -> GradientLearner:
        """Channels-last on the per-task loop path (torch cannot vmap channels-last weights)."""
        if enabled and self.batching == "vmap":
            raise ValueError(
                "channels-last needs batching='loop': torch.func.vmap does not support "
                "channels-last weights; use batching='loop' (the default for convolutions)"
            )
        super().use_channels_last(enabled)
        return self

    def use_inner_optimizer(self: G, optimizer: InnerOptimizer[Any] | None) -> G:
        """Adapt with ``optimizer``'s updates (momentum SGD, Adam: differentiable, so the
        meta-gradient stays exact) instead of plain gradient steps; ``None`` restores those.
        Each adaptation starts from the optimizer's initial state (zero moments)."""
        self.inner_optimizer = optimizer
        return self

    # ---- hooks -------------------------------------------------------------------------
    def step_sizes(self, meta: Params, steps: int) -> list[StepSize]:
        """α for each of ``steps`` inner steps, read from the meta-parameters ``meta``."""
        raise NotImplementedError

    def _adapted(self, name: str) -> bool:
        return any(name.startswith(p) for p in self.adapt_prefixes)

    def adapt_only(self, prefixes: Sequence[str]) -> GradientLearner:
        """Adapt only the model parameters whose names start with one of ``prefixes`` (MeLU's
        local update of the decision layers: ``["decision."]``); the others are meta-learned
        and shared by every task. Raises, naming the model's parameters, for a prefix that
        matches none."""
        names = [n for n, _ in self.model.named_parameters()]
        if not prefixes:
            raise ValueError("adapt_only needs at least one parameter-name prefix")
        for p in prefixes:
            if not any(n.startswith(p) for n in names):
                raise ValueError(
                    f"no model parameter name starts with {p!r}; the model has: {', '.join(names)}"
                )
        self.adapt_prefixes = tuple(prefixes)
        return self

    # ---- the mapping g_φ ----------------------------------------------------------------
    def _split(self, meta: Params) -> tuple[Params, Params]:
        model_p = {k[len(_MODEL) :]: v for k, v in meta.items() if k.startswith(_MODEL)}
        fast = {k: v for k, v in model_p.items() if self._adapted(k)}
        frozen = {k: v for k, v in model_p.items() if not self._adapted(k)}
        return fast, frozen

    def _run(self, params: Params, x: Tensor, part: str | None = None) -> Tensor:
        buffers = dict(self.model.named_buffers())
        kwargs = {} if part is None else {"part": part}
        out: Tensor = functional_call(self.model, (params, buffers), (x,), kwargs)
        return out

    @property
    def stem_once(self) -> bool:
        """Whether the inner loop may run on the model's top alone: the model splits its
        forward into ``part="stem"`` and ``part="top"`` (``top_parameters``: what the top
        uses) and every adapted parameter is a top one, so the stem's output is the same at
        every inner step and is computed once per task (MeLU with its local update)."""
        top = getattr(self.model, "top_parameters", None)
        if not isinstance(top, tuple) or self.channels_last:
            return False
        names = [n for n, _ in self.model.named_parameters() if self._adapted(n)]
        return bool(names) and all(any(n.startswith(t) for t in top) for n in names)

    def _minibatches(
        self, y: Tensor, steps: int, first: int = 0, tasks: bool = False
    ) -> list[Tensor] | None:
        """The support rows of inner steps ``first … first + steps - 1`` with
        :attr:`inner_batch` (:func:`~metamap.learners.minibatch.step_indices`), one tensor per
        step: ``(size,)`` for one task's targets ``y: (S, ...)``, ``(B, size)`` for a batch's
        ``y: (B, S, ...)`` with ``tasks``; ``None`` where every step takes the whole support."""
        size = self.inner_batch
        if size is None or size >= y.shape[int(tasks)]:
            return None
        if not tasks:
            return list(step_indices(y, size, steps, first).unbind(0))
        return list(torch.stack([step_indices(t, size, steps, first) for t in y]).unbind(1))

    def _step_losses(
        self,
        loss_on: Callable[[Tensor, Tensor], Callable[[Params], Tensor]],
        x: Tensor,
        y: Tensor,
        steps: int,
        first: int,
    ) -> Callable[[Params], Tensor] | list[Callable[[Params], Tensor]]:
        """``loss_on(x, y)`` for every inner step, or with :attr:`inner_batch` each step's loss
        on its own minibatch (:meth:`_minibatches`) of the support ``x: (S, ...)``,
        ``y: (S, ...)``."""
        rows = self._minibatches(y, steps, first)
        return loss_on(x, y) if rows is None else [loss_on(x[i], y[i]) for i in rows]

    def _adapt(
        self,
        meta: Params,
        sx: Tensor,
        sy: Tensor,
        sizes: Sequence[StepSize],
        create_graph: bool,
        use_func: bool,
        first_step: int = 0,
    ) -> tuple[Params, list[Tensor]]:
        """Adapt from the meta-parameters; returns the full adapted model parameter dict.
        ``first_step``: the index of the first of these steps (which minibatch it takes)."""
        fast, frozen = self._split(meta)
        steps = len(sizes)
        if self.stem_once:  # the stem's output does not depend on what the steps adapt
            z = self._run(frozen, sx, "stem")
            fast, losses = inner_loop(
                self._step_losses(
                    lambda x, y: lambda p: self._loss(self._run({**frozen, **p}, x, "top"), y),
                    z,
                    sy,
                    steps,
                    first_step,
                ),
                fast,
                sizes,
                create_graph=create_graph,
                use_func=use_func,
                optimizer=self.inner_optimizer,
            )
            return {**frozen, **fast}, losses
        support_frozen = frozen
        layout: AbstractContextManager[None] = nullcontext()
        if self.channels_last:
            # The support pass is differentiated twice, and torch's BatchNorm double backward
            # mixes layouts (its per-channel terms come out NCHW): channels-last is slower there
            # (markedly at 5 shots), so the inner loop runs in the default layout and only the
            # query pass runs channels-last.
            fast = {k: default_layout(v) for k, v in fast.items()}
            support_frozen = {k: default_layout(v) for k, v in frozen.items()}
            layout = pinning(self.model, False)
        with layout:
            fast, losses = inner_loop(
                self._step_losses(
                    lambda x, y: lambda p: self._loss(self._run({**support_frozen, **p}, x), y),
                    sx,
                    sy,
                    steps,
                    first_step,
                ),
                fast,
                sizes,
                create_graph=create_graph,
                use_func=use_func,
                optimizer=self.inner_optimizer,
            )
        return {**frozen, **fast}, losses

    def task_objective(
        self, meta: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor, use_func: bool
    ) -> tuple[Tensor, Tensor]:
        """L(θ_T, D^ts) and the query metric for one task, as a function of φ = ``meta``."""
        sizes = self.step_sizes(meta, self.inner_steps)
        adapted, _ = self._adapt(meta, sx, sy, sizes, self.second_order, use_func)
        pred = self._run(adapted, qx)
        return self._loss(pred, qy), self._metric(pred.detach(), qy)

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None) -> AdaptedState:
        """Fine-tune on the support set for ``steps`` (default: the training number) steps."""
        k = self.inner_steps if steps is None else steps
        return self.adapt_trace(support_x, support_y, [k])[k]

    def adapt_trace(
        self, support_x: Tensor, support_y: Tensor, steps: Sequence[int]
    ) -> dict[int, AdaptedState]:
        """The adapted model after each step count in ``steps``, from one run of ``max(steps)``.

        Steps beyond those trained reuse the last step size.
        """
        self.check_task(support_x, support_y)
        check_step_counts(steps)
        meta = {k: v.detach().requires_grad_(True) for k, v in self.named_parameters()}
        buffers = dict(self.model.named_buffers())
        out: dict[int, AdaptedState] = {}
        losses: list[float] = []
        done = 0
        start = dict(meta)
        for k in sorted(set(steps)):
            if k > done and self.inner_optimizer is not None:  # its state starts at step 0
                meta, losses, done = dict(start), [], 0
            if k > done:
                sizes = self.step_sizes(meta, k)[done:]
                with torch.enable_grad():
                    adapted, ls = self._adapt(
                        meta, support_x, support_y, sizes, False, False, first_step=done
                    )
                meta.update(
                    {_MODEL + n: v.detach().requires_grad_(True) for n, v in adapted.items()}
                )
                losses += [float(v) for v in ls]
                done = k
            params = {n[len(_MODEL) :]: v.detach() for n, v in meta.items() if n.startswith(_MODEL)}
            out[k] = AdaptedState(params, buffers, list(losses), tuple(support_x.shape[1:]))
        return out

    def predict(self, state: AdaptedState, x: Tensor) -> Tensor:
        """Outputs ``(N, *out)`` of the adapted model on ``x: (N, *feature)``."""
        self.check_query(state, x)
        out: Tensor = functional_call(self.model, (state.params, state.buffers), (x,))
        return out

    def predict_tasks(self, batch: TaskBatch, steps: int | None = None) -> Tensor:
        """Every task adapted and its queries predicted ``(B, Q, *out)``, as one vmapped call on
        the vmap path (padded NaN-target rows drop out of the ``masked_mse`` support loss, so
        each task adapts as alone: tested against the task-by-task default)."""
        if self.batching != "vmap" or not self.functional_adapt:
            return super().predict_tasks(batch, steps)
        self.check_batch(batch)
        k = self.inner_steps if steps is None else steps
        check_step_counts([k])
        meta = {n: v.detach() for n, v in self.named_parameters()}
        sizes = self.step_sizes(meta, k) if k else []

        def one(sx: Tensor, sy: Tensor, qx: Tensor) -> Tensor:
            adapted, _ = self._adapt(meta, sx, sy, sizes, False, use_func=True)
            return self._run(adapted, qx)

        out: Tensor = torch.func.vmap(one)(batch.support_x, batch.support_y, batch.query_x)
        return out.detach()

    # ---- the meta-gradient over a batch of tasks ----------------------------------------
    def meta_gradients(self, batch: TaskBatch) -> MetaStep:
        self.check_batch(batch)
        if self.batching == "vmap":
            return self._meta_gradients_vmap(batch)
        return self._meta_gradients_loop(batch)

    def _meta_gradients_vmap(self, batch: TaskBatch) -> MetaStep:
        if self.batched_objective and not self._normalises:
            return self._batched_step(batch)
        meta = {k: v.detach() for k, v in self.named_parameters()}

        def objective(
            m: Params, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor
        ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            loss, metric = self.task_objective(m, sx, sy, qx, qy, use_func=True)
            return loss, (loss.detach(), metric)

        per_task = torch.func.grad(objective, has_aux=True)

        grads, (losses, metrics) = torch.func.vmap(per_task, in_dims=(None, 0, 0, 0, 0))(
            meta, *batch.tensors()
        )
        loss, metric = _mean_loss(losses, metrics)
        return MetaStep(loss, metric, {k: g.mean(0) for k, g in grads.items()})

    def _batched_step(self, batch: TaskBatch) -> MetaStep:
        """The meta-gradient with the forward passes batched and autograd on the batched graph
        (:meth:`_adapt_each`): the mean query loss is differentiated once, through every inner
        step, to the meta-parameters."""
        names, values = zip(*self.named_parameters(), strict=True)
        meta = dict(zip(names, values, strict=True))
        adapted, run_each = self._adapt_each(meta, batch, self.second_order)
        pred = run_each(adapted, batch.query_x)
        losses = self._task_losses(pred, batch.query_y)
        metrics = self._task_metrics(pred.detach(), batch.query_y)
        grads = torch.autograd.grad(losses.mean(), values, allow_unused=True)
        zero = torch.zeros_like
        out = {k: zero(v) if g is None else g for k, v, g in zip(names, values, grads, strict=True)}
        loss, metric = _mean_loss(losses, metrics)
        return MetaStep(loss, metric, out)

    def _adapt_each(
        self, meta: Params, batch: TaskBatch, create_graph: bool
    ) -> tuple[Params, Callable[[Params, Tensor], Tensor]]:
        """Every task of ``batch`` adapted at once from ``meta`` (which must require grad): the
        inner loop adapts ``(B, *shape)`` copies of the adapted parameters by the gradient of
        the summed support losses (each copy's is its own task's, tasks being independent).

        Returns the adapted copies and ``run_each(copies, x)``: the model on ``x: (B, N, ...)``
        with each task's copy, as one call of the model's own ``forward_each`` where it has one
        (:mod:`metamap.models.ensemble`: the MLP), else as ``vmap`` of ``functional_call``. The
        B task losses are computed batched (:func:`task_loss_function`)."""
        sx, sy = batch.support_x, batch.support_y
        fast, frozen = self._split(meta)
        fast = {k: v.expand(len(batch), *v.shape) for k, v in fast.items()}
        vmap = torch.func.vmap
        part = "top" if self.stem_once else None
        # MeLU's stem runs once per task; the inner steps run on its top
        zs = vmap(lambda x: self._run(frozen, x, "stem"))(sx) if part else sx
        ensemble = ensemble_forward(self.model)

        def run_each(p: Params, x: Tensor, part: str | None = None) -> Tensor:
            if ensemble is not None and part is None:
                return ensemble.forward_each({**frozen, **p}, x)
            out: Tensor = vmap(lambda q, xi: self._run({**frozen, **q}, xi, part))(p, x)
            return out

        def summed_on(x: Tensor, y: Tensor) -> Callable[[Params], Tensor]:
            return lambda p: self._task_losses(run_each(p, x, part), y).sum()

        picks = self._minibatches(sy, self.inner_steps, tasks=True)  # each task's own rows
        task = torch.arange(len(batch), device=sy.device)[:, None]
        adapted, _ = inner_loop(
            summed_on(zs, sy)
            if picks is None
            else [summed_on(zs[task, i], sy[task, i]) for i in picks],
            fast,
            self.step_sizes(meta, self.inner_steps),
            create_graph=create_graph,
            use_func=False,
            optimizer=self.inner_optimizer,
        )
        return adapted, run_each

    def _meta_gradients_loop(self, batch: TaskBatch) -> MetaStep:
        names, values = zip(*self.named_parameters(), strict=True)
        meta = dict(zip(names, values, strict=True))
        total = [torch.zeros_like(v) for v in values]
        losses, metrics = [], []
        n = len(batch)
        for sx, sy, qx, qy in zip(*batch.tensors(), strict=True):
            loss, metric = self.task_objective(meta, sx, sy, qx, qy, use_func=False)
            gs = torch.autograd.grad(loss / n, values, allow_unused=True)
            for acc, g in zip(total, gs, strict=True):
                if g is not None:
                    acc.add_(g)
            losses.append(loss.detach())
            metrics.append(metric)
        loss_m, metric_m = _mean_loss(torch.stack(losses), torch.stack(metrics))
        return MetaStep(loss_m, metric_m, dict(zip(names, total, strict=True)))

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        self.check_batch(batch)
        meta: Params = dict(self.named_parameters())
        losses = [
            self.task_objective(meta, sx, sy, qx, qy, use_func=False)[0]
            for sx, sy, qx, qy in zip(*batch.tensors(), strict=True)
        ]
        return torch.stack(losses).mean()


def _normalises(model: nn.Module) -> bool:
    """Whether ``model`` has a normalisation layer (batch, layer, group or instance norm)."""
    kinds = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    return any(isinstance(m, kinds) for m in model.modules())


def _mean_loss(losses: Tensor, metrics: Tensor) -> tuple[Tensor, Tensor]:
    return losses.detach().mean(), metrics.detach().mean()


class GradientSection(LearnerSection):
    """Settings every gradient-based learner has: its inner steps and how tasks are batched."""

    shards_exactly: ClassVar[bool] = True

    inner_steps: PositiveInt = 1
    batching: Batching = "auto"
    """``vmap`` (tasks in one batched call), ``loop`` (one by one) or ``auto`` (vmap on a
    GPU); both give the same answer (tested)."""
    adapt: list[str] = Field(default_factory=list)
    """Prefixes of the parameter names the inner loop adapts (MeLU's local update:
    ``[decision.]``); empty: the learner's own choice (every parameter; the head for ANIL)."""
    inner_optimizer: InnerOptimizerSection = Field(default_factory=InnerOptimizerSection)
    """The inner loop's update rule: plain gradient descent (``sgd``, the default), momentum
    SGD, Adam or AdamW, all differentiated exactly (:mod:`metamap.learners.inner_optim`)."""

    def notes(self) -> list[str]:
        optimizer = self.inner_optimizer.build()
        return [] if optimizer is None else [f"inner {optimizer.describe()}"]

    def restrict(self, learner: G) -> G:
        """``learner`` adapting only the parameters ``adapt`` names (all when it is empty), with
        the update rule ``inner_optimizer`` names."""
        learner.use_inner_optimizer(self.inner_optimizer.build())
        if self.adapt:
            try:
                learner.adapt_only(self.adapt)
            except ValueError as e:
                raise ConfigError(f"learner.adapt {self.adapt}: {e}") from None
        return learner

    def draws_in_vmap(self) -> bool:
        return self.batching == "vmap"


class StepSizeSection(GradientSection):
    """Gradient learners with a step size per inner step, fixed or learned (MAML's family):
    a subclass names the learner class (``learner_class``) and whether it is first order."""

    learner_class: ClassVar[Callable[..., GradientLearner]]

    inner_lr: PositiveFloat | list[PositiveFloat] = 0.01
    """α: one value, or one per inner step."""
    learn_inner_lr: bool = False
    """Meta-learn α (one per step) with the initialisation."""

    @model_validator(mode="after")
    def _one_rate_per_step(self) -> StepSizeSection:
        if isinstance(self.inner_lr, list) and len(self.inner_lr) not in (1, self.inner_steps):
            raise ValueError(
                f"inner_lr has {len(self.inner_lr)} values; give one or one per inner step "
                f"({self.inner_steps})"
            )
        return self

    def is_first_order(self) -> bool:
        """Whether inner gradients are constants in the meta-gradient (first-order MAML)."""
        return False

    def build(self, ctx: BuildContext) -> GradientLearner:
        make = type(self).learner_class
        learner = make(
            ctx.model(),
            ctx.loss,
            self.inner_steps,
            self.inner_lr,
            self.learn_inner_lr,
            self.is_first_order(),
            self.batching,
        )
        return self.restrict(learner)
