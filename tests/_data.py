"""Synthetic activations for tests (and benchmarks): realistic, seeded, with controlled layouts.

Realistic activations of several models on the same inputs share a latent signal: each model
sees ``z @ W_i + noise`` with one common latent ``z`` (n x r), its own random map ``W_i``
(r x d_i), an offset per feature (so centering matters) and independent noise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

LAYOUTS = ("C", "F", "sliced")


def latent_activations(rng: np.random.Generator, n: int, widths: Sequence[int], *,
                       latent_dim: int | None = None, noise: float = 0.5,
                       dtype=np.float64) -> list[np.ndarray]:
    """Activations of ``len(widths)`` models sharing one latent signal.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n : int
        Number of samples (rows).
    widths : sequence of int
        Number of features ``d_i`` of each model.
    latent_dim : int, optional
        Rank ``r`` of the shared signal; default ``min(16, max(widths))``.
    noise : float, optional
        Standard deviation of the independent per-model noise (the signal has unit variance
        per feature).
    dtype : numpy dtype, optional
        Output dtype.

    Returns
    -------
    list of numpy.ndarray
        ``len(widths)`` C-ordered arrays of shape ``(n, d_i)``.
    """
    r = latent_dim if latent_dim is not None else min(16, max(widths))
    z = rng.standard_normal((n, r))
    out = []
    for d in widths:
        w = rng.standard_normal((r, d)) / np.sqrt(r)
        offset = rng.normal(0.0, 3.0, size=(1, d))
        a = z @ w + noise * rng.standard_normal((n, d)) + offset
        out.append(a.astype(dtype))
    return out


def noise_activations(rng: np.random.Generator, n: int, d: int, dtype=np.float64) -> np.ndarray:
    """Independent standard normal activations ``(n, d)`` (no shared signal)."""
    return rng.standard_normal((n, d)).astype(dtype)


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` (2-D or 3-D) in a given memory layout.

    ``"C"``: C-contiguous; ``"F"``: Fortran-contiguous; ``"sliced"``: a non-contiguous view
    ``big[..., ::2, 1::2]`` of a larger array (both strides differ from the element size).
    """
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "sliced":
        *lead, n, d = a.shape
        big = np.full((*lead, 2 * n, 2 * d + 1), np.nan, dtype=a.dtype)
        big[..., ::2, 1::2] = a
        return big[..., ::2, 1::2]
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
