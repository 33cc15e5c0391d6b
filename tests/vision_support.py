"""torchvision and timm for the tests, where PyPI's torchvision wheel sits beside a CPU torch.

PyPI's torchvision is built against PyPI's (CUDA) torch; beside a CPU torch its compiled
operators do not load, and its import then fails while registering fake kernels for two of them
(pytorch/vision#9085). The networks and datasets the tests use never call those operators, so
:func:`import_vision` defines their schemas, here in the tests only, when that is the one thing
that stops the import; metamap itself refuses such an install with ``BackboneImportError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import pytest
import torch

_OPS: list[Any] = []  # the torch.library.Library defining them must stay alive


def import_vision(name: str) -> ModuleType:
    """``torchvision`` or ``timm`` imported, or the test skipped (not installed)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed (pip install 'metamap[vision]')")
    except RuntimeError as e:
        if "torchvision::" not in str(e) or _OPS:
            raise
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _OPS.append(lib)
    return importlib.import_module(name)
