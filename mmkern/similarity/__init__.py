"""Representational similarity: SVCCA, CCA, PWCCA and linear CKA, single, batched and pairwise.

Activations are ``(n_samples, n_features)`` arrays (the scikit-learn convention). Columns are
centered. How it is computed (``csrc/similarity.h`` has the details): each model is factored
once, from its own Gram block (BLAS SYRK over float64 row chunks, then an eigendecomposition);
for the CCA family a second pass projects every model onto its basis, re-whitens it (CholeskyQR2,
so results carry the ~eps * cond(X) error of an SVD of the data) and every pair then costs one
small SVD. CKA uses the joint Gram matrix, or n x n sample Grams when those are smaller. The
streaming :class:`SimilarityAccumulator` sees the data once, so it whitens through the joint Gram
alone (error ~eps * cond(X)^2: ~1e-12 on typical activations). Definitions (the contract;
``mmkern.reference`` implements them literally):

CCA
    Canonical correlations rho_1 >= rho_2 >= ... are the singular values of Q_x^T Q_y, where Q_x,
    Q_y are orthonormal bases of the centered column spaces. Directions whose variance is at most
    ``rtol`` (default :data:`RANK_RTOL` = 1e-10) times the largest are dropped as numerical rank
    deficiency, so constant or duplicated columns are handled and never produce NaN. CCA needs
    more samples than features in each input (``n > d``); otherwise a ``ValueError``.
SVCCA (Raghu et al. 2017)
    Keep the leading k directions of each centered input (a float ``keep``: the smallest k whose
    eigenvalues s_i^2 reach that fraction of the total variance; an int ``keep``: exactly k,
    capped at the numerical rank), then average the canonical correlations of the reduced data.
    Cumulative fractions within :data:`KEEP_SLACK` of ``keep`` count as reaching it.
    Variants met elsewhere: google/svcca's tutorial counts the fraction with singular values s_i
    instead of s_i^2 (``keep_by="singular_values"``); some code truncates *before* centering, which
    mmkern deliberately does not offer.
PWCCA (Morcos et al. 2018)
    Weighted mean of the canonical correlations, weight_i = sum_j |<h_i, x_j>| over the centered
    neurons x_j of the *first* input, h_i its canonical variates. Not symmetric. When several
    canonical correlations are (numerically) equal, e.g. all 1 because the two inputs together
    span every centered direction (d_x + d_y >= n - 1), their variates are any rotation of one
    another and the weights, hence PWCCA, are ill-determined: different exact algorithms then
    agree only to the conditioning of that subspace.
Linear CKA (Kornblith et al. 2019)
    ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F). ``debiased=True`` uses the unbiased HSIC estimator
    (Song et al. 2012); it needs n >= 4 samples, may be negative, and is reported as 0.0 when an
    estimated self-similarity HSIC(X, X) is not positive (no measurable signal), never NaN.

Inputs may be NumPy arrays, torch tensors or CuPy arrays, float32 or float64 with any strides
(see :mod:`mmkern._dtypes`); accumulation is float64 and results are float64 of the input's array
kind. Because float32 inputs are widened exactly, they match the reference run on the same float32
values to float64 precision.
"""

from __future__ import annotations


import numpy as np

from mmkern._backend import common_kind, host_floats
from mmkern.similarity import _host
from mmkern.similarity._accumulator import SimilarityAccumulator
from mmkern.similarity._checks import (  # RANK_RTOL and KEEP_SLACK are public, see __all__
    KEEP_SLACK,
    OPTS_DEFAULT,
    RANK_RTOL,
    CCAResult,
    check_more_samples,
    check_rtol,
    check_same_n,
    metric_args,
    population,
    square_pairs,
)

__all__ = [
    "RANK_RTOL",
    "KEEP_SLACK",
    "CCAResult",
    "cca",
    "svcca",
    "pwcca",
    "cka",
    "pairwise_cca",
    "pairwise_svcca",
    "pairwise_pwcca",
    "pairwise_cka",
    "cross_cca",
    "cross_svcca",
    "cross_pwcca",
    "cross_cka",
    "SimilarityAccumulator",
]


def _route(kind):
    """The module that computes inputs of ``kind``: the host route, or the device route (which
    needs torch, so it is imported on first use)."""
    if kind.device_route:
        from mmkern.similarity import _device

        return _device
    return _host


# ---------------------------------------------------------------------------------------------
# single pairs (optionally batched over a leading axis)
# ---------------------------------------------------------------------------------------------


