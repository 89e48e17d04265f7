"""The host route of the similarity metrics: NumPy arrays and torch CPU tensors over ``mmkern._C``.

Inputs are viewed as NumPy arrays without copies (the dtype policy of :mod:`mmkern._dtypes`) and
each metric goes to its route over the C++ kernels (``csrc/similarity.h`` describes them):

- the projection route for the CCA family (per-model Gram blocks, a projected second pass and
  CholeskyQR2 re-whitening, one C++ call: ``GramFactors.project_pairs``),
- the joint-Gram route for CKA and for the streaming accumulator,
- the sample-Gram route for CKA when n x n Grams are smaller than the joint Gram
  (:func:`mmkern.similarity._checks.use_sample_space`).

The device route (:mod:`mmkern.similarity._device`) has the same entry points: :func:`prepare`,
:func:`pair_metrics`, :func:`batch_metric`, :func:`matrix`, :func:`result`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmkern import _C
from mmkern._backend import as_host_array, to_kind
from mmkern._dtypes import float_array
from mmkern.similarity._checks import (
    CCA_FAMILY,
    RANK_RTOL,
    check_magnitude,
    check_variance,
    magnitude_exponent,
    rescale,
    shape_check,
    use_sample_space,
    variance_floors,
)

_CHUNK_BYTES = 64 * 2**20  # float64 row-chunk buffer for the Gram pass


def prepare(a: Any, name: str, ndims: tuple[int, ...] = (2,)) -> np.ndarray:
    """A float32/float64 NumPy view of a host input, validated for shape."""
    arr = float_array(as_host_array(a, name), name)
    shape_check(arr, name, ndims)
    return arr


# ---------------------------------------------------------------------------------------------
# joint Gram statistics -> per-model factors -> per-pair metrics
# ---------------------------------------------------------------------------------------------


class GramStats:
    """Shifted joint Gram statistics of M models (see ``csrc/gram.h``), kept as NumPy arrays.

    ``shift`` should be close to the column means: the exact means in memory, the first batch's
    means when streaming. ``blocks_only`` keeps just the per-model diagonal Gram blocks (enough to
    factor each model; SVCCA gets its cross terms from a second, projected pass). All state is
    plain float64 arrays, so it can be saved and resumed.
    """

    def __init__(self, widths: Sequence[int], shift: np.ndarray, moments: bool, blocks_only: bool = False,
                 exponents: Sequence[int] | None = None):
        self.widths = [int(w) for w in widths]
        # each model's data are rescaled by 2^exponents[i] (see _checks.magnitude_exponent)
        self.exponents = [0] * len(self.widths) if exponents is None else [int(e) for e in exponents]
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
        """Add equally long arrays; ``validated`` when :func:`column_means` already checked and
        rescaled them. Otherwise they are checked (finite, within range of the scale the first
        batch fixed) and rescaled here; a refused batch leaves the statistics unchanged."""
        if not validated:
            _, bad, max_abs = _C.column_sums(arrays)
            if bad >= 0:
                raise ValueError(f"{names[bad]} contains NaN or infinity")
            for v, e, name in zip(max_abs, self.exponents, names):
                check_magnitude(v, e, name)
            arrays = [a if e == 0 else rescale(a.astype(np.float64), e) for a, e in zip(arrays, self.exponents)]
        moments = self.moments or (None, None, None)
        _C.gram_update(arrays, self.offsets, self.blocks_only, self.shift, self.gram, self.colsum,
                       *moments, self.chunk_rows, False)
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


def _check_variance(traces, mean: np.ndarray, n: int, offsets: Sequence[int], names: Sequence[str]) -> None:
    """:func:`~mmkern.similarity._checks.check_variance` of each model's trace against the sum of
    its columns' floors."""
    floors = variance_floors(np.abs(mean), n)
    check_variance(traces, [floors[a:b].sum() for a, b in zip(offsets, offsets[1:])], names)


