"""pytest-benchmark suite of the similarity kernels: ``pytest benchmarks/bench_similarity.py``.

Cases: :mod:`mmkern.bench.similarity`; each group holds the reference and mmkern rows.
"""

from mmkern.bench.runner import compare_with_baseline

SUITE = "similarity"


def test_similarity(benchmark, case, impl):
    compare_with_baseline(benchmark, case, impl)
