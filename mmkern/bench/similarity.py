"""Benchmark cases for the representational-similarity kernels (``mmkern bench similarity``).

Targets (on a 2-core machine): ``pairwise_svcca`` with M=16, n=5000, d=256 (float32) at least
25x faster than the reference per-pair loop; single ``svcca`` with n=10000, d=512 at least 3x;
the streaming accumulator with M=4, d=128 over 10^6 rows in memory independent of n. CUDA rows
time the same calls on CUDA tensors against mmkern on the CPU (skipped without a GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

import mmkern
from mmkern import distributed as tiles
from mmkern import reference
from mmkern.bench.data import SyntheticPopulation, activation_population
from mmkern.bench.runner import Case, cuda_skip, on_cuda, to_cuda


def _population_case(fn: str, m: int, n: int, d: int, dtype, target=None, **kw) -> Case:
    return Case(
        name=f"{fn} M={m} n={n} d={d} {np.dtype(dtype).name}",
        make_inputs=lambda: (activation_population(n, [d] * m, dtype=dtype),),
        reference=lambda acts: getattr(reference, fn)(acts, **kw),
        fast=lambda acts: getattr(mmkern, fn)(acts, **kw),
        target=target,
    )


_CLUSTER: dict = {}  # one LocalCluster per benchmark process, closed at exit


def _local_client(workers: int):
    """A Client of a LocalCluster of ``workers`` single-threaded processes (started once)."""
    import atexit
    import logging

    import distributed

    if "client" not in _CLUSTER:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.ERROR)
        _CLUSTER["client"] = distributed.Client(cluster)
        atexit.register(lambda: (_CLUSTER["client"].close(), cluster.close()))
    return _CLUSTER["client"]


def _tiled_case(m: int, n: int, d: int, tile: int) -> Case:
    """Tiled pairwise SVCCA of .npy files on a LocalCluster of 2 workers vs the in-process call
    (which holds every model in memory). The files are written once to a temporary folder."""
    try:
        import distributed  # noqa: F401
        skip = None
    except ImportError:
        skip = "Dask distributed is not installed (pip install 'mmkern[distributed]')"

    def inputs():
        folder = tempfile.mkdtemp(prefix="mmkern-bench-tiles-")
        acts = activation_population(n, [d] * m, dtype=np.float32)
        paths = []
        for i, a in enumerate(acts):
            paths.append(os.path.join(folder, f"model{i}.npy"))
            np.save(paths[-1], a)
        return acts, paths, _local_client(2)

    blocks = -(-m // tile)
    n_tiles = blocks * (blocks + 1) // 2
    return Case(
        name=f"mmkern.distributed.pairwise_svcca M={m} n={n} d={d} tile={tile} ({n_tiles} tiles), LocalCluster "
             "of 2 (baseline: in-process pairwise_svcca)",
        make_inputs=inputs,
        reference=lambda acts, paths, client: mmkern.pairwise_svcca(acts),
        fast=lambda acts, paths, client: tiles.pairwise_svcca(paths, client, tile=tile),
        rtol=1e-10, skip=skip)


def _pair_case(fn: str, n: int, d: int, dtype, target=None) -> Case:
    return Case(
        name=f"{fn} n={n} d={d} {np.dtype(dtype).name}",
        make_inputs=lambda: tuple(activation_population(n, [d, d], dtype=dtype, noise=0.3, seed=1)),
        reference=getattr(reference, fn),
        fast=getattr(mmkern, fn),
        target=target,
    )


def _cuda_case(fn: str, shapes: str, make_arrays, **kw) -> Case:
    """``fn`` on CUDA tensors vs mmkern's host route on the same values."""
    skip = cuda_skip()
    return Case(
        name=f"{fn} {shapes} CUDA (baseline: mmkern CPU)",
        make_inputs=lambda: (make_arrays(), to_cuda(make_arrays())),
        reference=lambda host, device: getattr(mmkern, fn)(*host, **kw),
        fast=lambda host, device: on_cuda(getattr(mmkern, fn))(*device, **kw),
        rtol=1e-6, skip=skip,
    )


