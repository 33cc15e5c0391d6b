from pathlib import Path

import pytest

from metamap.errors import ConfigError
from metamap.learners import GradientLearner
from metamap.learners.inner_optim import SGD, Adam
from metamap.train import RunConfig, apply_overrides, load_config, parse_config
from metamap.train.build import build_run_learner

ROOT = Path(__file__).resolve().parents[2]


def test_every_shipped_config_validates() -> None:
    paths = sorted((ROOT / "configs").rglob("*.yaml"))
    assert paths, "configs/ holds no YAML files"
    for p in paths:
        cfg = load_config(p)
        assert isinstance(cfg, RunConfig)


def test_overrides_change_nested_fields_and_parse_yaml_values() -> None:
    cfg = load_config(
        None,
        [
            "train.steps=7",
            "learner.inner_lr=[0.1, 0.2]",
            "learner.inner_steps=2",
            "eval.shots=[5,10]",
        ],
    )
    assert cfg.train.steps == 7
    assert cfg.learner.inner_lr == [0.1, 0.2]
    assert cfg.eval.shots == [5, 10]


def test_yaml_scientific_notation_string_is_accepted_as_float() -> None:
    # PyYAML reads `1e-3` as a string; a learning rate written that way must still work.
    assert load_config(None, ["train.lr=1e-3"]).train.lr == pytest.approx(1e-3)


def test_a_number_given_for_a_text_setting_is_its_text(tmp_path: Path) -> None:
    # a folder named with digits: YAML reads 2024 as a number, which was refused
    cfg = load_config(
        None,
        [
            "data.root=2024",  # before data.name: the folder section's field, chosen last
            "data.name=folder",
            "data.protocol=null",
            "data.train_classes=[0, 007, b]",  # as written, not the octal 7
            "data.val_classes=[1.10]",
            "data.test_classes=[x]",
            "out_dir=runs/7",
            "name=7",
            "train.steps=7",  # a number setting keeps its number
        ],
    )
    assert cfg.data.root == "2024" and cfg.name == "7" and cfg.train.steps == 7
    assert cfg.data.train_classes == ["0", "007", "b"] and cfg.data.val_classes == ["1.10"]
    assert load_config(None, ["data.root=2024", "data.root=null"]).data.root is None
    # in a file, the number is refused saying how to write it as text
    f = tmp_path / "c.yaml"
    f.write_text("data: {name: folder, root: 2024}\n")
    with pytest.raises(ConfigError, match=r"'data\.root': .*quote it as text: \"2024\""):
        load_config(f)


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.stepz=5", "unknown key 'train.stepz'"),
        ("trian.steps=5", "unknown key 'trian'"),
        ("train.steps=-1", "'train.steps'"),
        ("train.steps=many", "'train.steps'"),
        ("learner.name=mamal", "'learner.name'"),
        ("model.hidden=[40, 0]", "'model.hidden.1'"),
    ],
)
def test_bad_keys_and_values_are_named(override: str, needle: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)


@pytest.mark.parametrize(
    ("override", "suggested"),
    [
        ("train.stpes=5", "train.steps"),
        ("model.hiden=[40]", "model.hidden"),  # the registered section of model.name (mlp)
        ("learner.inner_lrr=0.1", "learner.inner_lr"),
        ("eval.taks=3", "eval.tasks"),
        ("sed=3", "seed"),
        ("train.ways=3", "task.ways"),  # the same key, in the section that has it
        ("ways=3", "task.ways"),
        ("task.lr=0.1", "train.lr"),
    ],
)
def test_an_unknown_key_names_the_key_it_most_likely_means(override: str, suggested: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    key = override.split("=")[0]
    assert f"unknown key '{key}' (did you mean '{suggested}'? see configs/" in str(e.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("learner.inner_lr=abc", "'learner.inner_lr': Input should be a valid number"),
        ("learner.inner_lr=[0.1, x]", "'learner.inner_lr.1': Input should be a valid number"),
        ("learner.inner_lr=[0.1, -1]", "'learner.inner_lr.1': Input should be greater than 0"),
    ],
)
def test_a_value_of_no_member_of_a_union_is_one_problem_of_its_own_shape(
    override: str, message: str
) -> None:
    """``inner_lr`` takes a number or a list of numbers: a bad value is reported once, against
    the member of its shape, without pydantic's member names (``constrained-float``)."""
    with pytest.raises(ConfigError) as e:
        load_config(None, ["learner.inner_steps=2", override])
    text = str(e.value)
    assert text.startswith(f"invalid configuration: {message}"), text
    assert "; " not in text and "constrained" not in text and "list[" not in text, text


