"""The streaming :class:`SimilarityAccumulator`: pairwise similarity over batches of samples.

It holds the joint Gram statistics of the host route (:class:`mmkern.similarity._host.GramStats`)
and whitens through the joint Gram alone, since it sees the data once (error ~eps * cond(X)^2,
about 1e-12 on typical activations).
"""

from __future__ import annotations

import hashlib
import numbers
import os
from typing import Any, Sequence

import numpy as np

from mmkern._backend import kind_of, to_host
from mmkern._dtypes import float_array
from mmkern._io import atomic_write, read_npz
from mmkern.similarity._checks import OPTS_DEFAULT, RANK_RTOL, check_same_n, metric_args, square_pairs
from mmkern.similarity._host import GramStats, column_means, factors, matrix


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
        self._stats: GramStats | None = None
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
        check_same_n(arrays, names)
        if arrays[0].shape[0] == 0:
            return self
        widths = [a.shape[1] for a in arrays]
        if 0 in widths:
            raise ValueError(f"{names[widths.index(0)]} has no features")
        first_batch = self._stats is None
        if first_batch:  # the shift and the scale: this batch's (their computation validates it)
            arrays, shift, exponents = column_means(arrays, names)
            self._stats = GramStats(widths, shift, moments=True, exponents=exponents)
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
        name, kwargs = metric_args(metric, n, stats.widths, self._names(), **{**OPTS_DEFAULT, **opts})
        gram, norm_products = self._centered()
        m, symmetric = self.n_models, name != "pwcca"
        first, second = square_pairs(m, symmetric)
        values = factors(gram, stats, [name], **kwargs).pairs(first, second, [name], norm_products)[name]
        return matrix((m, m), first, second, values, symmetric)

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
        return self._matrix("cka", debiased=debiased)

    # -- combining accumulators of disjoint samples ---------------------------------------------

    def merge(self, other: "SimilarityAccumulator") -> "SimilarityAccumulator":
        """A new accumulator holding the samples of both (neither is changed).

        Exact up to float64 rounding: ``other``'s statistics are rebased onto this one's shift
        and scale (the algebra of :func:`_rebased`) and added, so accumulators fed disjoint shards
        of the rows (e.g. on the workers of a cluster, reduced as a tree) give the matrices of one
        accumulator fed every row.

        Raises
        ------
        TypeError
            ``other`` is not a SimilarityAccumulator.
        ValueError
            Different numbers of models or widths.
        """
        if not isinstance(other, SimilarityAccumulator):
            raise TypeError(f"other must be a SimilarityAccumulator, got {type(other).__name__}")
        if other.n_models != self.n_models:
            raise ValueError(f"other holds {other.n_models} models, this accumulator {self.n_models}")
        out = SimilarityAccumulator(self.n_models)
        if self._stats is None or other._stats is None:
            source = self._stats if other._stats is None else other._stats
            out._stats = None if source is None else _copy_stats(source)
            return out
        a, b = self._stats, other._stats
        if a.widths != b.widths:
            raise ValueError(f"other's widths {b.widths} differ from this accumulator's {a.widths}")
        merged = _copy_stats(a)
        gram, colsum, (row_moments, norm_products, norm_sums) = _rebased(b, a)
        merged.gram += gram
        merged.colsum += colsum
        for dst, add in zip(merged.moments, (row_moments, norm_products, norm_sums)):
            dst += add
        merged.n += b.n
        out._stats = merged
        return out

    # -- persistence: resume a long streaming job ---------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the state to ``path`` (``.npz``) atomically, with a SHA-256 checksum of every
        field: a crash never leaves a torn file, and :meth:`load` detects a damaged one."""
        path = os.fspath(path)
        state = {"format": np.array(_FORMAT), "n_models": np.array(self.n_models, dtype=np.int64)}
        if self._stats is not None:
            s = self._stats
            state.update(widths=np.array(s.widths, dtype=np.int64), n=np.array(s.n, dtype=np.int64),
                         exponents=np.array(s.exponents, dtype=np.int64), shift=s.shift, gram=s.gram,
                         colsum=s.colsum, row_moments=s.moments[0], norm_products=s.moments[1],
                         norm_sums=s.moments[2])
        state["checksum"] = np.array(_checksum(state))
        atomic_write(path, lambda f: np.savez(f, **state))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SimilarityAccumulator":
        """Restore an accumulator written by :meth:`save`.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            Naming the file: not an ``.npz`` written by :meth:`save` (empty, truncated, another
            format), a checksum that does not match (a damaged or edited file), or fields whose
            shapes or values are inconsistent.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"accumulator state {path!r} does not exist")
        state = read_npz(path, "file of SimilarityAccumulator state")
        try:
            return cls._from_state(state)
        except ValueError as e:
            raise ValueError(f"{path} is not a valid SimilarityAccumulator state: {e}") from None

    @classmethod
    def _from_state(cls, state: dict) -> "SimilarityAccumulator":
        if "format" not in state or state["format"].shape != () or str(state["format"]) != _FORMAT:
            raise ValueError(f"no format field {_FORMAT!r} (not written by SimilarityAccumulator.save)")
        stored = state.pop("checksum", None)
        if stored is None or stored.shape != () or str(stored) != _checksum(state):
            raise ValueError("its checksum does not match its contents (the file is damaged or was edited)")
        m = _scalar_int(state, "n_models", 1)
        acc = cls(m)
        fields = set(state) - {"format", "n_models"}
        if not fields:
            return acc
        if fields != set(_STATS_FIELDS):
            raise ValueError(f"fields {sorted(fields)} are not the expected {sorted(_STATS_FIELDS)}")
        widths = _int_vector(state, "widths", m, low=1)
        d = int(widths.sum())
        expect = {"shift": (d,), "gram": (d, d), "colsum": (d,), "row_moments": (m, d),
                  "norm_products": (m, m), "norm_sums": (m,)}
        for key, shape in expect.items():
            a = state[key]
            if a.dtype != np.float64 or a.shape != shape:
                raise ValueError(f"{key} must be float64 of shape {shape}, got {a.dtype} {a.shape}")
            if not np.isfinite(a).all():
                raise ValueError(f"{key} contains NaN or infinity")
        stats = GramStats(widths.tolist(), state["shift"], moments=True,
                          exponents=_int_vector(state, "exponents", m, low=-1100, high=1100).tolist())
        stats.n = _scalar_int(state, "n", 1)
        stats.gram[...] = state["gram"]
        stats.colsum[...] = state["colsum"]
        for dst, key in zip(stats.moments, ("row_moments", "norm_products", "norm_sums")):
            dst[...] = state[key]
        acc._stats = stats
        return acc


