"""torchvision and timm networks as metamap base networks: a ``body`` of features and a ``head``.

``model: {name: torchvision, arch: resnet18}`` and ``model: {name: timm, arch: resnet18}`` build
the named classification network of torchvision (``torchvision.models.list_models``) or timm
(``timm.list_models()``; an ``arch`` may carry a pretrained tag, ``resnet18.a1_in1k``) without
its classifier, as the ``body`` of an :class:`ExternalBackbone` — ``(N, C, H, W) → (N, D)``
features — followed by a linear ``head`` for the task's ways. Learners use them as they use
Conv-4 or ResNet-12: encoder learners (ProtoNet, MetaOptNet, …) take the ``body``,
gradient-based ones (MAML, ANIL, …) the whole network.

**Weights** (``weights``):

* ``null`` (default): randomly initialised, from the global RNG (the trainer seeds it);
* a file: a state dict saved with ``torch.save`` (read with ``torch.load(weights_only=True)``,
  so never unpickling code) or a ``.safetensors`` file, of the architecture — with or without
  its classifier, which is dropped — or of an :class:`ExternalBackbone` (``body.*``/``head.*``
  keys; the head is dropped). Any other missing or extra key, or a shape that differs, is
  refused, naming them;
* ``hub`` (torchvision: ``hub:<NAME>``, a member of the architecture's weights enum such as
  ``hub:IMAGENET1K_V1``, or ``hub`` for its ``DEFAULT``): the library's published weights,
  downloaded into torch's or Hugging Face's cache on first use — this needs the network.

**Channels.** These networks take RGB images. For grey images (``data.channels: 1``) the first
convolution takes one channel: loaded weights are summed over its three input channels (timm's
convention, equal to feeding the grey image as R, G and B); timm networks are built with
``in_chans=1``, torchvision's random first convolution is summed the same way.

**Normalisation.** Pretrained networks expect their inputs normalised as they were trained,
``(x - mean) / std`` for pixels ``x`` in ``[0, 1]``. The network built here does *not* apply it
(its ``forward`` takes inputs already normalised, as every metamap network does); it records it
instead, as ``normalization = (mean, std)`` on the network *and* on its ``body``
(:func:`normalization_of`; not in the ``state_dict``), and the section says it without building
anything (:meth:`TorchvisionSection.normalization`, ``normalization(channels)``): torchvision's
ImageNet statistics ``mean (0.485, 0.456, 0.406)``, ``std (0.229, 0.224, 0.225)`` (those of every
torchvision classification weight but a few SWAG ones; read from the weights enum for ``hub``
weights), or the ``mean``/``std`` of timm's ``pretrained_cfg`` for the architecture (and tag).
For one channel the three values are averaged. The same pair suits
``EpisodeSampler(normalize=...)``.

**Checkpoints.** ``build(ctx, load_weights=False)`` builds the same architecture without reading
``weights`` (no file, no download), for a caller that loads a checkpoint of it next.

**Training settings.** BatchNorm keeps running statistics (``batch_norm: inductive``, as the
networks were trained); ``transductive`` drops them and always normalises with the batch's
statistics. Dropout and stochastic depth are switched off (rate 0): they draw from the global
RNG, which would break metamap's bit-exact resumption, and ``torch.func.vmap`` refuses them.

The packages are optional (``pip install 'metamap[vision]'``) and imported only when such a
network is built; without them, or with a torchvision whose compiled operators do not load
beside this torch, building raises :class:`BackboneImportError` saying what to install.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

import torch
from pydantic import field_validator
from torch import Tensor, nn

from metamap.errors import CheckpointError, ConfigError
from metamap.models.registry import BatchNormPolicy, ModelContext, ModelSection, register_model
from metamap.models.shapes import InputShape, describe_input_shape, set_input_shape
from metamap.section import own_error

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackboneImportError",
    "ExternalBackbone",
    "Normalization",
    "TimmSection",
    "TorchvisionSection",
    "import_backbone_library",
    "normalization_of",
    "read_state_dict",
    "set_normalization",
]

Normalization = tuple[tuple[float, ...], tuple[float, ...]]
"""``(mean, std)`` per channel, for pixels in ``[0, 1]``: inputs are ``(x - mean) / std``."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def set_normalization(module: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
    """Record on ``module`` (as ``module.normalization``) the ``(mean, std)`` its inputs are
    expected to be normalised with; not part of its ``state_dict``."""
    module.__dict__["normalization"] = (tuple(map(float, mean)), tuple(map(float, std)))


