"""The rules of the similarity metrics that both routes apply: constants, option and shape checks,
the variance floor, the choice of the CKA route, and the result type.

Everything here works on NumPy arrays and torch tensors alike (only ``.ndim``, ``.shape`` and
arithmetic are used), so the host route (:mod:`mmkern.similarity._host`) and the device route
(:mod:`mmkern.similarity._device`) accept and reject the same inputs with the same messages. The
codes shared with the kernels (keep modes, ``KEEP_SLACK``) are read from ``mmkern._C``, where the
C++ headers define them.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mmkern import _C
from mmkern._validate import check_bool, check_choice, check_float

RANK_RTOL = 1e-10
"""Directions with variance <= RANK_RTOL * (largest variance) count as numerically zero."""

KEEP_SLACK: float = _C.KEEP_SLACK
"""SVCCA: a cumulative fraction within this of ``keep`` reaches it (robust to rounding)."""

KEEP_MODES: dict = dict(_C.KEEP_MODES)
"""SVCCA's keep modes and their kernel codes: "variance", "singular_values", "count"."""

#: Kernel metric names of the CCA family (the projection route) and of linear CKA.
CCA_FAMILY = ("svcca", "cca_mean", "cca_r2", "pwcca", "correlations")
CKA_METRICS = ("cka", "cka_debiased")
METRICS = (*CCA_FAMILY, *CKA_METRICS)

#: Default options of the public functions (``_metric_args`` validates them).
OPTS_DEFAULT = dict(keep=0.99, keep_by="variance", rtol=RANK_RTOL, statistic="mean", debiased=False)


@dataclass(frozen=True)
class CCAResult:
    """Canonical correlations of one pair of inputs.

    Attributes
    ----------
    correlations : array, shape (k,), float64
        Canonical correlations, descending, k = min(rank(x), rank(y)); same array kind as input.
    mean : float
        Mean canonical correlation.
    r2 : float
        Mean squared canonical correlation (Kornblith et al.'s R^2_CCA).
    """

    correlations: Any
    mean: float
    r2: float


# ---------------------------------------------------------------------------------------------
# shapes and options
# ---------------------------------------------------------------------------------------------


def shape_check(a: Any, name: str, ndims: tuple[int, ...]) -> None:
    """``ValueError`` naming ``name`` unless ``a`` has one of ``ndims`` and no empty axis."""
    if a.ndim not in ndims:
        want = " or ".join({2: "2-D (n_samples, n_features)", 3: "3-D (batch, n_samples, n_features)"}[k]
                           for k in ndims)
        raise ValueError(f"{name} must be {want}, got {a.ndim}-D with shape {tuple(a.shape)}")
    if 0 in tuple(a.shape):
        raise ValueError(f"{name} is empty (shape {tuple(a.shape)}); it needs samples and features")


def check_same_n(arrays: Sequence[Any], names: Sequence[str], axis: int = 0, what: str = "samples") -> int:
    """The common length of ``arrays`` along ``axis``, or ``ValueError`` naming the odd one."""
    n = arrays[0].shape[axis]
    for a, name in zip(arrays[1:], names[1:]):
        if a.shape[axis] != n:
            if what == "samples":
                raise ValueError(
                    f"{name} has {a.shape[axis]} samples but {names[0]} has {n}; "
                    "all inputs must hold activations for the same samples (rows)"
                )
            raise ValueError(f"{name} has {a.shape[axis]} {what} but {names[0]} has {n}")
    return int(n)


def check_more_samples(n: int, widths: Sequence[int], names: Sequence[str], what: str) -> None:
    for d, name in zip(widths, names):
        if n <= d:
            raise ValueError(
                f"{name} has n_samples={n} <= n_features={d}: {what} is degenerate without more "
                "samples than features (collect more samples, reduce features, or use cka)"
            )


def check_rtol(rtol: float) -> float:
    return check_float(rtol, "rtol", low=0.0, high=1.0, high_open=True)


def keep_args(keep: Any, keep_by: str, widths: Sequence[int]) -> tuple[float, int]:
    """Validate SVCCA's ``keep``/``keep_by`` into the kernel's (keep, keep_mode)."""
    check_choice(keep_by, "keep_by", ("variance", "singular_values"))
    if isinstance(keep, (bool, np.bool_)):
        raise TypeError("keep must be a float fraction in (0, 1] or an int number of directions, got bool")
    if isinstance(keep, numbers.Integral):
        if not 1 <= keep <= min(widths):
            raise ValueError(
                f"keep={keep} directions must be between 1 and the number of features "
                f"(smallest input has {min(widths)})"
            )
        return float(keep), KEEP_MODES["count"]
    if isinstance(keep, numbers.Real):
        if not 0.0 < float(keep) <= 1.0:  # also rejects NaN
            raise ValueError(f"keep must be a fraction of variance in (0, 1], got {keep}")
        return float(keep), KEEP_MODES[keep_by]
    raise TypeError(f"keep must be a float in (0, 1] or an int, got {type(keep).__name__}")


def check_statistic(statistic: str) -> str:
    check_choice(statistic, "statistic", ("mean", "r2"))
    return "cca_mean" if statistic == "mean" else "cca_r2"


