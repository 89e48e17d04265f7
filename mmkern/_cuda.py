"""The CUDA module ``mmkern._C_cuda``: whether it can serve a device, and how to launch on it.

The device route of each domain (``mmkern.<domain>._device``) runs its dense linear algebra
through torch (cuBLAS/cuSOLVER on a GPU; CuPy arrays are viewed as torch tensors through DLPack)
and asks :func:`kernels_for` for mmkern's own CUDA kernels. Those are used only where they can
run: the module must import, and a one-thread probe kernel must run on the device (a driver older
than the module's runtime, or a GPU architecture the module was not compiled for, fail there).
Otherwise :func:`kernels_for` returns None, the device route falls back to torch expressions (and
to the host twins in ``mmkern._C`` for the small per-pair tails), and ``mmkern.show_config()``
says why (:func:`status`).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

_MODULE: Any = None
_IMPORT_ERROR: str | None = None
_IMPORTED = False
_PROBED: dict[int, str] = {}  # device index -> "" (usable) or the reason it is not


def require_torch():
    """The ``torch`` module, or an ``ImportError`` saying the device route needs it."""
    try:
        import torch
    except ImportError as e:  # pragma: no cover - exercised only where torch is missing
        raise ImportError(
            "mmkern's device route (torch CUDA tensors or CuPy arrays as inputs) needs PyTorch, which "
            "is not installed: `pip install torch` (or `pip install mmkern[torch]`)",
            name="torch",
        ) from e
    return torch


def cuda_module():
    """``mmkern._C_cuda``, or None when it was not built or does not import."""
    global _MODULE, _IMPORT_ERROR, _IMPORTED
    if not _IMPORTED:
        try:
            from mmkern import _C_cuda
        except ImportError as e:
            _C_cuda, _IMPORT_ERROR = None, str(e)
        _MODULE, _IMPORTED = _C_cuda, True
    return _MODULE


def kernels_for(device) -> Any:
    """``mmkern._C_cuda`` when its kernels can run on the torch ``device``, else None.

    The first call per CUDA device runs the module's probe kernel there; a failure is remembered
    (and reported by :func:`status`), and that device gets the torch expressions from then on.
    """
    if device.type != "cuda":
        return None
    module = cuda_module()
    if module is None:
        return None
    index = device.index if device.index is not None else require_torch().cuda.current_device()
    if index not in _PROBED:
        with require_torch().cuda.device(index):
            _PROBED[index] = module.probe()
    return module if _PROBED[index] == "" else None


def status() -> dict:
    """What the device route knows of the CUDA module: ``built`` (imports), ``import_error`` and,
    per probed device index, ``""`` (usable) or why its kernels cannot run there."""
    module = cuda_module()
    return {"built": module is not None, "import_error": _IMPORT_ERROR, "probed": dict(_PROBED)}


@contextlib.contextmanager
def cuda_launch(device) -> Iterator[int]:
    """Make ``device`` current for a raw kernel launch; yields torch's current stream on it."""
    torch = require_torch()
    with torch.cuda.device(device):
        yield torch.cuda.current_stream(device).cuda_stream
