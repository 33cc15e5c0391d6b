"""The task registry: each kind of task's ``task`` section, and old flat sections."""

from __future__ import annotations

from typing import Any

import pytest

from metamap.errors import ConfigError
from metamap.tasks import TASKS, EpisodeTask, RegressionTaskSection, SinusoidTasks
from metamap.train import PROBLEMS, build_problem, load_config, parse_config


def test_every_family_names_a_registered_problem_and_says_what_it_needs() -> None:
    rl = {"navigation", "pendulum", "halfcheetah_vel", "halfcheetah_dir", "ant_dir", "metaworld"}
    assert set(TASKS) == {"sinusoid", "linear", "polynomial", "episodes", "movielens", *rl}
    losses = {"episodes": "cross_entropy", "movielens": "masked_mse", **dict.fromkeys(rl, "return")}
    for family, section in TASKS.items():
        named = {"env_name": "reach-v3"} if family == "metaworld" else {}  # ML1 needs its task
        task = section.model_validate({"family": family, **named})
        assert task.problem() in PROBLEMS
        assert task.images == (family == "episodes")
        assert task.loss == losses.get(family, "mse")
        assert bool(task.vocabulary()) == (family == "movielens")  # categorical columns
    md = EpisodeTask(sampler="metadataset", hierarchy=True, ways=7)
    assert md.problem() == "metadataset" and md.variable_ways() and md.grouped()
    assert md.out_features() == 7 and md.episodes() is md


def test_a_section_refuses_to_be_what_it_is_not() -> None:
    sinusoid = TASKS["sinusoid"].model_validate({"family": "sinusoid", "shots": 5})
    assert isinstance(sinusoid.regression().build(queries=3), SinusoidTasks)
    assert isinstance(sinusoid.regression(), RegressionTaskSection)
    with pytest.raises(ConfigError, match=r"task\.family 'sinusoid' is not image classification"):
        sinusoid.episodes()
    with pytest.raises(ConfigError, match=r"task\.family 'episodes' is not a regression family"):
        EpisodeTask().regression()


def test_the_problem_is_the_tasks_unless_the_learner_names_its_own() -> None:
    images = ["task.family=episodes", "model.name=conv4"]
    assert type(build_problem(load_config(None, []))).__name__ == "RegressionProblem"
    names = {
        (): "EpisodeProblem",
        ("task.sampler=metadataset", "learner.name=protonet"): "MetaDatasetProblem",
        ("learner.name=pretrain",): "PretrainProblem",
    }
    for extra, problem in names.items():
        cfg = load_config(None, [*images, *extra])
        assert type(build_problem(cfg)).__name__ == problem


# Fingerprints computed by metamap 8df0b8b (one flat task section for every family) from the
# same stored configs: the registry must give runs stored then the same fingerprint.
OLD_FLAT_SECTIONS: list[tuple[dict[str, Any], str]] = [
    ({"task": {"family": "sinusoid", "ways": 20, "shots": 5}}, "95abcd99b504ab5e"),
    (
        {
            "task": {"family": "polynomial", "degree": 5, "noise_std": 0.1},
            "learner": {"name": "fomaml"},
        },
        "dc3132d856971b6d",
    ),
    (
        {
            "task": {
                "family": "episodes",
                "sampler": "metadataset",
                "max_ways": 20,
                "hierarchy": True,
                "noise_std": 0.0,
            },
            "model": {"name": "conv4"},
            "learner": {"name": "protonet"},
        },
        "a1829d0c12608794",
    ),
    (
        {
            "task": {"family": "episodes", "ways": 20, "shots": 1, "degree": 4},
            "model": {"name": "conv4"},
            "learner": {"name": "protonet"},
        },
        "ccdfca51574a680b",
    ),
]


@pytest.mark.parametrize(("config", "fingerprint"), OLD_FLAT_SECTIONS)
def test_stored_flat_task_sections_keep_their_fingerprints(
    config: dict[str, Any], fingerprint: str
) -> None:
    assert parse_config(config, legacy=True).fingerprint() == fingerprint


def test_another_familys_setting_is_dropped_at_its_default_and_refused_otherwise() -> None:
    plain = load_config(None, ["task.ways=5", "task.degree=3", "task.sampler=fixed"])
    assert "ways" not in plain.task.model_dump()
    assert plain.fingerprint() == load_config(None, []).fingerprint()
    with pytest.raises(ConfigError, match=r"task\.ways \(20\) is a setting of episodes; task "):
        load_config(None, ["task.ways=20"])
    with pytest.raises(ConfigError, match=r"task\.degree \(5\) is a setting of polynomial"):
        load_config(None, ["task.family=linear", "task.degree=5"])
    with pytest.raises(ConfigError, match=r"'task\.family' 'sinusoidal' is not a task family"):
        load_config(None, ["task.family=sinusoidal"])
    with pytest.raises(ConfigError, match=r"'task\.shots': Input should be greater than 0"):
        load_config(None, ["task.shots=0"])
