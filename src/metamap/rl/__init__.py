"""Meta-reinforcement learning: batched rollouts in many tasks at once, returns, advantages and
the linear feature baseline of MAML's RL experiments (Finn, Abbeel & Levine, ICML 2017, §5.3).

Every quantity is a tensor with leading ``(T, E, H)`` dimensions: ``T`` tasks, ``E`` episodes a
task, ``H`` steps an episode. Importing :mod:`metamap.rl` loads no dataset code: environments
come from the caller (:class:`VectorEnvs`, e.g. :class:`metamap.tasks.navigation.NavigationEnvs`).
"""

from metamap.rl.advantages import (
    LinearFeatureBaseline,
    baseline_features,
    discounted_returns,
    gae,
    normalize_advantages,
)
from metamap.rl.rollout import PolicyFn, Rollouts, VectorEnvs, rollout

__all__ = [
    "LinearFeatureBaseline",
    "PolicyFn",
    "Rollouts",
    "VectorEnvs",
    "baseline_features",
    "discounted_returns",
    "gae",
    "normalize_advantages",
    "rollout",
]
