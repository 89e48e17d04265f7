"""The benchmark runner: agreement check first, then best-of-N timings of both sides."""

import pytest

from mmkern.bench.runner import Case, ResultMismatch, format_table, run_case


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
    with pytest.raises(ResultMismatch, match="differs from the reference"):
        run_case(case)


def test_a_skipped_case_is_reported_not_run():
    case, calls = _counting_case(skip="torch.cuda is not available")
    row = run_case(case)
    assert calls == {"reference": 0, "fast": 0}
    assert row.skipped == "torch.cuda is not available" and row.speedup is None and row.meets_target is None
    table = format_table([row])
    assert "skipped" in table and "count: skipped (torch.cuda is not available)" in table


def test_cli_reports_expected_failures_in_one_line_and_bugs_with_a_traceback(monkeypatch):
    """A benchmark whose results disagree is one line (exit 1); an AssertionError is a bug and
    reaches the caller with its traceback."""
    from click.testing import CliRunner

    import mmkern.bench
    from mmkern.cli import main

    def disagreeing(name, quick=False):
        return [Case("wrong", lambda: (1.0,), lambda x: x, lambda x: x + 1.0)]

    monkeypatch.setattr(mmkern.bench, "suite_cases", disagreeing)
    result = CliRunner().invoke(main, ["bench", "similarity", "--quick"])
    assert result.exit_code == 1 and "Error: wrong: mmkern differs from the reference" in result.output
    assert "Traceback" not in result.output

    def buggy(name, quick=False):
        raise AssertionError("an internal invariant failed")

    monkeypatch.setattr(mmkern.bench, "suite_cases", buggy)
    result = CliRunner().invoke(main, ["bench", "similarity", "--quick"])
    assert isinstance(result.exception, AssertionError) and result.exit_code == 1
    assert "Error: an internal invariant failed" not in result.output
