"""Array-kind dispatch: NumPy, torch (CPU/CUDA) and CuPy in, the same kind out.

Every public metric picks one of two routes from its inputs' :class:`Kind`:

- the **host route** (a domain's ``_host`` module): NumPy arrays and torch CPU tensors, viewed as
  NumPy arrays without copies, computed by the C++ kernels in ``mmkern._C``;
- the **device route** (a domain's ``_device`` module): torch CUDA tensors and CuPy arrays,
  computed with torch on their device (cuBLAS/cuSOLVER) plus ``mmkern._C_cuda``'s kernels, the
  results staying there.

NumPy inputs never silently move to the GPU, and mixing host and device inputs in one call is an
error. Tensors on other torch devices (MPS, XPU, meta, ...) are rejected with a message naming the
argument: the device route computes in float64, which those backends do not all offer.
:func:`torch_route` sends torch CPU tensors down the device route instead, which is how the
device route is tested on a machine without a GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

_TORCH_ROUTE_FOR_CPU = False


def _module_root(a: Any) -> str:
    return type(a).__module__.split(".", 1)[0]


def is_torch(a: Any) -> bool:
    """Whether ``a`` is a torch tensor (checked without importing torch)."""
    return _module_root(a) == "torch"


@dataclass(frozen=True)
class Kind:
    """Where an input lives: ``library`` in {"numpy", "torch", "cupy"} and its ``device``
    ("cpu" or "cuda:N")."""

    library: str
    device: str = "cpu"

    @property
    def is_gpu(self) -> bool:
        return self.device != "cpu"

    @property
    def device_route(self) -> bool:
        """Whether inputs of this kind are computed by the device route."""
        return self.is_gpu or (self.library == "torch" and _TORCH_ROUTE_FOR_CPU)


def kind_of(a: Any, name: str = "the input") -> Kind:
    """The :class:`Kind` of an array-like (lists and scalars count as NumPy).

    Raises
    ------
    ValueError
        A torch tensor on a device other than the CPU or CUDA, naming ``name``.
    """
    root = _module_root(a)
    if root == "torch":
        device = a.device
        if device.type == "cpu":
            return Kind("torch")
        if device.type == "cuda":
            return Kind("torch", f"cuda:{device.index if device.index is not None else 0}")
        raise ValueError(
            f"{name} is a torch tensor on {device}: mmkern computes on the CPU or on CUDA devices; "
            f"move it with .cpu() (or .cuda()) first"
        )
    if root == "cupy":
        return Kind("cupy", f"cuda:{a.device.id}")
    return Kind("numpy")


def common_kind(arrays: Sequence[Any], names: Sequence[str]) -> Kind:
    """The kind shared by all ``arrays``; raise ``ValueError`` when host and device are mixed."""
    kinds = [kind_of(a, name) for a, name in zip(arrays, names)]
    first = kinds[0]
    for k, name in zip(kinds[1:], names[1:]):
        if k.is_gpu != first.is_gpu or (first.is_gpu and k.device != first.device):
            raise ValueError(
                f"{name} is on {k.device} ({k.library}) but {names[0]} is on {first.device} "
                f"({first.library}); move all inputs to one device"
            )
    return first


@contextlib.contextmanager
def torch_route(enabled: bool = True) -> Iterator[None]:
    """Within the block, torch CPU tensors take the device route (torch expressions and the
    host twins of the CUDA kernels) instead of the host kernels. For tests and debugging."""
    global _TORCH_ROUTE_FOR_CPU
    previous, _TORCH_ROUTE_FOR_CPU = _TORCH_ROUTE_FOR_CPU, bool(enabled)
    try:
        yield
    finally:
        _TORCH_ROUTE_FOR_CPU = previous


def to_host(a: Any) -> np.ndarray:
    """A NumPy view of a host array (torch CPU tensors are shared, not copied)."""
    if is_torch(a):
        a = a.detach()
        # NumPy has no bfloat16: upcast here, as the dtype policy (mmkern._dtypes) would anyway.
        return (a.float() if str(a.dtype) == "torch.bfloat16" else a).numpy()
    return np.asarray(a)


def as_host_array(a: Any, name: str) -> np.ndarray:
    """:func:`to_host` of a user's host input, nested lists and tuples made arrays (a ragged one is
    a ``ValueError`` naming ``name``, not NumPy's "inhomogeneous shape")."""
    if isinstance(a, (list, tuple)):
        try:
            return np.asarray(a)
        except ValueError:
            raise ValueError(f"{name} is a ragged nested sequence: its rows must all have the same "
                             "length (give one array)") from None
    return to_host(a)


def to_kind(result: Any, kind: Kind) -> Any:
    """Return a host (NumPy) result as the array type of ``kind`` (Python scalars pass through)."""
    if not isinstance(result, np.ndarray) or kind.library == "numpy":
        return result
    if kind.library == "torch":
        import torch

        return torch.from_numpy(result).to(kind.device)
    import cupy

    with cupy.cuda.Device(int(kind.device.split(":")[1])):
        return cupy.asarray(result)


def as_torch(a: Any, name: str) -> Any:
    """A torch view (no copy) of a device-route input: a torch tensor (detached) or a CuPy array
    (through DLPack); ``TypeError`` naming ``name`` for anything else."""
    import torch

    root = _module_root(a)
    if root == "torch":
        return a.detach()
    if root == "cupy":
        return torch.from_dlpack(a)
    raise TypeError(f"{name} must be a torch tensor or a CuPy array on the device route, got {type(a).__name__}")


def device_result(values: Any, kind: Kind) -> Any:
    """A device-route result (a torch tensor) as the inputs' array kind: CuPy inputs get CuPy
    arrays sharing its memory (DLPack); anything that is not a tensor passes through."""
    if kind.library == "cupy" and is_torch(values):
        import cupy

        return cupy.from_dlpack(values)
    return values


def array_module(a: Any):
    """``numpy`` or ``torch``: the module whose functions apply to ``a``."""
    if is_torch(a):
        import torch

        return torch
    return np


def host_floats(values: Sequence[Any]) -> list[float]:
    """Python floats of 0-d NumPy arrays or torch tensors (one device synchronisation for all
    tensors)."""
    if values and is_torch(values[0]):
        import torch

        return torch.stack([v.to(torch.float64) for v in values]).tolist()
    return [float(v) for v in values]