def column_means(arrays: list[np.ndarray], names: Sequence[str]) -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    """Validate and rescale the stacked arrays: ``ValueError`` naming a non-finite one; each input
    whose magnitude is outside the safe range (:func:`~mmkern.similarity._checks.magnitude_exponent`)
    replaced by its exactly rescaled float64 copy. Returns (arrays, exact float64 column means (D,)
    of those arrays, the exponents)."""
    sums, bad, max_abs = _C.column_sums(arrays)
    if bad >= 0:
        raise ValueError(f"{names[bad]} contains NaN or infinity")
    exponents = [magnitude_exponent(v) for v in max_abs]
    if any(exponents):  # rare: extreme magnitudes; the sums of the rescaled copies
        arrays = [a if e == 0 else rescale(a.astype(np.float64), e) for a, e in zip(arrays, exponents)]
        sums = _C.column_sums(arrays)[0]
    return arrays, sums / arrays[0].shape[0], exponents


def factors(gram, stats: GramStats, metrics, rtol=RANK_RTOL, keep=0.99, keep_mode=0):
    """The per-model eigendecompositions (``_C.GramFactors``) the metrics need."""
    return _C.GramFactors(
        gram, stats.offsets, stats.blocks_only, stats.n, rtol, keep, keep_mode,
        factor=any(m in CCA_FAMILY for m in metrics),
        loadings="pwcca" in metrics and not stats.blocks_only,  # the projection route makes its own
    )


def _host_gram(arrays: list[np.ndarray], names: list[str], mean: np.ndarray, moments: bool,
               blocks_only: bool = False):
    stats = GramStats([a.shape[1] for a in arrays], mean, moments, blocks_only)
    stats.update(arrays, names, validated=True)
    gram, norm_products = stats.centered(names, in_place=True)
    return stats, gram, norm_products


def pair_metrics(arrays, names, first, second, metrics, *, rtol=RANK_RTOL, keep=0.99, keep_mode=0) -> dict:
    """{metric: (npairs,) float64} for the pairs (first[p], second[p]) of validated host ``arrays``
    ("correlations": a list of each pair's canonical correlations)."""
    first = np.ascontiguousarray(first, np.int64)
    second = np.ascontiguousarray(second, np.int64)
    n = arrays[0].shape[0]
    arrays, mean, _ = column_means(arrays, names)
    if use_sample_space(metrics, n, [a.shape[1] for a in arrays]):
        return _sample_space_cka(arrays, names, mean, first, second, metrics)
    if set(metrics) <= set(CCA_FAMILY):
        # Two passes: factor each model from its own Gram block, then project onto its whitening
        # basis and re-whiten (CholeskyQR2): the accuracy of an SVD of the data, and cheaper than
        # the full joint Gram whenever SVCCA truncates (csrc/similarity.h, projection_route).
        stats, gram, _ = _host_gram(arrays, names, mean, moments=False, blocks_only=True)
        fac = factors(gram, stats, metrics, rtol, keep, keep_mode)
        return fac.project_pairs(arrays, stats.offsets, stats.mean, first, second, list(metrics), stats.chunk_rows)
    stats, gram, norm_products = _host_gram(arrays, names, mean, "cka_debiased" in metrics)
    return factors(gram, stats, metrics, rtol, keep, keep_mode).pairs(first, second, list(metrics), norm_products)


def _sample_space_cka(arrays, names, mean, first, second, metrics):
    """CKA through n x n sample Grams: the route when M n^2 < D^2 (wide layers, few samples)."""
    out = _C.sample_space_cka(arrays, mean, first, second, "cka" in metrics, "cka_debiased" in metrics)
    offsets = np.cumsum([0] + [a.shape[1] for a in arrays])
    _check_variance(out["traces"], mean, arrays[0].shape[0], offsets, names)
    return out


def batch_metric(xs: np.ndarray, ys: np.ndarray, metric: str, kwargs: dict) -> np.ndarray:
    """(b,) float64: ``metric`` of each (xs[b], ys[b]) of two validated (b, n, d) arrays."""
    names = ["x", "y"]
    return np.array([pair_metrics([xs[b], ys[b]], names, [0], [1], [metric], **kwargs)[metric][0]
                     for b in range(xs.shape[0])], dtype=np.float64)


def matrix(shape, rows, cols, values, symmetric: bool) -> np.ndarray:
    """The float64 matrix with values at (rows, cols), mirrored when ``symmetric``."""
    out = np.empty(shape)
    out[rows, cols] = values
    if symmetric:
        out[cols, rows] = values
    return out


result = to_kind  # a host result as the inputs' array kind