def _pair_metric(metric: str, x, y, **opts):
    """One metric of (x, y) with 2-D inputs, or of each (x[b], y[b]) with 3-D inputs."""
    kind = common_kind([x, y], ["x", "y"])
    route = _route(kind)
    xs, ys = route.prepare(x, "x", (2, 3)), route.prepare(y, "y", (2, 3))
    if xs.ndim != ys.ndim:
        raise ValueError(f"x is {xs.ndim}-D but y is {ys.ndim}-D; give both a batch axis or neither")
    if xs.ndim == 3:
        check_same_n([xs, ys], ["x", "y"], axis=0, what="batch elements")
    n = check_same_n([xs, ys], ["x", "y"], axis=-2)
    name, kwargs = metric_args(metric, n, [xs.shape[-1], ys.shape[-1]], ["x", "y"], **opts)
    if xs.ndim == 3:
        return route.result(route.batch_metric(xs, ys, name, kwargs), kind)
    values = route.pair_metrics([xs, ys], ["x", "y"], [0], [1], [name], **kwargs)[name]
    return host_floats([values[0]])[0]


def svcca(x, y, keep=0.99, *, keep_by: str = "variance", rtol: float = RANK_RTOL):
    """SVCCA similarity: mean canonical correlation after SVD truncation (Raghu et al. 2017).

    Parameters
    ----------
    x : array, shape (n, d1) or (b, n, d1), float32 or float64
        Activations of the first model (rows are samples).
    y : array, shape (n, d2) or (b, n, d2), float32 or float64
        Activations of the second model on the same samples.
    keep : float in (0, 1] or int, default 0.99
        Fraction of variance to keep, or the exact number of directions (capped at the rank).
    keep_by : {"variance", "singular_values"}, default "variance"
        Count the fraction with eigenvalues s_i^2 (the definition) or with singular values s_i
        (google/svcca's tutorial convention).
    rtol : float, default :data:`RANK_RTOL`
        Relative variance below which a direction is numerically zero.

    Returns
    -------
    float, or array of shape (b,) float64 for batched input (same array kind as the input).
    """
    return _pair_metric("svcca", x, y, **{**OPTS_DEFAULT, "keep": keep, "keep_by": keep_by, "rtol": rtol})


def pwcca(x, y, *, rtol: float = RANK_RTOL):
    """Projection-weighted CCA (Morcos et al. 2018), weights from the neurons of ``x``.

    Parameters
    ----------
    x, y : array, shape (n, d) or (b, n, d), float32 or float64
        Activations on the same samples; n must exceed each d.
    rtol : float, default :data:`RANK_RTOL`

    Returns
    -------
    float, or array of shape (b,) float64 for batched input.
    """
    return _pair_metric("pwcca", x, y, **{**OPTS_DEFAULT, "rtol": rtol})


def cka(x, y, *, debiased: bool = False):
    """Linear CKA (Kornblith et al. 2019); ``debiased`` uses the unbiased HSIC estimator.

    Parameters
    ----------
    x, y : array, shape (n, d) or (b, n, d), float32 or float64
        Activations on the same samples; any n >= 2 (n >= 4 when debiased), any d.
    debiased : bool, default False
        Unbiased HSIC (Song et al. 2012). Returns 0.0 when an estimated self-term is not positive.

    Returns
    -------
    float, or array of shape (b,) float64 for batched input.
    """
    return _pair_metric("cka", x, y, **{**OPTS_DEFAULT, "debiased": debiased})


def cca(x, y, *, rtol: float = RANK_RTOL) -> CCAResult:
    """Canonical correlation analysis of two activation matrices.

    Parameters
    ----------
    x : array, shape (n, d1), float32 or float64
    y : array, shape (n, d2), float32 or float64
        Activations on the same samples, with n > d1 and n > d2.
    rtol : float, default :data:`RANK_RTOL`
        Relative variance below which a direction is numerically zero.

    Returns
    -------
    CCAResult
        ``.correlations`` (min(rank x, rank y),) float64 descending, ``.mean``, ``.r2``.
    """
    kind = common_kind([x, y], ["x", "y"])
    route = _route(kind)
    rtol = check_rtol(rtol)
    xs, ys = route.prepare(x, "x"), route.prepare(y, "y")
    n = check_same_n([xs, ys], ["x", "y"])
    check_more_samples(n, [xs.shape[1], ys.shape[1]], ["x", "y"], "CCA")
    rho = route.pair_metrics([xs, ys], ["x", "y"], [0], [1], ["correlations"], rtol=rtol)["correlations"][0]
    mean, r2 = host_floats([rho.mean(), (rho**2).mean()])
    return CCAResult(correlations=route.result(rho, kind), mean=mean, r2=r2)


# ---------------------------------------------------------------------------------------------
# populations: pairwise (M, M) and cross (A, B) matrices
# ---------------------------------------------------------------------------------------------


