"""The two next kinds of task fit the core without changing the trainer.

Two small but real problems, each trained by the unchanged :class:`~metamap.train.Trainer`:

* **users as tasks** — a toy recommender: items have hidden feature vectors, each user a hidden
  taste; a user's ratings are the support and query sets, the inputs are int64 item indices into
  an embedding, and users rate different numbers of items (ragged support sets, no padding);
* **environments as tasks** — a family of multi-armed bandits (one good arm per task): the
  support data are pulls of the current policy, the query data are pulls of the *adapted*
  policy, and the outer update is the problem's own normalised-gradient step, not an optimizer's
  (as TRPO's would be).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import torch
from pydantic import PositiveInt
from torch import Tensor, nn
from torch.func import functional_call

from metamap.core import MetaStep, Task
from metamap.errors import ConfigError, TaskShapeError
from metamap.learners import MAML, MetaLearner, ragged_meta_gradients
from metamap.models import MODELS, ModelContext, ModelSection, register_model, set_input_dtype
from metamap.tasks import TASKS, TaskSection, register_task
from metamap.train import (
    PROBLEMS,
    RunConfig,
    Trainer,
    evaluate,
    load_checkpoint,
    load_config,
    parse_config,
    register_problem,
)

TRAIN = ["train.progress=false", "train.log_every=10", "train.val_every=20"]


# ---- users as tasks -------------------------------------------------------------------------
class Ratings(nn.Module):
    """A rating model: item embeddings (meta-learned) and a taste vector (adapted per user).
    Input ``(N, 1)`` int64 item ids, output ``(N, 1)`` predicted ratings."""

    def __init__(self, items: int, dim: int) -> None:
        super().__init__()
        self.items = nn.Embedding(items, dim)
        self.taste = nn.Linear(dim, 1)
        set_input_dtype(self, torch.long)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.taste(self.items(x[:, 0]))
        return out


class ToyUsers:
    """Users with 3-12 ratings each (10 held out as queries): rating = taste · item + noise."""

    metric, higher_is_better = "mse", False

    def __init__(self, items: int = 40, dim: int = 4, meta_batch: int = 8) -> None:
        g = torch.Generator().manual_seed(123)
        self.item_vectors = torch.randn(items, dim, generator=g)
        self.meta_batch = meta_batch
        self.fixed = [self.user(torch.Generator().manual_seed(10_000 + i)) for i in range(40)]

    def user(self, g: torch.Generator) -> Task:
        taste = torch.randn(self.item_vectors.shape[1], generator=g)
        rated = int(torch.randint(3, 13, (), generator=g)) + 10
        items = torch.randperm(len(self.item_vectors), generator=g)[:rated]
        ratings = self.item_vectors[items] @ taste + 0.1 * torch.randn(rated, generator=g)
        x, y = items[:, None], ratings[:, None]
        return Task(x[10:], y[10:], x[:10], y[:10])

    def prepare(self) -> None:
        pass

    def meta_step(self, learner: MetaLearner, generator: torch.Generator) -> MetaStep:
        users = [self.user(generator) for _ in range(self.meta_batch)]
        assert len({u.shots for u in users}) > 1  # ragged: users rate different numbers
        return ragged_meta_gradients(learner, users)

    def validate(self, learner: MetaLearner) -> float:
        return evaluate(learner, self.fixed, [learner.inner_steps])[learner.inner_steps].mean

    def evaluate(self, learner: MetaLearner, steps: Sequence[int] | None = None) -> dict[str, Any]:
        return {"mse": self.validate(learner)}


def _users_trainer(out: Path, steps: int) -> Trainer:
    cfg = load_config(None, [*TRAIN, f"train.steps={steps}", "train.lr=0.03", "seed=3"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        learner = MAML(Ratings(40, 4), loss="mse", inner_steps=2, inner_lr=0.1)
    return Trainer(cfg, out, problem=ToyUsers(), learner=learner)


def test_users_as_tasks_train_and_resume_with_the_unchanged_trainer(tmp_path: Path) -> None:
    fresh = _users_trainer(tmp_path / "fresh", 200)
    before = fresh.validate()
    fresh.fit()
    after = fresh.validate()
    assert after < 0.4 * before, (before, after)  # the meta-learned items and start pay off
    part = _users_trainer(tmp_path / "part", 200)
    part.fit(stop_after=110)  # killed; the last checkpoint is from step 100
    resumed = _users_trainer(tmp_path / "part", 200)
    resumed.fit()
    a = load_checkpoint(fresh.last_path)["learner"]
    b = load_checkpoint(resumed.last_path)["learner"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_user_task_refuses_float_ids_for_an_embedding_model() -> None:
    learner = MAML(Ratings(40, 4), loss="mse")
    with pytest.raises(TaskShapeError, match=r"takes torch\.int64 inputs"):
        learner.adapt(torch.zeros(5, 1), torch.zeros(5, 1))


@pytest.fixture
def users_plugin() -> Iterator[None]:
    """Users as tasks registered as a plug-in would be, after metamap.train was imported: a
    ``task`` section naming its problem, the problem, and the rating network's ``model``
    section. Nothing in metamap changes."""

    @register_task
    class ToyUsersTask(TaskSection):
        family: Literal["toy_users"] = "toy_users"
        items: PositiveInt = 40

        def problem(self) -> str:
            return "toy_users"

    @register_model
    class RatingsModel(ModelSection):
        name: Literal["ratings"] = "ratings"
        dim: PositiveInt = 4
        images: ClassVar[bool] = False

        def build(self, ctx: ModelContext) -> nn.Module:
            return Ratings(40, self.dim)

    @register_problem("toy_users")
    class ToyUsersProblem(ToyUsers):
        def __init__(self, cfg: RunConfig) -> None:
            super().__init__(items=40, meta_batch=cfg.train.meta_batch)

        def base_classes(self) -> None:
            return None

        def baseline(self) -> None:
            return None

        def check_evaluation(self, learner: MetaLearner) -> None:
            pass

    yield
    del TASKS["toy_users"], MODELS["ratings"], PROBLEMS["toy_users"]


def test_a_kind_of_task_registered_later_is_configured_and_trained_by_name(
    users_plugin: None, tmp_path: Path
) -> None:
    over = [
        *TRAIN,
        "task.family=toy_users",
        "model.name=ratings",
        "learner.name=maml",
        "learner.inner_steps=2",
        "learner.inner_lr=0.1",
        "train.steps=100",
        "train.meta_batch=8",
        "train.lr=0.03",
        "seed=3",
    ]
    cfg = load_config(None, over)
    trainer = Trainer(cfg, tmp_path / "run")
    before = trainer.validate()
    trainer.fit()
    assert trainer.validate() < 0.6 * before
    stored = parse_config(cfg.model_dump(mode="json"), legacy=True)  # as its run folder holds it
    assert stored.fingerprint() == cfg.fingerprint()
    no_images = r"'toy_users' has no images: it needs model\.name 'mlp', 'ratings', not"
    with pytest.raises(ConfigError, match=no_images):
        load_config(None, [*over, "model.name=conv4"])
    with pytest.raises(ConfigError, match=r"'task\.family' 'toy_user' is not a task family"):
        load_config(None, [*over, "task.family=toy_user"])


# ---- environments as tasks ------------------------------------------------------------------
class Policy(nn.Module):
    """A softmax policy over ``arms`` (logits = a linear map of a constant observation)."""

    def __init__(self, arms: int) -> None:
        super().__init__()
        self.logits = nn.Linear(1, arms)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.logits(x)
        return out


class Bandits:
    """K-armed Gaussian bandits, one good arm (mean 1, the rest 0) per task, always one of the
    first ``likely`` arms: the prior a meta-learned initial policy can learn.

    One outer step per meta-batch: pull ``pulls`` arms with the current policy (support data),
    take one policy-gradient step (REINFORCE, mean-reward baseline) with step size ``alpha``,
    pull again with the *adapted* policy (query data, which exist only after adapting), and
    ascend the adapted policy's surrogate objective by a step of fixed length ``beta`` — the
    problem's own update (``applied=True``), as TRPO's constrained step would be.
    """

    metric, higher_is_better = "return", True

    def __init__(self, arms: int = 5, likely: int = 2, pulls: int = 20, tasks: int = 10) -> None:
        self.arms, self.likely, self.pulls, self.tasks = arms, likely, pulls, tasks
        self.alpha, self.beta = 2.0, 0.05
        self.fixed = torch.arange(40) % likely  # validation: each likely arm good equally often

    def _pull(self, logits: Tensor, good: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        probs = torch.softmax(logits.detach(), -1)
        arms = torch.multinomial(probs, self.pulls, replacement=True, generator=g)
        rewards = (arms == good).to(logits.dtype) + 0.1 * torch.randn(self.pulls, generator=g)
        return arms, rewards

    def _surrogate(self, logits: Tensor, arms: Tensor, rewards: Tensor) -> Tensor:
        logp = torch.log_softmax(logits, -1)[arms]
        return (logp * (rewards - rewards.mean())).mean()

    def _adapt(self, model: nn.Module, params: dict[str, Tensor], good: int, g: torch.Generator):  # type: ignore[no-untyped-def]
        one = torch.ones(1, 1)
        logits = functional_call(model, params, (one,))[0]
        arms, rewards = self._pull(logits, good, g)
        grads = torch.autograd.grad(
            self._surrogate(logits, arms, rewards), list(params.values()), create_graph=True
        )
        adapted = {k: p + self.alpha * d for (k, p), d in zip(params.items(), grads, strict=True)}
        return functional_call(model, adapted, (one,))[0]

    def prepare(self) -> None:
        pass

    def meta_step(self, learner: MetaLearner, generator: torch.Generator) -> MetaStep:
        model = learner.model
        params = dict(model.named_parameters())
        objective, returns = torch.zeros(()), []
        for _ in range(self.tasks):
            good = int(torch.randint(self.likely, (), generator=generator))
            adapted = self._adapt(model, params, good, generator)
            arms, rewards = self._pull(adapted, good, generator)  # rollouts of the adapted policy
            objective = objective + self._surrogate(adapted, arms, rewards) / self.tasks
            returns.append(float(rewards.mean()))
        grads = torch.autograd.grad(objective, list(params.values()))
        norm = torch.sqrt(sum((d**2).sum() for d in grads))
        with torch.no_grad():  # the problem's own outer update
            for p, d in zip(params.values(), grads, strict=True):
                p.add_(self.beta * d / (norm + 1e-12))
        mean = torch.tensor(sum(returns) / len(returns))
        return MetaStep(loss=-mean, metric=mean, grads={}, applied=True)

    def validate(self, learner: MetaLearner) -> float:
        """Mean expected reward of the adapted policy (exact: Σ_a π'(a) μ_a) on fixed tasks."""
        model = learner.model
        params = {k: v.detach().requires_grad_(True) for k, v in model.named_parameters()}
        total = 0.0
        for i, good in enumerate(self.fixed.tolist()):
            g = torch.Generator().manual_seed(50_000 + i)
            adapted = self._adapt(model, params, good, g)
            total += float(torch.softmax(adapted.detach(), -1)[good])
        return total / len(self.fixed)

    def evaluate(self, learner: MetaLearner, steps: Sequence[int] | None = None) -> dict[str, Any]:
        return {"return": self.validate(learner)}


def _bandit_trainer(out: Path, steps: int) -> Trainer:
    cfg = load_config(None, [*TRAIN, f"train.steps={steps}", "seed=5"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        learner = MAML(Policy(5), loss="mse")  # its parameters; the problem adapts them
    return Trainer(cfg, out, problem=Bandits(), learner=learner)


def test_environments_as_tasks_with_their_own_outer_update(tmp_path: Path) -> None:
    fresh = _bandit_trainer(tmp_path / "fresh", 120)
    before = fresh.validate()
    optimizer_before = fresh.optimizer.state_dict()
    fresh.fit()
    after = fresh.validate()
    assert after > before + 0.2, (before, after)
    assert fresh.optimizer.state_dict() == optimizer_before  # the problem's update, not Adam's
    part = _bandit_trainer(tmp_path / "part", 120)
    part.fit(stop_after=50)
    resumed = _bandit_trainer(tmp_path / "part", 120)
    resumed.fit()
    a = load_checkpoint(fresh.last_path)["learner"]
    b = load_checkpoint(resumed.last_path)["learner"]
    assert all(torch.equal(a[k], b[k]) for k in a)