def normalization_of(module: nn.Module) -> Normalization | None:
    """The ``(mean, std)`` ``module`` records (:func:`set_normalization`), or ``None``."""
    found = module.__dict__.get("normalization")
    if found is None:
        return None
    mean, std = found
    return tuple(mean), tuple(std)


class BackboneImportError(ConfigError, ImportError):
    """torchvision or timm is missing, or cannot be imported beside this torch."""


Library = Literal["torchvision", "timm"]


def import_backbone_library(name: Library) -> ModuleType:
    """``torchvision`` or ``timm``, imported; :class:`BackboneImportError` saying what to
    install when it cannot be."""
    deps = "'torchvision==<its release for this torch>'" + " timm" * (name == "timm")
    install = (
        f"pip install 'metamap[vision]', or, where pip must not replace torch "
        f"{torch.__version__}: pip install --no-deps {deps}"
        + (", then pip install huggingface_hub safetensors" if name == "timm" else "")
    )
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise BackboneImportError(
            f"model.name {name!r} needs the {name} package, which cannot be imported "
            f"({type(e).__name__}: {e}); {install}"
        ) from e
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        # torchvision's compiled operators failed to load (pytorch/vision#9085)
        raise BackboneImportError(
            f"model.name {name!r}: torchvision is installed but does not import beside torch "
            f"{torch.__version__} ({e}): its compiled operators were built for another torch "
            "(e.g. PyPI's CUDA wheel beside a CPU torch). Install the torchvision built for this "
            "torch, e.g. for a CPU torch: pip install --no-deps torchvision==<its release> "
            "--index-url https://download.pytorch.org/whl/cpu"
        ) from e


def read_state_dict(path: str | Path, what: str = "model.weights") -> dict[str, Tensor]:
    """The tensors of a state dict file: ``.safetensors``, or saved by ``torch.save`` (read with
    ``weights_only=True``; a ``{"state_dict": ...}`` wrapper is opened). :class:`CheckpointError`
    naming the file otherwise."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(
            f"{what} {str(path)!r} is not a file: give the path of a state dict saved with "
            "torch.save (or a .safetensors file), 'hub' for the library's published weights, "
            "or null for a random initialisation"
        )
    try:
        if p.suffix == ".safetensors":
            loaded: Any = importlib.import_module("safetensors.torch").load_file(str(p))
        else:
            loaded = torch.load(p, map_location="cpu", weights_only=True)
    except ImportError as e:
        raise CheckpointError(f"{what} {str(p)!r}: reading .safetensors needs {e.name}") from e
    except Exception as e:  # torch.load / safetensors raise many kinds on a bad file
        raise CheckpointError(
            f"{what} {str(p)!r} cannot be read as a state dict ({type(e).__name__}: {e})"
        ) from e
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(
            f"{what} {str(p)!r} holds a {type(loaded).__name__}, not a state dict (a mapping of "
            "parameter names to tensors, as module.state_dict() gives)"
        )
    bad = [k for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(
            f"{what} {str(p)!r} is not a state dict: {bad[:3]} are not tensors named by text"
        )
    return dict(loaded)


def _fit_state(
    state: Mapping[str, Tensor],
    net: nn.Module,
    *,
    classifier: Sequence[str],
    first_conv: str | None,
    channels: int,
    source: str,
) -> None:
    """Load ``state`` into ``net`` (the body): ``body.``/``head.`` keys of an
    :class:`ExternalBackbone` or the architecture's with its ``classifier`` keys, which are
    dropped; the ``first_conv`` weight summed to one channel where ``net`` takes one."""
    keys = list(state)
    if keys and all(k.startswith(("body.", "head.")) for k in keys):
        state = {k[5:]: v for k, v in state.items() if k.startswith("body.")}
    drop = tuple(f"{c}." for c in classifier)
    state = {k: v for k, v in state.items() if not k.startswith(drop)}
    key = f"{first_conv}.weight" if first_conv else None
    if key in state and channels == 1 and state[key].dim() == 4 and state[key].shape[1] == 3:
        state[key] = state[key].sum(dim=1, keepdim=True)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise CheckpointError(
            f"{source} does not fit this architecture: {str(e).strip().splitlines()[-1]}"
        ) from e
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:4])}, ...)")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:4])}, ...)")
        raise CheckpointError(
            f"{source} does not fit this architecture: keys {'; '.join(parts)}. It must be a "
            "state dict of the same architecture (with or without its classifier)"
        )


def _unknown(kind: str, arch: str, names: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(arch, names, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"one of {len(names)}, e.g. "
    if not close:
        hint += ", ".join(names[:8])
    return ConfigError(f"model.arch {arch!r} is not a {kind} classification network: {hint}")


def _set_module(net: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, last = name.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, last, module)


def _one_channel_conv(net: nn.Module, arch: str) -> str:
    """Make the first 3-channel convolution of ``net`` take one channel, its weights summed over
    the three; its name."""
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d) and m.in_channels == 3 and m.groups == 1:
            m.in_channels = 1
            m.weight = nn.Parameter(m.weight.detach().sum(dim=1, keepdim=True))
            return str(name)
    raise ConfigError(f"torchvision {arch!r} has no 3-channel convolution to take grey images")


def _switch_off_randomness(net: nn.Module) -> None:
    """Dropout, stochastic depth and DropPath at rate 0."""
    for m in net.modules():
        stochastic_depth = type(m).__name__ == "StochasticDepth"  # torchvision's
        if isinstance(m, nn.modules.dropout._DropoutNd) or stochastic_depth:
            setattr(m, "p", 0.0)  # noqa: B010 (typed as a module or tensor attribute)
        elif isinstance(getattr(m, "drop_prob", None), float):  # timm's DropPath, DropBlock2d
            setattr(m, "drop_prob", 0.0)  # noqa: B010


def _transductive(net: nn.Module) -> None:
    """BatchNorm layers without running statistics: always the batch's."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
            m.num_batches_tracked = None


