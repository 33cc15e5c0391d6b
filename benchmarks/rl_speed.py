"""Meta-RL speed: the rollout engine against a Gymnasium vector-env loop, and where a
MAML-TRPO meta-iteration spends its time.

1. **Environment steps per second.** The same 2D navigation dynamics (MAML §5.3) and the same
   100-100 Gaussian policy, 20 goals × 20 episodes × 100 steps (one meta-batch of support
   rollouts): metamap's :func:`~metamap.rl.rollout` on :class:`~metamap.tasks.navigation.
   NavigationEnvs` (every environment one row of a tensor, one batched policy call a step)
   against ``gymnasium.vector.SyncVectorEnv`` over 400 ``gymnasium.Env`` copies of the task with
   one batched policy forward a step — the loop Gymnasium users write (``AsyncVectorEnv`` is
   3-10× slower than Sync on these 2 cores, so it is not the fairer baseline).
2. **Share of a meta-iteration**: sampling (support and query rollouts) against the learner
   (adaptation, TRPO's conjugate gradient and line search), over ``--iterations``
   meta-iterations of ``configs/rl/maml-trpo-navigation.yaml``.

Result: benchmarks/results/rl_speed.json.

    pip install "metamap[mujoco]"   # Gymnasium; 2D navigation itself needs none of it
    python benchmarks/rl_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from machine import command_line, provenance, write_result  # benchmarks/machine.py
from metamap.models import GaussianMLP
from metamap.rl import rollout
from metamap.rl.protocol import PolicyLearner
from metamap.train import MetaRLProblem, load_config
from metamap.train.build import build_run_learner

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "rl" / "maml-trpo-navigation.yaml"


def _gym_navigation(goal: np.ndarray, horizon: int) -> Any:
    """2D navigation as a ``gymnasium.Env`` (the same dynamics as NavigationEnvs)."""
    import gymnasium as gym

    class Navigation(gym.Env):  # type: ignore[type-arg]
        observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        action_space = gym.spaces.Box(-0.1, 0.1, (2,), np.float32)

        def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
            super().reset(seed=seed)
            self.pos, self.t = np.zeros(2, np.float32), 0
            return self.pos.copy(), {}

        def step(self, action: np.ndarray) -> Any:
            self.pos = self.pos + np.clip(action, -0.1, 0.1).astype(np.float32)
            self.t += 1
            distance = float(np.linalg.norm(self.pos - goal))
            return self.pos.copy(), -distance, distance < 0.01, self.t >= horizon, {}

    return Navigation()


def gym_steps_per_second(goals: torch.Tensor, episodes: int, horizon: int, seed: int) -> float:
    import gymnasium as gym

    envs = gym.vector.SyncVectorEnv(
        [lambda g=g: _gym_navigation(g, horizon) for g in goals.numpy() for _ in range(episodes)]
    )
    policy = GaussianMLP(2, 2)
    g = torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=seed)
    t0 = time.perf_counter()
    for _ in range(horizon):
        with torch.no_grad():
            mean, log_std = policy(torch.from_numpy(obs))
            action = mean + log_std.exp() * torch.randn(mean.shape, generator=g)
        obs, *_ = envs.step(action.numpy())
    seconds = time.perf_counter() - t0
    envs.close()
    return len(goals) * episodes * horizon / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    where = provenance("cpu", args.threads)
    cfg = load_config(CONFIG, [f"train.threads={args.threads}", "train.progress=false"])
    problem = MetaRLProblem(cfg)
    tasks, episodes = cfg.train.meta_batch, cfg.task.rollouts  # type: ignore[attr-defined]
    horizon = problem.family.horizon
    goals = problem.family.sample_goals(tasks, torch.Generator().manual_seed(0), torch.float32)
    policy = GaussianMLP(2, 2)
    envs = problem.family.envs(goals, episodes)
    g = torch.Generator().manual_seed(0)
    rollout(policy, envs, g)  # warm-up
    t0 = time.perf_counter()
    rollout(policy, envs, g)
    ours = tasks * episodes * horizon / (time.perf_counter() - t0)
    gym_sps = gym_steps_per_second(goals, episodes, horizon, 0)
    # a meta-iteration, split into sampling and learning
    learner: PolicyLearner = build_run_learner(cfg)  # type: ignore[assignment]
    split = {"sampling": 0.0, "adaptation": 0.0, "outer step": 0.0}
    for i in range(args.iterations):
        gi = torch.Generator().manual_seed(i)
        envs = problem.family.envs(problem.family.sample_goals(tasks, gi, torch.float32), episodes)
        t = time.perf_counter()
        support = rollout(learner.policy_fn(), envs, gi)
        split["sampling"] += time.perf_counter() - t
        t = time.perf_counter()
        adapted = learner.adapt_policy(support, training=True)
        split["adaptation"] += time.perf_counter() - t
        t = time.perf_counter()
        query = rollout(learner.policy_fn(adapted), envs, gi)
        split["sampling"] += time.perf_counter() - t
        t = time.perf_counter()
        learner.meta_update(support, query)
        split["outer step"] += time.perf_counter() - t
    total = sum(split.values())
    result = {
        "benchmark": "rl_speed",
        "envs": f"{tasks} goals × {episodes} episodes × {horizon} steps",
        "steps_per_second": {
            "metamap rollout": round(ours),
            "gymnasium SyncVectorEnv": round(gym_sps),
        },
        "speedup": round(ours / gym_sps, 2),
        "iteration_seconds": round(total / args.iterations, 2),
        "share": {k: round(v / total, 3) for k, v in split.items()},
        "iterations": args.iterations,
        "command": command_line(),
        "provenance": where,
    }
    print(result)
    write_result(args.results / "rl_speed.json", result)


if __name__ == "__main__":
    main()
