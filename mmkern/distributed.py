"""Population-scale similarity on a Dask distributed cluster: pairwise matrices as tiles.

``mmkern.distributed.pairwise_svcca(sources, client)`` (and ``pairwise_cca``, ``pairwise_pwcca``,
``pairwise_cka``) take the arguments of the in-memory functions plus a ``distributed.Client`` and
a ``tile`` size; ``sources`` are arrays or paths of ``.npy`` files (n, d_i), read on the workers.
Streaming similarity over data sharded by samples reduces as a tree with
:meth:`mmkern.SimilarityAccumulator.merge`. (Zoos, outputs and fine-tuning take ``client=`` or
``workers=`` in :mod:`mmkern.train` and :mod:`mmkern.analysis`.)

Each model is factored once, on a worker, by a task of its own: the reduction of its activations
that all its pairs need (for the CCA family the whitened projection onto its kept basis, from the
eigendecomposition of its centered Gram; for CKA the centered data, or the sample Gram when that is
smaller; :mod:`mmkern.similarity._factors`). The factor stays in the memory of the worker that made
it (Dask spills it to disk under memory pressure) until the last block that needs it is done. The
M x M matrix is cut into blocks of ``tile`` x ``tile`` pairs; Dask runs each block's task on a
worker that holds most of its factors, and the driver assembles the blocks. A factor is the size of
the model's activations in float64 (for SVCCA, of its kept subspace), so a block task holds at most
``2 * tile`` factors, the cluster holds the factors of the models whose blocks are not all done, and
models given as ``.npy`` paths are read (memory-mapped) only by the task that factors them: no
machine, the driver included, ever holds all activations. For a 1000-model matrix, n = 5000 and
d = 256, that is 1000 factors of at most 10 MB spread over the cluster's workers, and
(1000 / tile)^2 / 2 block tasks; blocks that the pair rules make small (``tile`` = 16: 136 pairs a
block here) keep the per-task overhead (milliseconds) small against the pairs' linear algebra.

The pair statistics come from the kernels the in-memory functions end in, with the same rank,
keep and weighting rules, so the tiled matrix equals the in-memory one to rounding (1e-12).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from mmkern.similarity._checks import RANK_RTOL

__all__ = ["pairwise_cca", "pairwise_cka", "pairwise_pwcca", "pairwise_svcca"]

def _load(source: Any) -> np.ndarray:
    if isinstance(source, (str, os.PathLike)):
        return np.load(os.fspath(source), mmap_mode="r", allow_pickle=False)
    return source


def _factor(source: Any, name: str, metric: str, kwargs: dict):
    """One model's factor, on a worker."""
    from mmkern.similarity._factors import model_factor

    return model_factor(_load(source), name, metric, kwargs)


def _block(rows: list, cols: list | None) -> np.ndarray:
    """One block of the matrix from its models' factors, on a worker."""
    from mmkern.similarity._factors import block_values

    return block_values(rows, cols)


def check_sources(sources: Sequence, name: str = "acts") -> list[tuple[int, int]]:
    """The shapes of the models, given as paths (checked to be 2-D ``.npy`` files of one sample
    count) or arrays."""
    if isinstance(sources, (str, os.PathLike)) or not isinstance(sources, (list, tuple)):
        raise TypeError(f"{name} must be a list of arrays or .npy paths when a client is given")
    if len(sources) < 1:
        raise ValueError(f"{name} holds no models (M = 0)")
    shapes = []
    for i, source in enumerate(sources):
        if isinstance(source, (str, os.PathLike)):
            try:
                array = _load(source)
            except (OSError, ValueError) as e:
                raise ValueError(f"{name}[{i}]: {os.fspath(source)!r} is not a readable .npy file ({e})") from None
        else:
            array = np.asarray(source)
        if array.ndim != 2:
            raise ValueError(f"{name}[{i}] must be 2-D (n_samples, n_features), got shape {array.shape}")
        shapes.append(array.shape)
    n = shapes[0][0]
    for i, shape in enumerate(shapes):
        if shape[0] != n:
            raise ValueError(f"{name}[{i}] has {shape[0]} samples but {name}[0] has {n}")
    return shapes


