"""Training on Meta-Dataset episodes through the config: variable ways and shots per episode,
N-way K-shot validation, resumable, scored on fixed Meta-Dataset test episodes; bad settings are
refused when the config is read."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from metamap.errors import ConfigError
from metamap.tasks import MetaDatasetSampler
from metamap.train import Trainer, check_evaluation, evaluate_run, load_config, read_metrics
from metamap.train.problems import MetaDatasetProblem


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, block_classes: Callable[..., Path]) -> Path:
    """30 classes of 4–9 images (a bright block at a class-specific place), split 18 / 6 / 6."""
    counts = np.random.default_rng(1).integers(4, 10, 30).tolist()
    return block_classes(tmp_path_factory.mktemp("images"), counts, cols=6, step=(5, 4))


def overrides(folder: Path, tmp_path: Path) -> list[str]:
    return [
        "task.family=episodes",
        "task.sampler=metadataset",
        "task.min_ways=3",
        "task.max_ways=6",
        "task.ways=3",
        "task.shots=1",
        "task.queries=2",
        "data.name=folder",
        "data.protocol=folder",
        f"data.root={folder}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "model.name=conv4",
        "model.width=8",
        "learner.name=protonet",
        "train.steps=6",
        "train.meta_batch=2",
        "train.val_every=3",
        "train.val_tasks=4",
        "train.ckpt_every=2",
        "train.log_every=1",
        "train.progress=false",
        "eval.tasks=4",
        "eval.shots=[1]",
        "eval.queries=2",
        "eval.metadataset_tasks=7",
    ]


def test_protonet_trains_on_meta_dataset_episodes_and_is_scored_on_them(
    folder: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, overrides(folder, tmp_path))
    trainer = Trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.problem, MetaDatasetProblem)
    sampler = trainer.problem.sampler
    ways = {t.support_y.max().item() + 1 for t in sampler.sample(20, torch.Generator())}
    assert len(ways) > 1 and ways <= {3, 4, 5, 6}  # variable ways from the 18 training classes
    check_evaluation(cfg, trainer.learner)
    result = trainer.fit()
    records = read_metrics(trainer.metrics_path)
    assert result.step == 6 and all(np.isfinite(r["loss"]) for r in records)
    assert [r["step"] for r in records if "val_accuracy" in r] == [3, 6]
    res = evaluate_run(cfg, trainer.learner)
    assert "Meta-Dataset episodes of 3-6 ways" in res["protocol"]
    assert res["scores"]["1-shot"]["0"]["n"] == 4  # the N-way K-shot protocol is still scored
    md = res["meta_dataset"]
    assert md["tasks"] == 7 and 3 <= md["mean_ways"] <= 6 and 0.0 <= md["mean"] <= 1.0
    assert evaluate_run(cfg, trainer.learner)["meta_dataset"] == md  # fixed, seeded episodes


def test_a_killed_meta_dataset_run_resumes_to_the_same_weights(
    folder: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, overrides(folder, tmp_path))
    full = Trainer(cfg, tmp_path / "full")
    full.fit()
    part = Trainer(cfg, tmp_path / "part")
    part.fit(stop_after=5)  # killed after step 5; the last checkpoint is from step 4
    resumed = Trainer(cfg, tmp_path / "part")
    resumed.fit()
    a, b = full.learner.state_dict(), resumed.learner.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory, block_classes: Callable[..., Path]) -> Path:
    """Another domain: 20 classes of 6 images, blocks on another grid (split 12 / 4 / 4)."""
    return block_classes(tmp_path_factory.mktemp("second"), [6] * 20, cols=4, step=(4, 6), seed=3)


def extra_domain(root: Path, tmp_path: Path, **more: object) -> str:
    fields = {"name": "folder", "protocol": "folder", "root": str(root)}
    fields |= {"cache_dir": str(tmp_path / "cache"), **more}
    return "extra_domains=[{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}]"


def test_episodes_draw_from_every_domain_and_are_scored_per_domain(
    folder: Path, second: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, [*overrides(folder, tmp_path), extra_domain(second, tmp_path)])
    trainer = Trainer(cfg, tmp_path / "run")
    sampler = trainer.problem.sampler  # type: ignore[attr-defined]
    assert isinstance(sampler, MetaDatasetSampler) and sampler.num_domains == 2
    tasks = sampler.sample(30, torch.Generator().manual_seed(0))
    assert {t.params["domain"] for t in tasks} == {0.0, 1.0}
    assert {t.support_x.shape[1:] for t in tasks} == {(1, 28, 28)}
    trainer.fit()
    res = evaluate_run(cfg, trainer.learner)
    assert "Meta-Dataset episodes of 3-6 ways over 2 domains (folder, folder)" in res["protocol"]
    md = res["meta_dataset"]
    counts = [d["tasks"] for d in md["by_domain"]]
    assert sum(counts) == md["tasks"] == 7 and min(counts) > 0
    pooled = sum(d["mean"] * d["tasks"] for d in md["by_domain"]) / md["tasks"]
    assert pooled == pytest.approx(md["mean"])
    one = load_config(None, overrides(folder, tmp_path))
    assert one.fingerprint() != cfg.fingerprint()
    assert evaluate_run(one, trainer.learner)["meta_dataset"]["by_domain"] is None


def test_extra_domains_only_in_test_episodes_leave_the_fingerprint_alone(
    folder: Path, second: Path, tmp_path: Path
) -> None:
    fixed = [*overrides(folder, tmp_path), "task.sampler=fixed"]
    a = load_config(None, fixed)
    b = load_config(None, [*fixed, extra_domain(second, tmp_path)])
    assert a.fingerprint() == b.fingerprint()
    moved = load_config(None, [*fixed, extra_domain(second, tmp_path / "elsewhere")])
    assert moved.fingerprint() == b.fingerprint()


@pytest.mark.parametrize(
    ("more", "message"),
    [
        ({"image_size": 32}, r"extra_domains\[0\] \(folder\) has image_size 32, channels 1 but"),
        ({"augment": "{flip: true}"}, r"extra_domains\[0\].augment: augmentation is set once"),
        (
            {"name": "omniglot", "protocol": "vinyals", "channels": 3},
            r"'extra_domains\.0\.channels': 'omniglot' has grey images: set channels 1",
        ),
        ({"name": "cub", "protocol": "folder"}, r"extra_domains\[0\]\.protocol \('folder'\) is a "),
    ],
)
def test_extra_domains_that_cannot_share_an_episode_stream_are_refused(
    folder: Path, second: Path, tmp_path: Path, more: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [*overrides(folder, tmp_path), extra_domain(second, tmp_path, **more)])
    plain = [*overrides(folder, tmp_path), "task.sampler=fixed", "eval.metadataset_tasks=0"]
    with pytest.raises(ConfigError, match="extra_domains is for Meta-Dataset episodes"):
        load_config(None, [*plain, extra_domain(second, tmp_path)])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["learner.name=maml"], "learner 'maml' cannot take \\(a fixed head\\)"),
        (["learner.name=pretrain"], "learner 'pretrain' cannot take \\(labelled batches\\)"),
        (["task.min_ways=7"], "need 2 ≤ min_ways ≤ max_ways"),
        (["task.hierarchy=true"], "task.hierarchy .* grouped \\('omniglot'\\), not only folder"),
        (
            ["task.sampler=fixed", "eval.metadataset_tasks=0", "task.hierarchy=true"],
            "task.hierarchy is for Meta-Dataset episodes",
        ),
        (["task.min_ways=19", "task.max_ways=20"], "the train split cannot give Meta-Dataset"),
    ],
)
def test_settings_meta_dataset_episodes_cannot_take_are_refused(
    folder: Path, tmp_path: Path, change: list[str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):  # before the run folder is made
        Trainer(load_config(None, [*overrides(folder, tmp_path), *change]), tmp_path / "r").fit()
    assert not (tmp_path / "r").exists()


def test_meta_dataset_test_episodes_the_test_split_cannot_give_fail_before_training(
    folder: Path, tmp_path: Path
) -> None:
    """7-way episodes train on the 18 training classes, but the 6 test classes cannot give them:
    the check before training says so, naming the keys."""
    cfg = load_config(None, [*overrides(folder, tmp_path), "task.min_ways=7", "task.max_ways=9"])
    trainer = Trainer(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"test split cannot give Meta-Dataset .*min_ways 7"):
        check_evaluation(cfg, trainer.learner)
