"""The textbook Conv-4 that other libraries' users run, for fair speed comparisons.

metamap's ``Conv4`` orders each block conv → BN → max-pool → ReLU and pins channels-last
(``metamap.models.layout``); learn2learn's ``ConvBlock`` and the usual hand-written Conv-4 order
it conv → BN → ReLU → max-pool in the default layout. Both compute the same function (ReLU
commutes with max; tests/models/test_layout.py checks values and second-order gradients), so a
baseline library gets the same weights in the textbook order.
"""

from __future__ import annotations

import copy

from torch import nn

from metamap.models import Conv4
from metamap.models.layout import set_channels_last

__all__ = ["textbook"]


def textbook(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (a ``Conv4`` or its ``body``) with textbook blocks, default layout.

    Parameter names are unchanged (only parameter-free layers move); other models are copied.
    """
    model = copy.deepcopy(model)
    body = model.body if isinstance(model, Conv4) else model
    if not isinstance(body, nn.Sequential):
        return model
    set_channels_last(model, False)
    layers = list(body)
    for i, layer in enumerate(layers[:-1]):
        if isinstance(layer, nn.MaxPool2d) and isinstance(layers[i + 1], nn.ReLU):
            layers[i], layers[i + 1] = layers[i + 1], layer
    fixed = nn.Sequential(*layers)
    if isinstance(model, Conv4):
        model.body = fixed
        return model
    return fixed