def test_an_unknown_key_far_from_every_key_gets_no_guess() -> None:
    for override in ("train.zzzz=1", "data.augment.flop=true"):
        with pytest.raises(ConfigError) as e:
            load_config(None, [override])
        assert "(check the spelling; see configs/ for examples)" in str(e.value)
        assert "did you mean" not in str(e.value)


def test_per_step_lrs_must_match_inner_steps() -> None:
    with pytest.raises(ConfigError, match="one per inner step"):
        load_config(None, ["learner.inner_steps=3", "learner.inner_lr=[0.1, 0.2]"])


def test_malformed_override_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        apply_overrides({}, ["train.steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_fingerprint_ignores_paths_and_logging_but_not_training() -> None:
    a = parse_config({})
    assert (
        a.fingerprint() == parse_config({"out_dir": "x", "train": {"log_every": 3}}).fingerprint()
    )
    assert a.fingerprint() != parse_config({"train": {"lr": 0.5}}).fingerprint()
    assert a.fingerprint() != parse_config({"seed": 1}).fingerprint()


def test_fingerprint_of_episodes_ignores_where_the_data_lives_but_not_what_it_is() -> None:
    ep = {"task": {"family": "episodes"}, "model": {"name": "conv4"}}
    a = parse_config(ep)
    moved = {"root": "/a", "splits_root": "/b", "cache_dir": "/c", "download": True}
    assert a.fingerprint() == parse_config({**ep, "data": moved}).fingerprint()
    assert a.fingerprint() != parse_config({**ep, "data": {"protocol": "maml"}}).fingerprint()
    assert a.fingerprint() != parse_config({**ep, "data": {"image_size": 32}}).fingerprint()


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["train.momentum=0.9"], "momentum and nesterov are SGD settings"),
        (["train.optimizer=sgd", "train.nesterov=true"], "nesterov needs momentum > 0"),
        (["train.schedule=piecewise"], "needs train.milestones and train.factors"),
        (
            ["train.schedule=piecewise", "train.milestones=[5, 3]", "train.factors=[0.1, 0.01]"],
            "must increase, got [5, 3]",
        ),
        (["train.milestones=[5]", "train.factors=[0.1]"], "need schedule 'piecewise'"),
        (["data.augment.jitter=1.0"], "'data.augment.jitter'"),
        (["data.augment.padding=-2"], "'data.augment.padding'"),
    ],
)
def test_optimizer_schedule_and_augmentation_settings_are_checked(
    overrides: list[str], needle: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert needle in str(e.value)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["data.channels=3"], "'data.channels': 'omniglot' has grey images: set channels 1"),
        (["data.name=cifar_fs", "data.channels=1"], "'cifar_fs' has colour images"),
        (["data.name=fc100", "data.image_size=84"], "'fc100' has 3×32×32 images"),
        (
            ["data.name=mini_imagenet", "data.channels=1"],
            "'data.channels': 'mini_imagenet' has colour",
        ),
        (
            ["data.name=folder", "data.protocol=metadataset"],
            "'data.protocol': Input should be 'folder' or 'vinyals'",
        ),
        (
            ["data.name=cub", "data.protocol=maml"],
            "data.protocol ('maml') is a setting of folder, omniglot",
        ),
        (["data.name=cifar_fs", "data.split_fractions=[0.5, 0.3, 0.2]"], "setting of folder"),
        (["data.protocol=folder"], "'data.protocol': Input should be 'vinyals', 'maml' or"),
        (["data.name=omniglt"], "'data.name' 'omniglt' is not a dataset; choose one of cifar_fs"),
    ],
)
def test_image_size_and_channels_must_be_the_datasets(overrides: list[str], needle: str) -> None:
    """Refused when the config is read, not at the first step after the data is decoded."""
    episodes = ["task.family=episodes", "model.name=conv4"]
    with pytest.raises(ConfigError) as e:
        load_config(None, [*episodes, *overrides])
    assert needle in str(e.value)
    load_config(None, episodes)  # the defaults (grey 28×28 Omniglot) are consistent


