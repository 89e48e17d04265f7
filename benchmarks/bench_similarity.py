"""pytest-benchmark suite for the similarity kernels: each group compares reference and mmkern.

Run: ``pytest benchmarks/bench_similarity.py [--quick] --benchmark-group-by=group``. The cases are
those of ``mmkern bench similarity`` (mmkern.bench.similarity); each is checked for agreement
before timing. The speed-up is the ratio of the two rows of a group (pytest-benchmark prints it
in parentheses relative to the fastest).
"""

from __future__ import annotations

import pytest

from mmkern.bench import suite_cases
from mmkern.bench.runner import max_relative_difference

_FULL = suite_cases("similarity", quick=False)
_QUICK = suite_cases("similarity", quick=True)


@pytest.fixture(scope="module")
def quick(request):
    return request.config.getoption("--quick")


@pytest.mark.parametrize("impl", ["reference", "mmkern"])
@pytest.mark.parametrize("index", range(max(len(_FULL), len(_QUICK))))
def test_similarity(benchmark, quick, index, impl):
    cases = _QUICK if quick else _FULL
    if index >= len(cases):
        pytest.skip("no such case in this mode")
    case = cases[index]
    inputs = case.make_inputs()
    if case.reference is None and impl == "reference":
        pytest.skip("no reference for this case")
    if impl == "mmkern" and case.reference is not None:
        diff = max_relative_difference(case.fast(*inputs), case.reference(*inputs))
        assert diff <= case.rtol, f"{case.name}: differs from the reference by {diff:.2e}"
    fn = case.reference if impl == "reference" else case.fast
    benchmark.group = case.name
    benchmark.extra_info["target_speedup"] = case.target
    # The reference runs take seconds: one round each; mmkern gets a few rounds.
    benchmark.pedantic(fn, args=inputs, rounds=1 if impl == "reference" else 3, iterations=1)
