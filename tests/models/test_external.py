"""torchvision and timm networks as metamap base networks (``model.name: torchvision`` / ``timm``):
built from a run config with random weights, their features, weights saved to a file and loaded
back (``model.weights: <path>``, torch.save or safetensors, 3 channels summed for grey images),
the normalisation they record, clear errors for a wrong path, file, architecture or missing
library, and a ProtoNet on the body. Small images (32×32) and networks keep it to seconds.

torchvision (and so timm, which imports it) is optional: the tests are skipped without it. PyPI's
torchvision wheel is built against PyPI's (CUDA) torch; beside a CPU torch its compiled operators
do not load, and its import then fails while registering fake kernels for two of them
(pytorch/vision#9085); tests/vision_support.py declares their schemas for the tests, and
metamap itself refuses such an install with :class:`BackboneImportError` (tested below).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from metamap.errors import CheckpointError, ConfigError
from metamap.learners import MAML, ProtoNet
from metamap.models import (
    BackboneImportError,
    ExternalBackbone,
    ModelContext,
    TimmSection,
    TorchvisionSection,
    external,
    input_shape_of,
    normalization_of,
)
from metamap.models.external import IMAGENET_MEAN, IMAGENET_STD, import_backbone_library
from metamap.tasks import TaskBatch
from metamap.train import build_model, load_config
from vision_support import import_vision


def vision(name: str) -> ModuleType:
    """``torchvision`` or ``timm`` imported (tests/vision_support.py), or the test skipped."""
    return import_vision(name)


@pytest.fixture(params=["torchvision", "timm"])
def library(request: pytest.FixtureRequest) -> str:
    vision(request.param)
    return str(request.param)


def section(library: str, **settings: Any) -> TorchvisionSection | TimmSection:
    kind = TorchvisionSection if library == "torchvision" else TimmSection
    return kind.model_validate({"name": library, "arch": "resnet18", **settings})


def build(sec: TorchvisionSection | TimmSection, channels: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return sec.build(ModelContext(out_features=3, channels=channels, image_size=32)).eval()


def images(n: int = 4, channels: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, channels, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---- built from a run config ---------------------------------------------------------------------
@pytest.mark.parametrize("channels", [3, 1])
def test_a_run_config_builds_the_network_with_a_body_of_features(
    library: str, channels: int
) -> None:
    data = "data.name=folder" if channels == 3 else "data.name=omniglot"
    cfg = load_config(
        None,
        [
            "task.family=episodes",
            "task.ways=3",
            data,
            f"data.channels={channels}",
            "data.image_size=32",
            f"model.name={library}",
            "model.arch=resnet18",
            "learner.name=protonet",
        ],
    )
    model, again = build_model(cfg), build_model(cfg)
    assert isinstance(model, ExternalBackbone)
    # same seed, same network: the trainer's build is reproducible
    pairs = zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert model.feature_dim == 512 and model.input_shape == (channels, 32, 32)
    assert input_shape_of(model.body) == (channels, 32, 32)
    x = images(channels=channels)
    assert tuple(model.body(x).shape) == (4, 512)
    assert tuple(model(x).shape) == (4, 3)
    with pytest.raises(ValueError, match=r"expects images of shape \(N, \d, 32, 32\)"):
        model(torch.rand(2, channels, 28, 28))
    # the normalisation is recorded (on the network and on its body), not applied
    expected = (IMAGENET_MEAN, IMAGENET_STD)
    if channels == 1:
        expected = ((sum(IMAGENET_MEAN) / 3,), (sum(IMAGENET_STD) / 3,))
    assert model.normalization == normalization_of(model.body) == expected
    assert cfg.model.normalization(channels) == expected
    assert "normalization" not in " ".join(model.state_dict())
    # running BatchNorm statistics, as trained; no dropout or stochastic depth
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.track_running_stats for m in bns)
    assert cfg.model.describe() == f"{library} resnet18 (random init), BatchNorm inductive"


def test_transductive_batch_norm_drops_the_running_statistics(library: str) -> None:
    model = build(section(library, batch_norm="transductive"))
    assert not any(k.endswith(("running_mean", "running_var")) for k in model.state_dict())
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.track_running_stats for m in bns)


def test_dropout_and_stochastic_depth_are_switched_off() -> None:
    vision("torchvision")
    model = build(section("torchvision", arch="mobilenet_v3_small"))
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    depth = [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]
    assert rates and all(p == 0.0 for p in rates + depth)
    model.train()
    x = images()
    torch.testing.assert_close(model.body(x), model.body(x))  # nothing random


# ---- weights from a file -------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [3, 1])
def test_a_saved_state_dict_loads_back_to_identical_outputs(
    library: str, channels: int, tmp_path: Path
) -> None:
    original = build(section(library), channels, seed=0)
    path = tmp_path / "body.pt"
    torch.save(original.body.state_dict(), path)
    loaded = build(section(library, weights=str(path)), channels, seed=1)
    x = images(channels=channels)
    assert torch.equal(loaded.body(x), original.body(x))
    # the state dict of the whole network (body.* and head.*) loads too; the head is new
    torch.save(original.state_dict(), path)
    whole = build(section(library, weights=str(path)), channels, seed=2)
    assert torch.equal(whole.body(x), original.body(x))
    assert (
        section(library, weights=str(path)).describe().startswith(f"{library} resnet18 (body.pt)")
    )


def test_safetensors_files_load(library: str, tmp_path: Path) -> None:
    save_file = pytest.importorskip("safetensors.torch").save_file
    original = build(section(library))
    path = tmp_path / "body.safetensors"
    save_file({k: v.contiguous() for k, v in original.body.state_dict().items()}, str(path))
    loaded = build(section(library, weights=str(path)), seed=1)
    x = images()
    assert torch.equal(loaded.body(x), original.body(x))


def test_the_libraries_own_state_dict_loads_and_grey_images_sum_the_first_conv(
    tmp_path: Path,
) -> None:
    """A full torchvision network's state dict (its classifier included) is taken; for grey
    images its first convolution is summed over R, G and B, which equals feeding the grey image
    as all three."""
    models = vision("torchvision").models
    torch.manual_seed(5)
    net = models.resnet18(weights=None, num_classes=7).eval()  # any classifier: it is dropped
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    net.fc = nn.Identity()
    rgb = build(section("torchvision", weights=str(path)), 3, seed=1)
    x = images()
    torch.testing.assert_close(rgb.body(x), net(x))
    grey = build(section("torchvision", weights=str(path)), 1, seed=1)
    g = images(channels=1)
    torch.testing.assert_close(grey.body(g), net(g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_a_timm_state_dict_with_its_classifier_loads(tmp_path: Path) -> None:
    timm = vision("timm")
    torch.manual_seed(5)
    net = timm.create_model("resnet18", pretrained=False, num_classes=10).eval()
    path = tmp_path / "timm.pth"
    torch.save(net.state_dict(), path)
    net.reset_classifier(0)
    model = build(section("timm", weights=str(path)), seed=1)
    x = images()
    torch.testing.assert_close(model.body(x), net(x))


def test_bad_weight_files_are_refused_naming_the_problem(library: str, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"model.weights '.*nowhere.pt' is not a file"):
        build(section(library, weights=str(tmp_path / "nowhere.pt")))
    other = tmp_path / "resnet34.pt"
    torch.save(build(section(library, arch="resnet34")).body.state_dict(), other)
    with pytest.raises(CheckpointError, match=r"does not fit this architecture: keys .*unexpected"):
        build(section(library, weights=str(other)))
    wrong_shape = tmp_path / "shape.pt"
    state = build(section(library)).body.state_dict()
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(state, wrong_shape)
    with pytest.raises(CheckpointError, match=r"does not fit this architecture: .*conv1.weight"):
        build(section(library, weights=str(wrong_shape)))
    not_a_state = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_a_state)
    with pytest.raises(CheckpointError, match=r"holds a list, not a state dict"):
        build(section(library, weights=str(not_a_state)))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"cannot be read as a state dict"):
        build(section(library, weights=str(garbage)))


# ---- wrong architectures, published weights, missing libraries ---------------------------------
def test_an_unknown_architecture_is_refused_with_close_names(library: str) -> None:
    with pytest.raises(ConfigError, match=rf"model.arch 'resnet181' is not a {library} .*resnet18"):
        build(section(library, arch="resnet181"))


def test_an_architecture_that_cannot_take_the_images_is_refused() -> None:
    vision("timm")
    with pytest.raises(ConfigError, match=r"timm 'vit_tiny_patch16_224' does not run on 3×32×32"):
        build(section("timm", arch="vit_tiny_patch16_224"))
    with pytest.raises(ConfigError, match=r"no linear classifier"):
        build(section("torchvision", arch="squeezenet1_0"))


def test_published_weights_are_named_from_the_weights_enum(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hub:<NAME>`` picks a member of the architecture's weights enum; its normalisation is
    recorded and its state dict (here a stand-in: no network in the tests) loaded."""
    models = vision("torchvision").models
    with pytest.raises(ConfigError, match=r"no 'IMAGENET9K' weights .*hub:IMAGENET1K_V1"):
        build(section("torchvision", weights="hub:IMAGENET9K"))
    with pytest.raises(ConfigError, match=r"are not weights of 'resnet18'"):
        build(section("torchvision", weights="hub:ResNet34_Weights.IMAGENET1K_V1"))
    with pytest.raises(ValidationError, match=r"expected 'hub' or 'hub:<NAME>'"):
        section("torchvision", weights="hub:")
    torch.manual_seed(3)
    net = models.resnet18(weights=None).eval()
    asked: list[str] = []

    def offline(self: Any, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        asked.append(repr(self))
        return net.state_dict()

    monkeypatch.setattr(models.WeightsEnum, "get_state_dict", offline)
    for weights in ("hub", "hub:IMAGENET1K_V1", "hub:ResNet18_Weights.IMAGENET1K_V1"):
        model = build(section("torchvision", weights=weights), seed=1)
        assert model.normalization == (IMAGENET_MEAN, IMAGENET_STD)
    assert asked == ["ResNet18_Weights.IMAGENET1K_V1"] * 3
    net.fc = nn.Identity()
    x = images()
    torch.testing.assert_close(model.body(x), net(x))
    # load_weights=False: the architecture alone, for a checkpoint loaded next (no download)
    alone = section("torchvision", weights="hub").build(
        ModelContext(3, 1, 3, 32), load_weights=False
    )
    assert len(asked) == 3 and alone.feature_dim == 512


def test_offline_downloads_are_refused_saying_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    models = vision("torchvision").models

    def offline(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(ConfigError, match=r"cannot get torchvision's .* needs the network"):
        build(section("torchvision", weights="hub:DEFAULT"))
    with pytest.raises(ValidationError, match=r"name a pretrained tag in model.arch"):
        section("timm", weights="hub:a1_in1k")


def test_a_missing_or_broken_library_is_refused_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm: ImportError
    with pytest.raises(BackboneImportError, match=r"needs the timm package.*metamap\[vision\]"):
        import_backbone_library("timm")
    with pytest.raises(ConfigError, match=r"needs the timm package"):
        section("timm").build(ModelContext(3, 1, 3, 32))
    assert issubclass(BackboneImportError, ImportError)

    def broken(name: str, package: str | None = None) -> ModuleType:
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(external, "importlib", SimpleNamespace(import_module=broken))
    with pytest.raises(BackboneImportError, match=r"does not import beside torch .*index-url"):
        import_backbone_library("torchvision")


def test_learners_with_a_network_of_their_own_refuse_these_models() -> None:
    with pytest.raises(ConfigError, match=r"model.arch cannot apply: the relation learner"):
        load_config(
            None,
            [
                "task.family=episodes",
                "data.name=folder",
                "data.channels=3",
                "data.image_size=32",
                "model.name=torchvision",
                "learner.name=relation",
            ],
        )


# ---- a learner on the body -----------------------------------------------------------------------
def test_protonet_adapts_on_the_body(library: str) -> None:
    """ProtoNet on a torchvision/timm body: a 3-way 2-shot task of 32×32 images, adapted and
    predicted, and a meta-gradient over a batch of two tasks that reaches the backbone."""
    model = build(section(library)).train()
    learner = ProtoNet(model.body)
    g = torch.Generator().manual_seed(0)
    patterns = torch.rand(3, 3, 32, 32, generator=g)
    y = torch.arange(3).repeat(2)
    sx = (patterns[y] + 0.1 * torch.rand(6, 3, 32, 32, generator=g)).clamp(0, 1)
    qx = (patterns[y] + 0.1 * torch.rand(6, 3, 32, 32, generator=g)).clamp(0, 1)
    learner.eval()
    logits = learner.predict(learner.adapt(sx, y), qx)
    assert tuple(logits.shape) == (6, 3) and torch.isfinite(logits).all()
    assert (logits.argmax(-1) == y).float().mean() >= 2 / 3  # distinct patterns, even untrained
    # a meta-gradient over two tasks of noise (a loss that is not saturated) reaches the backbone
    learner.train()
    noise = torch.rand(2, 12, 3, 32, 32, generator=g)
    labels = torch.arange(3).repeat(2).expand(2, -1)
    step = learner.meta_gradients(TaskBatch(noise[:, :6], labels, noise[:, 6:], labels))
    assert float(step.loss) > 0 and all(torch.isfinite(v).all() for v in step.grads.values())
    assert step.grads["model.conv1.weight"].abs().sum() > 0


def test_maml_adapts_the_whole_network() -> None:
    """A gradient-based learner takes the whole network (body and head) through
    ``functional_call``; 64×64 images, since the learners' input check runs one image in training
    mode, which BatchNorm refuses on ResNet-18's 1×1 last maps of 32×32 images."""
    vision("torchvision")
    torch.manual_seed(0)
    model = section("torchvision", batch_norm="transductive").build(ModelContext(3, 1, 3, 64))
    learner = MAML(model, loss="cross_entropy", inner_lr=0.01, inner_steps=1)
    x = torch.rand(2, 6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(3).repeat(2).expand(2, -1)
    step = learner.meta_gradients(TaskBatch(x, y, x, y))
    assert torch.isfinite(step.loss) and step.grads["model.head.weight"].abs().sum() > 0
    assert step.grads["model.body.conv1.weight"].abs().sum() > 0


def test_a_checkpoints_model_is_rebuilt_without_its_pretrained_weights(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ModelContext(pretrained=False) (what learner_from_checkpoint asks for): the hub is not
    asked, since the checkpoint's weights replace them."""
    models = vision("torchvision").models
    asked: list[str] = []

    def offline(self: Any, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        asked.append(repr(self))
        return models.resnet18(weights=None).state_dict()

    monkeypatch.setattr(models.WeightsEnum, "get_state_dict", offline)
    hub = section("torchvision", weights="hub")
    hub.build(ModelContext(3, 1, 3, 32))
    assert len(asked) == 1
    rebuilt = hub.build(ModelContext(3, 1, 3, 32, pretrained=False))
    assert len(asked) == 1 and rebuilt.feature_dim == 512
