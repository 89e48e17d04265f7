"""Benchmarks that compare mmkern with its reference implementations in one run.

``mmkern bench similarity|multiplicity|connectivity|train [--quick]`` prints the table; ``benchmarks/bench_*.py`` time the same
cases with pytest-benchmark.
"""

from mmkern.bench.runner import Case, Row, format_table, run_case

SUITES = ("similarity", "multiplicity", "connectivity", "train")


def suite_cases(name: str, quick: bool = False) -> list[Case]:
    """The cases of benchmark suite ``name`` (one of :data:`SUITES`)."""
    if name == "similarity":
        from mmkern.bench import similarity

        return similarity.cases(quick)
    if name == "multiplicity":
        from mmkern.bench import multiplicity

        return multiplicity.cases(quick)
    if name == "connectivity":
        from mmkern.bench import connectivity

        return connectivity.cases(quick)
    if name == "train":
        from mmkern.bench import train

        return train.cases(quick)
    raise ValueError(f"unknown benchmark suite {name!r}; choose from {', '.join(SUITES)}")


__all__ = ["Case", "Row", "SUITES", "format_table", "run_case", "suite_cases"]