def _probe(body: nn.Module, channels: int, size: int, what: str) -> int:
    """The feature size of ``body`` on ``channels × size × size`` images (a forward pass of two
    zero images in eval mode: no statistics change); :class:`ConfigError` if it does not run or
    does not give ``(N, D)`` features."""
    modes = {m: m.training for m in body.modules()}
    body.eval()
    try:
        with torch.no_grad():
            out = body(torch.zeros(2, channels, size, size))
    except Exception as e:  # an architecture's own checks: AssertionError, RuntimeError, ...
        raise ConfigError(
            f"{what} does not run on {channels}×{size}×{size} images "
            f"({type(e).__name__}: {str(e).strip()[:200]}); choose another data.image_size "
            "or model.arch"
        ) from e
    finally:
        for m, training in modes.items():
            m.training = training
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(
            f"{what} without its classifier gives {shape}, not (N, D) features: choose an "
            "architecture that ends in pooled features and a linear classifier"
        )
    return int(out.shape[1])


class ExternalBackbone(nn.Module):
    """A torchvision or timm network without its classifier (``body``: images ``(N, C, H, W)``
    → features ``(N, feature_dim)``) and a linear ``head`` of ``out_features``."""

    def __init__(
        self,
        body: nn.Module,
        out_features: int,
        *,
        in_channels: int,
        image_size: int,
        normalization: Normalization,
        batch_norm: BatchNormPolicy = "inductive",
        description: str = "external network",
    ) -> None:
        """``body`` must map ``in_channels × image_size × image_size`` images to ``(N, D)``
        features (its feature size ``D`` is found by running it once on zeros)."""
        super().__init__()
        self.feature_dim = _probe(body, in_channels, image_size, description)
        self.body = body
        self.head = nn.Linear(self.feature_dim, out_features)
        self.in_channels = in_channels
        self.image_size = image_size
        self.batch_norm = batch_norm
        self.description = description
        self.input_shape: InputShape = (in_channels, image_size, image_size)
        """The shape of one image it was built for, ``(C, H, W)`` (also on ``body``)."""
        set_input_shape(self.body, self.input_shape)
        mean, std = normalization
        set_normalization(self, mean, std)
        set_normalization(self.body, mean, std)

    @property
    def normalization(self) -> Normalization:
        """``(mean, std)`` the inputs are expected to be normalised with (not applied here)."""
        found = normalization_of(self)
        assert found is not None
        return found

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.description} expects images of shape "
                f"{describe_input_shape(self.input_shape)}, got {tuple(x.shape)}"
            )
        out: Tensor = self.head(self.body(x))
        return out