def pairwise_svcca(sources: Sequence, client, keep=0.99, *, keep_by: str = "variance", rtol: float = RANK_RTOL,
                   tile: int = 16) -> np.ndarray:
    """:func:`mmkern.pairwise_svcca` of M models as tiles on ``client``.

    Parameters
    ----------
    sources : sequence of M arrays (n, d_i) or paths of ``.npy`` files
        The models' activations on the same n samples; paths are read (memory-mapped) on the
        workers, so the driver never holds them.
    client : distributed.Client
    keep, keep_by, rtol
        As in :func:`mmkern.svcca`.
    tile : int, default 16
        Models per block: a block task holds the factors of two blocks' models.

    Returns
    -------
    numpy.ndarray, (M, M) float64
        The in-memory matrix to rounding.
    """
    return tiled("svcca", sources, client, tile, {"keep": keep, "keep_by": keep_by, "rtol": rtol})


def pairwise_cca(sources: Sequence, client, *, statistic: str = "mean", rtol: float = RANK_RTOL,
                 tile: int = 16) -> np.ndarray:
    """:func:`mmkern.pairwise_cca` as tiles on ``client`` (see :func:`pairwise_svcca`)."""
    return tiled("cca", sources, client, tile, {"statistic": statistic, "rtol": rtol})


def pairwise_pwcca(sources: Sequence, client, *, rtol: float = RANK_RTOL, tile: int = 16) -> np.ndarray:
    """:func:`mmkern.pairwise_pwcca` as tiles on ``client`` (every block: PWCCA is not symmetric)."""
    return tiled("pwcca", sources, client, tile, {"rtol": rtol})


def pairwise_cka(sources: Sequence, client, *, debiased: bool = False, tile: int = 16) -> np.ndarray:
    """:func:`mmkern.pairwise_cka` as tiles on ``client`` (see :func:`pairwise_svcca`)."""
    return tiled("cka", sources, client, tile, {"debiased": debiased})


def tiled(metric: str, sources: Sequence, client, tile: int, opts: dict) -> np.ndarray:
    """The (M, M) matrix of ``metric`` from tiles on ``client`` (see the module docstring)."""
    from mmkern._dask import as_finished, check_client, interrupts_deferred
    from mmkern._validate import check_positive_int
    from mmkern.similarity._checks import OPTS_DEFAULT, metric_args

    check_client(client)
    tile = check_positive_int(tile, "tile")
    shapes = check_sources(sources)
    names = [f"acts[{i}]" for i in range(len(sources))]
    name, kwargs = metric_args(metric, shapes[0][0], [d for _, d in shapes], names, **{**OPTS_DEFAULT, **opts})
    m = len(sources)
    factors = [client.submit(_factor, s if isinstance(s, (str, os.PathLike)) else client.scatter(s), names[i],
                             name, kwargs, pure=False) for i, s in enumerate(sources)]
    blocks = [list(range(start, min(start + tile, m))) for start in range(0, m, tile)]
    symmetric = metric != "pwcca"  # PWCCA weights by the first model of a pair (as in memory)
    futures, uses = {}, [0] * m
    for a, rows in enumerate(blocks):
        for b, cols in enumerate(blocks):
            if symmetric and b < a:
                continue
            args = ([factors[i] for i in rows], None if a == b else [factors[j] for j in cols])
            futures[client.submit(_block, *args, pure=False)] = (rows, cols)
            for i in set(rows + cols):
                uses[i] += 1
    out = np.empty((m, m))
    running = list(futures)
    try:
        with interrupts_deferred() as interrupted:
            for future in as_finished(running, interrupted):
                rows, cols = futures[future]
                block = np.asarray(future.result())
                out[np.ix_(rows, cols)] = block
                if symmetric and rows != cols:
                    out[np.ix_(cols, rows)] = block.T
                for i in set(rows + cols):  # a factor no block needs any more is released on the cluster
                    uses[i] -= 1
                    if uses[i] == 0:
                        factors[i] = None
    except BaseException:
        client.cancel(running + [f for f in factors if f is not None])
        raise
    return out
