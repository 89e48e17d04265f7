"""Per-model factors: each model reduced once to what its pairs need, so that any block of pairs
is computed from the factors alone (the tiles of :mod:`mmkern.distributed`).

- CCA family: the host projection route cut at its seam (``csrc/similarity.h``). Model i is
  factored from its own Gram block as in memory (same rank and SVCCA rules, ``_C.GramFactors``);
  its factor is the whitened projection U_i = Xc_i B_i (n, c_i), with P_ii = U_i^T U_i and, for
  PWCCA, the loadings U_i^T Xc_i. A pair forms P_ij = U_i^T U_j and hands the two-model projected
  Gram to ``_C.projected_pairs``, the kernel the in-memory route ends in (CholeskyQR2
  re-whitening, then the pair statistics).
- Linear CKA: the factor is the centered data Xc_i (n, d_i), or its sample Gram Xc_i Xc_i^T
  (n, n) when that is smaller, with ||Xc_i^T Xc_i||_F^2, the trace and the samples' squared norms;
  the pairs go to ``_C.cka_from_norms``, the CPU twin of the device route's CKA kernel.

A factor is about the size of the model's activations in float64 (c_i <= d_i columns).
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from mmkern import _C
from mmkern.similarity import _host
from mmkern.similarity._checks import CKA_METRICS, square_pairs


@dataclass
class ModelFactor:
    """What the pairs of one model need (see the module docstring).

    Attributes
    ----------
    metric : str
        The kernel metric it was made for ("svcca", "cca_mean", "cca_r2", "pwcca", "cka",
        "cka_debiased").
    width : int
        d_i, the model's width.
    data : numpy.ndarray, float64
        U_i (n, c_i) for the CCA family; Xc_i (n, d_i), or Xc_i Xc_i^T (n, n) when
        ``sample_gram``, for CKA.
    gram : numpy.ndarray (c_i, c_i) float64 or None
        P_ii = U_i^T U_i (CCA family).
    keep : int
        The SVCCA dimension k_i <= c_i (CCA family).
    loadings : numpy.ndarray (c_i, d_i) float64 or None
        U_i^T Xc_i (PWCCA).
    self_fro2, trace : float
        ||Xc_i^T Xc_i||_F^2 and ||Xc_i||_F^2 (CKA).
    sq_norms : numpy.ndarray (n,) float64 or None
        |xc_s|^2 of each sample (debiased CKA).
    sample_gram : bool
    """

    metric: str
    width: int
    data: np.ndarray
    gram: np.ndarray | None = None
    keep: int = 0
    loadings: np.ndarray | None = None
    self_fro2: float = 0.0
    trace: float = 0.0
    sq_norms: np.ndarray | None = None
    sample_gram: bool = False


def model_factor(x, name: str, metric: str, kwargs: dict) -> ModelFactor:
    """The factor of one model's activations ``x`` (n, d) for kernel ``metric`` (with the kernel
    options ``kwargs`` of :func:`mmkern.similarity._checks.metric_args`); ``ValueError`` naming
    ``name`` for the inputs the in-memory functions refuse."""
    arrays, mean, _ = _host.column_means([_host.prepare(x, name)], [name])
    n, d = arrays[0].shape
    xc = arrays[0].astype(np.float64) - mean  # (n, d): a factor is about this size anyway
    if metric in CKA_METRICS:
        sq_norms = np.einsum("ij,ij->i", xc, xc)
        trace = float(sq_norms.sum())
        _host._check_variance([trace], mean, n, [0, d], [name])
        sample_gram = d > n
        data = xc @ xc.T if sample_gram else xc
        self_fro2 = float(np.sum(np.square(data if sample_gram else xc.T @ xc)))
        return ModelFactor(metric, d, data, self_fro2=self_fro2, trace=trace,
                           sq_norms=sq_norms if metric == "cka_debiased" else None, sample_gram=sample_gram)
    stats, gram, _ = _host._host_gram(arrays, [name], mean, moments=False, blocks_only=True)
    factors = _host.factors(gram, stats, [metric], **kwargs)
    # all numerically non-zero directions for CCA and PWCCA, the SVCCA ones for SVCCA (as in memory)
    c = factors.svcca_dims[0] if metric == "svcca" else factors.ranks[0]
    u = xc @ factors.basis(0)[:, :c]
    loadings = np.ascontiguousarray(u.T @ xc) if metric == "pwcca" else None
    return ModelFactor(metric, d, u, gram=u.T @ u, keep=factors.svcca_dims[0], loadings=loadings)


def _cross_fro2(a: ModelFactor, b: ModelFactor) -> float:
    """||Xc_a^T Xc_b||_F^2 from two CKA factors (either kind)."""
    if a.sample_gram and b.sample_gram:
        return float(np.vdot(a.data, b.data))  # <K_a, K_b>
    if a.sample_gram or b.sample_gram:
        k, x = (a.data, b.data) if a.sample_gram else (b.data, a.data)
        return float(np.vdot(x, k @ x))  # tr(Xc^T K Xc)
    return float(np.sum(np.square(a.data.T @ b.data)))


def block_values(rows: list[ModelFactor], cols: list[ModelFactor] | None) -> np.ndarray:
    """The (len(rows), len(cols)) block of the metric matrix from the models' factors; with
    ``cols=None`` the (len(rows), len(rows)) matrix of ``rows`` among themselves (for a symmetric
    metric only its upper triangle is computed, then mirrored). float64."""
    models = rows if cols is None else rows + cols
    metric = models[0].metric
    symmetric = cols is None and metric != "pwcca"
    if cols is None:
        first, second = square_pairs(len(rows), symmetric)
        at = (first, second)
    else:
        at = np.indices((len(rows), len(cols))).reshape(2, -1)
        first, second = at[0], at[1] + len(rows)
    if metric in CKA_METRICS:
        values = _cka_pairs(models, first, second, metric)
    else:
        values = np.array([_cca_pair(models[i], models[j], metric) for i, j in zip(first, second)])
    shape = (len(rows), len(rows) if cols is None else len(cols))
    return _host.matrix(shape, at[0], at[1], values, symmetric)


def _cca_pair(a: ModelFactor, b: ModelFactor, metric: str) -> float:
    """One pair of the CCA family through ``_C.projected_pairs``."""
    if a is b:  # the model against itself: the kernel's self value
        grams, keep, widths, loadings = a.gram, [a.keep], [a.width], [a.loadings]
        koffsets, pair = [0, a.gram.shape[0]], ([0], [0])
    else:
        w = a.data.T @ b.data
        grams = np.block([[a.gram, w], [w.T, b.gram]])
        keep, widths, loadings = [a.keep, b.keep], [a.width, b.width], [a.loadings, b.loadings]
        koffsets, pair = [0, a.gram.shape[0], a.gram.shape[0] + b.gram.shape[0]], ([0], [1])
    loadings = [x.copy() for x in loadings] if metric == "pwcca" else None  # re-whitened in place
    first, second = (np.asarray(p, np.int64) for p in pair)
    out = _C.projected_pairs(np.ascontiguousarray(grams), koffsets, keep, widths, loadings, first, second, [metric])
    return float(out[metric][0])


def _cka_pairs(models: list[ModelFactor], first: np.ndarray, second: np.ndarray, metric: str) -> np.ndarray:
    """Linear CKA of the pairs through ``_C.cka_from_norms``."""
    cross = np.array([models[i].self_fro2 if i == j else _cross_fro2(models[i], models[j])
                      for i, j in zip(first, second)])
    self_fro2 = np.array([f.self_fro2 for f in models])
    debiased = metric == "cka_debiased"
    trace = products = None
    if debiased:
        trace = np.array([f.trace for f in models])
        q = np.stack([f.sq_norms for f in models], axis=1)
        products = np.ascontiguousarray(q.T @ q)
    n = models[0].data.shape[0]
    out = _C.cka_from_norms(np.ascontiguousarray(first, np.int64), np.ascontiguousarray(second, np.int64), cross,
                            self_fro2, float(n), trace, products, biased=not debiased, debiased=debiased)
    return out[metric]
