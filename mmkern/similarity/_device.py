"""The device route of the similarity metrics: the host algorithm in torch, on the inputs' device.

Torch CUDA tensors and CuPy arrays (viewed as torch tensors through DLPack, no copy) come here;
so do torch CPU tensors under :func:`mmkern._backend.torch_route` (how the tests exercise this
module without a GPU). Same definitions and the same algorithm as the host route
(``csrc/gram.h``, ``csrc/similarity.h``), all in float64, and the same rules, imported from
:mod:`mmkern.similarity._checks` and ``mmkern._C`` rather than copied:

1. each input's largest magnitude (one synchronisation: the finiteness check, and the exact
   power-of-two rescaling of inputs of extreme magnitude, ``_checks.magnitude_exponent``), then
   exact column means;
2. the first pass: the stacked inputs minus their means are packed into float64 row chunks
   (``_C_cuda.pack_rows``; ``torch.cat`` otherwise) and multiplied into Gram blocks. Only the
   blocks the metrics need are formed: each model's own block for the CCA family and, for CKA,
   the cross blocks of the requested pairs, tile by tile (consecutive models grouped into tiles
   of at most ``_TILE_COLUMNS`` columns; only tile pairs s <= t that hold a requested pair are
   multiplied, a SYRK-like half of the full product, and the squared block norms are summed per
   tile pair, so no second D x D buffer exists). With debiased CKA also the products of
   per-sample squared row norms;
3. the variance check (:func:`~mmkern.similarity._checks.check_variance`, one synchronisation);
4. the CCA family by the projection route: per model an eigendecomposition of its block
   (``torch.linalg.eigh`` batched over models of equal width); ranks and SVCCA counts by
   ``_C.factor_counts`` on one host copy of all eigenvalues (the shapes depend on them); a
   second pass accumulates the projected Gram blocks of U_i = Xc_i B_i, every model padded to
   the largest kept rank (one GEMM over all models when the pairs cover most blocks, batched
   per-pair products otherwise, e.g. for a (b, n, d) batch); CholeskyQR2 re-whitening batched
   over all models (padding blocks are the identity), the re-whitened cross products
   W_ij = R_i^-T P_ij R_j^-1 batched over chunks of pairs, their singular values by one batched
   ``svdvals`` per chunk (padding adds exact zeros); PWCCA's singular vectors per group of
   equal shapes;
5. linear CKA from the block norms, or (when M n^2 < D^2 and CKA alone is asked for) from the
   n x n sample Grams;
6. the per-pair tails (correlation summaries, CKA ratios) by ``mmkern._C_cuda`` where it can run
   (:func:`mmkern._cuda.kernels_for`), else by its host twin in ``mmkern._C`` on the small
   per-pair arrays.

Results are float64 on the inputs' device; matrices are filled there (:func:`matrix`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mmkern._cuda import require_torch

torch = require_torch()

from mmkern import _C  # noqa: E402
from mmkern._backend import as_torch, device_result  # noqa: E402
from mmkern._cuda import CHUNK_BYTES, cuda_launch, dtype_code, items_per_step, kernels_for  # noqa: E402
from mmkern._dtypes import float_tensor  # noqa: E402
from mmkern.similarity import _checks  # noqa: E402

_F64 = torch.float64
#: Bytes of float64 scratch per step: the packed row chunk of a pass, the per-pair matrices of
#: the pair step (a module attribute, so tests can shrink it).
_CHUNK_BYTES = CHUNK_BYTES
#: Widest tile of consecutive models in CKA's cross products (columns).
_TILE_COLUMNS = 2048


# ---------------------------------------------------------------------------------------------
# array kinds
# ---------------------------------------------------------------------------------------------


def prepare(a: Any, name: str, ndims: tuple[int, ...] = (2,)) -> "torch.Tensor":
    """A float32/float64 torch view of a torch tensor or CuPy array (no copy), validated for
    shape, with the dtype policy of :mod:`mmkern._dtypes`."""
    t = float_tensor(as_torch(a, name), name)
    _checks.shape_check(t, name, ndims)
    return t


result = device_result  # the inputs' array kind (CuPy results share memory through DLPack)


def _steps(total: int, bytes_per_item: int) -> int:
    return items_per_step(total, bytes_per_item, _CHUNK_BYTES)


def _index(values, device) -> "torch.Tensor":
    return torch.as_tensor(np.ascontiguousarray(values, dtype=np.int64), device=device)


# ---------------------------------------------------------------------------------------------
# the first pass: column means, Gram blocks, CKA statistics
# ---------------------------------------------------------------------------------------------


def _pack(tensors: Sequence["torch.Tensor"], row_begin: int, rows: int, mean: "torch.Tensor") -> "torch.Tensor":
    """Rows [row_begin, row_begin + rows) of the stacked inputs minus ``mean``: (rows, D) float64."""
    kernels = kernels_for(mean.device)
    if kernels is None:
        return torch.cat([t[row_begin : row_begin + rows].to(_F64) for t in tensors], dim=1) - mean
    # Column-major (rows x D) with leading dimension `rows`: a row-major (D, rows) buffer.
    buf = torch.empty((mean.shape[0], rows), dtype=_F64, device=mean.device)
    views = [(t.data_ptr(), t.shape[0], t.shape[1], t.stride(0), t.stride(1), dtype_code(t.dtype))
             for t in tensors]
    with cuda_launch(mean.device) as stream:
        kernels.pack_rows(views, row_begin, rows, mean.data_ptr(), buf.data_ptr(), rows, stream)
    return buf.T


def column_means(tensors: Sequence["torch.Tensor"], names: Sequence[str]):
    """The twin of :func:`mmkern.similarity._host.column_means`: ``ValueError`` naming the first
    non-finite input, inputs of extreme magnitude replaced by exactly rescaled float64 copies;
    returns (tensors, concatenated float64 column means (D,), exponents)."""
    inf = float("inf")
    max_abs = torch.stack([torch.linalg.vector_norm(t, ord=inf).to(_F64) for t in tensors]).tolist()  # one sync
    for v, name in zip(max_abs, names):
        if not np.isfinite(v):  # the max-norm propagates NaN
            raise ValueError(f"{name} contains NaN or infinity")
    exponents = [_checks.magnitude_exponent(v) for v in max_abs]
    tensors = [t if e == 0 else _checks.rescale(t.to(_F64, copy=True), e) for t, e in zip(tensors, exponents)]
    sums = [torch.sum(t, dim=0, dtype=_F64) for t in tensors]
    return tensors, torch.cat(sums) / tensors[0].shape[0], exponents


def _floor_sums(mean: "torch.Tensor", n: int, offsets: Sequence[int]) -> "torch.Tensor":
    floors = _checks.variance_floors(mean.abs(), n)
    return torch.stack([floors[a:b].sum() for a, b in zip(offsets, offsets[1:])])


def _check_variance(traces: "torch.Tensor", mean: "torch.Tensor", n: int, offsets, names) -> None:
    totals, floors = torch.stack([traces, _floor_sums(mean, n, offsets)]).tolist()  # one synchronisation
    _checks.check_variance(totals, floors, names)


def _dense(m: int, pairs: int) -> bool:
    """Whether the blocks of ``pairs`` pairs among ``m`` models are best formed by one product of
    all models (when they cover most of the m x m blocks) rather than per pair."""
    return m * m <= 2 * (m + pairs)


def _tiles(widths: Sequence[int], group: bool) -> list[list[int]]:
    """Consecutive models grouped into tiles of at most _TILE_COLUMNS columns (one model per tile
    when ``group`` is False, or when a model alone is wider)."""
    tiles: list[list[int]] = []
    width = 0
    for i, d in enumerate(widths):
        if tiles and group and width + d <= _TILE_COLUMNS:
            tiles[-1].append(i)
            width += d
        else:
            tiles.append([i])
            width = d
    return tiles


@dataclass
class _Joint:
    """Centered first-pass statistics of M models on n samples (float64, one device)."""

    n: int
    widths: list[int]
    offsets: list[int]
    mean: "torch.Tensor"                   # (D,) column means
    blocks: list["torch.Tensor"]           # M centered diagonal blocks X_i^T X_i, (d_i, d_i)
    fro2: "torch.Tensor | None"            # (M, M) ||X_i^T X_j||_F^2 of the requested pairs (CKA)
    trace: "torch.Tensor"                  # (M,) ||X_i||_F^2
    norm_products: "torch.Tensor | None"   # (M, M) sum_s |x_{i,s}|^2 |x_{j,s}|^2, centered rows


def _first_pass(tensors, names, mean, pairs: tuple[np.ndarray, np.ndarray] | None, norm_products: bool) -> _Joint:
    """Each model's Gram block and, with ``pairs`` (CKA), the squared norms of the pairs' cross
    blocks; with ``norm_products`` debiased CKA's products of squared row norms."""
    device = mean.device
    n = int(tensors[0].shape[0])
    widths = [int(t.shape[1]) for t in tensors]
    offsets = [0, *np.cumsum(widths).tolist()]
    m = len(widths)
    cross = pairs is not None
    tiles = _tiles(widths, group=cross and _dense(m, len(pairs[0])))
    tile_of = {i: s for s, tile in enumerate(tiles) for i in tile}
    span = [(offsets[tile[0]], offsets[tile[-1] + 1]) for tile in tiles]
    needed = {(s, s) for s in range(len(tiles))}
    if cross:
        for i, j in zip(pairs[0].tolist(), pairs[1].tolist()):
            s, t = sorted((tile_of[i], tile_of[j]))
            needed.add((s, t))
    needed = sorted(needed)
    bufs = {(s, t): torch.zeros((span[s][1] - span[s][0], span[t][1] - span[t][0]), dtype=_F64, device=device)
            for s, t in needed}
    products = torch.zeros((m, m), dtype=_F64, device=device) if norm_products else None
    member = _membership(offsets, device) if norm_products or cross else None
    chunk = max(64, _CHUNK_BYTES // (8 * max(1, offsets[-1])))
    for r0 in range(0, n, chunk):
        rows = min(chunk, n - r0)
        z = _pack(tensors, r0, rows, mean)
        for (s, t), buf in bufs.items():
            buf.addmm_(z[:, span[s][0] : span[s][1]].T, z[:, span[t][0] : span[t][1]])
        if products is not None:
            q = (z * z) @ member  # (rows, M): squared norm of each sample's centered activations
            products.addmm_(q.T, q)

    blocks = []
    for i, d in enumerate(widths):
        s = tile_of[i]
        a = offsets[i] - span[s][0]
        blocks.append(bufs[(s, s)][a : a + d, a : a + d])
    trace = torch.stack([torch.diagonal(b).sum() for b in blocks])
    fro2 = None
    if cross:
        fro2 = torch.zeros((m, m), dtype=_F64, device=device)
        for (s, t), buf in bufs.items():
            ms, mt = tiles[s], tiles[t]
            rows_s = member[span[s][0] : span[s][1], ms[0] : ms[-1] + 1]
            cols_t = member[span[t][0] : span[t][1], mt[0] : mt[-1] + 1]
            block = rows_s.T @ (buf * buf) @ cols_t  # block sums over one tile pair
            fro2[ms[0] : ms[-1] + 1, mt[0] : mt[-1] + 1] = block
            fro2[mt[0] : mt[-1] + 1, ms[0] : ms[-1] + 1] = block.T
    _check_variance(trace, mean, n, offsets, names)
    return _Joint(n=n, widths=widths, offsets=offsets, mean=mean, blocks=blocks, fro2=fro2, trace=trace,
                  norm_products=products)


def _membership(offsets: Sequence[int], device) -> "torch.Tensor":
    m = len(offsets) - 1
    s = torch.zeros((offsets[-1], m), dtype=_F64, device=device)
    for i in range(m):
        s[offsets[i] : offsets[i + 1], i] = 1.0
    return s


# ---------------------------------------------------------------------------------------------
# factors and the projection route
# ---------------------------------------------------------------------------------------------


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
        step = _steps(len(models), 8 * 3 * d * d)
        for g0 in range(0, len(models), step):
            group = models[g0 : g0 + step]
            w, v = torch.linalg.eigh(torch.stack([joint.blocks[i] for i in group]))
            w, v = w.flip(-1), v.flip(-1)  # descending eigenvalues, matching eigenvector columns
            for k, i in enumerate(group):
                evals[i], vecs[i] = w[k], v[k]
    # One host copy of all eigenvalues: the ranks decide the shapes of everything after.
    host = np.ascontiguousarray(torch.cat(evals).cpu().numpy())
    ranks, keeps = _C.factor_counts(host, joint.offsets, rtol, keep, keep_mode)
    ranks, keeps = ranks.tolist(), keeps.tolist()
    bases = [vecs[i][:, :r] / evals[i][:r].sqrt() for i, r in enumerate(ranks)]
    return _Factors(rank=ranks, keep=keeps, basis=bases)


@dataclass
class _Projection:
    """Projected Gram blocks of U_i = Xc_i B_i (c_i columns each), padded to ``cmax``."""

    cmax: int
    chol: "torch.Tensor"                    # (M, cmax, cmax) lower L_i, P_ii = L_i L_i^T (identity padding)
    cross: "Any"                            # callable (pair positions) -> (p, cmax, cmax) P_ij
    loadings: dict                          # model -> (d_i, c_i) re-whitened Xc_i^T Q_i (PWCCA)


def _project(tensors, names, joint: _Joint, bases, first, second, loadings_for: set) -> _Projection:
    """The second pass (``projected_gram_update``): Gram blocks of the projected data for the
    models and the cross pairs (first[p], second[p]) (i != j), then every model's Cholesky factor
    (one batched call; RuntimeError naming the first model whose block is not positive definite,
    as on the host) and the re-whitened PWCCA loadings."""
    device = joint.mean.device
    m = len(bases)
    cols = [int(b.shape[1]) for b in bases]
    cmax = max(max(cols), 1)
    npairs = len(first)
    dense = _dense(m, npairs)
    if dense:
        gram = torch.zeros((m * cmax, m * cmax), dtype=_F64, device=device)
    else:
        diag = torch.zeros((m, cmax, cmax), dtype=_F64, device=device)
        pair_blocks = torch.zeros((npairs, cmax, cmax), dtype=_F64, device=device)
        fi, se = _index(first, device), _index(second, device)
    loads = {i: torch.zeros((joint.widths[i], cols[i]), dtype=_F64, device=device) for i in sorted(loadings_for)}
    per_row = 8 * (joint.offsets[-1] + m * cmax + (0 if dense else 2 * npairs * cmax))
    chunk = max(1, _CHUNK_BYTES // per_row)
    for r0 in range(0, joint.n, chunk):
        rows = min(chunk, joint.n - r0)
        z = _pack(tensors, r0, rows, joint.mean)
        u = torch.zeros((rows, m, cmax), dtype=_F64, device=device)
        for i, (o, d) in enumerate(zip(joint.offsets, joint.widths)):
            u[:, i, : cols[i]] = z[:, o : o + d] @ bases[i]
            if i in loads:
                loads[i].addmm_(z[:, o : o + d].T, u[:, i, : cols[i]])
        if dense:
            flat = u.reshape(rows, m * cmax)
            gram.addmm_(flat.T, flat)
        else:
            ut = u.permute(1, 2, 0)  # (M, cmax, rows)
            diag.baddbmm_(ut, ut.mT)
            pair_blocks.baddbmm_(ut[fi], ut[se].mT)

    if dense:
        blocks4 = gram.view(m, cmax, m, cmax).permute(0, 2, 1, 3)  # [i, j] -> P_ij (cmax, cmax)
        diag = blocks4[torch.arange(m, device=device), torch.arange(m, device=device)].clone()
        fi, se = _index(first, device), _index(second, device)
        cross = lambda pos: blocks4[fi[pos], se[pos]]  # noqa: E731
    else:
        cross = lambda pos: pair_blocks[pos]  # noqa: E731
    padding = torch.arange(cmax, device=device)[None, :] >= torch.as_tensor(cols, device=device)[:, None]
    diag += torch.diag_embed(padding.to(_F64))  # identity on the padding: L_i = diag(L_i, I)
    chol = torch.empty_like(diag)
    infos = []
    step = _steps(m, 8 * 2 * cmax * cmax)
    for g0 in range(0, m, step):
        low, info = torch.linalg.cholesky_ex(diag[g0 : g0 + step])
        chol[g0 : g0 + step] = low
        infos.append(info)
    failed = torch.cat(infos).ne(0).tolist()  # one synchronisation for all models
    if any(failed):
        raise RuntimeError(f"{names[failed.index(True)]}: projected directions are not numerically independent")
    # Xc_i^T (U_i R_i^-1): solve A R_i = Xc_i^T U_i for A, with R_i = L_i^T upper triangular.
    rewhitened = {i: torch.linalg.solve_triangular(chol[i, : cols[i], : cols[i]].mT, a, upper=True, left=False)
                  for i, a in loads.items()}
    return _Projection(cmax=cmax, chol=chol, cross=cross, loadings=rewhitened)


def _summaries(rho: "torch.Tensor", count: "torch.Tensor", weights: "torch.Tensor | None",
               want: Sequence[str]) -> dict:
    """{"mean", "r2", "weighted"} (those in ``want``) of rows rho[p, :count[p]] (P, kmax): the
    ``pair_summaries`` kernel, or its host twin in ``mmkern._C``."""
    npairs, kmax = rho.shape
    kernels = kernels_for(rho.device)
    if kernels is None:
        host = _C.pair_summaries(_numpy(rho), _numpy(count), None if weights is None else _numpy(weights),
                                 mean="mean" in want, r2="r2" in want, weighted="weighted" in want)
        return {k: torch.from_numpy(v).to(rho.device) for k, v in host.items()}
    out = {k: torch.empty(npairs, dtype=_F64, device=rho.device) for k in want}
    ptr = lambda k: out[k].data_ptr() if k in out else 0  # noqa: E731
    with cuda_launch(rho.device) as stream:
        kernels.pair_summaries(npairs, kmax, rho.data_ptr(), count.data_ptr(),
                               weights.data_ptr() if weights is not None else 0,
                               ptr("mean"), ptr("r2"), ptr("weighted"), stream)
    return out


def _numpy(t: "torch.Tensor") -> np.ndarray:
    """A C-contiguous NumPy array of a tensor (a view for contiguous CPU tensors)."""
    return np.ascontiguousarray(t.detach().cpu().numpy())


def _cca_family(tensors, names, joint: _Joint, first: np.ndarray, second: np.ndarray, metrics,
                rtol: float, keep: float, keep_mode: int) -> dict:
    """SVCCA / CCA / PWCCA of the pairs by the projection route; "correlations" in ``metrics``
    also returns the canonical correlations of each pair (a list of P tensors)."""
    device = joint.mean.device
    want_svcca = "svcca" in metrics
    want_pwcca = "pwcca" in metrics
    want_full = want_pwcca or "correlations" in metrics or "cca_mean" in metrics or "cca_r2" in metrics
    fac = _factor(joint, rtol, keep, keep_mode)
    # All numerically non-zero directions for CCA / PWCCA, only the SVCCA ones otherwise.
    cols = fac.rank if want_full else fac.keep
    others = np.flatnonzero(first != second)  # pair positions of distinct models
    proj = _project(tensors, names, joint, [b[:, :c] for b, c in zip(fac.basis, cols)], first[others],
                    second[others], set(first[others].tolist()) if want_pwcca else set())

    rank, kept = np.asarray(fac.rank), np.asarray(fac.keep)
    npairs = len(first)
    # A model against itself: one correlation of exactly 1 (as on the host).
    full_count = np.where(first == second, 1, np.minimum(rank[first], rank[second]))
    svcca_count = np.where(first == second, 1, np.minimum(kept[first], kept[second]))
    self_pairs = _index(np.flatnonzero(first == second), device)

    def padded(counts: np.ndarray) -> "torch.Tensor":
        rho = torch.zeros((npairs, int(counts.max(initial=1))), dtype=_F64, device=device)
        rho[self_pairs, 0] = 1.0
        return rho

    rho_full = padded(full_count) if want_full else None
    weights = padded(full_count) if want_pwcca else None
    rho_svcca = padded(svcca_count) if want_svcca else None
    keepv = torch.as_tensor(fac.keep, device=device)
    arange = torch.arange(proj.cmax, device=device)
    step = _steps(len(others), 8 * 4 * proj.cmax * proj.cmax)
    for s0 in range(0, len(others), step):
        pos = np.arange(s0, min(s0 + step, len(others)))
        at = _index(others[pos], device)  # rows of the outputs
        fi, se = _index(first[others[pos]], device), _index(second[others[pos]], device)
        # W = L_i^-1 P_ij L_j^-T: zero outside the leading c_i x c_j block (identity padding).
        a = torch.linalg.solve_triangular(proj.chol[fi], proj.cross(_index(pos, device)), upper=False)
        w = torch.linalg.solve_triangular(proj.chol[se].mT, a, upper=True, left=False)
        if want_svcca:
            # The SVCCA directions lead the variance-ordered bases, and re-whitening by a
            # triangular factor keeps them leading: the top-left k_i x k_j block (masking the
            # rest adds only exact zero singular values).
            ws = w
            if want_full:
                rows_in = arange[None, :] < keepv[fi][:, None]
                cols_in = arange[None, :] < keepv[se][:, None]
                ws = w * (rows_in[:, :, None] & cols_in[:, None, :])
            k = rho_svcca.shape[1]
            rho_svcca[at] = torch.linalg.svdvals(ws)[:, :k]
        if not want_full:
            continue
        k = rho_full.shape[1]
        if not want_pwcca:
            rho_full[at] = torch.linalg.svdvals(w)[:, :k]
            continue
        # PWCCA needs the singular vectors: per group of equal shapes, on the unpadded blocks.
        firsts = first[others[pos]]
        shapes = np.stack([np.asarray(cols)[firsts], np.asarray(cols)[second[others[pos]]],
                           np.asarray(joint.widths)[firsts]], axis=1)
        for ci, cj, di in {tuple(sh) for sh in shapes.tolist()}:
            g = np.flatnonzero((shapes == (ci, cj, di)).all(axis=1))
            gi = _index(g, device)
            u, sv, _ = torch.linalg.svd(w[gi, :ci, :cj], full_matrices=False)
            kk = min(ci, cj)
            rho_full[at[gi], :kk] = sv
            # <h_l, x_a> = (L_i' u_l)[a] for canonical variate h_l = Q_i u_l, with the re-whitened
            # loadings L_i' = Xc_i^T Q_i; weight_l = sum_a |.| (Morcos et al. 2018)
            h = torch.stack([proj.loadings[int(i)] for i in firsts[g]]) @ u
            weights[at[gi], :kk] = h.abs().sum(dim=1)

    out = {}
    if want_svcca:
        out["svcca"] = _summaries(rho_svcca, _index(svcca_count, device), None, ["mean"])["mean"]
    if "correlations" in metrics:
        clamped = rho_full.clamp(0.0, 1.0)
        out["correlations"] = [clamped[p, : int(c)] for p, c in enumerate(full_count)]
    pick = [(s, m) for s, m in (("mean", "cca_mean"), ("r2", "cca_r2"), ("weighted", "pwcca")) if m in metrics]
    if pick:
        summary = _summaries(rho_full, _index(full_count, device), weights, [s for s, _ in pick])
        out.update({m: summary[s] for s, m in pick})
    return out


# ---------------------------------------------------------------------------------------------
# linear CKA
# ---------------------------------------------------------------------------------------------


def _cka(fro2, trace, norm_products, n: int, first: np.ndarray, second: np.ndarray, metrics) -> dict:
    """CKA of the pairs from (M, M) ||X_i^T X_j||_F^2, (M,) traces and the norm products: the
    ``cka_from_norms`` kernel, or its host twin in ``mmkern._C``."""
    device = fro2.device
    fi, se = _index(first, device), _index(second, device)
    cross = fro2[fi, se].contiguous()
    self_fro2 = torch.diagonal(fro2).contiguous()
    debiased = "cka_debiased" in metrics
    kernels = kernels_for(device)
    if kernels is None:
        host = _C.cka_from_norms(np.ascontiguousarray(first, np.int64), np.ascontiguousarray(second, np.int64),
                                 _numpy(cross), _numpy(self_fro2), float(n),
                                 _numpy(trace) if debiased else None, _numpy(norm_products) if debiased else None,
                                 biased="cka" in metrics, debiased=debiased)
        return {k: torch.from_numpy(v).to(device) for k, v in host.items()}
    out = {k: torch.empty(len(first), dtype=_F64, device=device) for k in ("cka", "cka_debiased") if k in metrics}
    trace = trace.contiguous()
    products = norm_products.contiguous() if debiased else None
    with cuda_launch(device) as stream:
        kernels.cka_from_norms(
            len(first), int(fro2.shape[0]), float(n), fi.data_ptr(), se.data_ptr(), cross.data_ptr(),
            self_fro2.data_ptr(), trace.data_ptr() if debiased else 0, products.data_ptr() if debiased else 0,
            out["cka"].data_ptr() if "cka" in out else 0, out["cka_debiased"].data_ptr() if debiased else 0,
            stream)
    return out


def _sample_space_cka(tensors, names, mean, first, second, metrics) -> dict:
    """The sample-space route: K_i = Xc_i Xc_i^T (n x n), then ||X_i^T X_j||_F^2 = <K_i, K_j>,
    ||X_i||_F^2 = tr K_i and sum_s |x_{i,s}|^2 |x_{j,s}|^2 = diag(K_i) . diag(K_j)."""
    n = int(tensors[0].shape[0])
    step = max(1, _CHUNK_BYTES // (8 * n))  # columns of Xc_i packed at a time
    grams, offset = [], 0
    for t in tensors:
        d = int(t.shape[1])
        k = torch.zeros((n, n), dtype=_F64, device=t.device)
        for c0 in range(0, d, step):
            block = t[:, c0 : c0 + step]
            z = _pack([block], 0, n, mean[offset + c0 : offset + c0 + block.shape[1]].contiguous())
            k.addmm_(z, z.T)
        grams.append(k)
        offset += d
    flat = torch.stack(grams).reshape(len(grams), n * n)
    diag = torch.stack([torch.diagonal(k) for k in grams])  # (M, n)
    trace = diag.sum(dim=1)
    offsets = [0, *np.cumsum([int(t.shape[1]) for t in tensors]).tolist()]
    _check_variance(trace, mean, n, offsets, names)
    return _cka(flat @ flat.T, trace, diag @ diag.T, n, first, second, metrics)


# ---------------------------------------------------------------------------------------------
# entry points (the same as mmkern.similarity._host's)
# ---------------------------------------------------------------------------------------------


def pair_metrics(tensors, names, first, second, metrics, *, rtol: float = _checks.RANK_RTOL,
                 keep: float = 0.99, keep_mode: int = 0) -> dict:
    """{metric: (P,) float64 tensor on the inputs' device} for the pairs (first[p], second[p]) of
    validated tensors ("correlations": a list of each pair's canonical correlations).

    The device twin of :func:`mmkern.similarity._host.pair_metrics`: validated inputs and options
    in, the same values out (to rounding).
    """
    metrics = list(metrics)
    first = np.ascontiguousarray(first, np.int64)
    second = np.ascontiguousarray(second, np.int64)
    tensors, mean, _ = column_means(tensors, names)
    n = int(tensors[0].shape[0])
    if _checks.use_sample_space(metrics, n, [int(t.shape[1]) for t in tensors]):
        return _sample_space_cka(tensors, names, mean, first, second, metrics)
    cka = [m for m in metrics if m in ("cka", "cka_debiased")]
    joint = _first_pass(tensors, names, mean, (first, second) if cka else None, "cka_debiased" in metrics)
    out: dict = {}
    if cka:
        out.update(_cka(joint.fro2, joint.trace, joint.norm_products, n, first, second, cka))
    if any(m in _checks.CCA_FAMILY for m in metrics):
        out.update(_cca_family(tensors, names, joint, first, second, metrics, float(rtol), float(keep),
                               int(keep_mode)))
    return {m: out[m] for m in metrics}


def batch_metric(xs: "torch.Tensor", ys: "torch.Tensor", metric: str, kwargs: dict) -> "torch.Tensor":
    """(b,) float64 on the device: ``metric`` of each (xs[b], ys[b]) of two (b, n, d) tensors, in
    one call (the 2b slices as one population, the b pairs (i, b + i))."""
    b = xs.shape[0]
    arrays = [xs[i] for i in range(b)] + [ys[i] for i in range(b)]
    names = ["x"] * b + ["y"] * b  # as the host route names each element's pair
    pairs = np.arange(b)
    return pair_metrics(arrays, names, pairs, pairs + b, [metric], **kwargs)[metric]


def matrix(shape, rows, cols, values: "torch.Tensor", symmetric: bool) -> "torch.Tensor":
    """The float64 matrix with values at (rows, cols), mirrored when ``symmetric``, on the values'
    device."""
    out = torch.empty(shape, dtype=_F64, device=values.device)
    r, c = _index(rows, values.device), _index(cols, values.device)
    out[r, c] = values
    if symmetric:
        out[c, r] = values
    return out