def metric_args(metric: str, n: int, widths, names, keep, keep_by, rtol, statistic, debiased):
    """Validate the options of public ``metric`` and return (kernel metric name, kernel kwargs)."""
    if metric == "cka":
        debiased = check_bool(debiased, "debiased")
        if debiased and n < 4:
            raise ValueError(f"debiased CKA needs at least 4 samples, got n_samples={n}")
        return ("cka_debiased" if debiased else "cka"), {}
    check_more_samples(n, widths, names, "SVCCA" if metric == "svcca" else "CCA")
    kwargs = {"rtol": check_rtol(rtol)}
    if metric == "svcca":
        kwargs["keep"], kwargs["keep_mode"] = keep_args(keep, keep_by, widths)
        return "svcca", kwargs
    if metric == "pwcca":
        return "pwcca", kwargs
    return check_statistic(statistic), kwargs


def population(acts, name: str) -> tuple[list, list[str]]:
    """Split ``acts`` (a sequence of (n, d_i) arrays, or one (M, n, d) array) into a list."""
    if isinstance(acts, (list, tuple)):
        arrays = list(acts)
    elif hasattr(acts, "ndim") and acts.ndim == 3:
        arrays = [acts[i] for i in range(acts.shape[0])]
    else:
        shape = getattr(acts, "shape", None)
        raise ValueError(f"{name} must be a sequence of (n, d_i) arrays or an (M, n, d) array, got shape {shape}")
    if not arrays:
        raise ValueError(f"{name} holds no models (M = 0)")
    return arrays, [f"{name}[{i}]" for i in range(len(arrays))]


def square_pairs(m: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pair indices (first, second) of an (m, m) matrix: the upper triangle with its diagonal for a
    symmetric metric, every entry otherwise (C-contiguous int64)."""
    first, second = np.triu_indices(m) if symmetric else np.indices((m, m)).reshape(2, -1)
    return np.ascontiguousarray(first, np.int64), np.ascontiguousarray(second, np.int64)


# ---------------------------------------------------------------------------------------------
# rules of the computation
# ---------------------------------------------------------------------------------------------


MAGNITUDE_LIMIT = 100
"""Inputs whose largest magnitude lies outside [2^-100, 2^100] are multiplied by a power of two
(exact) before their float64 statistics are formed: every metric here is invariant to scaling an
input, and the fourth powers CKA forms from the rescaled values stay far inside float64's range."""


def magnitude_exponent(max_abs: float) -> int:
    """The exponent e by which an input whose largest magnitude is ``max_abs`` (finite) is
    rescaled (x * 2^e): 0 inside [2^-MAGNITUDE_LIMIT, 2^MAGNITUDE_LIMIT] (and for all zeros), else
    the e that brings max|x| into [0.5, 1)."""
    if max_abs == 0.0 or 2.0**-MAGNITUDE_LIMIT <= max_abs <= 2.0**MAGNITUDE_LIMIT:
        return 0
    return -int(np.frexp(max_abs)[1])


def rescale(a, e: int):
    """``a`` (a float64 NumPy array or torch tensor the caller owns) times 2^e, in place and
    exact. Two factors, since 2^e alone over- or underflows for |e| > 1022."""
    half = e // 2
    a *= 2.0**half
    a *= 2.0 ** (e - half)
    return a


def check_magnitude(max_abs: float, e: int, name: str) -> None:
    """``ValueError`` naming ``name`` when a batch of largest magnitude ``max_abs``, rescaled by
    the 2^e an earlier batch fixed, would overflow the float64 statistics (streaming only)."""
    if max_abs * 2.0**e > 2.0 ** (2 * MAGNITUDE_LIMIT):
        raise ValueError(
            f"{name} reaches |x| = {max_abs:.3g}, about 2^{int(np.log2(max_abs * 2.0**e))} times the scale "
            "the first batch fixed for this model: its float64 Gram statistics would overflow "
            "(rescale the activations, or start the accumulator with a representative batch)"
        )


def variance_floors(abs_mean, n: int):
    """Per column, the centered sum of squares of constant values after rounding: at or below
    ``n * (64 eps |mean|)^2`` a column carries no measurable variance. ``abs_mean`` is a NumPy array
    or a torch tensor (D,); the result is the same kind."""
    return n * (64.0 * np.finfo(np.float64).eps * abs_mean) ** 2


def check_variance(totals: Sequence[float], floors: Sequence[float], names: Sequence[str]) -> None:
    """``ValueError`` for the first model whose total centered variance (the trace of its Gram
    block, ``totals[i]``) is not above the sum of its columns' :func:`variance_floors`
    (``floors[i]``): every column is constant up to rounding."""
    for total, floor, name in zip(totals, floors, names):
        if not np.isfinite(total):
            raise ValueError(
                f"the float64 Gram statistics of {name} overflowed: its later batches are far larger "
                "than its first (rescale the activations)"
            )
        if not total > floor:
            raise ValueError(f"{name} has no variance: every column is constant")


def use_sample_space(metrics: Sequence[str], n: int, widths: Sequence[int]) -> bool:
    """Whether linear CKA goes through the M n x n sample Grams instead of the D x D joint Gram:
    when CKA alone is asked for and M n^2 < D^2 (wide layers, few samples)."""
    return set(metrics) <= set(CKA_METRICS) and len(widths) * n * n < sum(widths) ** 2
