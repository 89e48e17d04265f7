"""pytest-benchmark suite of the connectivity evaluation: ``pytest benchmarks/bench_connectivity.py``.

Cases: :mod:`mmkern.bench.connectivity`; each group holds the reference per-alpha loop and mmkern.
"""

import pytest
from mmkern.bench.runner import compare_with_baseline

pytest.importorskip("torch")

SUITE = "connectivity"


def test_connectivity(benchmark, case, impl):
    compare_with_baseline(benchmark, case, impl)
