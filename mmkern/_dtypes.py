"""The dtype policy, written once.

Activations and probabilities are accepted as float32 or float64 (float16 and bfloat16 are upcast
to float32, and non-native byte order is swapped to native, visibly, here). Kernels read either without copying and accumulate in float64; every
metric is returned as float64. Integer, boolean and complex inputs are a ``TypeError``: they are
almost always a mistake (labels or masks passed as activations), so we do not guess a cast.
"""

from __future__ import annotations

import numpy as np

ACCEPTED_FLOAT = (np.dtype(np.float32), np.dtype(np.float64))
UPCAST_TO_FLOAT32 = ("float16", "bfloat16")
RESULT_DTYPE = np.dtype(np.float64)


def float_array(a: np.ndarray, name: str) -> np.ndarray:
    """Return ``a`` with an accepted float dtype, or raise ``TypeError`` naming ``name``.

    Parameters
    ----------
    a : numpy.ndarray
        Any array (not copied when already float32 or float64).
    name : str
        The argument name used in the error message.

    Returns
    -------
    numpy.ndarray
        ``a`` itself, a native-byte-order copy of a big/little-endian-swapped float32/float64
        array, or a float32 copy of a float16/bfloat16 array.
    """
    if a.dtype in ACCEPTED_FLOAT:
        return a
    native = a.dtype.newbyteorder("=")
    if native in ACCEPTED_FLOAT:
        return a.astype(native)
    if a.dtype.name in UPCAST_TO_FLOAT32:
        return a.astype(np.float32)
    raise TypeError(
        f"{name} must be a floating-point array (float32 or float64), got dtype {a.dtype}; "
        f"cast it explicitly if the values really are activations"
    )
