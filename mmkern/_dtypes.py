"""The dtype policy, written once for NumPy arrays and torch tensors.

Activations and probabilities are accepted as float32 or float64; float16 and bfloat16 are upcast
to float32, and non-native byte order is swapped to native, visibly, here. Kernels read either
without copying and accumulate in float64; every metric is returned as float64. Integer, boolean
and complex inputs are a ``TypeError``: they are almost always a mistake (labels or masks passed
as activations), so we do not guess a cast. Class labels are the mirror image: any integer dtype,
never bool, float or complex.

Both routes call these functions (the host route :func:`float_array` / :func:`integer_array`,
the device route :func:`float_tensor` / :func:`integer_tensor`), so they accept and reject the
same dtypes with the same messages.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ACCEPTED_FLOAT = ("float32", "float64")
UPCAST_TO_FLOAT32 = ("float16", "bfloat16")
RESULT_DTYPE = np.dtype(np.float64)


def dtype_name(dtype: Any) -> str:
    """The NumPy-style name of a NumPy or torch dtype (``torch.float32`` -> ``"float32"``)."""
    return str(dtype).replace("torch.", "") if not isinstance(dtype, np.dtype) else dtype.name


def _float_error(name: str, dtype: Any) -> TypeError:
    return TypeError(
        f"{name} must be a floating-point array (float32 or float64), got dtype {dtype_name(dtype)}; "
        f"cast it explicitly if the values really are activations"
    )


def float_array(a: np.ndarray, name: str) -> np.ndarray:
    """Return ``a`` with an accepted float dtype, or raise ``TypeError`` naming ``name``.

    Parameters
    ----------
    a : numpy.ndarray
        Any array (not copied when already float32 or float64 in native byte order).
    name : str
        The argument name used in the error message.

    Returns
    -------
    numpy.ndarray
        ``a`` itself, a native-byte-order copy of a byte-swapped float32/float64 array, or a
        float32 copy of a float16/bfloat16 array.
    """
    if a.dtype.name in ACCEPTED_FLOAT:
        return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))
    if a.dtype.name in UPCAST_TO_FLOAT32:
        return a.astype(np.float32)
    raise _float_error(name, a.dtype)


def float_tensor(t: Any, name: str) -> Any:
    """:func:`float_array` for a torch tensor: float32/float64 as they are, float16/bfloat16 as a
    float32 copy on the same device, anything else a ``TypeError`` naming ``name``."""
    kind = dtype_name(t.dtype)
    if kind in ACCEPTED_FLOAT:
        return t
    if kind in UPCAST_TO_FLOAT32:
        return t.float()
    raise _float_error(name, t.dtype)


def _label_error(name: str, dtype: Any) -> TypeError:
    return TypeError(f"{name} must hold integer class labels, got dtype {dtype_name(dtype)}")


def integer_array(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` if it holds integers (native byte order), else ``TypeError`` naming ``name``."""
    if a.dtype == np.bool_ or not np.issubdtype(a.dtype, np.integer):
        raise _label_error(name, a.dtype)
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def integer_tensor(t: Any, name: str) -> Any:
    """:func:`integer_array` for a torch tensor."""
    if dtype_name(t.dtype) == "bool" or t.is_floating_point() or t.is_complex():
        raise _label_error(name, t.dtype)
    return t