def peak_rss_mib() -> float:
    """Peak resident memory of this process image in MiB.

    Linux's VmHWM is reset by exec, unlike ``getrusage``'s ru_maxrss, which carries over the
    parent's peak into a child started with fork + exec.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def stream_job(m: int, n: int, d: int, batch: int) -> dict:
    """Feed n rows of an M-model population to a SimilarityAccumulator in batches.

    Returns the seconds spent in mmkern (``update`` calls and the final ``svcca``; generating
    the synthetic batches is not counted), the peak resident memory (MiB) of this process and the
    SVCCA matrix. Run it in a fresh process (:func:`stream_in_subprocess`) so that the peak
    belongs to this job alone.
    """
    pop = SyntheticPopulation([d] * m, seed=3)
    acc = mmkern.SimilarityAccumulator(m)
    seconds = 0.0
    for start in range(0, n, batch):
        batch_acts = pop.sample(min(batch, n - start), seed=start)
        t0 = time.perf_counter()
        acc.update(batch_acts)
        seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    matrix = acc.svcca()
    seconds += time.perf_counter() - t0
    return {"seconds": seconds, "peak_mib": peak_rss_mib(), "svcca": matrix.tolist(), "n": acc.n_samples}


def stream_in_subprocess(m: int, n: int, d: int, batch: int) -> dict:
    """:func:`stream_job` in a fresh Python process; returns its result dict."""
    code = (
        "import json, sys; from mmkern.bench.similarity import stream_job; "
        f"json.dump(stream_job({m}, {n}, {d}, {batch}), sys.stdout)"
    )
    # Run outside any source checkout: `python -c` puts the working directory on sys.path, where
    # an unbuilt copy of the package would shadow the installed one.
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ}, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(f"streaming benchmark subprocess failed:\n{out.stderr.strip()}")
    return json.loads(out.stdout)


def _streaming_case(m: int, n: int, d: int, batch: int, n_small: int) -> Case:
    """Accumulator vs the reference on n_small rows in memory; peak RSS at n_small and n."""
    pop = SyntheticPopulation([d] * m, seed=3)

    def inputs():
        return ([pop.sample(min(batch, n_small - s), seed=s) for s in range(0, n_small, batch)],)

    def fast(batches):
        acc = mmkern.SimilarityAccumulator(m)
        for b in batches:
            acc.update(b)
        return acc.svcca()

    def ref(batches):
        return reference.pairwise_svcca([np.concatenate([b[i] for b in batches]) for i in range(m)])

    case = Case(
        name=f"SimilarityAccumulator.svcca M={m} d={d} n={n_small} (batches of {batch})",
        make_inputs=inputs, reference=ref, fast=fast, rtol=1e-8,
    )

    def memory_notes() -> str:
        small = stream_in_subprocess(m, n_small, d, batch)
        large = stream_in_subprocess(m, n, d, batch)
        case.extra = {"peak_mib_small": small["peak_mib"], "peak_mib_large": large["peak_mib"]}
        return (
            f"streaming in a fresh process (mmkern time, batch generation excluded): n={n_small}: "
            f"{small['seconds']:.2f} s, peak RSS {small['peak_mib']:.0f} MiB; n={n}: "
            f"{large['seconds']:.2f} s, peak RSS {large['peak_mib']:.0f} MiB (the data itself: "
            f"{n * m * d * 4 / 2**20:.0f} MiB as float32)"
        )

    case.notes = memory_notes
    return case


def _cuda_cases(m: int, n: int, d: int) -> list[Case]:
    population = lambda: (activation_population(n, [d] * m, dtype=np.float32),)  # noqa: E731
    pair = lambda: tuple(activation_population(2 * n, [2 * d, 2 * d], dtype=np.float64, noise=0.3, seed=1))  # noqa: E731
    return [
        _cuda_case("pairwise_svcca", f"M={m} n={n} d={d} float32", population),
        _cuda_case("svcca", f"n={2 * n} d={2 * d} float64", pair),
        _cuda_case("pairwise_cka", f"M={m} n={n} d={d} float32", population),
    ]


def cases(quick: bool = False) -> list[Case]:
    """The similarity benchmark cases; ``quick`` shrinks them to a seconds-long smoke run."""
    if quick:
        return [
            _population_case("pairwise_svcca", 6, 1000, 64, np.float32),
            _pair_case("svcca", 2000, 128, np.float64),
            _population_case("pairwise_cka", 6, 1000, 64, np.float32),
            _population_case("pairwise_cca", 4, 1000, 64, np.float32),
            _streaming_case(3, 40_000, 32, 10_000, 10_000),
            _tiled_case(8, 500, 32, 4),
            *_cuda_cases(6, 1000, 64),
        ]
    return [
        _population_case("pairwise_svcca", 16, 5000, 256, np.float32, target=25),
        _pair_case("svcca", 10_000, 512, np.float64, target=3),
        _population_case("pairwise_cka", 16, 5000, 256, np.float32),
        _population_case("pairwise_cca", 8, 5000, 256, np.float32),
        _population_case("pairwise_pwcca", 8, 5000, 256, np.float32),
        _streaming_case(4, 1_000_000, 128, 20_000, 100_000),
        _tiled_case(64, 5000, 256, 16),
        *_cuda_cases(16, 5000, 256),
    ]
