"""Array-kind dispatch: NumPy, torch (CPU/CUDA) and CuPy in, the same kind out.

Host arrays (NumPy, torch CPU tensors) become NumPy views without copies and go to the C++
kernels in ``mmkern._C``. Device arrays (torch CUDA tensors, CuPy arrays) go to the GPU path and
their results stay on their device. NumPy inputs never silently move to the GPU, and mixing host
and device inputs in one call is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _module_root(a: Any) -> str:
    return type(a).__module__.split(".", 1)[0]


@dataclass(frozen=True)
class Kind:
    """Where an input lives: ``library`` in {"numpy", "torch", "cupy"} and its ``device``."""

    library: str
    device: str = "cpu"

    @property
    def is_gpu(self) -> bool:
        return self.device != "cpu"


def kind_of(a: Any) -> Kind:
    """The :class:`Kind` of an array-like (lists and scalars count as NumPy)."""
    root = _module_root(a)
    if root == "torch":
        return Kind("torch", str(a.device) if a.device.type != "cpu" else "cpu")
    if root == "cupy":
        return Kind("cupy", f"cuda:{a.device.id}")
    return Kind("numpy")


def common_kind(arrays: list, names: list[str]) -> Kind:
    """The kind shared by all ``arrays``; raise ``ValueError`` when host and device are mixed."""
    kinds = [kind_of(a) for a in arrays]
    first = kinds[0]
    for k, name in zip(kinds[1:], names[1:]):
        if k.is_gpu != first.is_gpu or (first.is_gpu and k.device != first.device):
            raise ValueError(
                f"{name} is on {k.device} ({k.library}) but {names[0]} is on {first.device} "
                f"({first.library}); move all inputs to one device"
            )
    return first


def to_host(a: Any) -> np.ndarray:
    """A NumPy view of a host array (torch CPU tensors are shared, not copied)."""
    if _module_root(a) == "torch":
        a = a.detach()
        # NumPy has no bfloat16: upcast here, as the dtype policy (mmkern._dtypes) would anyway.
        return (a.float() if str(a.dtype) == "torch.bfloat16" else a).numpy()
    return np.asarray(a)


def to_kind(result: Any, kind: Kind) -> Any:
    """Return a NumPy result as the array type of ``kind`` (Python scalars pass through)."""
    if not isinstance(result, np.ndarray) or kind.library == "numpy":
        return result
    if kind.library == "torch":
        import torch

        return torch.from_numpy(result).to(kind.device)
    import cupy

    with cupy.cuda.Device(int(kind.device.split(":")[1])):
        return cupy.asarray(result)
