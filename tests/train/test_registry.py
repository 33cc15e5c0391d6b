"""The learner registry: sections declared beside each learner, assembled into the run config,
and nothing users have breaks (old flat learner sections, their fingerprints, their runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metamap.errors import ConfigError
from metamap.learners import LEARNERS, LearnerSection, split_legacy
from metamap.learners.registry import LEGACY_DEFAULTS
from metamap.train import (
    Trainer,
    load_checkpoint,
    load_config,
    parse_config,
    save_checkpoint,
)

EPISODES = ["task.family=episodes", "model.name=conv4"]

# Fingerprints the previous metamap (one flat learner section, commit bf934a0) gave these stored
# configs (legacy_configs/: the config_dump of the result files those runs wrote, kept here as the
# results are re-made in today's shape); every run they describe must still resume.
LEGACY = Path(__file__).resolve().parent / "legacy_configs"
OLD_FINGERPRINTS = {
    "omniglot_anil-20w1s.json": "3d9a883ab8984f65",
    "omniglot_protonet-5w1s.json": "679efc6b4338df1d",
    "omniglot_relation-5w1s.json": "c187893c39ecd08c",
}


def test_every_learner_is_registered_with_its_own_section() -> None:
    expected = {"maml", "fomaml", "anil", "metasgd", "reptile", "mamlpp"}
    expected |= {"protonet", "matching", "relation", "r2d2", "svm", "pretrain", "ridge"}
    expected |= {"maml_trpo", "maml_ppo", "promp", "rl2"}  # environments as tasks (metamap.rl)
    assert set(LEARNERS) == expected
    for name, section in LEARNERS.items():
        assert issubclass(section, LearnerSection)
        over = [] if section.regression else EPISODES
        if section.reinforcement:
            policy = "gaussian_gru" if section.recurrent else "gaussian_mlp"
            over = ["task.family=navigation", f"model.name={policy}"]
        cfg = load_config(None, [*over, f"learner.name={name}"])
        assert type(cfg.learner) is section and cfg.learner.name == name


@pytest.mark.parametrize(("path", "fingerprint"), sorted(OLD_FINGERPRINTS.items()))
def test_stored_flat_learner_sections_keep_their_fingerprint(path: str, fingerprint: str) -> None:
    stored = json.loads((LEGACY / path).read_text())["config_dump"]
    assert set(LEGACY_DEFAULTS) - {"class_feature"} <= set(stored["learner"])  # the old shape
    assert parse_config(stored, legacy=True).fingerprint() == fingerprint


def test_another_learners_setting_is_refused_in_a_config_but_kept_aside_when_stored() -> None:
    flat = {"name": "protonet", **LEGACY_DEFAULTS, "batching": "loop"}
    with pytest.raises(ConfigError, match=r"learner.batching \('loop'\) is a setting of .*maml"):
        parse_config({"task": {"family": "episodes"}, "model": {"name": "conv4"}, "learner": flat})
    base = {"task": {"family": "episodes"}, "model": {"name": "conv4"}}
    kept = parse_config({**base, "learner": flat}, legacy=True)
    plain = parse_config({**base, "learner": {"name": "protonet"}})
    assert kept.learner == plain.learner  # protonet has no batching setting to use
    assert kept.fingerprint() != plain.fingerprint()  # but the old run's fingerprint had it
    own, aside = split_legacy(flat, keep=True)
    assert own == {"name": "protonet", "label_smoothing": 0.0} and aside == {"batching": "loop"}


def test_messages_name_the_learners_that_have_a_setting_and_the_choices() -> None:
    with pytest.raises(
        ConfigError, match=r"msl_steps \(3\) is a setting of mamlpp; learner 'maml'"
    ):
        load_config(None, ["learner.msl_steps=3"])
    with pytest.raises(ConfigError, match=r"'learner.name' 'mamI' is not a learner; choose one of"):
        load_config(None, ["learner.name=mamI"])
    # MAML++ inherits inner_optimizer but refuses it: the list of learners that have it omits it
    base = ["task.family=episodes", "model.name=conv4", "learner.name=protonet"]
    with pytest.raises(ConfigError, match=r"is a setting of maml, fomaml, anil, metasgd, reptile;"):
        load_config(None, [*base, "learner.inner_optimizer={name: adam}"])
    with pytest.raises(ConfigError, match=r"'learner.inner_steps': Input should be greater"):
        load_config(None, ["learner.inner_steps=0"])


def test_a_run_with_an_old_flat_stored_config_resumes_to_the_same_result(tmp_path: Path) -> None:
    over = [
        "train.steps=8",
        "train.meta_batch=4",
        "train.val_every=4",
        "train.val_tasks=8",
        "train.ckpt_every=4",
        "train.progress=false",
        "model.hidden=[16,16]",
    ]
    full = Trainer(load_config(None, over), tmp_path / "full")
    full.fit()
    part = Trainer(load_config(None, over), tmp_path / "part")
    part.fit(stop_after=5)  # killed after step 5; last.pt is from step 4
    last = part.last_path
    state = load_checkpoint(last)
    state["config"]["learner"] = {**LEGACY_DEFAULTS, **state["config"]["learner"]}  # as written
    save_checkpoint(last, {k: v for k, v in state.items() if not k.startswith("format")})
    resumed = Trainer(load_config(None, over), tmp_path / "part")
    resumed.fit()
    a, b = load_checkpoint(full.last_path)["learner"], load_checkpoint(last)["learner"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_network_is_registered_and_old_flat_model_sections_still_load() -> None:
    from metamap.models import MODEL_LEGACY_DEFAULTS, MODELS

    assert set(MODELS) == {
        "mlp",
        "conv4",
        "resnet12",
        "torchvision",
        "timm",
        "melu",
        "gaussian_mlp",
        "gaussian_gru",
    }
    flat = {"name": "conv4", **MODEL_LEGACY_DEFAULTS}  # how every older config stored it
    cfg = parse_config({"task": {"family": "episodes"}, "model": flat}, legacy=True)
    plain = parse_config({"task": {"family": "episodes"}, "model": {"name": "conv4"}})
    assert cfg.model == plain.model and cfg.fingerprint() == plain.fingerprint()
    changed = {**flat, "drop_rate": 0.1}  # a ResNet-12 setting changed from its default
    with pytest.raises(ConfigError, match=r"model.drop_rate \(0.1\) is a setting of resnet12"):
        parse_config({"task": {"family": "episodes"}, "model": changed})
    kept = parse_config({"task": {"family": "episodes"}, "model": changed}, legacy=True)
    assert kept.fingerprint() != plain.fingerprint()  # counted as the old run's was
    with pytest.raises(ConfigError, match=r"'model.name' 'vgg' is not a model; choose one of"):
        load_config(None, ["model.name=vgg"])


@pytest.mark.parametrize("name", ["relation", "pretrain"])
def test_learners_that_need_the_run_are_refused_by_build_learner(name: str) -> None:
    from metamap.models import MLP
    from metamap.train import build_learner

    section = load_config(None, [*EPISODES, f"learner.name={name}"]).learner
    with pytest.raises(ValueError, match="is built by build_run_learner"):
        build_learner(section, MLP(1, 1), "cross_entropy")
