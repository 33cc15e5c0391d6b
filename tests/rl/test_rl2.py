"""RL² (:mod:`metamap.rl.rl2`): the recurrent policy stepped in a rollout is the one the update
recomputes over the whole trial, the hidden state carries experience from episode to episode,
the advantages of a task do not depend on the other tasks, and a CI-sized run on 2D navigation
learns and resumes bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metamap.errors import ConfigError
from metamap.models import GaussianGRU, gaussian_log_prob
from metamap.rl import RL2, Rollouts, rollout, trial_inputs
from metamap.tasks.navigation import Navigation2D
from metamap.train import Trainer, load_checkpoint, load_config

CONFIGS = Path(__file__).parents[2] / "configs" / "rl"
SMALL = [
    "model.hidden=16",
    "task.rollouts=6",
    "train.meta_batch=6",
    "train.val_tasks=8",
    "train.ckpt_every=2",
    "train.val_every=4",
    "train.threads=1",
    "train.progress=false",
    "eval.tasks=4",
]


def _learner() -> RL2:
    torch.manual_seed(0)
    return RL2(GaussianGRU(2, 2, hidden=8).double())


def _episodes(learner: RL2) -> tuple[Rollouts, dict[str, torch.Tensor], Rollouts]:
    fam = Navigation2D(horizon=12, action_scale=0.1)
    envs = fam.envs(fam.fixed_goals(3, seed=1, dtype=torch.float64), 4)
    g = torch.Generator().manual_seed(0)
    first = rollout(learner.policy_fn(), envs, g)
    adapted = learner.adapt_policy(first)
    second = rollout(learner.policy_fn(adapted), envs, g)
    return first, adapted, second


def test_one_step_at_a_time_is_the_sequence() -> None:
    gru = GaussianGRU(3, 2, hidden=5).double()
    x, h = (
        torch.randn(4, 7, gru.input_dim, dtype=torch.float64),
        gru.initial_state(4, torch.float64, torch.device("cpu")),
    )
    mean, _, h_end = gru(x, h)
    for t in range(7):
        m, _, h = gru.step(x[:, t], h)
        torch.testing.assert_close(m, mean[:, t], rtol=0, atol=1e-12)
    torch.testing.assert_close(h, h_end, rtol=0, atol=1e-12)


def test_the_rollout_policy_is_the_one_the_update_recomputes_over_the_trial() -> None:
    learner = _learner()
    first, adapted, second = _episodes(learner)
    x = torch.cat([trial_inputs(first), trial_inputs(second)], 2)
    mean, log_std, h = learner._run(x, None)
    actions = torch.cat([first.actions, second.actions], 2)
    masks = torch.cat([first.masks, second.masks], 2)
    logp = gaussian_log_prob(mean, log_std, actions) * masks
    stored = torch.cat([first.log_probs, second.log_probs], 2)
    torch.testing.assert_close(logp, stored, rtol=0, atol=1e-10)  # PPO's first ratio is 1
    again = learner.adapt_policy(second, adapted)  # the state after both episodes
    torch.testing.assert_close(again["hidden"], h, rtol=0, atol=1e-12)
    assert not torch.allclose(adapted["hidden"], again["hidden"])


def test_the_second_episode_remembers_the_first() -> None:
    learner = _learner()
    first, adapted, _ = _episodes(learner)
    fresh = learner.policy_fn()(first.observations[:, :, 0].reshape(-1, 2))[0]
    carried = learner.policy_fn(adapted)(first.observations[:, :, 0].reshape(-1, 2))[0]
    assert not torch.allclose(fresh, carried)  # the same observation, another action


def test_a_tasks_advantages_do_not_depend_on_the_other_tasks() -> None:
    learner = _learner()
    rewards, masks = (
        torch.randn(4, 5, 9, dtype=torch.float64),
        torch.ones(4, 5, 9, dtype=torch.float64),
    )
    masks[1, 2, 6:] = 0
    rewards = rewards * masks
    whole = learner._trial_advantages(rewards, masks, 9)
    part = learner._trial_advantages(rewards[2:], masks[2:], 9)
    torch.testing.assert_close(whole[2:], part, rtol=0, atol=1e-12)
    assert float(whole[1, 2, 6:].abs().sum()) == 0.0


def test_a_small_run_learns_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "rl2-navigation.yaml", [*SMALL, "train.steps=6"])
    fresh = Trainer(cfg, tmp_path / "fresh")
    before = fresh.validate()
    fresh.fit()
    assert fresh.validate() > before + 5, (before, fresh.validate())
    part = Trainer(cfg, tmp_path / "part")
    part.fit(stop_after=3)
    resumed = Trainer(cfg, tmp_path / "part")
    resumed.fit()
    a = load_checkpoint(fresh.last_path)["learner"]
    b = load_checkpoint(resumed.last_path)["learner"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("config", "overrides", "message"),
    [
        ("rl2-navigation.yaml", ["model={name: gaussian_mlp}"], "use model.name 'gaussian_gru'"),
        (
            "maml-trpo-navigation.yaml",
            ["model={name: gaussian_gru}"],
            "'gaussian_mlp', not 'gaussian_gru'",
        ),
    ],
)
def test_a_policy_of_the_wrong_kind_is_refused(
    config: str, overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIGS / config, overrides)


def test_one_episode_per_task_is_refused_before_any_work(tmp_path: Path) -> None:
    # Each copy's baseline is the mean of its task's other copies: one copy has none. The run
    # is refused before it rolls out anything or writes its folder, naming the setting.
    cfg = load_config(CONFIGS / "rl2-navigation.yaml", [*SMALL, "task.rollouts=1"])
    trainer = Trainer(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"at least 2 episodes .* set task\.rollouts to 2"):
        trainer.fit()
    assert not (tmp_path / "run").exists()
    assert trainer.step == 0