@pytest.mark.parametrize(
    ("name", "shape"),
    [("cifar_fs", (3, 32)), ("fc100", (3, 32)), ("mini_imagenet", (3, 28)), ("folder", (1, 28))],
)
def test_each_dataset_section_defaults_to_a_shape_it_has(name: str, shape: tuple[int, int]) -> None:
    """A colour dataset defaults to 3 channels, CIFAR to 32×32: naming the dataset is enough."""
    cfg = load_config(None, ["task.family=episodes", "model.name=conv4", f"data.name={name}"])
    assert (cfg.data.channels, cfg.data.image_size) == shape
    assert cfg.data.split_note() == (" (folder split)" if name == "folder" else "")


def test_a_fixed_head_learner_is_not_evaluated_on_other_ways() -> None:
    episodes = ["task.family=episodes", "model.name=conv4", "task.ways=5"]
    for name in ("maml", "fomaml", "anil", "metasgd", "reptile"):
        with pytest.raises(ConfigError, match=r"adapts a fixed 5-way head .* 20-way test tasks"):
            load_config(None, [*episodes, f"learner.name={name}", "eval.ways=20"])
        assert load_config(None, [*episodes, f"learner.name={name}", "eval.ways=5"])
    assert load_config(None, [*episodes, "learner.name=protonet", "eval.ways=20"]).eval.ways == 20
    # a check across sections names the problem, without echoing the whole config back
    with pytest.raises(ConfigError) as e:
        load_config(None, [*episodes, "learner.name=maml", "eval.ways=20"])
    prefix = "invalid configuration: learner 'maml' adapts a fixed"
    assert str(e.value).startswith(prefix) and "\n" not in str(e.value)
    assert "got {" not in str(e.value) and "Value error" not in str(e.value)


def test_metric_scale_is_only_for_matching_networks() -> None:
    assert load_config(None, [*EPISODES, "learner.name=matching"]).learner.metric_scale is None
    with pytest.raises(ConfigError, match=r"metric_scale \(10\) is a setting of matching;"):
        load_config(None, ["learner.name=maml", "learner.metric_scale=10"])
    assert "metric_scale" not in type(load_config(None, ["learner.name=maml"]).learner).model_fields


def test_label_smoothing_is_for_cross_entropy_encoder_learners() -> None:
    assert load_config(None, EPISODES).learner.label_smoothing == 0.0
    owners = "matching, protonet, r2d2, svm; learner 'maml' has no such setting"
    with pytest.raises(ConfigError, match=f"label_smoothing \\(0.1\\) is a setting of {owners}"):
        load_config(None, ["learner.name=maml", "learner.label_smoothing=0.1"])


def test_the_protocol_line_names_training_augmentation_and_smoothing() -> None:
    from metamap.train import describe

    ep = ["task.family=episodes", "model.name=conv4", "learner.name=protonet"]
    assert describe(load_config(None, ep)).endswith("BatchNorm transductive")
    tricks = ["data.augment.padding=4", "data.augment.flip=true", "learner.label_smoothing=0.1"]
    line = describe(load_config(None, [*ep, *tricks]))
    assert line.endswith("trained with crop ±4, flip, label smoothing 0.1")


EPISODES = ["task.family=episodes", "model.name=conv4", "learner.name=protonet"]


@pytest.mark.parametrize(
    ("train_split", "val_split"),
    [("trainval", "val"), ("trainval", "train"), ("train", "train"), ("train", "trainval")],
)
def test_best_checkpoint_is_refused_where_validation_classes_are_trained_on(
    train_split: str, val_split: str
) -> None:
    splits = [f"data.train_split={train_split}", f"data.val_split={val_split}"]
    with pytest.raises(ConfigError, match=r"eval\.checkpoint 'last'") as e:
        load_config(None, [*EPISODES, *splits])
    assert f"data.train_split '{train_split}'" in str(e.value)
    cfg = load_config(None, [*EPISODES, *splits, "eval.checkpoint=last"])  # a fixed budget
    assert cfg.eval.checkpoint == "last"


def test_an_unknown_split_name_is_refused_naming_the_key_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"'data\.test_split'.*'trainval' or 'test'.*'tset'"):
        load_config(None, [*EPISODES, "data.test_split=tset"])


