"""The GPU path: device arrays (torch CUDA tensors, CuPy arrays) in, results on the same device.

Dense linear algebra (the joint Gram matrix, per-model eigendecompositions, small SVDs) runs
through the caller's array library: torch in float64 (cuBLAS / cuSOLVER on a GPU). CuPy arrays are
viewed as torch tensors without a copy (DLPack), so the GPU path needs torch in both cases.
mmkern's own CUDA kernels (``mmkern._C_cuda``, see ``csrc/cuda/kernels.h``) do what no vendor
routine does: the strided float32/float64 gather-and-center pack, and the per-pair summaries,
which run the same host/device functors (``csrc/common/similarity_math.h``) as the CPU kernels.
Where ``mmkern._C_cuda`` was not built, or for tensors on the CPU (how the tests exercise this
path on a machine without a GPU), equivalent torch expressions take their place.

Submodules: :mod:`mmkern._gpu.similarity`, :mod:`mmkern._gpu.multiplicity`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

def require_torch():
    """The ``torch`` module, or an ``ImportError`` saying the GPU path needs it."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only where torch is missing
        raise ImportError(
            "mmkern's GPU path (torch CUDA tensors or CuPy arrays as inputs) needs PyTorch, which is "
            "not installed: `pip install torch` (or `pip install mmkern[torch]`)",
            name="torch",
        ) from e
    return torch


_KERNELS: Any = None
_KERNELS_LOADED = False


def cuda_kernels():
    """The ``mmkern._C_cuda`` module, or ``None`` when it was not built or cannot be loaded."""
    global _KERNELS, _KERNELS_LOADED
    if not _KERNELS_LOADED:
        try:
            from mmkern import _C_cuda
        except ImportError:
            _C_cuda = None
        _KERNELS, _KERNELS_LOADED = _C_cuda, True
    return _KERNELS


def kernels_for(device):
    """mmkern._C_cuda when it can serve tensors on ``device``, else None (torch expressions)."""
    return cuda_kernels() if device.type == "cuda" else None


@contextlib.contextmanager
def cuda_launch(device) -> Iterator[int]:
    """Make ``device`` current for a raw kernel launch; yields torch's current stream on it."""
    torch = require_torch()
    with torch.cuda.device(device):
        yield torch.cuda.current_stream(device).cuda_stream
