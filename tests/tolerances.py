"""The one table of numerical tolerances, per input dtype.

Every comparison of a fast function with its reference uses ``TOLERANCES[dtype]`` (through
:func:`tol`). The reference is always run on the *same* values converted to float64 (float32 is
exact in float64), so the float32 row covers only the fast path's own arithmetic on float32
data, not the rounding of the data itself. A test that needs a wider tolerance says why where
it widens it.
"""

from __future__ import annotations

import numpy as np

TOLERANCES = {
    # Fast vs reference (SVD of the centered data), both in float64 arithmetic. The in-memory
    # CCA family re-whitens each model (CholeskyQR2), so its error is ~eps * cond(X) like the
    # reference's: measured ~1e-14 even at n = d + 1 and cond(X) ~ 3e4; 1e-9 is the contract's bar.
    np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-11},
    # float32 inputs: the kernels widen each value exactly to float64 and compute in float64,
    # and the reference runs on the same float32 values widened the same way: the float64 row.
    np.dtype(np.float32): {"rtol": 1e-9, "atol": 1e-11},
}

#: Streaming accumulator vs the in-memory functions on the same data (float64). The accumulator
#: whitens through the Gram matrix alone (one pass over the data), with error ~eps * cond(X)^2.
ACCUMULATOR = {"rtol": 1e-8, "atol": 1e-8}

#: Independent textbook formulations (covariance inverses, centering matrices) vs the reference:
#: those formulas square the condition number or form n x n products, so they agree only to
#: ~1e-10 relative on the well-conditioned data the tests feed them.
FORMULA = {"rtol": 1e-8, "atol": 1e-10}

#: Exact properties (self-similarity 1, symmetry, invariances) of the fast functions, float64.
PROPERTY = {"rtol": 1e-9, "atol": 1e-9}

#: Device-route results vs the host route's on the same inputs, per input dtype: torch tensors on
#: the device route (CPU tensors under mmkern._backend.torch_route, CUDA tensors) against the
#: C++ kernels. Both routes widen the inputs exactly and run the same algorithm in float64; they
#: differ only in the rounding of torch's (cuBLAS/cuSOLVER's) linear algebra vs LAPACK and the
#: order of reductions. Measured with CPU tensors: <= 4e-15 absolute on every metric. CUDA:
#: UNMEASURED (no GPU run yet), so the float32 row leaves room for a different summation order
#: over float32-sized values.
DEVICE_VS_HOST = {
    np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-11},
    np.dtype(np.float32): {"rtol": 1e-6, "atol": 1e-8},
}


def tol(dtype) -> dict:
    """``{"rtol": ..., "atol": ...}`` for comparing results computed from ``dtype`` inputs."""
    return dict(TOLERANCES[np.dtype(dtype)])


def condition_number(a) -> float:
    """Condition number of the centered ``(n, d)`` data over its numerically non-zero directions
    (singular values with ``s_i**2 > 1e-10 * s_0**2``, the reference's rank rule)."""
    a = np.asarray(a, dtype=np.float64)
    s = np.linalg.svd(a - a.mean(axis=0), compute_uv=False)
    s = s[s**2 > 1e-10 * s[0] ** 2]
    return float(s[0] / s[-1])


#: Predictive multiplicity, fast vs reference, per input dtype and kind of figure. Both sides
#: compute in float64 from the same values (float32 probabilities widen exactly, and the
#: reference runs on the same float32 values widened), so the two rows are the same. Hard
#: disagreement matrices and ambiguity are ratios of integer counts and are compared exactly
#: (no entry here).
MULTIPLICITY = {
    dtype: {
        # Mean, over samples, of per-sample divergences/variances/ranges summed in another
        # order: ~n * eps relative at worst; values near 0 (near-identical models) need atol.
        "soft": {"rtol": 1e-10, "atol": 1e-12},
        # Ratios of counts formed in another order (1 - k/M vs (M - k)/M, means of fractions).
        "counts": {"rtol": 1e-14, "atol": 1e-15},
        # Blahut-Arimoto run by the same algorithm: the stopping test (gap <= tol) may flip one
        # iteration on rounding, moving log(capacity) by less than the gap tol=1e-9.
        "rashomon": {"rtol": 1e-8, "atol": 1e-8},
    }
    for dtype in (np.dtype(np.float64), np.dtype(np.float32))
}


def multiplicity_tol(kind: str, dtype=np.float64) -> dict:
    """``{"rtol": ..., "atol": ...}`` of :data:`MULTIPLICITY` for ``kind`` and the input dtype."""
    return dict(MULTIPLICITY[np.dtype(dtype)][kind])