def test_disjoint_splits_keep_the_best_checkpoint_and_the_choice_is_not_trained() -> None:
    cfg = load_config(None, EPISODES)
    splits = (cfg.data.train_split, cfg.data.val_split)
    assert splits == ("train", "val") and cfg.eval.checkpoint == "best"
    last = load_config(None, [*EPISODES, "eval.checkpoint=last"])
    assert last.fingerprint() == cfg.fingerprint()  # a finished run may be scored either way
    with pytest.raises(ConfigError, match=r"'eval\.checkpoint'"):
        load_config(None, [*EPISODES, "eval.checkpoint=final"])


def test_config_chooses_the_inner_optimizer_and_refuses_settings_of_another() -> None:
    cfg = load_config(None, ["learner.inner_optimizer={name: adam, betas: [0.5, 0.9]}"])
    learner = build_run_learner(cfg)
    assert isinstance(learner, GradientLearner)
    assert learner.inner_optimizer == Adam(betas=(0.5, 0.9))
    assert "inner adam β=(0.5, 0.9) ε=1e-08" in cfg.learner.notes()
    plain = load_config(None, [])
    assert cfg.fingerprint() != plain.fingerprint()  # a run with Adam never resumes a plain one
    said = load_config(None, ["learner.inner_optimizer={name: sgd, momentum: 0}"])
    assert said.fingerprint() == plain.fingerprint()  # plain steps, said: the same weights
    default = build_run_learner(load_config(None, []))
    assert isinstance(default, GradientLearner) and default.inner_optimizer is None
    adamw = load_config(None, ["learner.inner_optimizer={name: adamw, weight_decay: 0.01}"])
    assert build_run_learner(adamw).inner_optimizer == Adam(weight_decay=0.01, decoupled=True)  # type: ignore[union-attr]
    assert "decoupled weight decay 0.01" in adamw.learner.notes()[-1]
    coupled = load_config(None, ["learner.inner_optimizer={name: adam, weight_decay: 0.01}"])
    assert adamw.fingerprint() != coupled.fingerprint()  # not the same rule: never resumed as one
    momentum = load_config(None, ["learner.inner_optimizer={momentum: 0.9, nesterov: true}"])
    assert build_run_learner(momentum).inner_optimizer == SGD(0.9, True)  # type: ignore[union-attr]
    for override, message in [
        ("learner.inner_optimizer={name: adam, momentum: 0.9}", "momentum and nesterov are sgd"),
        ("learner.inner_optimizer={eps: 1e-6}", "betas and eps are adam's and adamw's settings"),
        ("learner.inner_optimizer={name: adamw, momentum: 0.9}", "adamw's are betas, eps and"),
        ("learner.inner_optimizer={name: adamw}", "adamw without weight_decay is adam: set"),
        ("learner.inner_optimizer={nesterov: true}", "nesterov needs a momentum above 0"),
        ("learner.inner_optimizer={name: adam, betas: [1.5, 0.9]}", r"betas\[0\] must be in"),
        ("learner.inner_optimizer={name: rmsprop}", "inner_optimizer.name"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override])
    with pytest.raises(ConfigError, match=r"MAML\+\+ adapts with plain gradient steps"):
        load_config(None, ["learner.name=mamlpp", "learner.inner_optimizer={name: adam}"])


def test_reptile_inner_minibatches_in_a_config() -> None:
    cfg = load_config(None, ["learner.name=reptile", "learner.inner_batch=10"])
    learner = build_run_learner(cfg)
    assert isinstance(learner, GradientLearner) and learner.inner_batch == 10
    assert "inner minibatches of 10" in cfg.learner.notes()
    plain = load_config(None, ["learner.name=reptile"])
    assert cfg.fingerprint() != plain.fingerprint()  # other weights: never resumed as one
    # the fingerprint metamap gave this config before the option existed (977309f): old
    # Reptile runs still resume
    assert plain.fingerprint() == "3105b18c18b0a41c"
    with pytest.raises(ConfigError, match=r"'learner\.inner_batch'.*greater than 0"):
        load_config(None, ["learner.name=reptile", "learner.inner_batch=0"])
    with pytest.raises(ConfigError, match="inner_batch"):
        load_config(None, ["learner.inner_batch=10"])  # MAML takes every step on all of them
