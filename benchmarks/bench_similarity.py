"""pytest-benchmark suite for the similarity kernels: each group compares reference and mmkern.

Run: ``pytest benchmarks/bench_similarity.py [--quick]``. The cases are those of
``mmkern bench similarity`` (mmkern.bench.similarity); each is checked for agreement before
timing. Rows are grouped by case, so the speed-up is the ratio of a group's two rows
(pytest-benchmark prints it in parentheses, relative to the fastest).
"""

from __future__ import annotations

import pytest

from mmkern.bench import suite_cases
from mmkern.bench.runner import max_relative_difference


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = suite_cases("similarity", quick=metafunc.config.getoption("--quick"))
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])


@pytest.mark.parametrize("impl", ["reference", "mmkern"])
def test_similarity(benchmark, case, impl):
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
