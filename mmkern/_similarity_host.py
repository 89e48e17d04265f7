"""Validation and host routes of the similarity kernels (the machinery behind mmkern.similarity).

Inputs are validated here (shapes, dtypes, options; errors name the argument), host arrays are
turned into NumPy views, and each metric is dispatched to its route over the C++ kernels in
``mmkern._C`` (``csrc/similarity.h`` describes them):

- the projection route for the CCA family (per-model Gram blocks, a projected second pass and
  CholeskyQR2 re-whitening),
- the joint-Gram route for CKA and for the streaming accumulator,
- the sample-Gram route for CKA when n x n Grams are smaller than the joint Gram.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from mmkern import _C
from mmkern._backend import kind_of, to_host
from mmkern._dtypes import float_array

RANK_RTOL = 1e-10
"""Directions with variance <= RANK_RTOL * (largest variance) count as numerically zero."""

KEEP_SLACK = 1e-10
"""SVCCA: a cumulative fraction within this of ``keep`` reaches it (robust to rounding)."""

_KEEP_BY = {"variance": 0, "singular_values": 1}
_KEEP_COUNT = 2
_CCA_FAMILY = ("svcca", "cca_mean", "cca_r2", "pwcca", "correlations")
_CHUNK_BYTES = 64 * 2**20  # float64 row-chunk buffer for the Gram pass


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


def _shape_check(a: Any, name: str, ndims: tuple[int, ...]) -> None:
    if a.ndim not in ndims:
        want = " or ".join({2: "2-D (n_samples, n_features)", 3: "3-D (batch, n_samples, n_features)"}[k] for k in ndims)
        raise ValueError(f"{name} must be {want}, got {a.ndim}-D with shape {tuple(a.shape)}")
    if 0 in tuple(a.shape):
        raise ValueError(f"{name} is empty (shape {tuple(a.shape)}); it needs samples and features")


def _host(a: Any, name: str, ndims: tuple[int, ...] = (2,)) -> np.ndarray:
    """A float32/float64 NumPy view of a host input, validated for shape."""
    if isinstance(a, (list, tuple)):
        a = np.asarray(a)
    if kind_of(a).is_gpu:
        raise ValueError(f"{name} is on a GPU; this operation runs on the host")
    arr = float_array(to_host(a), name)
    _shape_check(arr, name, ndims)
    return arr


def _check_same_n(arrays: Sequence[Any], names: Sequence[str], axis: int = 0) -> int:
    n = arrays[0].shape[axis]
    for a, name in zip(arrays[1:], names[1:]):
        if a.shape[axis] != n:
            raise ValueError(
                f"{name} has {a.shape[axis]} samples but {names[0]} has {n}; "
                "all inputs must hold activations for the same samples (rows)"
            )
    return n


def _check_more_samples(n: int, widths: Sequence[int], names: Sequence[str], what: str) -> None:
    for d, name in zip(widths, names):
        if n <= d:
            raise ValueError(
                f"{name} has n_samples={n} <= n_features={d}: {what} is degenerate without more "
                "samples than features (collect more samples, reduce features, or use cka)"
            )


def _check_debiased_n(n: int) -> None:
    if n < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got n_samples={n}")


def _check_rtol(rtol: float) -> float:
    if isinstance(rtol, bool) or not isinstance(rtol, numbers.Real):
        raise TypeError(f"rtol must be a float, got {type(rtol).__name__}")
    if not 0.0 <= float(rtol) < 1.0:
        raise ValueError(f"rtol must be in [0, 1), got {rtol}")
    return float(rtol)


def _keep_args(keep: Any, keep_by: str, widths: Sequence[int]) -> tuple[float, int]:
    """Validate SVCCA's ``keep``/``keep_by`` into the kernel's (keep, keep_mode)."""
    if keep_by not in _KEEP_BY:
        raise ValueError(f"keep_by must be 'variance' or 'singular_values', got {keep_by!r}")
    if isinstance(keep, (bool, np.bool_)):
        raise TypeError("keep must be a float fraction in (0, 1] or an int number of directions, got bool")
    if isinstance(keep, numbers.Integral):
        if not 1 <= keep <= min(widths):
            raise ValueError(
                f"keep={keep} directions must be between 1 and the number of features "
                f"(smallest input has {min(widths)})"
            )
        return float(keep), _KEEP_COUNT
    if isinstance(keep, numbers.Real):
        if not 0.0 < float(keep) <= 1.0:  # also rejects NaN
            raise ValueError(f"keep must be a fraction of variance in (0, 1], got {keep}")
        return float(keep), _KEEP_BY[keep_by]
    raise TypeError(f"keep must be a float in (0, 1] or an int, got {type(keep).__name__}")


def _check_statistic(statistic: str) -> str:
    if statistic not in ("mean", "r2"):
        raise ValueError(f"statistic must be 'mean' or 'r2', got {statistic!r}")
    return "cca_mean" if statistic == "mean" else "cca_r2"


# ---------------------------------------------------------------------------------------------
# the host pipeline: joint Gram statistics -> per-model factors -> per-pair metrics
# ---------------------------------------------------------------------------------------------


class _GramStats:
    """Shifted joint Gram statistics of M models (see ``csrc/gram.h``), kept as NumPy arrays.

    ``shift`` should be close to the column means: the exact means in memory, the first batch's
    means when streaming. ``blocks_only`` keeps just the per-model diagonal Gram blocks (enough to
    factor each model; SVCCA gets its cross terms from a second, projected pass). All state is
    plain float64 arrays, so it can be saved and resumed.
    """

    def __init__(self, widths: Sequence[int], shift: np.ndarray, moments: bool, blocks_only: bool = False):
        self.widths = [int(w) for w in widths]
        self.offsets = [0, *np.cumsum(self.widths).tolist()]
        self.blocks_only = blocks_only
        d, m = self.offsets[-1], len(self.widths)
        self.n = 0
        self.shift = np.ascontiguousarray(shift, dtype=np.float64)
        self.gram = np.zeros(sum(w * w for w in self.widths)) if blocks_only else np.zeros((d, d))
        self.colsum = np.zeros(d)
        self.moments = (np.zeros((m, d)), np.zeros((m, m)), np.zeros(m)) if moments else None

    @property
    def chunk_rows(self) -> int:
        return max(64, _CHUNK_BYTES // (8 * max(1, self.offsets[-1])))

    @property
    def mean(self) -> np.ndarray:
        return self.shift + self.colsum / self.n

    def update(self, arrays: list[np.ndarray], names: list[str], validated: bool = False) -> None:
        """Add equally long arrays; ``validated`` when :func:`_column_means` already checked them."""
        moments = self.moments or (None, None, None)
        bad = _C.gram_update(arrays, self.offsets, self.blocks_only, self.shift, self.gram, self.colsum,
                             *moments, self.chunk_rows, not validated)
        if bad >= 0:
            raise ValueError(f"{names[bad]} contains NaN or infinity")
        self.n += arrays[0].shape[0]

    def centered(self, names: Sequence[str], in_place: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Centered Gram (same layout) and, with moments, centered norm products (M, M)."""
        gram = self.gram if in_place else np.empty_like(self.gram)
        m = len(self.widths)
        norm_products = np.empty((m, m)) if self.moments else None
        moments = self.moments or (None, None, None)
        _C.center_gram(self.offsets, self.blocks_only, self.gram, self.colsum, *moments, self.n, gram,
                       norm_products)
        _check_variance(self._traces(gram), self.mean, self.n, self.offsets, names)
        return gram, norm_products

    def _traces(self, gram: np.ndarray) -> list[float]:
        """Each model's total centered variance: the trace of its diagonal Gram block."""
        if not self.blocks_only:
            diag = np.diagonal(gram)
            return [diag[a:b].sum() for a, b in zip(self.offsets, self.offsets[1:])]
        starts = np.cumsum([0] + [w * w for w in self.widths])
        return [np.trace(gram[s : s + w * w].reshape(w, w)) for s, w in zip(starts, self.widths)]


