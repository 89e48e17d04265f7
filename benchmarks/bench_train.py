"""pytest-benchmark suite of zoo training on a Dask LocalCluster: ``pytest benchmarks/bench_train.py``.

Cases: :mod:`mmkern.bench.train`; each group holds the baseline (one worker, or serial) and two workers.
"""

import pytest
from mmkern.bench.runner import compare_with_baseline

pytest.importorskip("torch")
pytest.importorskip("distributed")

SUITE = "train"


def test_train(benchmark, case, impl):
    compare_with_baseline(benchmark, case, impl)
