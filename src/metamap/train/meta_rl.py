"""Environments as tasks: meta-reinforcement learning as a problem of the unchanged trainer.

A task is an environment's parameters (2D navigation: a goal). One outer step (MAML, Finn et al.
2017, Algorithm 3) draws ``train.meta_batch`` tasks from the trainer's generator, rolls out the
current policy ``task.rollouts`` times in each (the support data), adapts one policy per task,
rolls the adapted policies out (the query data, which exist only after adapting), and hands both
to the learner's ``meta_update`` — TRPO's constrained step for ``maml_trpo``, which updates the
parameters itself (``applied=True``). Every random number (goals and action noise) comes from
that generator, so a resumed run replays bit for bit.

Validation: the mean return after the trained number of adaptation steps on
``train.val_tasks`` fixed goals (seeded apart from the test goals); higher is better.
Evaluation (``metamap eval``): the mean return before adaptation and after each count of
``eval.steps`` on ``eval.tasks`` fixed test goals (MAML: 40 goals, 0-3 steps), mean ± 95% CI
over the goals, each goal's score the mean return of its ``task.rollouts`` episodes; every step
adapts from rollouts of the policy the previous step gave, as the paper's evaluation does. For
environments that report success (Meta-World), each goal's success rate too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
from torch import Tensor

from metamap.core import MetaStep
from metamap.core.learner import Learner, Params
from metamap.errors import ConfigError, NonFiniteRolloutError
from metamap.models import Baseline
from metamap.progress import progress_bar
from metamap.rl import rollout
from metamap.rl.protocol import EnvTaskSection, PolicyLearner, TaskFamily
from metamap.rl.rollout import Rollouts
from metamap.train.build import dtype_of, resolve_device
from metamap.train.config import RunConfig
from metamap.train.distributed import any_rank, mean_over_ranks, rank_and_world, shard_range
from metamap.train.evaluate import summarize
from metamap.train.problems import VAL_SEED_OFFSET, register_problem

__all__ = ["MetaRLProblem"]


@register_problem("meta_rl")
class MetaRLProblem:
    """Environments as tasks: a ``task`` section of environments (``task.family: navigation``)
    and a policy learner (``learner.name: maml_trpo``)."""

    metric, higher_is_better = "return", True

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.section = cast(EnvTaskSection, cfg.task)  # the task section that names this problem
        self.family: TaskFamily = self.section.family_of_tasks()
        self.device = resolve_device(cfg.train.device)
        self.dtype = dtype_of(cfg)

    def base_classes(self) -> int | None:
        return None

    def baseline(self) -> Baseline | None:
        return None

    def prepare(self) -> None:
        """Nothing to load (the environments are built per batch of tasks); a learner that
        needs more episodes per task than ``task.rollouts`` gives is refused now."""
        least = getattr(self.cfg.learner, "min_rollouts", 1)
        if self.section.rollouts < least:
            raise ConfigError(
                f"learner {self.cfg.learner.name!r} needs at least {least} episodes per task and "
                f"step, got task.rollouts={self.section.rollouts}: set task.rollouts to {least} "
                "or more"
            )

    def _test_goals(self) -> Tensor:
        """The ``eval.tasks`` fixed test goals (at least 2: a CI needs them)."""
        e = self.cfg.eval
        if e.tasks < 2:
            raise ConfigError(f"eval.tasks must be at least 2 goals for a CI, got {e.tasks}")
        return self.family.fixed_goals(e.tasks, e.seed, self.dtype).to(self.device)

    def check_evaluation(self, learner: Learner) -> None:
        """Roll out one test goal for one step: too few goals, or a policy that does not fit
        them, fails now."""
        goals = self._test_goals()[:1]
        self._returns(cast(PolicyLearner, learner), goals, [0], self._generator(0))

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def meta_step(self, learner: Learner, generator: torch.Generator) -> MetaStep:
        """One outer step on ``train.meta_batch`` goals. With several processes each rolls out
        its share of the goals (:func:`~metamap.train.distributed.shard_range`), drawing the
        whole batch's action noise so that it samples what one process would, and the learner
        averages across processes (:func:`~metamap.train.distributed.mean_over_ranks`)."""
        policy = cast(PolicyLearner, learner)
        total = self.cfg.train.meta_batch
        goals = self.family.sample_goals(total, generator, self.dtype)
        rank, world = rank_and_world()
        mine = shard_range(total, rank, world)
        envs = self.family.envs(
            goals[mine.start : mine.stop].to(self.device), self.section.rollouts
        )
        shard = (mine.start, total)
        try:
            support = rollout(policy.policy_fn(), envs, generator, shard)
            adapted = policy.adapt_policy(support, training=True)
            query = rollout(policy.policy_fn(adapted), envs, generator, shard)
            failed = False
        except NonFiniteRolloutError:
            failed = True
        if any_rank(failed):  # the trainer stops with the last good checkpoint kept
            nan = torch.tensor(float("nan"))
            return MetaStep(loss=nan, metric=nan, grads={}, applied=True)
        reduce = mean_over_ranks(len(mine), total) if world > 1 else None
        return policy.meta_update(support, query, reduce)

    def _returns(
        self,
        learner: PolicyLearner,
        goals: Tensor,
        steps: list[int],
        g: torch.Generator,
        progress: bool = False,
    ) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
        """Each goal's mean return ``(T,)`` after each count of ``steps`` adaptation steps, and
        its success rate where the environments report success (else no entries).
        ``progress``: a bar of the rounds of rollouts (one per adaptation step), on stderr."""
        out: dict[int, Tensor] = {}
        success: dict[int, Tensor] = {}
        for k, r in self.adaptation_rollouts(learner, goals, max(steps), g, progress):
            if k in steps:
                out[k] = r.returns.mean(1)
                if r.successes is not None:
                    success[k] = r.successes.mean(1)
        return out, success

    def adaptation_rollouts(
        self,
        learner: PolicyLearner,
        goals: Tensor,
        steps: int,
        g: torch.Generator,
        progress: bool = False,
    ) -> Iterator[tuple[int, Rollouts]]:
        """``task.rollouts`` episodes in each of ``goals: (T, P)`` before adapting and after
        each of ``steps`` adaptation steps, ``(k, rollouts)``: each step adapts from the
        previous step's rollouts, as evaluation does. ``progress``: a bar of the rounds."""
        envs = self.family.envs(goals, self.section.rollouts)
        params: Params | None = None
        bar = progress_bar(
            total=steps + 1, desc="evaluating", unit="round", disable=not progress, leave=False
        )
        with bar:
            for k in range(steps + 1):
                bar.set_postfix_str(f"{len(goals)} goals, {k} adaptation steps", refresh=False)
                r: Rollouts = rollout(learner.policy_fn(params), envs, g)
                yield k, r
                if k < steps:
                    params = learner.adapt_policy(r, params, step=k)
                bar.update(1)

    def example_paths(
        self, learner: PolicyLearner, steps: int, count: int = 4
    ) -> tuple[Tensor, list[tuple[int, Rollouts]]]:
        """The first ``count`` fixed test goals ``(count, P)`` and their rollouts before adapting
        and after each of ``steps`` steps (:meth:`adaptation_rollouts`, seeded by ``eval.seed``):
        what a drawing of a policy's paths shows, as the MAML paper's Figure 5."""
        seed = self.cfg.eval.seed
        goals = self.family.fixed_goals(count, seed, self.dtype).to(self.device)
        return goals, list(self.adaptation_rollouts(learner, goals, steps, self._generator(seed)))

    def validate(self, learner: Learner) -> float:
        policy = cast(PolicyLearner, learner)
        seed = self.cfg.seed + VAL_SEED_OFFSET
        goals = self.family.fixed_goals(self.cfg.train.val_tasks, seed, self.dtype, "val")
        k = learner.inner_steps
        returns, _ = self._returns(policy, goals.to(self.device), [k], self._generator(seed))
        return float(returns[k].mean())

    def evaluate(self, learner: Learner, steps: Sequence[int] | None = None) -> dict[str, Any]:
        """Each test goal's return after 0 and each count of ``steps`` (default
        ``eval.steps``) adaptation steps."""
        e = self.cfg.eval
        goals = self._test_goals()
        steps = sorted(set(e.steps if steps is None else steps) | {0})
        policy = cast(PolicyLearner, learner)
        progress = self.cfg.train.progress
        returns, success = self._returns(policy, goals, steps, self._generator(e.seed), progress)
        label = f"{e.tasks} test tasks"
        by_step = {str(k): summarize(v.tolist()).to_dict() for k, v in returns.items()}
        scores = {label: by_step}
        if success:  # the success rate, for environments that report success (Meta-World)
            rates = {str(k): summarize(v.tolist()).to_dict() for k, v in success.items()}
            scores[f"{label}, success rate"] = rates
        return {
            "protocol": f"{self.section.describe()}; {self.cfg.model.describe()}",
            "metric": "return",
            "tasks": e.tasks,
            "seed": e.seed,
            "scores": scores,
        }
