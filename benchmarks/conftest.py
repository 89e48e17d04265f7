"""pytest-benchmark wiring shared by every ``bench_<suite>.py`` file.

Each file names its suite (``SUITE = "similarity"``) and defines its test with
:func:`compare_with_baseline`; the cases come from :mod:`mmkern.bench`, the same ones
``mmkern bench <suite>`` runs. ``--quick`` shrinks them to a seconds-long smoke run.
"""


from mmkern.bench import suite_cases
from mmkern.bench.runner import max_relative_difference


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="small benchmark sizes (CI smoke run)")


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = suite_cases(metafunc.module.SUITE, quick=metafunc.config.getoption("--quick"))
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])
    if "impl" in metafunc.fixturenames:
        metafunc.parametrize("impl", ["baseline", "mmkern"])


def compare_with_baseline(benchmark, case, impl):
    """Time one side of a case, in a group with the other side; mmkern is checked against the
    baseline first. pytest-benchmark prints each row's time relative to the group's fastest."""
    inputs = case.make_inputs()
    if impl == "mmkern":
        diff = max_relative_difference(case.fast(*inputs), case.reference(*inputs), case.floor)
        assert diff <= case.rtol, f"{case.name}: differs from the baseline by {diff:.2e}"
    fn = case.reference if impl == "baseline" else case.fast
    benchmark.group = case.name
    benchmark.extra_info["target_speedup"] = case.target
    # Baselines take seconds: one round each; mmkern gets a few rounds.
    benchmark.pedantic(fn, args=inputs, rounds=1 if impl == "baseline" else 3, iterations=1)
