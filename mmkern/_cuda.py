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

#: Bytes of scratch per step of the device routes' torch expressions (a step's packed rows,
#: per-pair matrices, comparison blocks or Blahut-Arimoto working set).
CHUNK_BYTES = 256 * 2**20

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


def dtype_code(dtype) -> int:
    """The kernels' code of a float32/float64 torch dtype (``mmkern._C.DTYPE_CODES``)."""
    from mmkern import _C
    from mmkern._dtypes import dtype_name

    return _C.DTYPE_CODES[dtype_name(dtype)]


def items_per_step(total: int, bytes_per_item: int, budget: int = CHUNK_BYTES) -> int:
    """How many of ``total`` items one step takes so that its scratch fits in ``budget`` bytes
    (at least 1)."""
    return max(1, min(max(total, 1), budget // max(1, bytes_per_item)))


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


def probe_visible_devices() -> None:
    """Probe every CUDA device torch sees (once each), so :func:`status` can report them all."""
    try:
        torch = require_torch()
    except ImportError:
        return
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            kernels_for(torch.device("cuda", index))


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