def _matrix(metric, groups, **opts):
    """Metric matrix over populations: one group -> pairwise (M, M), two groups -> cross (A, B)."""
    arrays, names, sizes = [], [], []
    for acts, gname in groups:
        a, nm = population(acts, gname)
        arrays += a
        names += nm
        sizes.append(len(a))
    kind = common_kind(arrays, names)
    route = _route(kind)
    arrays = [route.prepare(a, nm) for a, nm in zip(arrays, names)]
    n = check_same_n(arrays, names)
    name, kwargs = metric_args(metric, n, [a.shape[1] for a in arrays], names, **opts)

    symmetric = len(sizes) == 1 and name != "pwcca"
    if len(sizes) == 1:
        rows, cols = first, second = square_pairs(sizes[0], symmetric)
    else:
        rows, cols = np.indices((sizes[0], sizes[1])).reshape(2, -1)
        first, second = rows, cols + sizes[0]
    values = route.pair_metrics(arrays, names, first, second, [name], **kwargs)[name]
    return route.result(route.matrix((sizes[0], sizes[-1]), rows, cols, values, symmetric), kind)


def pairwise_svcca(acts, keep=0.99, *, keep_by: str = "variance", rtol: float = RANK_RTOL):
    """Symmetric (M, M) SVCCA matrix of a population (see :func:`svcca`).

    Parameters
    ----------
    acts : sequence of M arrays (n, d_i), or array (M, n, d); float32 or float64
        Activations of M models on the same n samples (widths may differ), n > every d_i.
    keep, keep_by, rtol
        As in :func:`svcca`.

    Returns
    -------
    array, shape (M, M), float64, unit diagonal.
    """
    return _matrix("svcca", [(acts, "acts")], **{**OPTS_DEFAULT, "keep": keep, "keep_by": keep_by, "rtol": rtol})


def pairwise_cca(acts, *, statistic: str = "mean", rtol: float = RANK_RTOL):
    """Symmetric (M, M) matrix of mean canonical correlation (``statistic="r2"``: mean rho^2).

    Parameters
    ----------
    acts : sequence of M arrays (n, d_i), or array (M, n, d); float32 or float64
    statistic : {"mean", "r2"}
    rtol : float

    Returns
    -------
    array, shape (M, M), float64, unit diagonal.
    """
    return _matrix("cca", [(acts, "acts")], **{**OPTS_DEFAULT, "statistic": statistic, "rtol": rtol})


def pairwise_pwcca(acts, *, rtol: float = RANK_RTOL):
    """(M, M) PWCCA matrix, entry [i, j] = pwcca(acts[i], acts[j]) (weights from model i).

    PWCCA is not symmetric; use ``(P + P.T) / 2`` for a symmetric summary.

    Parameters
    ----------
    acts : sequence of M arrays (n, d_i), or array (M, n, d); float32 or float64
    rtol : float

    Returns
    -------
    array, shape (M, M), float64, unit diagonal.
    """
    return _matrix("pwcca", [(acts, "acts")], **{**OPTS_DEFAULT, "rtol": rtol})


def pairwise_cka(acts, *, debiased: bool = False):
    """Symmetric (M, M) linear-CKA matrix of a population (see :func:`cka`).

    Parameters
    ----------
    acts : sequence of M arrays (n, d_i), or array (M, n, d); float32 or float64
    debiased : bool

    Returns
    -------
    array, shape (M, M), float64.
    """
    return _matrix("cka", [(acts, "acts")], **{**OPTS_DEFAULT, "debiased": debiased})


def cross_svcca(acts_a, acts_b, keep=0.99, *, keep_by: str = "variance", rtol: float = RANK_RTOL):
    """(len(a), len(b)) SVCCA matrix between two populations on the same samples."""
    opts = {**OPTS_DEFAULT, "keep": keep, "keep_by": keep_by, "rtol": rtol}
    return _matrix("svcca", [(acts_a, "acts_a"), (acts_b, "acts_b")], **opts)


def cross_cca(acts_a, acts_b, *, statistic: str = "mean", rtol: float = RANK_RTOL):
    """(len(a), len(b)) mean-canonical-correlation matrix between two populations."""
    opts = {**OPTS_DEFAULT, "statistic": statistic, "rtol": rtol}
    return _matrix("cca", [(acts_a, "acts_a"), (acts_b, "acts_b")], **opts)


def cross_pwcca(acts_a, acts_b, *, rtol: float = RANK_RTOL):
    """(len(a), len(b)) PWCCA matrix, entry [i, j] = pwcca(acts_a[i], acts_b[j])."""
    return _matrix("pwcca", [(acts_a, "acts_a"), (acts_b, "acts_b")], **{**OPTS_DEFAULT, "rtol": rtol})


def cross_cka(acts_a, acts_b, *, debiased: bool = False):
    """(len(a), len(b)) linear-CKA matrix between two populations."""
    opts = {**OPTS_DEFAULT, "debiased": debiased}
    return _matrix("cka", [(acts_a, "acts_a"), (acts_b, "acts_b")], **opts)
