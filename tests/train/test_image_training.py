"""Every image learner trains through the Trainer on a user's own image folder (generated here).

Ten classes of 28×28 grey images (a bright square at a class-specific place, plus noise) are
split 6/2/2 by class; a few meta-iterations must run, validate, checkpoint and evaluate.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from metamap.errors import ConfigError
from metamap.learners import PretrainBaseline, RelationNet
from metamap.models import drop_layers
from metamap.train import (
    Trainer,
    build_tasks,
    check_evaluation,
    describe,
    evaluate_run,
    learner_from_checkpoint,
    load_config,
    read_metrics,
)
from metamap.train.build import load_images


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, block_classes: Callable[..., Path]) -> Path:
    return block_classes(
        tmp_path_factory.mktemp("images"), [5] * 10, cols=4, step=(6, 6), offset=(4, 2), block=6
    )


def folder_run(folder: Path, tmp_path: Path) -> list[str]:
    """Overrides for 2-way 1-shot episodes of the folder with a narrow Conv-4."""
    return [
        "task.family=episodes",
        "data.name=folder",
        "data.protocol=folder",
        f"data.root={folder}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "task.ways=2",
        "task.shots=1",
        "task.queries=2",
        "model.name=conv4",
        "model.width=8",
    ]


@pytest.mark.parametrize(
    "learner",
    ["protonet", "matching", "relation", "r2d2", "svm", "maml", "fomaml", "anil", "pretrain"],
)
def test_image_learner_trains_validates_and_evaluates(
    folder: Path, tmp_path: Path, learner: str
) -> None:
    inner = ["learner.inner_lr=0.4"] if learner in ("maml", "fomaml", "anil") else []
    cfg = load_config(
        None,
        [
            *folder_run(folder, tmp_path),
            f"learner.name={learner}",
            *inner,
            "train.steps=3",
            "train.meta_batch=2",
            "train.batch_size=8",
            "train.val_every=3",
            "train.val_tasks=4",
            "train.ckpt_every=3",
            "train.progress=false",
            "eval.tasks=6",
            "eval.shots=[1]",
            "eval.steps=[0,1]",
            "eval.queries=2",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run")
    result = trainer.fit()
    assert result.step == 3 and trainer.best_path.exists()
    assert 0.0 <= result.best_val <= 1.0
    res = evaluate_run(cfg, trainer.learner)
    scores = res["scores"]["1-shot"]
    assert all(s["n"] == 6 and 0.0 <= s["mean"] <= 1.0 for s in scores.values())
    assert "BatchNorm transductive" in res["protocol"]


@pytest.mark.parametrize("learner", ["protonet", "maml", "pretrain"])
def test_checking_the_evaluation_leaves_the_learner_and_random_state_as_they_were(
    folder: Path, tmp_path: Path, learner: str
) -> None:
    over = [*folder_run(folder, tmp_path), f"learner.name={learner}", "model.batch_norm=inductive"]
    cfg = load_config(None, [*over, "eval.ways=2", "eval.shots=[1]", "eval.queries=2"])
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.learner.train()
    before = {k: v.clone() for k, v in trainer.learner.state_dict().items()}
    rng = torch.get_rng_state()
    check_evaluation(cfg, trainer.learner)
    after = trainer.learner.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng) and trainer.learner.training
    bad = load_config(None, [*over, "eval.ways=2", "eval.shots=[2]", "eval.queries=4"])
    with pytest.raises(ConfigError, match=r"eval.shots 2, eval.queries 4.*shots \+ queries = 6"):
        check_evaluation(bad, trainer.learner)


def test_evaluation_shots_not_training_shots_bound_the_test_episodes(
    folder: Path, tmp_path: Path
) -> None:
    """A 3-shot model is scored 1-shot with 3 queries (4 of a class's 5 images): the training
    shots + the evaluation queries (6) need not fit, and once did not."""
    cfg = load_config(
        None,
        [
            *folder_run(folder, tmp_path),
            "task.shots=3",
            "task.queries=1",
            "learner.name=protonet",
            "eval.tasks=4",
            "eval.shots=[1]",
            "eval.queries=3",
        ],
    )
    trainer = Trainer(cfg, tmp_path / "run")
    check_evaluation(cfg, trainer.learner)
    scores = evaluate_run(cfg, trainer.learner)["scores"]["1-shot"]["0"]
    assert scores["n"] == 4


@pytest.mark.parametrize(
    ("override", "split", "keys"),
    [
        ("task.ways=7", "train", "task.ways 7, task.shots 1, task.queries 2"),
        ("task.queries=5", "train", "task.ways 2, task.shots 1, task.queries 5"),
        ("eval.ways=3", "val", "eval.ways 3, task.shots 1, task.queries 2"),
        ("eval.ways=3", "test", "eval.ways 3, eval.shots 1, eval.queries 2"),
    ],
)
def test_episodes_a_split_cannot_give_name_the_config_keys(
    folder: Path, tmp_path: Path, override: str, split: str, keys: str
) -> None:
    over = [*folder_run(folder, tmp_path), "learner.name=protonet", "eval.shots=[1]", override]
    over.append("eval.queries=2")
    cfg = load_config(None, over)
    with pytest.raises(
        ConfigError, match=f"the {split} split cannot give these episodes \\({keys}\\)"
    ):
        build_tasks(cfg, split, queries=2 if split == "test" else None, ways=cfg.eval.ways)


def test_pretrain_baseline_learns_base_classes_and_resumes_exactly(
    folder: Path, tmp_path: Path
) -> None:
    """Supervised pre-training: the base-class loss falls, the checkpoint reloads without the
    data, and a killed-and-resumed run ends with the uninterrupted run's weights."""
    over = [
        *folder_run(folder, tmp_path),
        "model.batch_norm=inductive",
        "learner.name=pretrain",
        "train.steps=30",
        "train.batch_size=16",
        "train.lr=0.01",
        "train.val_every=10",
        "train.val_tasks=4",
        "train.ckpt_every=5",
        "train.log_every=1",
        "train.progress=false",
    ]
    cfg = load_config(None, over)
    full = Trainer(cfg, tmp_path / "full")
    assert isinstance(full.learner, PretrainBaseline)
    assert full.learner.classifier.out_features == 6  # the 6 training classes of the folder
    full.fit()
    losses = [r["loss"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl")]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    killed = Trainer(cfg, tmp_path / "killed")
    killed.fit(stop_after=12)
    resumed = Trainer(cfg, tmp_path / "killed")
    resumed.fit()
    a, b = full.learner.state_dict(), resumed.learner.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    _, loaded, _ = learner_from_checkpoint(full.last_path)
    assert isinstance(loaded, PretrainBaseline)
    assert all(torch.equal(loaded.state_dict()[k], a[k]) for k in a)


def test_validation_uses_the_test_ways_so_wide_training_episodes_still_validate(
    folder: Path, tmp_path: Path
) -> None:
    """ProtoNet-style: trained 6-way (all 6 training classes), validated and tested 2-way."""
    over = [*folder_run(folder, tmp_path), "learner.name=protonet", "task.ways=6"]
    t = Trainer(load_config(None, [*over, "eval.ways=2", "train.val_tasks=3"]), tmp_path / "r")
    assert (
        next(t.problem.validation_chunks()).support_y.max().item() == 1
    )  # 2-way validation episodes
    assert t.problem.tasks.sample(1, torch.Generator().manual_seed(0)).support_y.max().item() == 5
    # validating 6-way needs 6 classes; the message names the key that changes that
    with pytest.raises(ConfigError, match=r"eval.ways unset, so task.ways 6.*ways=6 but the data"):
        Trainer(load_config(None, over), tmp_path / "r2").fit()
    assert not (tmp_path / "r2").exists()  # refused before the run folder was made


def test_validation_in_chunks_scores_the_same_fixed_tasks(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunked validation (2 episodes at a time) = evaluating the whole fixed set at once."""
    import metamap.train.problems as problems_module
    from metamap.train import build_tasks, evaluate
    from metamap.train.problems import VAL_SEED_OFFSET

    monkeypatch.setattr(problems_module, "VAL_CHUNK", 2)
    cfg = load_config(
        None, [*folder_run(folder, tmp_path), "learner.name=protonet", "train.val_tasks=5"]
    )
    t = Trainer(cfg, tmp_path / "r")
    assert [len(c.support_x) for c in t.problem.validation_chunks()] == [2, 2, 1]
    whole = build_tasks(cfg, "val").fixed_tasks(5, cfg.seed + VAL_SEED_OFFSET)
    assert t.validate() == pytest.approx(evaluate(t.learner, whole, [0])[0].mean, abs=1e-12)


SHORT_RUN = [
    "train.steps=4",
    "train.meta_batch=2",
    "train.val_every=4",
    "train.val_tasks=2",
    "train.ckpt_every=1",
    "train.progress=false",
]


def assert_replayed_and_effective(tmp_path: Path, over: list[str], extra: list[str]) -> Trainer:
    """Train ``over + extra`` straight through and killed after step 2 then resumed: the same
    weights; and not the weights of ``over`` alone (``extra`` changes training). Returns the
    straight run."""
    runs = {}
    for name, o in (("straight", [*over, *extra]), ("plain", over)):
        runs[name] = Trainer(load_config(None, o), tmp_path / name)
        runs[name].fit()
    Trainer(load_config(None, [*over, *extra]), tmp_path / "resumed").fit(stop_after=2)
    runs["resumed"] = Trainer(load_config(None, [*over, *extra]), tmp_path / "resumed")
    runs["resumed"].fit()
    w, r, p = (runs[k].learner.state_dict() for k in ("straight", "resumed", "plain"))
    assert all(torch.equal(w[k], r[k]) for k in w)
    assert any(not torch.equal(w[k], p[k]) for k in w)
    assert load_config(None, [*over, *extra]).fingerprint() != load_config(None, over).fingerprint()
    return runs["straight"]


def test_augmented_training_resumes_exactly_and_differs_from_plain(
    folder: Path, tmp_path: Path
) -> None:
    """Augmentation draws from the trainer's generator: a killed run replays it exactly."""
    over = [*folder_run(folder, tmp_path), "learner.name=protonet", *SHORT_RUN]
    aug = ["data.augment.padding=2", "data.augment.flip=true", "data.augment.jitter=0.4"]
    assert_replayed_and_effective(tmp_path, over, aug)


@pytest.mark.parametrize("learner", ["svm", "maml"])
def test_dropblock_training_resumes_exactly_and_differs_from_plain(
    folder: Path, tmp_path: Path, learner: str
) -> None:
    """DropBlock masks come from generators seeded by the trainer's: a killed run replays them."""
    over = [
        *folder_run(folder, tmp_path),
        "model.name=resnet12",
        "model.width=4",
        f"learner.name={learner}",
        *SHORT_RUN,
    ]
    drop = ["model.drop_rate=0.3", "model.dropblock_size=3", "model.drop_warmup_steps=2"]
    straight = assert_replayed_and_effective(tmp_path, over, drop)
    assert [d.rate for d in drop_layers(straight.learner)] == pytest.approx([0.3] * 4)
    zero = load_config(None, [*over, "model.drop_rate=0", "model.dropblock_size=3"])
    assert zero.fingerprint() == load_config(None, over).fingerprint()  # old runs still resume


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (
            ["model.name=conv4", "model.drop_rate=0.1"],
            r"drop_rate \(0.1\) is a setting of resnet12",
        ),
        (["model.name=resnet12", "model.drop_rate=0.1", "learner.batching=vmap"], "vmap refuses"),
        (["model.name=resnet12", "model.drop_rate=1.0"], "model.drop_rate"),
    ],
)
def test_dropblock_settings_are_checked(overrides: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(None, ["task.family=episodes", "learner.name=maml", *overrides])


@pytest.mark.parametrize("learner", ["maml", "protonet"])
def test_strided_conv4_trains_resumes_and_reloads_as_itself(
    folder: Path, tmp_path: Path, learner: str
) -> None:
    """``model.downsample: stride`` (MAML's Omniglot Conv-4): it changes training, a killed run
    replays it, its checkpoint rebuilds the strided network, and the protocol line names it."""
    inner = ["learner.inner_lr=0.4"] if learner == "maml" else []
    over = [*folder_run(folder, tmp_path), f"learner.name={learner}", *inner, *SHORT_RUN]
    straight = assert_replayed_and_effective(tmp_path, over, ["model.downsample=stride"])
    cfg, loaded, _ = learner_from_checkpoint(straight.last_path)
    assert cfg.model.downsample == "stride"
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in loaded.modules())
    w, r = straight.learner.state_dict(), loaded.state_dict()
    assert all(torch.equal(w[k], r[k]) for k in w)
    assert "conv4 strided width 8, BatchNorm transductive" in describe(cfg)
    plain = load_config(None, [*over, "model.downsample=maxpool"])
    assert plain.fingerprint() == load_config(None, over).fingerprint()  # old runs still resume


def test_head_init_std_changes_the_start_and_replays(folder: Path, tmp_path: Path) -> None:
    """``model.head_init_std`` (MAML's Omniglot head, N(0, 1)): it changes training, a killed run
    replays it, the protocol line names it, and leaving it unset keeps old runs' fingerprint."""
    over = [*folder_run(folder, tmp_path), "learner.name=maml", "learner.inner_lr=0.4", *SHORT_RUN]
    straight = assert_replayed_and_effective(tmp_path, over, ["model.head_init_std=1.0"])
    cfg, _, _ = learner_from_checkpoint(straight.last_path)
    assert cfg.model.head_init_std == 1.0
    assert "head init N(0, 1²)" in describe(cfg)
    assert "head init" not in describe(load_config(None, over))
    unset = load_config(None, [*over, "model.head_init_std=null"])
    assert unset.fingerprint() == load_config(None, over).fingerprint()  # old runs still resume


def test_relation_mean_class_feature_trains_replays_and_reloads(
    folder: Path, tmp_path: Path
) -> None:
    """``learner.class_feature: mean`` changes Relation Networks' training at 2 shots, a killed
    run replays it, its checkpoint rebuilds it, the protocol line names it, and leaving it at
    the paper's sum keeps old runs' fingerprint."""
    over = [*folder_run(folder, tmp_path), "learner.name=relation", "task.shots=2", *SHORT_RUN]
    straight = assert_replayed_and_effective(tmp_path, over, ["learner.class_feature=mean"])
    cfg, loaded, _ = learner_from_checkpoint(straight.last_path)
    assert cfg.learner.class_feature == "mean"
    assert isinstance(loaded, RelationNet) and loaded.class_feature == "mean"
    assert "class maps: mean" in describe(cfg)
    assert "class maps" not in describe(load_config(None, over))
    summed = load_config(None, [*over, "learner.class_feature=sum"])
    assert summed.fingerprint() == load_config(None, over).fingerprint()  # old runs still resume
    # a test-time override of a sum-trained checkpoint loads the same weights
    _, as_mean, _ = learner_from_checkpoint(
        Trainer(load_config(None, over), tmp_path / "plain").last_path,
        ["learner.class_feature=mean"],
    )
    assert isinstance(as_mean, RelationNet) and as_mean.class_feature == "mean"
    with pytest.raises(ConfigError, match=r"class_feature .* is a setting of relation;"):
        load_config(None, [*over, "learner.name=protonet", "learner.class_feature=mean"])


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["model.downsample=stride", "model.name=resnet12"], "model 'resnet12' has no such"),
        (["model.downsample=stride", "learner.name=relation"], "its own embedding"),
        (["model.downsample=avg"], "'model.downsample'"),
        (["model.head_init_std=1", "model.name=resnet12"], "model 'resnet12' has no such"),
        (["model.head_init_std=1", "learner.name=protonet"], "uses only the body"),
        (["model.head_init_std=0"], "'model.head_init_std'"),
    ],
)
def test_conv4_options_are_checked(overrides: list[str], needle: str) -> None:
    """The Conv-4 options (strided downsampling, the head's start) are refused where they would
    not apply, naming the key."""
    base = ["task.family=episodes", "learner.name=maml", "model.name=conv4"]
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [*base, *overrides])


def test_a_folders_trainval_split_is_its_train_and_val_classes(
    folder: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, [*folder_run(folder, tmp_path), "learner.name=protonet"])
    names = {s: set(load_images(cfg, s).class_names) for s in ("train", "val", "test")}
    joint = load_config(
        None,
        [*folder_run(folder, tmp_path), "data.train_split=trainval", "eval.checkpoint=last"],
    )
    trainval = set(load_images(joint, "train").class_names)
    assert trainval == names["train"] | names["val"] and not trainval & names["test"]
    assert len(trainval) == 8 and len(names["train"]) == 6  # 60% + 20% of the 10 classes