def _column_means(arrays: list[np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Exact float64 column means (D,) of the stacked arrays; ``ValueError`` naming a non-finite one."""
    sums, bad = _C.column_sums(arrays)
    if bad >= 0:
        raise ValueError(f"{names[bad]} contains NaN or infinity")
    return sums / arrays[0].shape[0]


def _check_variance(totals, mean: np.ndarray, n: int, offsets: Sequence[int], names: Sequence[str]) -> None:
    """``ValueError`` for a model whose total centered variance (``totals[i]``, a sum of squares)
    is at the rounding level of its values: every column is constant."""
    floor = n * (64 * np.finfo(np.float64).eps * np.abs(mean)) ** 2
    for i, name in enumerate(names):
        if not totals[i] > floor[offsets[i] : offsets[i + 1]].sum():
            raise ValueError(f"{name} has no variance: every column is constant")


def _factors(gram, stats: _GramStats, metrics, rtol=RANK_RTOL, keep=0.99, keep_mode=0):
    return _C.GramFactors(
        gram, stats.offsets, stats.blocks_only, stats.n, rtol, keep, keep_mode,
        factor=any(m in _CCA_FAMILY for m in metrics),
        loadings="pwcca" in metrics and not stats.blocks_only,  # the projection route makes its own
    )


def _host_gram(arrays: list[np.ndarray], names: list[str], moments: bool, blocks_only: bool = False):
    stats = _GramStats([a.shape[1] for a in arrays], _column_means(arrays, names), moments, blocks_only)
    stats.update(arrays, names, validated=True)
    gram, norm_products = stats.centered(names, in_place=True)
    return stats, gram, norm_products


def _pair_metrics(arrays, names, first, second, metrics, *, rtol=RANK_RTOL, keep=0.99, keep_mode=0):
    """{metric: (npairs,) float64} for the pairs (first[p], second[p]) of host ``arrays``."""
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    n, total_width = arrays[0].shape[0], sum(a.shape[1] for a in arrays)
    if set(metrics) <= {"cka", "cka_debiased"} and len(arrays) * n * n < total_width**2:
        return _sample_space_cka(arrays, names, first, second, metrics)
    if set(metrics) <= set(_CCA_FAMILY):
        # Two passes: factor each model from its own Gram block, then project onto its whitening
        # basis and re-whiten (CholeskyQR2): the accuracy of an SVD of the data, and cheaper than
        # the full joint Gram whenever SVCCA truncates (csrc/similarity.h, projected_pairs).
        stats, gram, _ = _host_gram(arrays, names, moments=False, blocks_only=True)
        factors = _factors(gram, stats, metrics, rtol, keep, keep_mode)
        return factors.project_pairs(arrays, stats.offsets, stats.mean, first, second, list(metrics),
                                     stats.chunk_rows)
    stats, gram, norm_products = _host_gram(arrays, names, "cka_debiased" in metrics)
    factors = _factors(gram, stats, metrics, rtol, keep, keep_mode)
    return factors.pairs(first, second, list(metrics), norm_products)


def _square_pairs(m: int, symmetric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pair indices (first, second) of an (m, m) matrix: the upper triangle with its diagonal for a
    symmetric metric, every entry otherwise."""
    first, second = np.triu_indices(m) if symmetric else np.indices((m, m)).reshape(2, -1)
    return first.astype(np.int64), second.astype(np.int64)


def _fill(shape, rows, cols, values, symmetric: bool) -> np.ndarray:
    """The float64 matrix with values at (rows, cols), mirrored when ``symmetric``."""
    out = np.empty(shape)
    out[rows, cols] = values
    if symmetric:
        out[cols, rows] = values
    return out


def _sample_space_cka(arrays, names, first, second, metrics):
    """CKA through n x n sample Grams: the route when M n^2 < D^2 (wide layers, few samples)."""
    mean = _column_means(arrays, names)
    out = _C.sample_space_cka(arrays, mean, first, second, "cka" in metrics, "cka_debiased" in metrics)
    offsets = np.cumsum([0] + [a.shape[1] for a in arrays])
    _check_variance(out["traces"], mean, arrays[0].shape[0], offsets, names)
    return out


def _metric_args(metric: str, n: int, widths, names, keep, keep_by, rtol, statistic, debiased):
    """Validate the options of ``metric`` and return (kernel metric name, kernel kwargs)."""
    if metric == "cka":
        if debiased:
            _check_debiased_n(n)
        return ("cka_debiased" if debiased else "cka"), {}
    _check_more_samples(n, widths, names, "SVCCA" if metric == "svcca" else "CCA")
    kwargs = {"rtol": _check_rtol(rtol)}
    if metric == "svcca":
        kwargs["keep"], kwargs["keep_mode"] = _keep_args(keep, keep_by, widths)
        return "svcca", kwargs
    if metric == "pwcca":
        return "pwcca", kwargs
    return _check_statistic(statistic), kwargs


def _gpu():
    from mmkern._gpu import similarity as gpu_similarity

    return gpu_similarity
