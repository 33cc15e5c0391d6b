"""Base learners. They know nothing of meta-learning: plain ``nn.Module`` s with a ``body``
(feature extractor) and a ``head`` (last linear layer), usable through
``torch.func.functional_call``. Besides metamap's own (MLP, Conv-4, ResNet-12), torchvision's and
timm's classification networks serve as bodies (:mod:`metamap.models.external`; optional
packages, imported only when one is built)."""

from metamap.models.conv4 import BatchNormPolicy, Conv4, Downsample, conv4_feature_dim
from metamap.models.dropblock import DropBlock2d, drop_layers, reseed_drop_layers
from metamap.models.ensemble import EnsembleForward, ensemble_forward
from metamap.models.external import (
    BackboneImportError,
    ExternalBackbone,
    Normalization,
    TimmSection,
    TorchvisionSection,
    normalization_of,
    set_normalization,
)
from metamap.models.melu import MeLU, MeLUSection
from metamap.models.mlp import MLP
from metamap.models.policy import GaussianMLP, gaussian_log_prob, gaussian_sample
from metamap.models.recurrent_policy import GaussianGRU, GaussianGRUSection
from metamap.models.registry import (
    MODEL_LEGACY_DEFAULTS,
    MODELS,
    Baseline,
    ModelContext,
    ModelSection,
    register_model,
    split_model,
)
from metamap.models.resnet12 import ResBlock, ResNet12
from metamap.models.shapes import (
    InputShape,
    input_dtype_of,
    input_shape_of,
    set_input_dtype,
    set_input_shape,
)

__all__ = [
    "MLP",
    "MODELS",
    "MODEL_LEGACY_DEFAULTS",
    "BackboneImportError",
    "Baseline",
    "BatchNormPolicy",
    "Conv4",
    "Downsample",
    "DropBlock2d",
    "EnsembleForward",
    "ExternalBackbone",
    "GaussianGRU",
    "GaussianGRUSection",
    "GaussianMLP",
    "InputShape",
    "MeLU",
    "MeLUSection",
    "ModelContext",
    "ModelSection",
    "Normalization",
    "ResBlock",
    "ResNet12",
    "TimmSection",
    "TorchvisionSection",
    "conv4_feature_dim",
    "drop_layers",
    "ensemble_forward",
    "gaussian_log_prob",
    "gaussian_sample",
    "input_dtype_of",
    "input_shape_of",
    "normalization_of",
    "register_model",
    "reseed_drop_layers",
    "set_input_dtype",
    "set_input_shape",
    "set_normalization",
    "split_model",
]
