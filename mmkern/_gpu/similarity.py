"""Representational similarity on the GPU: the host algorithm of mmkern.similarity in torch ops.

Same definitions and the same algorithm as the C++ path (``csrc/gram.h``, ``csrc/similarity.h``),
all in float64 on the inputs' device:

1. validate (dtype, finiteness, variance) and take exact column means;
2. pack the stacked inputs minus their means into float64 row chunks (``_C_cuda.pack_rows`` on
   CUDA; ``torch.cat`` otherwise) and accumulate with torch.matmul (cuBLAS on a GPU) each model's
   Gram block X_i^T X_i, or, when CKA is asked for, the whole joint Gram G = Z^T Z and, for
   debiased CKA, the products of per-sample squared row norms;
3. per model, eigendecompose its Gram block (``torch.linalg.eigh``, batched over models of equal
   width): numerical rank r_i (eigenvalues above rtol * the largest), SVCCA's count k_i by the
   rule of ``svcca_keep_count``, whitening basis B_i = V_r diag(lambda_r)^(-1/2);
4. the CCA family by the projection route (``projected_pairs`` in ``csrc/similarity.h``): a second
   pass over the data accumulates P = U^T U of U = [Xc_0 B_0[:, :c_0] | ...], with c_i = r_i when
   CCA, PWCCA or the correlation vector is asked for and c_i = k_i for SVCCA alone (and, for PWCCA,
   the loadings Xc_i^T U_i). The bases whiten only up to the rounding of the Gram eigensolver
   (~eps cond(X_i)^2), so each model is re-whitened by the Cholesky factor of its own block,
   P_ii = R_i^T R_i (``torch.linalg.cholesky_ex``), and a pair uses W_ij = R_i^-T P_ij R_j^-1
   (CholeskyQR2, ``torch.linalg.solve_triangular``): canonical correlations then carry an error
   ~eps cond(X), as an SVD of the data would. The singular values of W_ij are the canonical
   correlations (``torch.linalg.svdvals``; ``torch.linalg.svd`` for PWCCA's left vectors),
   batched over pairs of equal shapes; SVCCA uses the leading k_i x k_j block;
5. linear CKA from block sums of G, or, when M n^2 < D^2 and only CKA is asked for (wide layers,
   few samples; the host path's rule), from the n x n sample Grams K_i = Xc_i Xc_i^T;
6. per-pair summaries with ``mmkern._C_cuda``'s kernels (the shared functors of
   ``csrc/common/similarity_math.h``) for CUDA tensors when the module was built, otherwise the
   equivalent torch expressions (which is how CPU tensors exercise this module in the tests).

Entry points used by :mod:`mmkern.similarity`: :func:`pair_metrics`, :func:`correlations`,
:func:`to_numpy`, :func:`as_kind`. Inputs are torch tensors (any device) or CuPy arrays (viewed
as torch tensors without a copy through DLPack); results are float64 on the inputs' device and of
the inputs' array kind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from mmkern._gpu import require_torch

torch = require_torch()

from mmkern._backend import Kind
from mmkern._gpu import cuda_launch as _cuda_launch
from mmkern._gpu import kernels_for as _kernels_for
from mmkern.similarity import KEEP_SLACK, RANK_RTOL

__all__ = ["pair_metrics", "correlations", "to_numpy", "as_kind"]

_F64 = torch.float64
_CCA_FAMILY = ("svcca", "cca_mean", "cca_r2", "pwcca")
_METRICS = (*_CCA_FAMILY, "cka", "cka_debiased")
_KEEP_BY_SINGULAR_VALUES = 1
_KEEP_COUNT = 2
_DTYPE_CODE = {torch.float32: 0, torch.float64: 1}  # mmkern::DType (csrc/common/view.h)
_UPCAST_TO_FLOAT32 = (torch.float16, torch.bfloat16)
#: Bytes of float64 scratch per batch: the packed row chunk of the Gram pass, and the stacked
#: per-pair matrices of the pair pass.
_CHUNK_BYTES = 256 * 2**20


# ---------------------------------------------------------------------------------------------
# array kinds
# ---------------------------------------------------------------------------------------------


def _library(a: Any) -> str:
    return type(a).__module__.split(".", 1)[0]


def _as_tensor(a: Any, name: str) -> "torch.Tensor":
    """A 2-D float32/float64 torch view of a torch tensor or CuPy array (no copy)."""
    lib = _library(a)
    if lib == "torch":
        t = a.detach()
    elif lib == "cupy":
        t = torch.from_dlpack(a)
    else:
        raise TypeError(f"{name} must be a torch tensor or a CuPy array on the GPU path, got {type(a).__name__}")
    if t.dtype in _UPCAST_TO_FLOAT32:
        t = t.float()  # the dtype policy (mmkern._dtypes): half precisions are upcast, visibly
    elif t.dtype not in _DTYPE_CODE:
        dtype = str(t.dtype).replace("torch.", "")
        raise TypeError(
            f"{name} must be a floating-point array (float32 or float64), got dtype {dtype}; "
            "cast it explicitly if the values really are activations"
        )
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {tuple(t.shape)}")
    if 0 in tuple(t.shape):
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); it needs samples and features")
    return t


def _from_tensor(t: "torch.Tensor", library: str) -> Any:
    """A result tensor as the inputs' array kind (CuPy results share memory through DLPack)."""
    if library == "cupy":
        import cupy

        return cupy.from_dlpack(t)
    return t


