"""A meta-learned feature extractor: the encoder f_φ of any metamap checkpoint, as a product.

Meta-training learns a mapping x ↦ f_φ(x) in which a new task is solved from a few examples
(Snell et al. 2017; Raghu et al. 2020 show that even MAML's benefit is mostly this feature
reuse). :class:`FeatureExtractor` loads the encoder of a checkpoint — the ``body`` of the
network of MAML / FOMAML / ANIL / Meta-SGD / Reptile, the encoder of ProtoNet, Matching, Relation,
R2D2, SVM and the pre-train baseline — and embeds images ``(N, C, H, W)`` → features ``(N, D)``
in batches, in inference mode, optionally channels-last. Images are checked before any work:
the extractor's channels and size, uint8 pixels or finite floats in [0, 1]; anything else
raises :class:`~metamap.errors.TaskShapeError` saying what was found and how to fix it.

Preprocessing travels with the model: :attr:`FeatureExtractor.spec` (an
:class:`~metamap.features.InputSpec`, read from the checkpoint's config) says how a file becomes
an input — colour mode, size, resampling filter, inversion (Omniglot's bright strokes on black)
— and the per-channel normalisation, which the extractor applies itself (so its exports do too).
Files and torch ``Dataset`` s are decoded that way; tensors and arrays are taken as decoded
pixels in [0, 1] (inverted already, not yet normalised); an
:class:`~metamap.data.ImageClassDataset` as its loader decoded it: raw pixels get the inversion,
pixels its loader inverted (``dataset.inverted``: metamap's Omniglot loaders) do not
(:func:`~metamap.features.inputs.dataset_pixels`).
``from_checkpoint(..., preprocessing={"invert": False})`` overrides it explicitly.

BatchNorm: features never depend on the batch by default. An ``"inductive"`` checkpoint
normalises with its running statistics. A ``"transductive"`` checkpoint was trained with the
statistics of each batch (as MAML did) and has none: :meth:`FeatureExtractor.calibrate`
estimates fixed statistics from a set of images (your unlabelled data, or a task's support set,
which :class:`~metamap.features.FewShotClassifier` does by default), after which each image's
feature is its own. Until then :meth:`~FeatureExtractor.embed` refuses, saying so, unless
batch-dependent features were asked for explicitly (``transductive=True``): then each batch is
normalised with its own statistics (embed a task's support or query set as one batch, as in
training).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from metamap.data import ImageClassDataset
from metamap.errors import CheckpointError, TaskShapeError
from metamap.features.inputs import (
    ImageSource,
    InputSpec,
    LoadedImages,
    as_image_tensor,
    dataset_pixels,
    decode_torch_dataset,
    input_spec,
    load_image_files,
    replace_spec,
)
from metamap.learners import MetaLearner
from metamap.models.layout import channels_last as to_channels_last
from metamap.models.layout import set_channels_last
from metamap.models.shapes import describe_input_shape, input_shape_of
from metamap.progress import progress_bar
from metamap.train import RunConfig, build_model, learner_from_checkpoint

__all__ = ["FeatureExtractor", "PixelNormalize", "encoder_of"]

Normalization = Literal["running", "batch"]


def encoder_of(learner: MetaLearner) -> nn.Module:
    """The image encoder of ``learner`` (images ``(N, C, H, W)`` → features ``(N, ...)``)."""
    try:
        return learner.encoder()
    except TaskShapeError as e:
        raise CheckpointError(f"{e} (give a checkpoint of one)") from None


class PixelNormalize(nn.Module):
    """``(x - mean) / std`` per channel of images ``(N, C, H, W)`` in [0, 1]: a model's
    normalisation, part of the extractor's module (and so of its exports)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: int) -> None:
        super().__init__()
        for name, values in (("mean", mean), ("std", std)):
            if len(values) not in (1, channels):
                raise TaskShapeError(
                    f"normalisation {name} has {len(values)} values but the images have "
                    f"{channels} channel(s): give one value, or one per channel"
                )
        m = torch.as_tensor([float(v) for v in mean]).expand(channels).clone()
        sd = torch.as_tensor([float(v) for v in std]).expand(channels).clone()
        if not bool(torch.all(sd > 0)):
            raise TaskShapeError(f"normalisation std must be positive, got {list(std)}")
        self.register_buffer("mean", m.reshape(1, channels, 1, 1))
        self.register_buffer("std", sd.reshape(1, channels, 1, 1))

    mean: Tensor
    std: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class FeatureExtractor:
    """Embeds images with a (meta-)trained encoder: ``embed(images) -> (N, D)`` features."""

    def __init__(
        self,
        encoder: nn.Module,
        spec: InputSpec,
        *,
        batch_norm: Literal["transductive", "inductive"] = "inductive",
        channels_last: bool | None = None,
        info: dict[str, Any] | None = None,
        transductive: bool = False,
    ) -> None:
        """``channels_last=None`` picks it for convolutional encoders (1.3–2.9× faster on our
        CPUs, see benchmarks/embed_speed.py). ``transductive=True`` allows batch-dependent
        features from an uncalibrated transductive encoder (see the module docstring)."""
        declared = input_shape_of(encoder)
        if declared is not None and not (
            len(declared) == 3
            and all(d is None or d == s for d, s in zip(declared, spec.shape, strict=True))
        ):
            raise TaskShapeError(
                f"the encoder was built for inputs {describe_input_shape(declared)} but the "
                f"extractor was given images of {spec}: give the InputSpec of the encoder's "
                "training data (channels, image size)"
            )
        self.spec = spec
        self.batch_norm = batch_norm
        self.transductive = transductive
        self.info = dict(info or {})
        layers = [copy.deepcopy(encoder), nn.Flatten()]
        if spec.mean is not None:
            layers.insert(0, PixelNormalize(spec.mean, spec.std or (), spec.channels))
        flat = nn.Sequential(*layers)
        self.encoder = flat.eval().requires_grad_(False)
        if channels_last is None:
            channels_last = any(isinstance(m, nn.Conv2d) for m in encoder.modules())
        self.channels_last = channels_last
        set_channels_last(self.encoder, channels_last)
        self.normalization: Normalization = "running" if batch_norm == "inductive" else "batch"
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in encoder.modules()):
            self.normalization = "running"  # nothing depends on the batch
        p = next(self.encoder.parameters())
        self.device, self.dtype = p.device, p.dtype
        largest = [0]

        def track(_m: nn.Module, _i: Any, out: Any) -> None:
            if isinstance(out, Tensor):
                largest[0] = max(largest[0], out[0].numel() * out.element_size())

        hooks = [m.register_forward_hook(track) for m in self.encoder.modules()]
        try:
            with torch.inference_mode():
                probe = self._forward(torch.zeros(2, *spec.shape))
        finally:
            for h in hooks:
                h.remove()
        self.feature_dim = int(probe.shape[1])
        self.activation_bytes = largest[0]
        """Bytes of the largest activation of one image (picks the default batch size)."""

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        channels_last: bool | None = None,
        preprocessing: Mapping[str, Any] | None = None,
        transductive: bool = False,
    ) -> FeatureExtractor:
        """The encoder of a metamap checkpoint (``runs/<run>/checkpoints/best.pt``), with the
        preprocessing its run trained with (``preprocessing`` replaces fields of it explicitly:
        ``{"invert": False}``; see :class:`~metamap.features.InputSpec`).

        A checkpoint of a regression model, of another format version, or whose weights do not
        match its config raises :class:`CheckpointError` saying so.
        """
        cfg, learner, state = learner_from_checkpoint(Path(path))
        if not cfg.task.images:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is a {cfg.task.family} model, not of images; feature "
                "extraction needs a checkpoint of an image model (conv4 or resnet12)"
            )
        info = {
            "checkpoint": str(path),
            "run": cfg.name,
            "learner": cfg.learner.name,
            "model": cfg.model.name,
            "step": int(state["step"]),
        }
        spec = input_spec(cfg)
        if preprocessing:
            spec = replace_spec(spec, preprocessing)
            info["preprocessing_overridden"] = dict(preprocessing)
        return cls(
            encoder_of(learner).to(device),
            spec,
            batch_norm=cfg.model.batch_norm_policy(),
            channels_last=channels_last,
            info=info,
            transductive=transductive,
        )

    @classmethod
    def random(cls, cfg: RunConfig, *, channels_last: bool | None = None) -> FeatureExtractor:
        """The untrained encoder a run with ``cfg`` starts from (a baseline for comparisons)."""
        model = build_model(cfg)
        return cls(
            model.get_submodule("body"),
            input_spec(cfg),
            batch_norm=cfg.model.batch_norm_policy(),
            channels_last=channels_last,
            info={"run": cfg.name, "learner": "random", "model": cfg.model.name, "step": 0},
        )

    # ---- BatchNorm statistics -------------------------------------------------------------
    def calibrate(
        self, images: ImageSource, batch_size: int = 256, seed: int = 0
    ) -> FeatureExtractor:
        """Fix BatchNorm statistics to those of ``images``: the average of the statistics of
        batches of ``batch_size`` (as AdaBN and ``torch.optim.swa_utils.update_bn`` do).

        The images are shuffled first (``seed``): batches of one class each, as a folder sorted
        by class would give, would average within-class variances and miss the spread between
        classes. Only the BatchNorm layers run in training mode: dropout and DropBlock stay off,
        so the statistics are those of the activations the encoder sees when it embeds. Returns
        a new extractor whose features no longer depend on the batch (``normalization ==
        "running"``); this one is unchanged.
        """
        x = self.images(images)
        if len(x) < 2:
            raise TaskShapeError("calibrate needs at least 2 images")
        x = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))]
        new = copy.copy(self)
        new.encoder = copy.deepcopy(self.encoder)
        for m in new.encoder.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.track_running_stats = True
                m.momentum = None  # cumulative average over the calibration batches
                m.register_buffer("running_mean", torch.zeros(n, device=self.device))
                m.register_buffer("running_var", torch.ones(n, device=self.device))
                m.register_buffer("num_batches_tracked", torch.tensor(0, device=self.device))
                m.reset_running_stats()
        new.encoder.eval()  # dropout and DropBlock stay off: the statistics of eval activations
        for m in new.encoder.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                chunk = x[start : start + batch_size]
                if len(chunk) > 1:
                    new._forward(chunk)
        new.encoder.eval()
        new.normalization = "running"
        return new

    # ---- embedding -----------------------------------------------------------------------
    def images(self, source: ImageSource, name: str = "images") -> Tensor:
        """``source`` as float32 images ``(N, C, H, W)`` in [0, 1] (files are decoded).

        Files, folders and torch ``Dataset`` s get the model's inversion (:attr:`spec`), an
        :class:`~metamap.data.ImageClassDataset` what its loader did not apply
        (:func:`~metamap.features.inputs.dataset_pixels`, by its ``inverted`` record); tensors
        and arrays are taken as they are.
        Tensors and arrays must have the extractor's shape (:attr:`spec`) and be uint8 or
        finite floats in [0, 1]; otherwise :class:`TaskShapeError` names ``name`` and the fix.
        """
        if isinstance(source, LoadedImages):  # decoded with a spec: inverted already
            return as_image_tensor(np.asarray(source.images), self.spec, name)
        if isinstance(source, ImageClassDataset):  # as its loader decoded it
            return as_image_tensor(dataset_pixels(source, self.spec), self.spec, name)
        if isinstance(source, torch.utils.data.Dataset):  # raw (image, label) pairs, as files
            return self.images(decode_torch_dataset(source, self.spec), name)
        if isinstance(source, str | os.PathLike) or (
            isinstance(source, list | tuple) and all(isinstance(s, str | Path) for s in source)
        ):
            return as_image_tensor(load_image_files(source, self.spec).images, self.spec, name)
        return as_image_tensor(source, self.spec, name)  # type: ignore[arg-type]

    @property
    def batch_dependent(self) -> bool:
        """Whether a feature depends on the other images of its batch (an uncalibrated
        transductive encoder)."""
        return self.normalization == "batch"

    def check_batch_independent(self) -> None:
        """Refuse to embed with batch-dependent features unless they were asked for."""
        if self.batch_dependent and not self.transductive:
            raise TaskShapeError(
                "this encoder's BatchNorm is transductive (its checkpoint has no running "
                "statistics), so an image's feature would depend on the other images of its "
                "batch: calibrate it first on your unlabelled images or a task's support set "
                "(extractor.calibrate(images); CLI --calibrate), or ask for batch-dependent "
                "features explicitly (from_checkpoint(..., transductive=True); CLI "
                "--transductive)"
            )

    def _forward(self, x: Tensor) -> Tensor:
        x = x.to(self.device, self.dtype)
        if self.channels_last:
            x = to_channels_last(x)
        out: Tensor = self.encoder(x)
        return out

    @property
    def default_batch_size(self) -> int:
        """256 on an accelerator; on a CPU the largest power of two (8…256) whose largest
        activation stays within 8 MB, so that a batch's activations stay in cache — measured
        on our CPUs, batches of 256 84×84 images ran 2–4× slower than batches of 8."""
        if self.device.type != "cpu":
            return 256
        fit = max(1, (8 << 20) // max(1, self.activation_bytes))
        return int(min(256, max(8, 1 << (fit.bit_length() - 1))))

    def embed(
        self, source: ImageSource, batch_size: int | None = None, progress: bool = False
    ) -> Tensor:
        """Features ``(N, D)`` (float32, on the CPU) of the images in ``source``.

        ``batch_size`` defaults to :attr:`default_batch_size`. With uncalibrated transductive
        BatchNorm each batch is normalised with its own statistics (see the module docstring;
        pass ``batch_size=len(images)`` to normalise a set together); otherwise batching
        changes nothing.
        """
        self.check_batch_independent()
        if batch_size is None:
            batch_size = self.default_batch_size
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        x = self.images(source)
        if len(x) == 0:
            raise TaskShapeError("no images to embed")
        out = torch.empty(len(x), self.feature_dim, dtype=torch.float32)
        starts = range(0, len(x), batch_size)
        with torch.inference_mode():
            for s in progress_bar(starts, desc="embedding", unit="batch", disable=not progress):
                out[s : s + batch_size] = self._forward(x[s : s + batch_size]).float().cpu()
        return out

    def __call__(self, x: Tensor) -> Tensor:
        """Differentiable forward of a float batch ``(N, C, H, W)`` in [0, 1] (for fine-tuning
        heads)."""
        self.check_batch_independent()
        return self._forward(as_image_tensor(x, self.spec, "x"))

    def __repr__(self) -> str:
        src = self.info.get("checkpoint") or self.info.get("learner", "?")
        return (
            f"FeatureExtractor({src}, {self.info.get('model', '?')}, input {self.spec}: "
            f"{self.spec.preprocessing()}, D={self.feature_dim}, BatchNorm {self.batch_norm} → "
            f"{self.normalization}{' (transductive)' * self.batch_dependent})"
        )
