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

import numbers
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mmkern._backend import common_kind, kind_of, to_host, to_kind
from mmkern._dtypes import float_array
from mmkern._io import atomic_write
from mmkern._similarity_host import (  # RANK_RTOL and KEEP_SLACK are public, see __all__
    KEEP_SLACK,
    RANK_RTOL,
    _GramStats,
    _check_more_samples,
    _check_rtol,
    _check_same_n,
    _column_means,
    _factors,
    _fill,
    _gpu,
    _host,
    _metric_args,
    _pair_metrics,
    _shape_check,
    _square_pairs,
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
# single pairs (optionally batched over a leading axis)
# ---------------------------------------------------------------------------------------------


def _pair_metric(metric: str, x, y, **opts):
    """One metric of (x, y) with 2-D inputs, or of each (x[b], y[b]) with 3-D inputs."""
    kind = common_kind([x, y], ["x", "y"])
    if kind.is_gpu:
        for a, name in ((x, "x"), (y, "y")):
            _shape_check(a, name, (2, 3))
        xs, ys = x, y
    else:
        xs, ys = _host(x, "x", (2, 3)), _host(y, "y", (2, 3))
    if xs.ndim != ys.ndim:
        raise ValueError(f"x is {xs.ndim}-D but y is {ys.ndim}-D; give both a batch axis or neither")
    batched = xs.ndim == 3
    if batched:
        _check_same_n([xs, ys], ["x", "y"], axis=0)
    n = _check_same_n([xs, ys], ["x", "y"], axis=-2)
    name, kwargs = _metric_args(metric, n, [xs.shape[-1], ys.shape[-1]], ["x", "y"], **opts)
    pairs = ([0], [1])
    if kind.is_gpu:
        run = lambda a, b: float(_gpu().pair_metrics([a, b], ["x", "y"], *pairs, [name], **kwargs)[name][0])
    else:
        run = lambda a, b: float(_pair_metrics([a, b], ["x", "y"], *pairs, [name], **kwargs)[name][0])
    if not batched:
        return run(xs, ys)
    out = np.array([run(xs[b], ys[b]) for b in range(xs.shape[0])], dtype=np.float64)
    return to_kind(out, kind) if not kind.is_gpu else _gpu().as_kind(out, kind)


_OPTS_DEFAULT = dict(keep=0.99, keep_by="variance", rtol=RANK_RTOL, statistic="mean", debiased=False)


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
    return _pair_metric("svcca", x, y, **{**_OPTS_DEFAULT, "keep": keep, "keep_by": keep_by, "rtol": rtol})


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
    return _pair_metric("pwcca", x, y, **{**_OPTS_DEFAULT, "rtol": rtol})


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
    return _pair_metric("cka", x, y, **{**_OPTS_DEFAULT, "debiased": bool(debiased)})


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
    rtol = _check_rtol(rtol)
    if kind.is_gpu:
        for a, name in ((x, "x"), (y, "y")):
            _shape_check(a, name, (2,))
        n = _check_same_n([x, y], ["x", "y"])
        _check_more_samples(n, [x.shape[1], y.shape[1]], ["x", "y"], "CCA")
        rho = _gpu().correlations(x, y, rtol=rtol)
        rho_host = _gpu().to_numpy(rho)
    else:
        xs, ys = _host(x, "x"), _host(y, "y")
        n = _check_same_n([xs, ys], ["x", "y"])
        _check_more_samples(n, [xs.shape[1], ys.shape[1]], ["x", "y"], "CCA")
        rho_host = _pair_metrics([xs, ys], ["x", "y"], [0], [1], ["correlations"], rtol=rtol)["correlations"][0]
        rho = to_kind(rho_host, kind)
    return CCAResult(correlations=rho, mean=float(rho_host.mean()), r2=float((rho_host**2).mean()))


# ---------------------------------------------------------------------------------------------
# populations: pairwise (M, M) and cross (A, B) matrices
# ---------------------------------------------------------------------------------------------


def _population(acts, name: str) -> tuple[list, list[str]]:
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


def _matrix(metric, groups, **opts):
    """Metric matrix over populations: one group -> pairwise (M, M), two groups -> cross (A, B)."""
    arrays, names, sizes = [], [], []
    for acts, gname in groups:
        a, nm = _population(acts, gname)
        arrays += a
        names += nm
        sizes.append(len(a))
    kind = common_kind(arrays, names)
    if kind.is_gpu:
        for a, nm in zip(arrays, names):
            _shape_check(a, nm, (2,))
    else:
        arrays = [_host(a, nm) for a, nm in zip(arrays, names)]
    n = _check_same_n(arrays, names)
    name, kwargs = _metric_args(metric, n, [a.shape[1] for a in arrays], names, **opts)

    symmetric = len(sizes) == 1 and name != "pwcca"
    if len(sizes) == 1:
        rows, cols = first, second = _square_pairs(sizes[0], symmetric)
    else:
        rows, cols = np.indices((sizes[0], sizes[1])).reshape(2, -1)
        first, second = rows, cols + sizes[0]
    if kind.is_gpu:
        values = _gpu().to_numpy(_gpu().pair_metrics(arrays, names, first, second, [name], **kwargs)[name])
    else:
        values = _pair_metrics(arrays, names, first, second, [name], **kwargs)[name]
    out = _fill((sizes[0], sizes[-1]), rows, cols, values, symmetric)
    return to_kind(out, kind) if not kind.is_gpu else _gpu().as_kind(out, kind)


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
    return _matrix("svcca", [(acts, "acts")], **{**_OPTS_DEFAULT, "keep": keep, "keep_by": keep_by, "rtol": rtol})


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
    return _matrix("cca", [(acts, "acts")], **{**_OPTS_DEFAULT, "statistic": statistic, "rtol": rtol})


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
    return _matrix("pwcca", [(acts, "acts")], **{**_OPTS_DEFAULT, "rtol": rtol})


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
    return _matrix("cka", [(acts, "acts")], **{**_OPTS_DEFAULT, "debiased": bool(debiased)})


def cross_svcca(acts_a, acts_b, keep=0.99, *, keep_by: str = "variance", rtol: float = RANK_RTOL):
    """(len(a), len(b)) SVCCA matrix between two populations on the same samples."""
    opts = {**_OPTS_DEFAULT, "keep": keep, "keep_by": keep_by, "rtol": rtol}
    return _matrix("svcca", [(acts_a, "acts_a"), (acts_b, "acts_b")], **opts)


def cross_cca(acts_a, acts_b, *, statistic: str = "mean", rtol: float = RANK_RTOL):
    """(len(a), len(b)) mean-canonical-correlation matrix between two populations."""
    opts = {**_OPTS_DEFAULT, "statistic": statistic, "rtol": rtol}
    return _matrix("cca", [(acts_a, "acts_a"), (acts_b, "acts_b")], **opts)


def cross_pwcca(acts_a, acts_b, *, rtol: float = RANK_RTOL):
    """(len(a), len(b)) PWCCA matrix, entry [i, j] = pwcca(acts_a[i], acts_b[j])."""
    return _matrix("pwcca", [(acts_a, "acts_a"), (acts_b, "acts_b")], **{**_OPTS_DEFAULT, "rtol": rtol})


def cross_cka(acts_a, acts_b, *, debiased: bool = False):
    """(len(a), len(b)) linear-CKA matrix between two populations."""
    opts = {**_OPTS_DEFAULT, "debiased": bool(debiased)}
    return _matrix("cka", [(acts_a, "acts_a"), (acts_b, "acts_b")], **opts)


# ---------------------------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------------------------


class SimilarityAccumulator:
    """Pairwise similarity of M models over activation batches that need not fit in memory.

    Holds only the joint Gram statistics, O((sum_i d_i)^2) float64 memory whatever the number of
    samples, and yields the same (M, M) matrices as the in-memory ``pairwise_*`` functions on the
    concatenated batches (to ~1e-12 relative). The state can be saved and resumed. It runs on the
    host: device batches are copied to host memory one batch at a time.

    Parameters
    ----------
    n_models : int
        Number of models M (>= 1).

    Examples
    --------
    >>> acc = SimilarityAccumulator(3)
    >>> for batch in loader:                      # doctest: +SKIP
    ...     acc.update([model_acts(m, batch) for m in models])
    >>> acc.svcca()                               # doctest: +SKIP
    """

    def __init__(self, n_models: int):
        if isinstance(n_models, bool) or not isinstance(n_models, numbers.Integral):
            raise TypeError(f"n_models must be an int, got {type(n_models).__name__}")
        if n_models < 1:
            raise ValueError(f"n_models must be at least 1, got {n_models}")
        self.n_models = int(n_models)
        self._stats: _GramStats | None = None
        self._cache: tuple | None = None

    @property
    def n_samples(self) -> int:
        """Number of samples (rows) accumulated so far."""
        return 0 if self._stats is None else self._stats.n

    @property
    def widths(self) -> list[int] | None:
        """Feature count d_i of each model (fixed by the first batch), or None before it."""
        return None if self._stats is None else list(self._stats.widths)

    def _names(self) -> list[str]:
        return [f"model {i}" for i in range(self.n_models)]

    def update(self, batches: Sequence[Any]) -> "SimilarityAccumulator":
        """Add one batch of samples for every model.

        Parameters
        ----------
        batches : sequence of M arrays, shape (n_batch, d_i), float32 or float64
            The same n_batch samples seen by each model. A batch of zero rows is a no-op. A batch
            with NaN or infinity raises ``ValueError`` and leaves the accumulator unchanged.

        Returns
        -------
        SimilarityAccumulator
            ``self``, for chaining.
        """
        if not isinstance(batches, (list, tuple)) or len(batches) != self.n_models:
            got = len(batches) if isinstance(batches, (list, tuple)) else type(batches).__name__
            raise ValueError(f"batches must be a list of {self.n_models} arrays (one per model), got {got}")
        names = [f"batches[{i}]" for i in range(self.n_models)]
        arrays = []
        for a, name in zip(batches, names):
            if kind_of(a).is_gpu:  # explicit, visible device-to-host copy
                a = a.cpu() if kind_of(a).library == "torch" else a.get()
            arr = float_array(to_host(a), name)
            if arr.ndim != 2:
                raise ValueError(f"{name} must be 2-D (n_batch, n_features), got shape {tuple(arr.shape)}")
            arrays.append(arr)
        _check_same_n(arrays, names)
        if arrays[0].shape[0] == 0:
            return self
        widths = [a.shape[1] for a in arrays]
        if 0 in widths:
            raise ValueError(f"{names[widths.index(0)]} has no features")
        first_batch = self._stats is None
        if first_batch:  # the shift: this batch's means (their computation also validates it)
            self._stats = _GramStats(widths, _column_means(arrays, names), moments=True)
        elif widths != self._stats.widths:
            raise ValueError(f"batch widths {widths} differ from the first batch's {self._stats.widths}")
        self._stats.update(arrays, names, validated=first_batch)
        self._cache = None
        return self

    def _centered(self):
        if self._stats is None:
            raise ValueError("no samples accumulated yet; call update() first")
        if self._cache is None:
            self._cache = self._stats.centered(self._names(), in_place=False)
        return self._cache

    def _matrix(self, metric: str, **opts) -> np.ndarray:
        stats = self._stats
        n = self.n_samples
        if stats is None:
            raise ValueError("no samples accumulated yet; call update() first")
        name, kwargs = _metric_args(metric, n, stats.widths, self._names(), **{**_OPTS_DEFAULT, **opts})
        gram, norm_products = self._centered()
        m, symmetric = self.n_models, name != "pwcca"
        first, second = _square_pairs(m, symmetric)
        values = _factors(gram, stats, [name], **kwargs).pairs(first, second, [name], norm_products)[name]
        return _fill((m, m), first, second, values, symmetric)

    def svcca(self, keep=0.99, *, keep_by: str = "variance", rtol: float = RANK_RTOL) -> np.ndarray:
        """(M, M) SVCCA matrix of everything accumulated (see :func:`pairwise_svcca`)."""
        return self._matrix("svcca", keep=keep, keep_by=keep_by, rtol=rtol)

    def cca(self, *, statistic: str = "mean", rtol: float = RANK_RTOL) -> np.ndarray:
        """(M, M) mean canonical correlation matrix (see :func:`pairwise_cca`)."""
        return self._matrix("cca", statistic=statistic, rtol=rtol)

    def pwcca(self, *, rtol: float = RANK_RTOL) -> np.ndarray:
        """(M, M) PWCCA matrix, entry [i, j] weighted by model i (see :func:`pairwise_pwcca`)."""
        return self._matrix("pwcca", rtol=rtol)

    def cka(self, *, debiased: bool = False) -> np.ndarray:
        """(M, M) linear CKA matrix (see :func:`pairwise_cka`)."""
        return self._matrix("cka", debiased=bool(debiased))

    # -- persistence: resume a long streaming job ---------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the state to ``path`` (``.npz``) atomically: a crash never leaves a torn file."""
        path = os.fspath(path)
        state = {"n_models": np.array(self.n_models)}
        if self._stats is not None:
            s = self._stats
            state.update(widths=np.array(s.widths), n=np.array(s.n), shift=s.shift, gram=s.gram,
                         colsum=s.colsum, row_moments=s.moments[0], norm_products=s.moments[1],
                         norm_sums=s.moments[2])
        atomic_write(path, lambda f: np.savez(f, **state))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SimilarityAccumulator":
        """Restore an accumulator written by :meth:`save`."""
        try:
            with np.load(os.fspath(path)) as z:
                acc = cls(int(z["n_models"]))
                if "gram" in z:
                    s = _GramStats(z["widths"].tolist(), z["shift"], moments=True)
                    s.n = int(z["n"])
                    s.gram[...] = z["gram"]
                    s.colsum[...] = z["colsum"]
                    for dst, key in zip(s.moments, ("row_moments", "norm_products", "norm_sums")):
                        dst[...] = z[key]
                    acc._stats = s
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path} is not a saved SimilarityAccumulator ({e})") from e
        return acc
