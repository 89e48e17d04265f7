"""Stand-ins for mmkern._C_cuda on host memory: the contract of csrc/*_cuda.h implemented by the
host twins in mmkern._C (or NumPy), on raw pointers.

With them monkeypatched in as the device route's kernels (``kernels_for``), CPU tensors drive
every kernel call the device route makes on a GPU: the pointers, layouts, dtype codes, counts and
workspace sizes it passes are checked on a machine without one.
"""

from __future__ import annotations

import ctypes

import numpy as np

from mmkern import _C


def host_view(ptr: int, shape, dtype, strides=None) -> np.ndarray:
    """A NumPy view of host memory at ``ptr`` (C order, or element ``strides``)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if strides is None:
        strides = [int(np.prod(shape[k + 1:])) for k in range(len(shape))]
    extent = 1 + sum((s - 1) * st for s, st in zip(shape, strides)) if all(shape) else 0
    buf = (ctypes.c_char * (max(extent, 1) * dtype.itemsize)).from_address(ptr)
    base = np.frombuffer(buf, dtype=dtype)
    return np.lib.stride_tricks.as_strided(base, shape, [st * dtype.itemsize for st in strides])


FLOATS = {0: np.float32, 1: np.float64}


class HostKernels:
    """mmkern._C_cuda's functions on host pointers; ``calls`` records which ran."""

    def __init__(self):
        self.calls = []

    # -- similarity --------------------------------------------------------------------------

    def pack_rows(self, views, row_begin, rows, shift, out, ld, stream):
        self.calls.append("pack_rows")
        assert ld >= rows and stream == 0
        d = sum(v[2] for v in views)
        shift_a = host_view(shift, (d,), np.float64)
        out_a = host_view(out, (d, ld), np.float64)  # column-major rows x D
        off = 0
        for ptr, nrows, cols, rs, cs, code in views:
            assert nrows >= row_begin + rows and code in FLOATS
            src = host_view(ptr, (nrows, cols), FLOATS[code], (rs, cs))
            out_a[off : off + cols, :rows] = (src[row_begin : row_begin + rows].astype(np.float64)
                                             - shift_a[off : off + cols]).T
            off += cols

    def pair_summaries(self, npairs, kmax, rho, count, weights, mean, r2, weighted, stream):
        self.calls.append("pair_summaries")
        got = _C.pair_summaries(host_view(rho, (npairs, kmax), np.float64).copy(),
                                host_view(count, (npairs,), np.int64).copy(),
                                host_view(weights, (npairs, kmax), np.float64).copy() if weights else None,
                                mean=bool(mean), r2=bool(r2), weighted=bool(weighted))
        for key, ptr in (("mean", mean), ("r2", r2), ("weighted", weighted)):
            if ptr:
                host_view(ptr, (npairs,), np.float64)[:] = got[key]

    def cka_from_norms(self, npairs, models, n, first, second, cross_fro2, self_fro2, trace,
                       norm_products, cka, cka_debiased, stream):
        self.calls.append("cka_from_norms")
        got = _C.cka_from_norms(
            host_view(first, (npairs,), np.int64).copy(), host_view(second, (npairs,), np.int64).copy(),
            host_view(cross_fro2, (npairs,), np.float64).copy(), host_view(self_fro2, (models,), np.float64).copy(),
            n, host_view(trace, (models,), np.float64).copy() if trace else None,
            host_view(norm_products, (models, models), np.float64).copy() if norm_products else None,
            biased=bool(cka), debiased=bool(cka_debiased))
        for key, ptr in (("cka", cka), ("cka_debiased", cka_debiased)):
            if ptr:
                host_view(ptr, (npairs,), np.float64)[:] = got[key]

    # -- predictive multiplicity ----------------------------------------------------------------

    def disagreement_counts(self, codes, bits, models, n, counts, stream):
        self.calls.append(f"disagreement_counts/{bits}")
        c = host_view(codes, (models, n), {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits])
        host_view(counts, (models, models), np.int64)[:] = _C.disagreement_counts(np.ascontiguousarray(c))

    def soft_disagreement(self, probs, dtype, models, n, classes, metric, out, stream):
        self.calls.append("soft_disagreement")
        p = host_view(probs, (models, n, classes), FLOATS[dtype])
        host_view(out, (models, models), np.float64)[:] = _C.soft_disagreement(np.ascontiguousarray(p), metric)

    def rashomon_workspace_per_sample(self, models, classes):
        return models * classes + 3 * models + classes

    def rashomon_capacity(self, probs, dtype, models, n, classes, tol, max_iter, out, gap, workspace,
                          workspace_size, stream):
        self.calls.append("rashomon_capacity")
        assert workspace and workspace_size >= self.rashomon_workspace_per_sample(models, classes)
        p = host_view(probs, (models, n, classes), FLOATS[dtype])
        capacity, gaps = _C.rashomon_capacity(np.ascontiguousarray(p), tol, max_iter)
        host_view(out, (n,), np.float64)[:] = capacity
        host_view(gap, (n,), np.float64)[:] = gaps
