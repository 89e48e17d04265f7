"""pytest-benchmark suite of the multiplicity kernels: ``pytest benchmarks/bench_multiplicity.py``.

Cases: :mod:`mmkern.bench.multiplicity`; each group holds a baseline (the reference loop, a NumPy
one-hot matrix product, or a numba prange loop) and mmkern.
"""

from mmkern.bench.runner import compare_with_baseline

SUITE = "multiplicity"


def test_multiplicity(benchmark, case, impl):
    compare_with_baseline(benchmark, case, impl)
