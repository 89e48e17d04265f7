"""Lazy re-exports: names of a torch-dependent module, imported on first access.

``import mmkern`` (and ``import mmkern.reference``) must not import PyTorch: the similarity and
multiplicity kernels work with NumPy alone. The connectivity names (and in ``mmkern.train`` the
torch-dependent ones) are re-exported through a module-level ``__getattr__`` (PEP 562) that
imports their module the first time one is used.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Mapping


def torch_available() -> bool:
    """Whether PyTorch is installed (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def lazy_exports(namespace: dict, modules: Mapping[str, str]):
    """``(__getattr__, __dir__)`` for a package that re-exports names of modules lazily.

    Parameters
    ----------
    namespace : dict
        The package's ``globals()``; a name is cached there once imported.
    modules : mapping of str to str
        Each re-exported name -> the absolute name of the module that defines it.
    """

    def __getattr__(name):
        if name in modules:
            value = getattr(importlib.import_module(modules[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(modules))

    return __getattr__, __dir__