def _copy_stats(stats: GramStats) -> GramStats:
    out = GramStats(stats.widths, stats.shift.copy(), moments=True, exponents=stats.exponents)
    out.n = stats.n
    out.gram[...] = stats.gram
    out.colsum[...] = stats.colsum
    for dst, src in zip(out.moments, stats.moments):
        dst[...] = src
    return out


def _rebased(b: GramStats, a: GramStats):
    """``b``'s accumulated statistics as if taken with ``a``'s scale (per model 2^e) and shift.

    With y the rows of b (shifted by b's shift, on a's scale) and delta = b.shift - a.shift, the
    rows shifted by a's shift are y + delta, so (per model i, block B_i, q_i = |y_i|^2,
    r_i = delta_i . y_i, a_i = |delta_i|^2):
    gram' = G + c delta^T + delta c^T + n delta delta^T; colsum' = c + n delta;
    norm_sums'_i = S_i + 2 delta_i . c_i + n a_i;
    row_moments'_i = R_i + 2 G[:, B_i] delta_i + a_i c + delta S_i + 2 (delta_i . c_i) delta + n a_i delta;
    norm_products'_ij = P_ij + 2 delta_j . R_i[B_j] + 2 delta_i . R_j[B_i] + 4 delta_i^T G[B_i, B_j] delta_j
    + a_j S_i + a_i S_j + 2 a_j (delta_i . c_i) + 2 a_i (delta_j . c_j) + n a_i a_j.
    """
    blocks = [slice(x, y) for x, y in zip(a.offsets, a.offsets[1:])]
    factor = np.concatenate([np.full(w, float(ea - eb)) for w, ea, eb in zip(a.widths, a.exponents, b.exponents)])
    model_factor = np.array([float(ea - eb) for ea, eb in zip(a.exponents, b.exponents)])
    # b's statistics on a's scale: data of model i times 2^(e_a - e_b), exactly. The kernels keep
    # the lower triangle (of NumPy's view) of the Gram matrix: made whole first.
    g = np.tril(b.gram) + np.tril(b.gram, -1).T
    g = np.ldexp(g, (factor[:, None] + factor[None, :]).astype(int))
    c = np.ldexp(b.colsum, factor.astype(int))
    shift_b = np.ldexp(b.shift, factor.astype(int))
    rm = np.ldexp(b.moments[0], (factor[None, :] + 2 * model_factor[:, None]).astype(int))
    npd = np.ldexp(b.moments[1], (2 * model_factor[:, None] + 2 * model_factor[None, :]).astype(int))
    ns = np.ldexp(b.moments[2], (2 * model_factor).astype(int))
    n = float(b.n)
    delta = shift_b - a.shift
    m = len(blocks)
    dc = np.array([delta[bl] @ c[bl] for bl in blocks])          # delta_i . c_i
    sq = np.array([delta[bl] @ delta[bl] for bl in blocks])      # a_i = |delta_i|^2
    gram = np.tril(g + np.outer(c, delta) + np.outer(delta, c) + n * np.outer(delta, delta))
    colsum = c + n * delta
    norm_sums = ns + 2 * dc + n * sq
    row_moments = np.empty_like(rm)
    for i, bl in enumerate(blocks):
        row_moments[i] = (rm[i] + 2 * g[:, bl] @ delta[bl] + sq[i] * c + delta * ns[i] + 2 * dc[i] * delta
                          + n * sq[i] * delta)
    norm_products = np.empty((m, m))
    for i, bi in enumerate(blocks):
        for j, bj in enumerate(blocks):
            norm_products[i, j] = (npd[i, j] + 2 * delta[bj] @ rm[i][bj] + 2 * delta[bi] @ rm[j][bi]
                                   + 4 * delta[bi] @ g[bi, bj] @ delta[bj] + sq[j] * ns[i] + sq[i] * ns[j]
                                   + 2 * sq[j] * dc[i] + 2 * sq[i] * dc[j] + n * sq[i] * sq[j])
    return gram, colsum, (row_moments, norm_products, norm_sums)


_FORMAT = "mmkern.SimilarityAccumulator/2"
_STATS_FIELDS = ("widths", "n", "exponents", "shift", "gram", "colsum", "row_moments", "norm_products",
                 "norm_sums")


def _checksum(state: dict) -> str:
    """Hex SHA-256 over every field's name, dtype, shape and bytes (in name order)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        a = np.ascontiguousarray(state[key])
        digest.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _scalar_int(state: dict, key: str, low: int) -> int:
    a = state[key]
    if a.shape != () or a.dtype.kind not in "iu" or int(a) < low:
        raise ValueError(f"{key} must be an integer >= {low}, got {a!r}")
    return int(a)


def _int_vector(state: dict, key: str, m: int, low: int, high: int | None = None) -> np.ndarray:
    a = state[key]
    if a.shape != (m,) or a.dtype.kind not in "iu":
        raise ValueError(f"{key} must be {m} integers (one per model), got {a.dtype} {a.shape}")
    if (a < low).any() or (high is not None and (a > high).any()):
        raise ValueError(f"{key} holds values outside [{low}, {high}]: {a.tolist()}")
    return a
