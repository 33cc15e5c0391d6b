"""Base learners. They know nothing of meta-learning: plain ``nn.Module`` s with a ``body``
(feature extractor) and a ``head`` (last linear layer), usable through
``torch.func.functional_call``."""

from metamap.models.conv4 import BatchNormPolicy, Conv4, Downsample, conv4_feature_dim
from metamap.models.dropblock import DropBlock2d, drop_layers, reseed_drop_layers
from metamap.models.mlp import MLP
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
    "BatchNormPolicy",
    "Conv4",
    "Downsample",
    "DropBlock2d",
    "InputShape",
    "ResBlock",
    "ResNet12",
    "conv4_feature_dim",
    "drop_layers",
    "input_dtype_of",
    "input_shape_of",
    "reseed_drop_layers",
    "set_input_dtype",
    "set_input_shape",
]
