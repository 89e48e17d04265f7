"""Fused multi-alpha lerp: the K interpolated parameter vectors of a connectivity curve at once.

Private helper of the connectivity fast path. ``lerp_many(a, b, alphas)`` returns the
``(k, p)`` array whose row ``j`` is ``(1 - alphas[j]) * a + alphas[j] * b``, computed in float64
and rounded to the inputs' dtype once (``lerp_value`` in ``csrc/common/connectivity_math.h``;
bitwise the float64 NumPy expression, exact at alpha = 0 and 1 for finite inputs).

Routes: NumPy arrays and torch CPU tensors go to ``mmkern._C.lerp_many`` without copies (torch
tensors as zero-copy ``.numpy()`` views); torch CUDA tensors go to ``mmkern._C_cuda.lerp_many``
when it was built, else to the plain torch expression in float64 (same formula, same bits).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmkern import _C

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".", 1)[0] == "torch"


def _check_alphas(alphas: Any) -> np.ndarray:
    """alphas as a C-contiguous 1-D float64 NumPy array of finite values, or ValueError."""
    if _is_torch(alphas):
        alphas = alphas.detach().cpu().numpy()
    try:
        arr = np.ascontiguousarray(np.asarray(alphas, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"alphas must be a 1-D sequence of finite numbers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"alphas must be 1-D (k,), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"alphas must be finite, got {arr[~np.isfinite(arr)][:3].tolist()}")
    return arr


def _check_endpoints(a: Any, b: Any) -> None:
    """a and b: same kind, 1-D, same shape, same float32/float64 dtype, contiguous."""
    if _is_torch(a) != _is_torch(b):
        raise TypeError(f"a and b must both be torch tensors or both NumPy arrays, got "
                         f"{type(a).__name__} and {type(b).__name__}")
    if _is_torch(a):
        if a.device != b.device:
            raise ValueError(f"a and b must be on the same device, got {a.device} and {b.device}")
        da, db = str(a.dtype).replace("torch.", ""), str(b.dtype).replace("torch.", "")
    else:
        if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
            raise TypeError(f"a and b must be NumPy arrays or torch tensors, got "
                            f"{type(a).__name__} and {type(b).__name__}")
        da, db = a.dtype.name, b.dtype.name
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if len(a.shape) != 1:
        raise ValueError(f"a and b must be 1-D (p,), got shape {tuple(a.shape)}")
    if da != db:
        raise TypeError(f"a and b must have the same dtype, got {da} and {db}")
    if da not in ("float32", "float64"):
        raise TypeError(f"a and b must be float32 or float64, got {da}")
    contiguous = (a.is_contiguous() and b.is_contiguous()) if _is_torch(a) else (
        a.flags.c_contiguous and b.flags.c_contiguous)
    if not contiguous:
        raise ValueError("a and b must be contiguous (call .contiguous() / np.ascontiguousarray "
                         "first; no hidden copies)")


def _lerp_torch(a, b, alphas: np.ndarray):
    """The formula of ``lerp_value`` in torch ops on any device: three separately rounded float64
    operations, rounded to the dtype once (the fallback where mmkern._C_cuda is not built)."""
    import torch

    al = torch.from_numpy(alphas).to(a.device)[:, None]
    a64, b64 = a.to(torch.float64)[None, :], b.to(torch.float64)[None, :]
    return ((1.0 - al) * a64 + al * b64).to(a.dtype)


def _lerp_torch_cuda(a, b, alphas: np.ndarray):
    import torch

    from mmkern._cuda import cuda_launch, dtype_code, kernels_for

    kernels = kernels_for(a.device)
    if kernels is None:
        return _lerp_torch(a, b, alphas)
    k, p = alphas.shape[0], a.shape[0]
    out = torch.empty((k, p), dtype=a.dtype, device=a.device)
    al = torch.from_numpy(alphas).to(a.device)
    with cuda_launch(a.device) as stream:
        kernels.lerp_many(a.data_ptr(), b.data_ptr(), dtype_code(a.dtype), p,
                          al.data_ptr(), k, out.data_ptr(), stream)
    return out


def lerp_many(a: Any, b: Any, alphas: Any) -> Any:
    """The parameter vectors at ``alphas`` on the segment from ``a`` to ``b``.

    Parameters
    ----------
    a, b : numpy.ndarray or torch.Tensor, shape (p,)
        The two endpoints' flattened parameters: 1-D, contiguous, the same float32 or float64
        dtype and the same kind (both NumPy or both torch on one device).
    alphas : array_like, shape (k,)
        Finite interpolation weights (any float; not restricted to [0, 1]).

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (k, p)
        Same kind, dtype and device as ``a``: ``out[j] = (1 - alphas[j]) * a + alphas[j] * b``
        computed in float64 and rounded once; exactly ``a`` at alpha = 0 and ``b`` at alpha = 1
        for finite inputs.

    Raises
    ------
    ValueError
        Non-finite or non-1-D ``alphas``; ``a`` and ``b`` of different shapes, dtypes, kinds or
        devices, not 1-D, not float32/float64 or not contiguous.
    """
    alphas = _check_alphas(alphas)
    _check_endpoints(a, b)
    if _is_torch(a):
        if a.device.type == "cuda":
            return _lerp_torch_cuda(a, b, alphas)
        if a.device.type != "cpu":
            raise ValueError(f"a and b must be on the CPU or a CUDA device, got {a.device}")
        import torch

        return torch.from_numpy(_C.lerp_many(a.detach().numpy(), b.detach().numpy(), alphas))
    return _C.lerp_many(a, b, alphas)
