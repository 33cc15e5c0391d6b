"""FeatureExtractor: the checkpoint's encoder, batched embedding, BatchNorm policies, inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metamap.errors import CheckpointError, DataError, TaskShapeError
from metamap.features import FeatureExtractor, load_image_files
from metamap.learners import MAML, ProtoNet
from metamap.train import learner_from_checkpoint, load_checkpoint, load_config, save_checkpoint


def test_protonet_encoder_equals_the_learners(protonet_ckpt: Path, image_root: Path) -> None:
    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    _, learner, _ = learner_from_checkpoint(protonet_ckpt)
    assert isinstance(learner, ProtoNet)
    loaded = load_image_files(image_root, ext.spec)
    x = torch.from_numpy(loaded.images).float() / 255
    learner.eval()
    with torch.no_grad():
        want = learner.encode(x)
    z = ext.embed(loaded)
    assert z.shape == (72, ext.feature_dim) == (72, 16)
    torch.testing.assert_close(z, want)
    # Inductive BatchNorm: batching changes nothing; uint8, float and files agree.
    torch.testing.assert_close(ext.embed(x, batch_size=5), z)
    torch.testing.assert_close(ext.embed(loaded.images), z)
    torch.testing.assert_close(ext.embed(loaded.files[:10]), z[:10])
    assert ext.info["learner"] == "protonet" and ext.normalization == "running"


def test_maml_encoder_is_the_body_and_calibration_fixes_batch_statistics(
    maml_ckpt: Path, image_root: Path
) -> None:
    plain = FeatureExtractor.from_checkpoint(maml_ckpt)
    x = plain.images(image_root)
    with pytest.raises(TaskShapeError, match=r"transductive .* calibrate it first"):
        plain.embed(x)  # never batch-dependent by accident
    ext = FeatureExtractor.from_checkpoint(maml_ckpt, transductive=True)  # asked for
    _, learner, _ = learner_from_checkpoint(maml_ckpt)
    assert isinstance(learner, MAML)
    with torch.no_grad():
        want = learner.model.body(x[:12])
    torch.testing.assert_close(ext.embed(x[:12]), want)  # one batch: the batch's statistics
    assert ext.normalization == "batch"
    split = ext.embed(x, batch_size=7)
    whole = ext.embed(x, batch_size=100)
    assert not torch.allclose(split, whole, atol=1e-4)  # transductive: depends on the batch
    cal = plain.calibrate(x)
    assert cal.normalization == "running" and plain.normalization == "batch"
    a, b = cal.embed(x, batch_size=7), cal.embed(x, batch_size=100)
    torch.testing.assert_close(a, b)
    # Calibrated statistics are those of the data: close to one batch of everything (BatchNorm's
    # running variance is the unbiased estimate, hence not exactly equal).
    torch.testing.assert_close(whole, b, atol=1e-2, rtol=5e-2)


def test_calibration_of_class_sorted_images_sees_the_spread_between_classes(
    maml_ckpt: Path,
) -> None:
    """Images sorted by class (half dark, half bright), calibrated in two batches: unshuffled,
    each batch would hold one class and the averaged variance would miss the difference
    between them. The first BatchNorm's statistics must be those of all the images."""
    ext = FeatureExtractor.from_checkpoint(maml_ckpt)
    g = torch.Generator().manual_seed(0)
    dark = torch.rand(100, 1, 28, 28, generator=g) * 0.2
    x = torch.cat([dark, dark + 0.8])  # sorted by "class"
    conv = next(m for m in ext.encoder.modules() if isinstance(m, torch.nn.Conv2d))
    bn = next(m for m in ext.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        h = conv(x.contiguous())
    want_mean, want_var = h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3))
    cal = ext.calibrate(x, batch_size=100)
    got = next(m for m in cal.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert got is not bn and got.running_mean is not None and got.running_var is not None
    torch.testing.assert_close(got.running_mean, want_mean, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(got.running_var, want_var, atol=1e-4, rtol=0.1)
    # What batches of one class each give: the between-class spread is lost.
    within = (h[:100].var(dim=(0, 2, 3)) + h[100:].var(dim=(0, 2, 3))) / 2
    assert float(within.sum()) < 0.5 * float(want_var.sum())


def test_calibration_leaves_dropout_off() -> None:
    """A ResNet-12 with dropout and DropBlock (MetaOptNet's): calibrating must measure the
    activations the encoder embeds with (dropout off), so it is deterministic and equals the
    calibration of the same weights without dropout."""
    from metamap.features import InputSpec
    from metamap.models.resnet12 import ResNet12

    torch.manual_seed(0)
    net = ResNet12(5, 1, (4, 4, 4, 4), "transductive", drop_rate=0.5, image_size=16)
    plain = ResNet12(5, 1, (4, 4, 4, 4), "transductive", image_size=16)
    plain.load_state_dict(net.state_dict())
    x = torch.rand(64, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    spec = InputSpec(1, 16)
    want = FeatureExtractor(plain.body, spec, batch_norm="transductive").calibrate(x).embed(x)
    ext = FeatureExtractor(net.body, spec, batch_norm="transductive")
    torch.testing.assert_close(ext.calibrate(x).embed(x), want)
    assert ext.encoder.training is False


def test_channels_last_gives_the_same_features(protonet_ckpt: Path, image_root: Path) -> None:
    a = FeatureExtractor.from_checkpoint(protonet_ckpt, channels_last=False)
    b = FeatureExtractor.from_checkpoint(protonet_ckpt)
    assert b.channels_last and not a.channels_last  # automatic for convolutional encoders
    x = a.images(image_root)
    torch.testing.assert_close(a.embed(x), b.embed(x), atol=1e-5, rtol=1e-5)


def test_bad_images_are_named(protonet_ckpt: Path, tmp_path: Path) -> None:
    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    with pytest.raises(TaskShapeError, match=r"takes \(N, 1, 28, 28\)"):
        ext.embed(torch.rand(3, 3, 28, 28))
    with pytest.raises(TaskShapeError, match="uint8"):
        ext.embed(torch.ones(3, 1, 28, 28, dtype=torch.int32))
    with pytest.raises(DataError, match="does not exist"):
        ext.embed(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        ext.embed(tmp_path / "empty")
    (tmp_path / "mixed" / "a").mkdir(parents=True)
    (tmp_path / "mixed" / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"mixes class folders with image files .*\(b\.png\)"):
        ext.embed(tmp_path / "mixed")
    (tmp_path / "notes").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "notes" / "a.png")
    (tmp_path / "notes" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"readme\.txt"):
        ext.embed(tmp_path / "notes")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png"):
        ext.embed([tmp_path / "bad.png"])


def test_other_sizes_and_modes_are_converted_and_counted(
    protonet_ckpt: Path, tmp_path: Path
) -> None:
    ext = FeatureExtractor.from_checkpoint(protonet_ckpt)
    rgb = np.zeros((60, 40, 3), np.uint8)
    rgb[10:30, 10:20] = 255
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "big.png")
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(tmp_path / "ok.png")
    loaded = load_image_files(tmp_path, ext.spec)
    assert loaded.images.shape == (2, 1, 28, 28) and loaded.converted == 1
    assert loaded.images[0].max() > 0  # the square survived the conversion


def test_checkpoints_that_cannot_be_used_say_why(protonet_ckpt: Path, tmp_path: Path) -> None:
    from metamap.train import Trainer

    reg = Trainer(
        load_config(None, ["train.steps=1", "train.progress=false", "train.val_tasks=2"]),
        tmp_path / "sin",
    )
    reg.fit()
    with pytest.raises(CheckpointError, match="is a sinusoid model, not of images"):
        FeatureExtractor.from_checkpoint(reg.last_path)
    state = load_checkpoint(protonet_ckpt)
    state["format_version"] = 99
    save_checkpoint(tmp_path / "future.pt", {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CheckpointError, match="format version"):
        FeatureExtractor.from_checkpoint(tmp_path / "future.pt")
    state = load_checkpoint(protonet_ckpt)
    state["config"]["model"]["width"] = 32  # weights of another model
    save_checkpoint(tmp_path / "other.pt", {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(CheckpointError, match="does not match"):
        FeatureExtractor.from_checkpoint(tmp_path / "other.pt")
