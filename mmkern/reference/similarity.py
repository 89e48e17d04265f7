"""Plain NumPy reference implementations of the representational-similarity metrics.

These functions are the ground truth of the test suite and the baseline of the benchmarks. They
are written literally from the definitions in ``docs/definitions.md``, for clarity and
not for speed: every input is centered and factored with a full SVD, and the pairwise and cross
matrices are plain Python loops over pairs of models. The fast functions of
:mod:`mmkern.similarity` compute the same quantities through Gram matrices and must agree with
these to rounding.

Every input is converted to a float64 NumPy array first (``np.asarray(a).astype(np.float64)``).
float32 values are represented exactly in float64, so the reference run on float32 inputs sees
the same numbers as the fast path. Each input is divided by its largest magnitude before it is
centered (the metrics are scale-invariant; this keeps every statistic in range). Validation is minimal (dimensions, matching sample counts);
the fast functions do the user-facing validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "KEEP_SLACK",
    "RANK_RTOL",
    "CCAResult",
    "cca",
    "cka",
    "cross_cca",
    "cross_cka",
    "cross_pwcca",
    "cross_svcca",
    "pairwise_cca",
    "pairwise_cka",
    "pairwise_pwcca",
    "pairwise_svcca",
    "pwcca",
    "svcca",
]

#: Directions of centered data whose variance s_i**2 is at most ``RANK_RTOL * s_0**2`` are
#: numerically zero and are dropped (rank deficiency, constant columns).
RANK_RTOL = 1e-10

#: A cumulative (variance or singular-value) fraction within ``KEEP_SLACK`` of SVCCA's ``keep``
#: counts as reaching it, so the choice of k does not flip on the last bits of rounding.
KEEP_SLACK = 1e-10

_KEEP_BY = ("variance", "singular_values")
_STATISTICS = ("mean", "r2")


@dataclass(frozen=True)
class CCAResult:
    """Canonical correlation analysis of two activation matrices (reference version).

    Attributes
    ----------
    correlations : numpy.ndarray
        float64, shape ``(min(r_x, r_y),)``: the canonical correlations in [0, 1], descending,
        where ``r_x``, ``r_y`` are the numerical ranks of the centered inputs.
    mean : float
        Mean canonical correlation.
    r2 : float
        Mean squared canonical correlation (Kornblith et al.'s R^2_CCA).
    """

    correlations: np.ndarray
    mean: float
    r2: float


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def _as_float64(a, name: str, ndims: tuple[int, ...] = (2,)) -> np.ndarray:
    """``a`` as a float64 NumPy array with one of the allowed numbers of dimensions."""
    arr = np.asarray(a).astype(np.float64)
    if arr.ndim not in ndims:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions, "
                         f"got shape {arr.shape}")
    return arr


def _check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != y.ndim:
        raise ValueError(f"x and y must have the same number of dimensions, "
                         f"got shapes {x.shape} and {y.shape}")
    if x.shape[:-1] != y.shape[:-1]:
        raise ValueError(f"x and y must have the same leading dimensions (samples), "
                         f"got shapes {x.shape} and {y.shape}")


def _center(x: np.ndarray) -> np.ndarray:
    """Divide a ``(n, d)`` array by its largest magnitude, then subtract its column means.

    Every metric here is invariant to scaling an input, and after the division the squared and
    fourth-power statistics below stay inside float64's range for any finite input (without it,
    CKA of inputs near 1e-85 or 1e77 under- or overflows).
    """
    largest = np.max(np.abs(x))
    if largest > 0.0:
        x = x / largest
    return x - x.mean(axis=0, keepdims=True)


def _numerical_rank(s: np.ndarray, rtol: float) -> int:
    """Number of singular values (descending) with ``s_i**2 > rtol * s_0**2``."""
    if s.size == 0 or not s[0] > 0.0:
        return 0
    r = 0
    for value in s:
        if value**2 > rtol * s[0] ** 2:
            r += 1
    return r


def _svd_of_centered(x: np.ndarray, name: str, rtol: float):
    """SVD of the centered ``(n, d)`` array: ``(U, s, r)`` with ``r`` the numerical rank."""
    u, s, _ = np.linalg.svd(_center(x), full_matrices=False)
    r = _numerical_rank(s, rtol)
    if r == 0:
        raise ValueError(f"{name} has no variance (every column is constant)")
    return u, s, r


def _keep_count(s: np.ndarray, r: int, keep, keep_by: str) -> int:
    """How many of the ``r`` leading directions SVCCA keeps (see :func:`svcca`)."""
    if isinstance(keep, (bool, np.bool_)):
        raise TypeError(f"keep must be an int or a float, got bool {keep!r}")
    if keep_by not in _KEEP_BY:
        raise ValueError(f"keep_by must be one of {_KEEP_BY}, got {keep_by!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 when an int, got {keep}")
        return min(int(keep), r)
    keep = float(keep)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1] when a float, got {keep}")
    if keep >= 1.0:
        return r
    weights = s[:r] ** 2 if keep_by == "variance" else s[:r]
    total = np.sum(weights)
    cumulative = np.cumsum(weights)
    for k in range(1, r + 1):
        if cumulative[k - 1] >= (keep - KEEP_SLACK) * total:
            return k
    return r


def _singular_values_unit(m: np.ndarray) -> np.ndarray:
    """Singular values of ``m`` (descending), clipped to [0, 1]."""
    return np.clip(np.linalg.svd(m, compute_uv=False), 0.0, 1.0)


def _batched(metric: Callable[[np.ndarray, np.ndarray], float], x, y):
    """Apply a single-pair metric to 2-D inputs, or to each item of 3-D ``(b, n, d)`` inputs."""
    x = _as_float64(x, "x", (2, 3))
    y = _as_float64(y, "y", (2, 3))
    _check_pair(x, y)
    if x.ndim == 2:
        return float(metric(x, y))
    return np.array([metric(x[i], y[i]) for i in range(x.shape[0])], dtype=np.float64)


def _models(acts, name: str) -> list[np.ndarray]:
    """A sequence of M ``(n, d_i)`` arrays, or an ``(M, n, d)`` array, as a list of arrays."""
    models = [_as_float64(a, f"{name}[{i}]") for i, a in enumerate(acts)]
    if len(models) == 0:
        raise ValueError(f"{name} must hold at least one model, got none")
    for i, a in enumerate(models):
        if a.shape[0] != models[0].shape[0]:
            raise ValueError(f"{name}[{i}] has {a.shape[0]} samples but {name}[0] has "
                             f"{models[0].shape[0]}")
    return models


def _pairwise_symmetric(metric, acts, name: str = "acts") -> np.ndarray:
    """(M, M) matrix of a symmetric metric: a double loop over i < j, diagonal 1."""
    models = _models(acts, name)
    m = len(models)
    out = np.eye(m, dtype=np.float64)
    for i in range(m):
        for j in range(i + 1, m):
            out[i, j] = out[j, i] = metric(models[i], models[j])
    return out


def _cross(metric, acts_a, acts_b) -> np.ndarray:
    """(len(a), len(b)) matrix with entry [i, j] = metric(acts_a[i], acts_b[j])."""
    models_a = _models(acts_a, "acts_a")
    models_b = _models(acts_b, "acts_b")
    if models_a[0].shape[0] != models_b[0].shape[0]:
        raise ValueError(f"acts_a has {models_a[0].shape[0]} samples but acts_b has "
                         f"{models_b[0].shape[0]}")
    out = np.empty((len(models_a), len(models_b)), dtype=np.float64)
    for i, a in enumerate(models_a):
        for j, b in enumerate(models_b):
            out[i, j] = metric(a, b)
    return out


# ---------------------------------------------------------------------------------------------
# Single pairs (2-D inputs; svcca, pwcca and cka also accept a leading batch axis)
# ---------------------------------------------------------------------------------------------


def _cca_2d(x: np.ndarray, y: np.ndarray, rtol: float) -> CCAResult:
    u_x, _, r_x = _svd_of_centered(x, "x", rtol)
    u_y, _, r_y = _svd_of_centered(y, "y", rtol)
    q_x, q_y = u_x[:, :r_x], u_y[:, :r_y]
    rho = _singular_values_unit(q_x.T @ q_y)
    return CCAResult(correlations=rho, mean=float(np.mean(rho)), r2=float(np.mean(rho**2)))


def cca(x, y, *, rtol: float = RANK_RTOL) -> CCAResult:
    """Canonical correlations of two activation matrices.

    Reference for :func:`mmkern.cca`.

    Both inputs are centered; ``Q_x``, ``Q_y`` are orthonormal bases of their column spaces
    (left singular vectors whose singular values satisfy ``s_i**2 > rtol * s_0**2``). The
    canonical correlations are the singular values of ``Q_x^T Q_y``, clipped to [0, 1].

    Parameters
    ----------
    x : array_like
        Shape ``(n, d1)``, any real float dtype (converted to float64).
    y : array_like
        Shape ``(n, d2)``, same ``n`` as ``x``.
    rtol : float, optional
        Relative variance tolerance of the numerical rank.

    Returns
    -------
    CCAResult
        ``correlations`` (float64, ``(min(r_x, r_y),)``, descending), ``mean`` and ``r2``.

    Raises
    ------
    ValueError
        If the inputs are not 2-D, differ in ``n``, or one of them has no variance.
    """
    x = _as_float64(x, "x")
    y = _as_float64(y, "y")
    _check_pair(x, y)
    return _cca_2d(x, y, rtol)


def _svcca_2d(x, y, keep, keep_by: str, rtol: float) -> float:
    u_x, s_x, r_x = _svd_of_centered(x, "x", rtol)
    u_y, s_y, r_y = _svd_of_centered(y, "y", rtol)
    k_x = _keep_count(s_x, r_x, keep, keep_by)
    k_y = _keep_count(s_y, r_y, keep, keep_by)
    rho = _singular_values_unit(u_x[:, :k_x].T @ u_y[:, :k_y])
    return float(np.mean(rho))


def svcca(x, y, keep=0.99, *, keep_by: str = "variance", rtol: float = RANK_RTOL):
    """SVCCA similarity (Raghu et al. 2017): mean canonical correlation after SVD truncation.

    Reference for :func:`mmkern.svcca`.

    Centered ``X = U S V^T``. Among the ``r`` directions with ``s_i**2 > rtol * s_0**2`` keep the
    first ``k``: an int ``keep`` means ``k = min(keep, r)``; a float ``keep >= 1`` means
    ``k = r``; otherwise ``k`` is the smallest count whose cumulative weight reaches
    ``(keep - KEEP_SLACK)`` of the total weight of the ``r`` directions, with weights
    ``s_i**2`` (``keep_by="variance"``) or ``s_i`` (``keep_by="singular_values"``, the google/svcca
    tutorial convention). SVCCA is the mean of the singular values (clipped to [0, 1]) of
    ``U_kx^T U_ky``.

    Parameters
    ----------
    x : array_like
        Shape ``(n, d1)`` or ``(b, n, d1)``, any real float dtype (converted to float64).
    y : array_like
        Shape ``(n, d2)`` or ``(b, n, d2)``, matching ``x`` in all but the last axis.
    keep : float or int, optional
        Fraction in (0, 1] of the variance to keep, or (int) the number of directions.
    keep_by : {"variance", "singular_values"}, optional
        What ``keep`` is a fraction of.
    rtol : float, optional
        Relative variance tolerance of the numerical rank.

    Returns
    -------
    float or numpy.ndarray
        A Python float for 2-D inputs, a float64 array of shape ``(b,)`` for 3-D inputs.
    """
    return _batched(lambda a, b: _svcca_2d(a, b, keep, keep_by, rtol), x, y)


def _pwcca_2d(x: np.ndarray, y: np.ndarray, rtol: float) -> float:
    u_x, _, r_x = _svd_of_centered(x, "x", rtol)
    u_y, _, r_y = _svd_of_centered(y, "y", rtol)
    q_x, q_y = u_x[:, :r_x], u_y[:, :r_y]
    a, rho, _ = np.linalg.svd(q_x.T @ q_y, full_matrices=False)
    rho = np.clip(rho, 0.0, 1.0)
    m = min(r_x, r_y)
    x_centered = _center(x)
    alpha = np.zeros(m)
    for i in range(m):
        h = q_x @ a[:, i]  # canonical variate of x, unit norm
        alpha[i] = np.sum(np.abs(h @ x_centered))  # sum_j |<h_l, x_j>| over the neurons of x
    return float(np.sum(alpha * rho[:m]) / np.sum(alpha))


def pwcca(x, y, *, rtol: float = RANK_RTOL):
    """Projection-weighted CCA (Morcos et al. 2018).

    Reference for :func:`mmkern.pwcca`.

    With ``Q_x``, ``Q_y`` as in :func:`cca` and ``Q_x^T Q_y = A diag(rho) B^T``, the canonical
    variates of ``x`` are ``h_l = Q_x a_l`` for ``l < min(r_x, r_y)``, weighted by
    ``alpha_l = sum_j |<h_l, x_j>|`` over the columns ``x_j`` of the centered ``x``.
    PWCCA = ``sum alpha_l rho_l / sum alpha_l``. The weights come from ``x``, so
    ``pwcca(x, y) != pwcca(y, x)`` in general.

    Parameters
    ----------
    x : array_like
        Shape ``(n, d1)`` or ``(b, n, d1)``, any real float dtype (converted to float64).
    y : array_like
        Shape ``(n, d2)`` or ``(b, n, d2)``, matching ``x`` in all but the last axis.
    rtol : float, optional
        Relative variance tolerance of the numerical rank.

    Returns
    -------
    float or numpy.ndarray
        A Python float for 2-D inputs, a float64 array of shape ``(b,)`` for 3-D inputs.
    """
    return _batched(lambda a, b: _pwcca_2d(a, b, rtol), x, y)


def _u_centered(k: np.ndarray) -> np.ndarray:
    """U-centering of an ``(n, n)`` Gram matrix (Szekely & Rizzo 2014), diagonal set to 0.

    For i != j: ``K~_ij = K_ij - rowsum_i / (n-2) - colsum_j / (n-2) + total / ((n-1)(n-2))``,
    the sums taken over ``K`` with its diagonal zeroed first.
    """
    n = k.shape[0]
    k = k.copy()
    np.fill_diagonal(k, 0.0)
    row_sums = k.sum(axis=1)
    col_sums = k.sum(axis=0)
    total = k.sum()
    out = (k - row_sums[:, None] / (n - 2) - col_sums[None, :] / (n - 2)
           + total / ((n - 1) * (n - 2)))
    np.fill_diagonal(out, 0.0)
    return out


def _hsic_unbiased(k: np.ndarray, g: np.ndarray) -> float:
    """Unbiased HSIC estimator (Song et al. 2012) from two ``(n, n)`` Gram matrices."""
    n = k.shape[0]
    return float(np.sum(_u_centered(k) * _u_centered(g)) / (n * (n - 3)))


def _cka_2d(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    x = _center(x)
    y = _center(y)
    if not debiased:
        denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
        if not denominator > 0.0:
            raise ValueError("x or y has no variance (every column is constant)")
        return float(np.clip(np.linalg.norm(x.T @ y) ** 2 / denominator, -1.0, 1.0))
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got n = {n}")
    gram_x = x @ x.T
    gram_y = y @ y.T
    hsic_xy = _hsic_unbiased(gram_x, gram_y)
    hsic_xx = _hsic_unbiased(gram_x, gram_x)
    hsic_yy = _hsic_unbiased(gram_y, gram_y)
    if hsic_xx <= 0.0 or hsic_yy <= 0.0:
        return 0.0
    return float(np.clip(hsic_xy / np.sqrt(hsic_xx * hsic_yy), -1.0, 1.0))


def cka(x, y, *, debiased: bool = False):
    """Linear centered kernel alignment (Kornblith et al. 2019).

    Reference for :func:`mmkern.cka`.

    Biased: ``||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on centered ``X``, ``Y``.
    Debiased: with ``K = X X^T``, ``L = Y Y^T`` (``n x n``, centered data) and
    ``HSIC_u(K, L) = sum(K~ * L~) / (n (n - 3))`` over the U-centered matrices,
    ``HSIC_u(K, L) / sqrt(HSIC_u(K, K) HSIC_u(L, L))``; 0.0 when either self-term is not
    positive; clipped to [-1, 1].

    Parameters
    ----------
    x : array_like
        Shape ``(n, d1)`` or ``(b, n, d1)``, any real float dtype (converted to float64).
        ``n <= d1`` is allowed.
    y : array_like
        Shape ``(n, d2)`` or ``(b, n, d2)``, matching ``x`` in all but the last axis.
    debiased : bool, optional
        Use the unbiased HSIC estimator (needs ``n >= 4``).

    Returns
    -------
    float or numpy.ndarray
        A Python float for 2-D inputs, a float64 array of shape ``(b,)`` for 3-D inputs.
    """
    return _batched(lambda a, b: _cka_2d(a, b, debiased), x, y)


# ---------------------------------------------------------------------------------------------
# Pairwise (M x M) and cross (M_a x M_b) matrices: plain loops over the single-pair metrics
# ---------------------------------------------------------------------------------------------


def _check_statistic(statistic: str) -> None:
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {_STATISTICS}, got {statistic!r}")


def _cca_statistic(statistic: str, rtol: float):
    _check_statistic(statistic)
    return lambda a, b: getattr(_cca_2d(a, b, rtol), statistic)


def pairwise_svcca(acts: Sequence, keep=0.99, *, keep_by: str = "variance",
                   rtol: float = RANK_RTOL) -> np.ndarray:
    """SVCCA between every pair of M models.

    Reference for :func:`mmkern.pairwise_svcca`.

    Parameters
    ----------
    acts : sequence of array_like or array_like
        M arrays of shape ``(n, d_i)`` (widths may differ) or one ``(M, n, d)`` array.
    keep, keep_by, rtol
        As in :func:`svcca`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M, M)``, symmetric, diagonal 1.
    """
    return _pairwise_symmetric(lambda a, b: _svcca_2d(a, b, keep, keep_by, rtol), acts)


def pairwise_cca(acts: Sequence, *, statistic: str = "mean",
                 rtol: float = RANK_RTOL) -> np.ndarray:
    """Mean (or mean squared) canonical correlation between every pair of M models.

    Reference for :func:`mmkern.pairwise_cca`.

    Parameters
    ----------
    acts : sequence of array_like or array_like
        M arrays of shape ``(n, d_i)`` or one ``(M, n, d)`` array.
    statistic : {"mean", "r2"}, optional
        Which summary of :class:`CCAResult` fills the matrix.
    rtol : float, optional
        As in :func:`cca`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M, M)``, symmetric, diagonal 1.
    """
    return _pairwise_symmetric(_cca_statistic(statistic, rtol), acts)


def pairwise_pwcca(acts: Sequence, *, rtol: float = RANK_RTOL) -> np.ndarray:
    """PWCCA between every ordered pair of M models.

    Reference for :func:`mmkern.pairwise_pwcca`.

    Parameters
    ----------
    acts : sequence of array_like or array_like
        M arrays of shape ``(n, d_i)`` or one ``(M, n, d)`` array.
    rtol : float, optional
        As in :func:`pwcca`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M, M)``, ``P[i, j] = pwcca(acts[i], acts[j])`` (weights from model
        ``i``; not symmetric), diagonal 1.
    """
    models = _models(acts, "acts")
    m = len(models)
    out = np.eye(m, dtype=np.float64)
    for i in range(m):
        for j in range(m):
            if i != j:
                out[i, j] = _pwcca_2d(models[i], models[j], rtol)
    return out


def pairwise_cka(acts: Sequence, *, debiased: bool = False) -> np.ndarray:
    """Linear CKA between every pair of M models.

    Reference for :func:`mmkern.pairwise_cka`.

    Parameters
    ----------
    acts : sequence of array_like or array_like
        M arrays of shape ``(n, d_i)`` or one ``(M, n, d)`` array.
    debiased : bool, optional
        As in :func:`cka`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M, M)``, symmetric. The diagonal is 1 for the biased estimator; for
        the debiased one it is computed (1, or 0 when the self-term is not positive).
    """
    out = _pairwise_symmetric(lambda a, b: _cka_2d(a, b, debiased), acts)
    if debiased:
        models = _models(acts, "acts")
        for i, a in enumerate(models):
            out[i, i] = _cka_2d(a, a, debiased)
    return out


def cross_svcca(acts_a: Sequence, acts_b: Sequence, keep=0.99, *, keep_by: str = "variance",
                rtol: float = RANK_RTOL) -> np.ndarray:
    """SVCCA between every model of ``acts_a`` and every model of ``acts_b``.

    Reference for :func:`mmkern.cross_svcca`.

    Parameters
    ----------
    acts_a, acts_b : sequence of array_like or array_like
        ``M_a`` and ``M_b`` arrays of shape ``(n, d_i)`` (same ``n`` throughout).
    keep, keep_by, rtol
        As in :func:`svcca`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M_a, M_b)``, entry ``[i, j] = svcca(acts_a[i], acts_b[j])``.
    """
    return _cross(lambda a, b: _svcca_2d(a, b, keep, keep_by, rtol), acts_a, acts_b)


def cross_cca(acts_a: Sequence, acts_b: Sequence, *, statistic: str = "mean",
              rtol: float = RANK_RTOL) -> np.ndarray:
    """Mean (or mean squared) canonical correlation between the models of two populations.

    Reference for :func:`mmkern.cross_cca`.

    Parameters
    ----------
    acts_a, acts_b : sequence of array_like or array_like
        ``M_a`` and ``M_b`` arrays of shape ``(n, d_i)`` (same ``n`` throughout).
    statistic, rtol
        As in :func:`pairwise_cca`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M_a, M_b)``.
    """
    return _cross(_cca_statistic(statistic, rtol), acts_a, acts_b)


def cross_pwcca(acts_a: Sequence, acts_b: Sequence, *, rtol: float = RANK_RTOL) -> np.ndarray:
    """PWCCA between the models of two populations (weights from ``acts_a``).

    Reference for :func:`mmkern.cross_pwcca`.

    Parameters
    ----------
    acts_a, acts_b : sequence of array_like or array_like
        ``M_a`` and ``M_b`` arrays of shape ``(n, d_i)`` (same ``n`` throughout).
    rtol : float, optional
        As in :func:`pwcca`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M_a, M_b)``, entry ``[i, j] = pwcca(acts_a[i], acts_b[j])``.
    """
    return _cross(lambda a, b: _pwcca_2d(a, b, rtol), acts_a, acts_b)


def cross_cka(acts_a: Sequence, acts_b: Sequence, *, debiased: bool = False) -> np.ndarray:
    """Linear CKA between the models of two populations.

    Reference for :func:`mmkern.cross_cka`.

    Parameters
    ----------
    acts_a, acts_b : sequence of array_like or array_like
        ``M_a`` and ``M_b`` arrays of shape ``(n, d_i)`` (same ``n`` throughout).
    debiased : bool, optional
        As in :func:`cka`.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M_a, M_b)``.
    """
    return _cross(lambda a, b: _cka_2d(a, b, debiased), acts_a, acts_b)
