"""The benchmark runner: agreement check first, then best-of-N timings of both sides."""

import pytest

from mmkern.bench.runner import Case, run_case


def _counting_case(**kwargs):
    calls = {"reference": 0, "fast": 0}

    def reference(x):
        calls["reference"] += 1
        return x

    def fast(x):
        calls["fast"] += 1
        return x

    return Case("count", lambda: (1.0,), reference, fast, **kwargs), calls


@pytest.mark.parametrize("case_repeat, override, expected", [(1, None, 1), (2, None, 2), (2, 4, 4)])
def test_reference_runs_follow_the_case_unless_overridden(case_repeat, override, expected):
    case, calls = _counting_case(reference_repeat=case_repeat)
    row = run_case(case, repeat=3, reference_repeat=override)
    assert calls == {"reference": expected, "fast": 1 + 3}  # the checking run counts for the reference
    assert row.max_rel_diff == 0.0 and row.reference_s > 0 and row.mmkern_s > 0


def test_disagreement_stops_before_timing():
    case = Case("wrong", lambda: (1.0,), lambda x: x, lambda x: x + 1.0)
    with pytest.raises(AssertionError, match="differs from the reference"):
        run_case(case)
