"""Meta-reinforcement learning: batched rollouts in many tasks at once, returns, advantages and
the linear feature baseline of MAML's RL experiments (Finn, Abbeel & Levine, ICML 2017, §5.3).

The meta-learners :class:`MAMLTRPO` (``learner.name: maml_trpo``), :class:`MAMLPPO`
(``maml_ppo``) and :class:`ProMP` (``promp``) share MAML's policy-gradient inner step
(:class:`PolicyGradientLearner`) and take TRPO's or PPO's outer step; :class:`RL2` (``rl2``)
adapts a recurrent policy's hidden state instead; the problem
that samples their rollouts is :class:`metamap.train.MetaRLProblem`. Every quantity is a tensor with
leading ``(T, E, H)`` dimensions: ``T`` tasks, ``E`` episodes a task, ``H`` steps an episode.
Importing :mod:`metamap.rl` loads no dataset code: environments come from the caller
(:class:`VectorEnvs`, e.g. :class:`metamap.tasks.navigation.NavigationEnvs`).
"""

from metamap.rl.advantages import (
    LinearFeatureBaseline,
    baseline_features,
    discounted_returns,
    gae,
    normalize_advantages,
)
from metamap.rl.maml_ppo import MAMLPPO, MAMLPPOSection, ProMP, ProMPSection
from metamap.rl.maml_trpo import MAMLTRPO, MAMLTRPOSection, conjugate_gradient
from metamap.rl.policy_gradient import (
    PolicyGradientLearner,
    PolicyLearnerBase,
    PolicySection,
    gaussian_kl,
)
from metamap.rl.protocol import EnvTaskSection, PolicyLearner, TaskFamily
from metamap.rl.rl2 import RL2, RecurrentPolicyFn, RL2Section, trial_inputs
from metamap.rl.rollout import FeedbackPolicy, PolicyFn, Rollouts, VectorEnvs, rollout

__all__ = [
    "MAMLPPO",
    "MAMLTRPO",
    "RL2",
    "EnvTaskSection",
    "FeedbackPolicy",
    "LinearFeatureBaseline",
    "MAMLPPOSection",
    "MAMLTRPOSection",
    "PolicyFn",
    "PolicyGradientLearner",
    "PolicyLearner",
    "PolicyLearnerBase",
    "PolicySection",
    "ProMP",
    "ProMPSection",
    "RL2Section",
    "RecurrentPolicyFn",
    "Rollouts",
    "TaskFamily",
    "VectorEnvs",
    "baseline_features",
    "conjugate_gradient",
    "discounted_returns",
    "gae",
    "gaussian_kl",
    "normalize_advantages",
    "rollout",
    "trial_inputs",
]