class _ExternalSection(ModelSection):
    """The settings torchvision and timm networks share."""

    name: str
    arch: str = "resnet18"
    """The library's name for the classification network (torchvision: ``resnet18``,
    ``efficientnet_b0``, ...; timm: ``resnet18``, ``resnet18.a1_in1k``, ...)."""
    weights: str | None = None
    """``null``: random initialisation; a state dict file (``torch.save`` or ``.safetensors``;
    a relative path is taken from the working directory); ``hub`` (torchvision also
    ``hub:<NAME>``): the library's published weights (needs the network on first use)."""
    batch_norm: BatchNormPolicy = "inductive"
    """``inductive``: running statistics, as the networks were trained; ``transductive``: the
    batch's statistics always (running statistics dropped)."""

    library: ClassVar[Library]

    @field_validator("arch")
    @classmethod
    def _arch_named(cls, value: str) -> str:
        if not value.strip():
            raise own_error("expected the name of a network, e.g. resnet18")
        return value

    @field_validator("weights")
    @classmethod
    def _weights_form(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise own_error("expected null, 'hub' or the path of a state dict file")
        return value

    def hub_name(self) -> str | None:
        """The published weights asked for (``""``: the default ones), or ``None`` for none."""
        w = self.weights
        if w == "hub":
            return ""
        if w is not None and w.startswith("hub:"):
            return w[4:]
        return None

    def build(self, ctx: ModelContext, load_weights: bool | None = None) -> ExternalBackbone:
        """The network; ``load_weights=False`` (default: ``ctx.pretrained``): the same
        architecture, randomly initialised, without reading ``weights`` (for a caller that loads
        a checkpoint of it next)."""
        if load_weights is None:
            load_weights = ctx.pretrained
        if ctx.channels not in (1, 3):
            raise ConfigError(f"{self.library} networks take 1 or 3 channels, not {ctx.channels}")
        body = self._body(ctx.channels, load_weights)
        _switch_off_randomness(body)
        if self.batch_norm == "transductive":
            _transductive(body)
        return ExternalBackbone(
            body,
            ctx.out_features,
            in_channels=ctx.channels,
            image_size=ctx.image_size,
            normalization=self.normalization(ctx.channels),
            batch_norm=self.batch_norm,
            description=f"{self.library} {self.arch!r}",
        )

    def normalization(self, channels: int = 3) -> Normalization:
        """The per-channel ``(mean, std)`` its inputs in ``[0, 1]`` are expected to be
        normalised with (the weights', see the module's text), for ``channels`` (1: the three
        values averaged). Reads the library's metadata, never the weights."""
        mean, std = self._rgb_normalization()
        if channels == 1 and len(mean) == 3:
            return (sum(mean) / 3,), (sum(std) / 3,)
        return mean, std

    def _rgb_normalization(self) -> Normalization:
        raise NotImplementedError

    def _body(self, channels: int, load_weights: bool) -> nn.Module:
        raise NotImplementedError

    def describe(self) -> str:
        w = self.weights
        source = "random init" if w is None else w if w.startswith("hub") else Path(w).name
        return f"{self.library} {self.arch} ({source}), BatchNorm {self.batch_norm}"

    def network_options(self) -> list[str]:
        return ["arch"] + ["weights"] * (self.weights is not None)

    def batch_norm_policy(self) -> BatchNormPolicy:
        return self.batch_norm


@register_model
class TorchvisionSection(_ExternalSection):
    """``model: {name: torchvision, arch: resnet18, weights: null}`` — a torchvision
    classification network without its classifier (its last ``nn.Linear``), and a linear
    head."""

    name: Literal["torchvision"] = "torchvision"
    library: ClassVar[Library] = "torchvision"

    @field_validator("weights")
    @classmethod
    def _hub_name(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("hub:") and not value[4:].strip():
            raise own_error("expected 'hub' or 'hub:<NAME>' (e.g. hub:IMAGENET1K_V1)")
        return value

    def _models(self) -> ModuleType:
        """``torchvision.models``, once ``arch`` is checked to be one of its classifiers."""
        import_backbone_library("torchvision")
        models = importlib.import_module("torchvision.models")
        names = list(models.list_models(module=models))
        if self.arch not in names:
            raise _unknown("torchvision", self.arch, names)
        if self.arch in ("googlenet", "inception_v3"):
            raise ConfigError(
                f"torchvision {self.arch!r} returns auxiliary outputs in training: not supported"
            )
        return models

    def _rgb_normalization(self) -> Normalization:
        hub = self.hub_name()
        if hub is None:  # that of every torchvision ImageNet weight but a few SWAG ones
            return IMAGENET_MEAN, IMAGENET_STD
        transforms = self._hub_weights(self._models(), hub).transforms()
        return tuple(map(float, transforms.mean)), tuple(map(float, transforms.std))

    def _body(self, channels: int, load_weights: bool) -> nn.Module:
        models = self._models()
        hub = self.hub_name()
        weights = None if hub is None else self._hub_weights(models, hub)
        net: nn.Module = models.get_model(self.arch, weights=None)
        linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(f"torchvision {self.arch!r} has no linear classifier to take off")
        classifier = linears[-1]
        _set_module(net, classifier, nn.Identity())
        first = _one_channel_conv(net, self.arch) if channels == 1 else None
        if not load_weights or self.weights is None:
            return net
        if weights is not None:
            source = f"torchvision's {weights!r} weights"
            try:
                state = weights.get_state_dict(progress=False, check_hash=True)
            except Exception as e:  # no network, a proxy, a corrupt download, ...
                raise ConfigError(
                    f"cannot get {source} ({type(e).__name__}: {e}); they are downloaded into "
                    "torch's hub cache (TORCH_HOME) on first use, which needs the network: "
                    "download them where you have it, or save their state dict and give its "
                    "path as model.weights"
                ) from e
        else:
            source = f"model.weights {self.weights!r}"
            state = read_state_dict(self.weights)
        _fit_state(
            state, net, classifier=[classifier], first_conv=first, channels=channels, source=source
        )
        return net

    def _hub_weights(self, models: ModuleType, hub: str) -> Any:
        """The member ``hub`` (``""``: ``DEFAULT``) of the architecture's weights enum."""
        try:
            enum = models.get_model_weights(self.arch)
        except (ValueError, KeyError) as e:
            raise ConfigError(f"torchvision publishes no weights for {self.arch!r}") from e
        name = hub or "DEFAULT"
        if "." in name:  # "ResNet18_Weights.IMAGENET1K_V1"
            prefix, _, name = name.rpartition(".")
            if prefix != enum.__name__:
                raise ConfigError(
                    f"model.weights {self.weights!r} are not weights of {self.arch!r} "
                    f"({enum.__name__})"
                )
        members = [m.name for m in enum]
        try:
            return enum[name]
        except KeyError:
            raise ConfigError(
                f"model.weights {self.weights!r}: torchvision has no {name!r} weights for "
                f"{self.arch!r}; choose hub:{', hub:'.join(['DEFAULT', *members])}"
            ) from None


@register_model
class TimmSection(_ExternalSection):
    """``model: {name: timm, arch: resnet18, weights: null}`` — a timm network built with
    ``num_classes=0`` (pooled features) and ``in_chans`` the data's channels, and a linear
    head."""

    name: Literal["timm"] = "timm"
    library: ClassVar[Library] = "timm"

    @field_validator("weights")
    @classmethod
    def _hub_only(cls, value: str | None) -> str | None:
        if value is not None and value.startswith("hub:"):
            raise own_error(
                "timm's published weights are 'hub'; name a pretrained tag in model.arch "
                f"(e.g. resnet18.a1_in1k), not {value!r}"
            )
        return value

    def _timm(self) -> ModuleType:
        """``timm``, once ``arch`` is checked to be one of its networks."""
        timm = import_backbone_library("timm")
        if not timm.is_model(self.arch):
            raise _unknown("timm", self.arch, list(timm.list_models()))
        return timm

    def _rgb_normalization(self) -> Normalization:
        cfg = self._timm().models.get_pretrained_cfg(self.arch)
        mean = getattr(cfg, "mean", None) or IMAGENET_MEAN
        std = getattr(cfg, "std", None) or IMAGENET_STD
        return tuple(map(float, mean)), tuple(map(float, std))

    def _body(self, channels: int, load_weights: bool) -> nn.Module:
        timm = self._timm()
        hub = load_weights and self.hub_name() is not None
        try:
            net: nn.Module = timm.create_model(
                self.arch, pretrained=hub, num_classes=0, in_chans=channels
            )
        except Exception as e:
            if not hub:
                what = f"timm {self.arch!r}"
                raise ConfigError(f"cannot build {what} ({type(e).__name__}: {e})") from e
            raise ConfigError(
                f"cannot get timm's published weights for {self.arch!r} ({type(e).__name__}: "
                f"{e}); they are downloaded from the Hugging Face hub (or their URL) on first "
                "use, which needs the network: download them where you have it, or save their "
                "state dict and give its path as model.weights"
            ) from e
        if load_weights and self.weights is not None and self.hub_name() is None:
            cfg: Mapping[str, Any] = getattr(net, "pretrained_cfg", None) or {}
            classifier = cfg.get("classifier") or ()
            first = cfg.get("first_conv")
            _fit_state(
                read_state_dict(self.weights),
                net,
                classifier=[classifier] if isinstance(classifier, str) else list(classifier),
                first_conv=first if isinstance(first, str) else None,
                channels=channels,
                source=f"model.weights {self.weights!r}",
            )
        return net