def to_numpy(a: Any) -> np.ndarray:
    """A host NumPy copy of a torch tensor or CuPy array (NumPy arrays pass through)."""
    lib = _library(a)
    if lib == "torch":
        return a.detach().cpu().numpy()
    if lib == "cupy":
        import cupy

        return cupy.asnumpy(a)
    return np.asarray(a)


def as_kind(a: np.ndarray, kind: Kind) -> Any:
    """The NumPy array ``a`` as a torch tensor or CuPy array on ``kind.device``."""
    if kind.library == "torch":
        return torch.from_numpy(np.ascontiguousarray(a)).to(kind.device)
    if kind.library == "cupy":
        import cupy

        with cupy.cuda.Device(int(kind.device.split(":")[1])):
            return cupy.asarray(a)
    return a


def _chunks(items: Sequence[Any], bytes_per_item: int) -> Iterator[list]:
    """Consecutive slices of ``items`` whose scratch fits in _CHUNK_BYTES (at least one item)."""
    per = max(1, _CHUNK_BYTES // max(1, bytes_per_item))
    for s in range(0, len(items), per):
        yield list(items[s : s + per])


# ---------------------------------------------------------------------------------------------
# scalar rules shared with the C++ kernels (mirrors of csrc/common/similarity_math.h)
# ---------------------------------------------------------------------------------------------


def _numerical_rank(evals_desc: Sequence[float], rtol: float) -> int:
    """Eigenvalues above rtol * the largest (``numerical_rank``); 0 if the largest is not > 0."""
    if len(evals_desc) == 0 or not evals_desc[0] > 0.0:
        return 0
    cut = rtol * evals_desc[0]
    r = 0
    while r < len(evals_desc) and evals_desc[r] > cut:
        r += 1
    return r


def _svcca_keep_count(evals_desc: Sequence[float], rank: int, keep: float, keep_mode: int) -> int:
    """SVCCA's number of leading directions (``svcca_keep_count``, same summation order)."""
    if rank <= 0:
        return 0
    if keep_mode == _KEEP_COUNT:
        return min(int(keep), rank)
    if keep >= 1.0:
        return rank
    by_sv = keep_mode == _KEEP_BY_SINGULAR_VALUES
    weights = [(math.sqrt(e) if e > 0.0 else 0.0) if by_sv else e for e in evals_desc[:rank]]
    total = 0.0
    for w in weights:
        total += w
    target = (keep - KEEP_SLACK) * total
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if acc >= target:
            return i + 1
    return rank


# ---------------------------------------------------------------------------------------------
# joint Gram statistics and per-model factors
# ---------------------------------------------------------------------------------------------


@dataclass
class _Joint:
    """Centered statistics of M models on n samples (all float64 on one device)."""

    n: int
    widths: list[int]
    offsets: list[int]
    mean: "torch.Tensor"                   # (D,) column means
    blocks: list["torch.Tensor"]           # M centered diagonal blocks X_i^T X_i, (d_i, d_i)
    gram: "torch.Tensor | None"            # (D, D) centered Z^T Z (CKA only; blocks are views)
    norm_products: "torch.Tensor | None"   # (M, M) sum_s |x_{i,s}|^2 |x_{j,s}|^2, centered rows


def _membership(offsets: Sequence[int], device) -> "torch.Tensor":
    m = len(offsets) - 1
    s = torch.zeros((offsets[-1], m), dtype=_F64, device=device)
    for i in range(m):
        s[offsets[i] : offsets[i + 1], i] = 1.0
    return s


def _pack(tensors: Sequence["torch.Tensor"], row_begin: int, rows: int, mean: "torch.Tensor") -> "torch.Tensor":
    """Rows [row_begin, row_begin + rows) of the stacked inputs minus ``mean``: (rows, D) float64."""
    kernels = _kernels_for(mean.device)
    if kernels is None:
        return torch.cat([t[row_begin : row_begin + rows].to(_F64) for t in tensors], dim=1) - mean
    # Column-major (rows x D) with leading dimension `rows`: a row-major (D, rows) buffer.
    buf = torch.empty((mean.shape[0], rows), dtype=_F64, device=mean.device)
    views = [(t.data_ptr(), t.shape[0], t.shape[1], t.stride(0), t.stride(1), _DTYPE_CODE[t.dtype])
             for t in tensors]
    with _cuda_launch(mean.device) as stream:
        kernels.pack_rows(views, row_begin, rows, mean.data_ptr(), buf.data_ptr(), rows, stream)
    return buf.T


def _column_means(tensors: Sequence["torch.Tensor"], names: Sequence[str]) -> "torch.Tensor":
    """Concatenated float64 column means (D,); ValueError naming the first non-finite input."""
    sums = [torch.sum(t, dim=0, dtype=_F64) for t in tensors]
    finite = torch.stack([torch.isfinite(s).all() for s in sums]).tolist()  # one host sync
    if not all(finite):
        raise ValueError(f"{names[finite.index(False)]} contains NaN or infinity")
    return torch.cat(sums) / tensors[0].shape[0]


def _variance_floor(mean: "torch.Tensor", n: int) -> "torch.Tensor":
    """Per column: a centered sum of squares at or below this is rounding of constant values
    (the floor of the host path's _GramStats._check_variance)."""
    return n * (64.0 * torch.finfo(_F64).eps * mean.abs()) ** 2


def _joint(tensors: Sequence["torch.Tensor"], names: Sequence[str], full: bool,
           norm_products: bool) -> _Joint:
    """The first pass over the data: each model's Gram block, or with ``full`` the whole joint
    Gram (the cross blocks are only needed by CKA) and, with ``norm_products``, debiased CKA's
    products of squared row norms."""
    device = tensors[0].device
    n = int(tensors[0].shape[0])
    widths = [int(t.shape[1]) for t in tensors]
    offsets = [0, *np.cumsum(widths).tolist()]
    d, m = offsets[-1], len(tensors)
    mean = _column_means(tensors, names)

    if full:
        gram = torch.zeros((d, d), dtype=_F64, device=device)
        blocks = [gram[o : o + w, o : o + w] for o, w in zip(offsets, widths)]
    else:
        gram = None
        blocks = [torch.zeros((w, w), dtype=_F64, device=device) for w in widths]
    products = torch.zeros((m, m), dtype=_F64, device=device) if norm_products else None
    member = _membership(offsets, device) if norm_products else None
    chunk = max(64, _CHUNK_BYTES // (8 * max(1, d)))
    for r0 in range(0, n, chunk):
        rows = min(chunk, n - r0)
        z = _pack(tensors, r0, rows, mean)
        if gram is not None:
            gram.addmm_(z.T, z)
        else:
            for block, o, w in zip(blocks, offsets, widths):
                block.addmm_(z[:, o : o + w].T, z[:, o : o + w])
        if products is not None:
            q = (z * z) @ member  # (rows, M): squared norm of each sample's centered activations
            products.addmm_(q.T, q)

    # A column is constant when its centered variance is at the rounding level of its values.
    variable = torch.cat([torch.diagonal(b) for b in blocks]) > _variance_floor(mean, n)
    has_variance = torch.stack([variable[offsets[i] : offsets[i + 1]].any() for i in range(m)]).tolist()
    for name, ok in zip(names, has_variance):
        if not ok:
            raise ValueError(f"{name} has no variance: every column is constant")
    return _Joint(n=n, widths=widths, offsets=offsets, mean=mean, blocks=blocks, gram=gram,
                  norm_products=products)


@dataclass
class _Factors:
    rank: list[int]                        # numerical rank r_i
    keep: list[int]                        # SVCCA dimension k_i <= r_i
    basis: list["torch.Tensor"]            # (d_i, r_i) whitening bases, eigenvalues descending


def _factor(joint: _Joint, rtol: float, keep: float, keep_mode: int) -> _Factors:
    m = len(joint.widths)
    evals: list = [None] * m
    vecs: list = [None] * m
    by_width: dict[int, list[int]] = {}
    for i, d in enumerate(joint.widths):
        by_width.setdefault(d, []).append(i)
    for d, models in by_width.items():
        for group in _chunks(models, 8 * 3 * d * d):
            w, v = torch.linalg.eigh(torch.stack([joint.blocks[i] for i in group]))
            w, v = w.flip(-1), v.flip(-1)  # descending eigenvalues, matching eigenvector columns
            for k, i in enumerate(group):
                evals[i], vecs[i] = w[k], v[k]
    host = torch.cat(evals).cpu().tolist()  # one transfer; ranks and counts decide shapes

    ranks, keeps, bases = [], [], []
    for i in range(m):
        e = host[joint.offsets[i] : joint.offsets[i + 1]]
        r = _numerical_rank(e, rtol)
        ranks.append(r)
        keeps.append(_svcca_keep_count(e, r, keep, keep_mode))
        bases.append(vecs[i][:, :r] / evals[i][:r].sqrt())
    return _Factors(rank=ranks, keep=keeps, basis=bases)


# ---------------------------------------------------------------------------------------------
# the projection route: projected Gram, CholeskyQR2 re-whitening
# ---------------------------------------------------------------------------------------------


@dataclass
class _Projection:
    """The projected Gram P = U^T U of U = [Xc_0 B_0 | ... | Xc_{M-1} B_{M-1}] (c_i columns per
    model) and each model's Cholesky factor of its block (float64, one device)."""

    offsets: list[int]                     # M + 1 column offsets of the models in U
    gram: "torch.Tensor"                   # (K, K) P
    chol: list["torch.Tensor"]             # (c_i, c_i) lower L_i with P_ii = L_i L_i^T (R_i = L_i^T)
    loadings: "list[torch.Tensor] | None"  # (d_i, c_i) Xc_i^T Q_i, Q_i = U_i R_i^-1 (PWCCA only)

    def block(self, i: int, j: int) -> "torch.Tensor":
        return self.gram[self.offsets[i] : self.offsets[i + 1], self.offsets[j] : self.offsets[j + 1]]


def _project(tensors: Sequence["torch.Tensor"], names: Sequence[str], joint: _Joint,
             bases: Sequence["torch.Tensor"], loadings: bool) -> _Projection:
    """The second pass over the data (``projected_gram_update``): P = U^T U with
    U_i = Xc_i bases[i] ((d_i, c_i) each) and, with ``loadings``, Xc_i^T U_i; then the Cholesky
    factor of each model's block P_ii (batched over models of equal c_i) and the re-whitened
    loadings. RuntimeError (as on the CPU) when a block is not positive definite."""
    device = joint.mean.device
    cols = [int(b.shape[1]) for b in bases]
    offsets = [0, *np.cumsum(cols).tolist()]
    k = offsets[-1]
    gram = torch.zeros((k, k), dtype=_F64, device=device)
    loads = None
    if loadings:
        loads = [torch.zeros((d, c), dtype=_F64, device=device) for d, c in zip(joint.widths, cols)]
    chunk = max(64, _CHUNK_BYTES // (8 * (joint.offsets[-1] + k)))  # packed rows and their projection
    for r0 in range(0, joint.n, chunk):
        rows = min(chunk, joint.n - r0)
        z = _pack(tensors, r0, rows, joint.mean)
        parts = [z[:, o : o + d] for o, d in zip(joint.offsets, joint.widths)]
        u = torch.cat([x @ b for x, b in zip(parts, bases)], dim=1)  # (rows, K)
        gram.addmm_(u.T, u)
        if loads is not None:
            for i, x in enumerate(parts):
                loads[i].addmm_(x.T, u[:, offsets[i] : offsets[i + 1]])

    proj = _Projection(offsets=offsets, gram=gram, chol=[None] * len(cols), loadings=None)
    order, infos = [], []  # models in factoring order, and their Cholesky status (0: success)
    by_cols: dict[int, list[int]] = {}
    for i, c in enumerate(cols):
        by_cols.setdefault(c, []).append(i)
    for c, models in by_cols.items():
        for group in _chunks(models, 8 * 2 * c * c):
            low, info = torch.linalg.cholesky_ex(torch.stack([proj.block(i, i) for i in group]))
            for g, i in enumerate(group):
                proj.chol[i] = low[g]
            order += group
            infos.append(info)
    failed = torch.cat(infos).ne(0).tolist()  # one host sync for all models
    if any(failed):
        name = names[order[failed.index(True)]]
        raise RuntimeError(f"{name}: projected directions are not numerically independent")
    if loads is not None:
        # Xc_i^T (U_i R_i^-1): solve A R_i = Xc_i^T U_i for A, with R_i = L_i^T upper triangular.
        proj.loadings = [torch.linalg.solve_triangular(low.mT, a, upper=True, left=False)
                         for low, a in zip(proj.chol, loads)]
    return proj


def _rewhitened_cross(proj: _Projection, firsts: Sequence[int], seconds: Sequence[int]) -> "torch.Tensor":
    """(P, c_i, c_j) stack of W = R_i^-T P_ij R_j^-1 = L_i^-1 P_ij L_j^-T (Q_i^T Q_j of the
    re-whitened bases) for pairs of equal shapes."""
    pij = torch.stack([proj.block(i, j) for i, j in zip(firsts, seconds)])
    li = torch.stack([proj.chol[i] for i in firsts])
    lj = torch.stack([proj.chol[j] for j in seconds])
    a = torch.linalg.solve_triangular(li, pij, upper=False)                   # L_i^-1 P_ij
    return torch.linalg.solve_triangular(lj.mT, a, upper=True, left=False)    # ... L_j^-T


# ---------------------------------------------------------------------------------------------
# per-pair summaries: mmkern._C_cuda kernels on CUDA, or the same formulas in torch
# ---------------------------------------------------------------------------------------------


def _summaries(rho: "torch.Tensor", count: "torch.Tensor", weights: "torch.Tensor | None",
               want: Sequence[str]) -> dict[str, "torch.Tensor"]:
    """{"mean", "r2", "weighted"} (those in ``want``) of rows rho[p, :count[p]] (P, kmax)."""
    npairs, kmax = rho.shape
    kernels = _kernels_for(rho.device)
    if kernels is not None:
        out = {k: torch.empty(npairs, dtype=_F64, device=rho.device) for k in want}
        ptr = lambda k: out[k].data_ptr() if k in out else 0
        with _cuda_launch(rho.device) as stream:
            kernels.pair_summaries(npairs, kmax, rho.data_ptr(), count.data_ptr(),
                                   weights.data_ptr() if weights is not None else 0,
                                   ptr("mean"), ptr("r2"), ptr("weighted"), stream)
        return out
    # correlation_summary / weighted_correlation of csrc/common/similarity_math.h
    mask = torch.arange(kmax, device=rho.device)[None, :] < count[:, None]
    c = torch.where(mask, rho.clamp(0.0, 1.0), 0.0)
    k = count.to(_F64).clamp_min(1.0)
    mean = torch.where(count > 0, c.sum(dim=1) / k, 0.0)
    out = {}
    if "mean" in want:
        out["mean"] = mean
    if "r2" in want:
        out["r2"] = torch.where(count > 0, (c * c).sum(dim=1) / k, 0.0)
    if "weighted" in want:
        w = torch.where(mask, weights, 0.0)
        den = w.sum(dim=1)
        num = (w * c).sum(dim=1)
        out["weighted"] = torch.where(den > 0.0, num / torch.where(den > 0.0, den, 1.0), mean)
    return out


def _cka_ratio(hxy, hxx, hyy):
    """``cka_ratio``: hxy / sqrt(hxx hyy) clamped to [-1, 1]; 0 unless both self-terms are > 0."""
    ok = (hxx > 0.0) & (hyy > 0.0)
    den = torch.where(ok, hxx.clamp_min(0.0).sqrt() * hyy.clamp_min(0.0).sqrt(), 1.0)
    return torch.where(ok, (hxy / den).clamp(-1.0, 1.0), 0.0)


def _debiased_hsic(cross_fro2, norm_products, trace_x, trace_y, n: float):
    """``debiased_hsic``: the unbiased HSIC numerator of linear kernels (similarity_math.h)."""
    return cross_fro2 - n / (n - 2.0) * norm_products + trace_x * trace_y / ((n - 1.0) * (n - 2.0))


@dataclass
class _CkaStats:
    """What linear CKA needs of M centered models on n samples (float64, one device)."""

    n: int
    fro2: "torch.Tensor"                   # (M, M) ||X_i^T X_j||_F^2
    trace: "torch.Tensor"                  # (M,) ||X_i||_F^2
    norm_products: "torch.Tensor | None"   # (M, M) sum_s |x_{i,s}|^2 |x_{j,s}|^2 (debiased)


def _cka_stats_from_gram(joint: _Joint) -> _CkaStats:
    """Block sums of the D x D joint Gram (the feature-space route)."""
    member = _membership(joint.offsets, joint.gram.device)
    return _CkaStats(n=joint.n, fro2=member.T @ (joint.gram * joint.gram) @ member,
                     trace=member.T @ torch.diagonal(joint.gram), norm_products=joint.norm_products)


def _use_sample_space(metrics: Sequence[str], n: int, widths: Sequence[int]) -> bool:
    """CKA alone through n x n sample Grams when M n^2 < D^2 (wide layers, few samples): the
    same choice as the host path (mmkern._similarity_host._pair_metrics)."""
    return set(metrics) <= {"cka", "cka_debiased"} and len(widths) * n * n < sum(widths) ** 2


def _cka_stats_from_samples(tensors: Sequence["torch.Tensor"], names: Sequence[str]) -> _CkaStats:
    """The sample-space route: K_i = Xc_i Xc_i^T (n x n), then ||X_i^T X_j||_F^2 = <K_i, K_j>,
    ||X_i||_F^2 = tr K_i and sum_s |x_{i,s}|^2 |x_{j,s}|^2 = diag(K_i) . diag(K_j)."""
    n = int(tensors[0].shape[0])
    mean = _column_means(tensors, names)
    floor = _variance_floor(mean, n)
    step = max(1, _CHUNK_BYTES // (8 * n))  # columns of Xc_i packed at a time
    grams, floors, offset = [], [], 0
    for t in tensors:
        d = int(t.shape[1])
        k = torch.zeros((n, n), dtype=_F64, device=t.device)
        for c0 in range(0, d, step):
            cols = t[:, c0 : c0 + step]
            z = _pack([cols], 0, n, mean[offset + c0 : offset + c0 + cols.shape[1]].contiguous())
            k.addmm_(z, z.T)
        grams.append(k)
        floors.append(floor[offset : offset + d].sum())
        offset += d
    flat = torch.stack(grams).reshape(len(grams), n * n)
    diag = torch.stack([torch.diagonal(k) for k in grams])  # (M, n)
    trace = diag.sum(dim=1)
    has_variance = (trace > torch.stack(floors)).tolist()
    for name, ok in zip(names, has_variance):
        if not ok:
            raise ValueError(f"{name} has no variance: every column is constant")
    return _CkaStats(n=n, fro2=flat @ flat.T, trace=trace, norm_products=diag @ diag.T)


def _cka(stats: _CkaStats, first: np.ndarray, second: np.ndarray, metrics: Sequence[str]) -> dict:
    device = stats.fro2.device
    fi = torch.as_tensor(first, dtype=torch.int64, device=device)
    se = torch.as_tensor(second, dtype=torch.int64, device=device)
    cross = stats.fro2[fi, se].contiguous()
    self_fro2 = torch.diagonal(stats.fro2).contiguous()
    trace = stats.trace.contiguous()
    want = [m for m in ("cka", "cka_debiased") if m in metrics]
    n = float(stats.n)
    kernels = _kernels_for(device)
    if kernels is not None:
        out = {m: torch.empty(len(first), dtype=_F64, device=device) for m in want}
        debiased = "cka_debiased" in out
        products = stats.norm_products.contiguous() if debiased else None
        with _cuda_launch(device) as stream:
            kernels.cka_from_norms(
                len(first), int(stats.fro2.shape[0]), n, fi.data_ptr(), se.data_ptr(),
                cross.data_ptr(), self_fro2.data_ptr(), trace.data_ptr() if debiased else 0,
                products.data_ptr() if debiased else 0,
                out["cka"].data_ptr() if "cka" in out else 0,
                out["cka_debiased"].data_ptr() if debiased else 0, stream)
        return out
    sxx, syy = self_fro2[fi], self_fro2[se]
    out = {}
    if "cka" in want:
        out["cka"] = _cka_ratio(cross, sxx, syy)
    if "cka_debiased" in want:
        npr = stats.norm_products
        ti, tj = trace[fi], trace[se]
        hxy = _debiased_hsic(cross, npr[fi, se], ti, tj, n)
        hxx = _debiased_hsic(sxx, npr[fi, fi], ti, ti, n)
        hyy = _debiased_hsic(syy, npr[se, se], tj, tj, n)
        out["cka_debiased"] = _cka_ratio(hxy, hxx, hyy)
    return out


def _cca_family(tensors: Sequence["torch.Tensor"], names: Sequence[str], joint: _Joint,
                first: np.ndarray, second: np.ndarray, metrics: Sequence[str],
                rtol: float, keep: float, keep_mode: int) -> dict:
    """SVCCA / CCA / PWCCA of the pairs by the projection route; "correlations" in ``metrics``
    also returns the canonical correlations of each pair, (P, max count) zero-padded."""
    device = joint.mean.device
    want_svcca = "svcca" in metrics
    want_pwcca = "pwcca" in metrics
    want_vectors = "correlations" in metrics
    want_full = want_pwcca or want_vectors or "cca_mean" in metrics or "cca_r2" in metrics
    fac = _factor(joint, rtol, keep, keep_mode)
    # All numerically non-zero directions for CCA / PWCCA, only the SVCCA ones otherwise.
    cols = fac.rank if want_full else fac.keep
    proj = _project(tensors, names, joint, [b[:, :c] for b, c in zip(fac.basis, cols)], want_pwcca)
    npairs = len(first)

    # Per-pair counts, decided on the host; a model against itself gets exactly 1 (as on the CPU).
    full_count = np.ones(npairs, np.int64)
    svcca_count = np.ones(npairs, np.int64)
    groups: dict[tuple, list[int]] = {}
    for p, (i, j) in enumerate(zip(first.tolist(), second.tolist())):
        if i == j:
            continue
        full_count[p] = min(fac.rank[i], fac.rank[j])
        svcca_count[p] = min(fac.keep[i], fac.keep[j])
        key = (cols[i], cols[j], fac.keep[i], fac.keep[j], joint.widths[i] if want_pwcca else 0)
        groups.setdefault(key, []).append(p)
    self_pairs = torch.as_tensor(np.flatnonzero(first == second), device=device)

    def padded(counts: np.ndarray) -> "torch.Tensor":
        rho = torch.zeros((npairs, int(counts.max(initial=1))), dtype=_F64, device=device)
        rho[self_pairs, 0] = 1.0
        return rho

    rho_full = padded(full_count) if want_full else None
    weights = padded(full_count) if want_pwcca else None
    rho_svcca = padded(svcca_count) if want_svcca else None

    for (ci, cj, ki, kj, di), pairs in groups.items():
        k = min(ci, cj)
        per_pair = 8 * (ci * ci + cj * cj + 3 * ci * cj + (ci * k + 2 * di * k if want_pwcca else 0))
        for chunk in _chunks(pairs, per_pair):
            firsts = [int(first[p]) for p in chunk]
            seconds = [int(second[p]) for p in chunk]
            idx = torch.as_tensor(chunk, device=device)
            w = _rewhitened_cross(proj, firsts, seconds)
            if want_svcca:
                # The SVCCA directions lead the variance-ordered bases, and re-whitening by a
                # triangular factor keeps them leading: the top-left k_i x k_j block.
                rho_svcca[idx, : min(ki, kj)] = torch.linalg.svdvals(w[:, :ki, :kj])
            if not want_full:
                continue
            if want_pwcca:
                u, s, _ = torch.linalg.svd(w, full_matrices=False)
                # <h_l, x_a> = (L_i' u_l)[a] for canonical variate h_l = Q_i u_l, with the
                # re-whitened loadings L_i' = Xc_i^T Q_i; weight_l = sum_a |.| (Morcos et al. 2018)
                h = torch.stack([proj.loadings[i] for i in firsts]) @ u
                weights[idx, :k] = h.abs().sum(dim=1)
            else:
                s = torch.linalg.svdvals(w)
            rho_full[idx, :k] = s

    out = {}
    if want_svcca:
        count = torch.as_tensor(svcca_count, device=device)
        out["svcca"] = _summaries(rho_svcca, count, None, ["mean"])["mean"]
    if want_vectors:
        out["correlations"] = rho_full.clamp(0.0, 1.0)
    want = [s for s, m in (("mean", "cca_mean"), ("r2", "cca_r2"), ("weighted", "pwcca")) if m in metrics]
    if want:
        summary = _summaries(rho_full, torch.as_tensor(full_count, device=device), weights, want)
        for s, m in (("mean", "cca_mean"), ("r2", "cca_r2"), ("weighted", "pwcca")):
            if s in summary:
                out[m] = summary[s]
    return out


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------


def _population(arrays: Sequence[Any], names: Sequence[str]) -> tuple[list, str]:
    if len(arrays) == 0:
        raise ValueError("no inputs given")
    if len(names) != len(arrays):
        raise ValueError(f"{len(names)} names for {len(arrays)} arrays")
    library = _library(arrays[0])
    tensors = [_as_tensor(a, nm) for a, nm in zip(arrays, names)]
    for t, nm in zip(tensors[1:], names[1:]):
        if t.device != tensors[0].device:
            raise ValueError(f"{nm} is on {t.device} but {names[0]} is on {tensors[0].device}; "
                             "move all inputs to one device")
        if t.shape[0] != tensors[0].shape[0]:
            raise ValueError(f"{nm} has {t.shape[0]} samples but {names[0]} has {tensors[0].shape[0]}; "
                             "all inputs must hold activations for the same samples (rows)")
    return tensors, library


def _pair_indices(first, second, m: int) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray(first, dtype=np.int64).ravel()
    second = np.asarray(second, dtype=np.int64).ravel()
    if first.shape != second.shape:
        raise ValueError(f"first and second differ in length ({first.size} and {second.size})")
    for idx, what in ((first, "first"), (second, "second")):
        if idx.size and (idx.min() < 0 or idx.max() >= m):
            raise ValueError(f"{what} holds a model index outside [0, {m})")
    return first, second


def pair_metrics(arrays: Sequence[Any], names: Sequence[str], first, second, metrics: Sequence[str], *,
                 rtol: float = RANK_RTOL, keep: float = 0.99, keep_mode: int = 0) -> dict:
    """Similarity metrics for pairs (first[p], second[p]) of device arrays.

    The GPU twin of ``mmkern._similarity_host._pair_metrics``: validated options in, the same values
    out (to rounding).

    Parameters
    ----------
    arrays : sequence of M torch tensors or CuPy arrays, shape (n, d_i), float32 or float64
        Activations of M models on the same n samples, all on one device (float16/bfloat16 are
        upcast to float32).
    names : sequence of M str
        Argument names for error messages.
    first, second : array_like of int, shape (P,)
        Model indices of each pair.
    metrics : sequence of str
        Among "svcca", "cca_mean", "cca_r2", "pwcca", "cka", "cka_debiased".
    rtol : float
        Relative variance below which a direction is numerically zero.
    keep : float
        SVCCA's fraction (keep_mode 0: of variance s^2; 1: of singular values s) or count
        (keep_mode 2).
    keep_mode : {0, 1, 2}

    Returns
    -------
    dict
        {metric: (P,) float64 tensor / CuPy array on the inputs' device}.

    Raises
    ------
    ValueError
        Naming the argument: NaN or infinity, no variance, mismatched samples or devices.
    TypeError
        Naming the argument: not a floating-point array.
    """
    metrics = list(metrics)
    for name in metrics:
        if name not in _METRICS:
            raise ValueError(f"unknown metric {name!r}; expected one of {_METRICS}")
    if keep_mode not in (0, 1, 2):
        raise ValueError(f"keep_mode must be 0, 1 or 2, got {keep_mode}")
    tensors, library = _population(arrays, names)
    first, second = _pair_indices(first, second, len(tensors))
    debiased = "cka_debiased" in metrics
    if debiased and tensors[0].shape[0] < 4:
        raise ValueError(f"debiased CKA needs at least 4 samples, got n_samples={tensors[0].shape[0]}")
    out: dict = {}
    if _use_sample_space(metrics, int(tensors[0].shape[0]), [int(t.shape[1]) for t in tensors]):
        out.update(_cka(_cka_stats_from_samples(tensors, names), first, second, metrics))
        return {m: _from_tensor(out[m], library) for m in metrics}
    cka = "cka" in metrics or debiased
    joint = _joint(tensors, names, full=cka, norm_products=debiased)
    if cka:
        out.update(_cka(_cka_stats_from_gram(joint), first, second, metrics))
    if any(m in _CCA_FAMILY for m in metrics):
        out.update(_cca_family(tensors, names, joint, first, second, metrics, float(rtol), float(keep),
                               int(keep_mode)))
    return {m: _from_tensor(out[m], library) for m in metrics}


def correlations(x: Any, y: Any, *, rtol: float = RANK_RTOL) -> Any:
    """All canonical correlations of (x, y), descending, clamped to [0, 1].

    Parameters
    ----------
    x, y : torch tensor or CuPy array, shape (n, d1) and (n, d2), float32 or float64
        On one device.
    rtol : float
        Relative variance below which a direction is numerically zero.

    Returns
    -------
    (min(rank x, rank y),) float64 tensor / CuPy array on the inputs' device.
    """
    tensors, library = _population([x, y], ["x", "y"])
    joint = _joint(tensors, ["x", "y"], full=False, norm_products=False)
    out = _cca_family(tensors, ["x", "y"], joint, np.array([0]), np.array([1]), ["correlations"],
                      float(rtol), 1.0, 0)
    return _from_tensor(out["correlations"][0], library)
