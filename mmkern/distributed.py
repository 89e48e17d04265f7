"""Population-scale similarity on a Dask distributed cluster: pairwise matrices as tiles.

``mmkern.distributed.pairwise_svcca(sources, client)`` (and ``pairwise_cca``, ``pairwise_pwcca``,
``pairwise_cka``) take the arguments of the in-memory functions plus a ``distributed.Client`` and
a ``tile`` size; ``sources`` are arrays or paths of ``.npy`` files (n, d_i), read on the workers.
Streaming similarity over data sharded by samples reduces as a tree with
:meth:`mmkern.SimilarityAccumulator.merge`. (Zoos, outputs and fine-tuning take ``client=`` or
``workers=`` in :mod:`mmkern.train` and :mod:`mmkern.analysis`.)

The M models are cut into blocks of ``tile`` consecutive models; each task computes one block of
the M x M matrix (the block's own pairs, or the cross matrix of two blocks) with the in-memory
functions, so every rule is the in-memory one and the results agree with ``pairwise_*`` to
rounding. A task holds only the activations of its two blocks: models given as ``.npy`` paths are
read on the workers (memory-mapped), so no machine, the driver included, ever holds every model's
activations; for M models of n x d float32, a task holds 2 x tile x n x d x 4 bytes. Arrays given in
memory are sent to the cluster once each. The driver assembles the blocks.

(Each block recomputes the factors of its models, once per block pair they appear in: the price of
tasks that are independent and hold bounded memory; ``tile`` trades the two.)
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from mmkern.similarity._checks import RANK_RTOL

__all__ = ["pairwise_cca", "pairwise_cka", "pairwise_pwcca", "pairwise_svcca"]

#: The public functions a tile calls: metric -> (pairwise name, cross name, symmetric).
_FUNCTIONS = {"svcca": ("pairwise_svcca", "cross_svcca", True), "cca": ("pairwise_cca", "cross_cca", True),
              "pwcca": ("pairwise_pwcca", "cross_pwcca", False), "cka": ("pairwise_cka", "cross_cka", True)}


def _load(source: Any) -> np.ndarray:
    if isinstance(source, (str, os.PathLike)):
        return np.load(os.fspath(source), mmap_mode="r", allow_pickle=False)
    return source


def _tile(metric: str, rows: list, cols: list | None, opts: dict) -> np.ndarray:
    """One block of the matrix, on a worker."""
    from mmkern import similarity

    pairwise, cross, _ = _FUNCTIONS[metric]
    if cols is None:
        return getattr(similarity, pairwise)([_load(s) for s in rows], **opts)
    return getattr(similarity, cross)([_load(s) for s in rows], [_load(s) for s in cols], **opts)


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
                array = np.load(os.fspath(source), mmap_mode="r", allow_pickle=False)
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
        Models per block: a task holds two blocks' activations.

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
    from mmkern._dask import check_client
    from mmkern._validate import check_positive_int
    from mmkern.similarity._checks import OPTS_DEFAULT, metric_args

    check_client(client)
    tile = check_positive_int(tile, "tile")
    shapes = check_sources(sources)
    names = [f"acts[{i}]" for i in range(len(sources))]
    metric_args(metric, shapes[0][0], [d for _, d in shapes], names, **{**OPTS_DEFAULT, **opts})  # as in memory
    shared = [s if isinstance(s, (str, os.PathLike)) else client.scatter(s) for s in sources]
    m = len(sources)
    blocks = [list(range(start, min(start + tile, m))) for start in range(0, m, tile)]
    symmetric = _FUNCTIONS[metric][2]
    futures = {}
    for a, rows in enumerate(blocks):
        for b, cols in enumerate(blocks):
            if symmetric and b < a:
                continue
            args = ([shared[i] for i in rows], None if a == b else [shared[j] for j in cols])
            futures[client.submit(_tile, metric, *args, opts, pure=False)] = (rows, cols)
    out = np.empty((m, m))
    for future, (rows, cols) in futures.items():
        block = np.asarray(future.result())
        out[np.ix_(rows, cols)] = block
        if symmetric and rows != cols:
            out[np.ix_(cols, rows)] = block.T
    return out
