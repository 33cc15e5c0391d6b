"""Inert placeholder modules for a benchmark's unused, uninstallable optional imports.

learn2learn and easyfsl import torchvision at import time (and learn2learn gym). PyPI's
torchvision wheels are built against one exact torch and do not import beside this CPU torch
(installing one would replace torch), and gym does not support NumPy 2. The code paths the
benchmarks call never touch them, so :func:`install_stubs` serves empty packages for those names
and every submodule below them; any attribute of a placeholder is another placeholder, so that
module-level code like ``class CIFARFS(torchvision.datasets.ImageFolder)`` runs harmlessly.
Benchmarks only: metamap never imports this.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

__all__ = ["install_stubs"]


class _StubMeta(type):
    """Placeholder classes: any attribute is another placeholder, so that module-level code like
    ``class CIFARFS(torchvision.datasets.ImageFolder)`` or ``register(...)`` runs harmlessly."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (_Stub,), {"__module__": cls.__module__})


class _Stub(metaclass=_StubMeta):
    def __init__(self, *args: object, **kwargs: object) -> None:
        pass


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an empty package for each name in ``names`` and every submodule below it."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def find_spec(self, name: str, path: object, target: object = None) -> Any:
        if name.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []

        def __getattr__(name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return _StubMeta(name, (_Stub,), {"__module__": module.__name__})

        module.__getattr__ = __getattr__  # type: ignore[method-assign]


def install_stubs(names: Sequence[str]) -> None:
    """Stub ``names`` (top-level module names) for every later import in this process."""
    sys.meta_path.insert(0, _StubFinder(names))
