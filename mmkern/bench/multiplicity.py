"""Benchmark cases for the predictive-multiplicity kernels (``mmkern bench multiplicity``).

Targets (on a 2-core machine): ``disagreement_matrix`` with M=200, n=100000, C=10 at
least 50x faster than the reference per-pair loop and faster than both things a user would write
instead (a one-hot matrix product in NumPy and a numba ``prange`` pair loop);
``soft_disagreement_matrix(metric="tv")`` with M=50, n=20000, C=10 at least 10x the reference;
``rashomon_capacity`` with M=20, n=10000, C=10 at least 20x the per-sample reference. CUDA rows
time the same calls on CUDA tensors against mmkern on the CPU (skipped without a GPU).
"""

from __future__ import annotations

import numpy as np

import mmkern
from mmkern import reference
from mmkern.bench.data import prediction_population
from mmkern.bench.runner import Case, cuda_skip, on_cuda, to_cuda


def onehot_disagreement(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Disagreement as a NumPy user would vectorise it: agreements = sum_c A_c A_c^T with A_c
    the (M, n) float32 indicator of class c (one BLAS matrix product per class)."""
    m, n = labels.shape
    agree = np.zeros((m, m), dtype=np.float64)
    for c in range(n_classes):
        a = (labels == c).astype(np.float32)
        agree += a @ a.T
    return 1.0 - agree / n


def numba_disagreement():
    """A numba ``prange`` loop over pairs (compiled on first use), or None without numba."""
    try:
        from numba import njit, prange
    except ImportError:
        return None

    @njit(parallel=True, cache=False)
    def disagreement(labels):
        m, n = labels.shape
        out = np.zeros((m, m))
        for i in prange(m):
            for j in range(i + 1, m):
                count = 0
                for k in range(n):
                    count += labels[i, k] != labels[j, k]
                out[i, j] = count / n
                out[j, i] = count / n
        return out

    disagreement(np.zeros((2, 4), dtype=np.int64))  # compile outside the timings
    return disagreement


def _labels_input(m: int, n: int, c: int):
    probs, _ = prediction_population(m, n, c, seed=1)
    return (probs.argmax(axis=-1),)  # int64 labels, as argmax returns them


def cases(quick: bool = False) -> list[Case]:
    """The multiplicity benchmark cases; ``quick`` shrinks them to a seconds-long smoke run."""
    m, n, c = (20, 5000, 10) if quick else (200, 100_000, 10)
    ms, ns = (10, 2000) if quick else (50, 20_000)
    mr, nr = (6, 300) if quick else (20, 10_000)
    size = f"M={m} n={n} C={c}"
    out = [
        Case(f"disagreement_matrix {size} vs reference loop", lambda: _labels_input(m, n, c),
             reference.disagreement_matrix, mmkern.disagreement_matrix, target=None if quick else 50, rtol=0.0),
        Case(f"disagreement_matrix {size} vs NumPy one-hot matmul", lambda: _labels_input(m, n, c),
             lambda y: onehot_disagreement(y, c), mmkern.disagreement_matrix, target=None if quick else 1,
             rtol=1e-6),
    ]
    nb = numba_disagreement()
    if nb is not None:
        out.append(Case(f"disagreement_matrix {size} vs numba prange loop", lambda: _labels_input(m, n, c),
                        nb, mmkern.disagreement_matrix, target=None if quick else 1, rtol=1e-12))
    out += [
        Case(f"soft_disagreement_matrix tv M={ms} n={ns} C=10 float32",
             lambda: (prediction_population(ms, ns, 10, seed=2)[0],),
             lambda p: reference.soft_disagreement_matrix(p, "tv"),
             lambda p: mmkern.soft_disagreement_matrix(p, "tv"), target=None if quick else 10, rtol=1e-10),
        Case(f"rashomon_capacity M={mr} n={nr} C=10 float32",
             lambda: (prediction_population(mr, nr, 10, seed=3)[0],),
             reference.rashomon_capacity, mmkern.rashomon_capacity, target=None if quick else 20, rtol=1e-8),
    ]
    skip = cuda_skip()
    for name, make, call in [
        (f"disagreement_matrix {size}", lambda: _labels_input(m, n, c), mmkern.disagreement_matrix),
        (f"soft_disagreement_matrix tv M={ms} n={ns} C=10 float32",
         lambda: (prediction_population(ms, ns, 10, seed=2)[0],), lambda p: mmkern.soft_disagreement_matrix(p, "tv")),
        (f"rashomon_capacity M={mr} n={nr} C=10 float32", lambda: (prediction_population(mr, nr, 10, seed=3)[0],),
         mmkern.rashomon_capacity),
    ]:
        out.append(Case(f"{name} CUDA (baseline: mmkern CPU)", lambda make=make: (make(), to_cuda(make())),
                        lambda host, device, call=call: call(*host),
                        lambda host, device, call=call: on_cuda(call)(*device), rtol=1e-8, skip=skip))
    return out
