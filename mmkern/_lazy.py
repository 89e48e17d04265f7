"""Lazy re-exports: names of a torch-dependent module, imported on first access.

``import mmkern`` (and ``import mmkern.reference``) must not import PyTorch: the similarity and
multiplicity kernels work with NumPy alone. The connectivity names are re-exported through a
module-level ``__getattr__`` (PEP 562) that imports their module the first time one is used.
"""

from __future__ import annotations

import importlib
import importlib.util


def torch_available() -> bool:
    """Whether PyTorch is installed (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def lazy_exports(namespace: dict, module: str, names: tuple[str, ...]):
    """``(__getattr__, __dir__)`` for a package that re-exports ``names`` of ``module`` lazily.

    Parameters
    ----------
    namespace : dict
        The package's ``globals()``; a name is cached there once imported.
    module : str
        Absolute name of the module that defines ``names``.
    names : tuple of str
        The names to re-export.
    """

    def __getattr__(name):
        if name in names:
            value = getattr(importlib.import_module(module), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
