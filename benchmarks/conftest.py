"""pytest-benchmark wiring shared by every ``bench_<suite>.py`` file.

Each file names its suite (``SUITE = "similarity"``) and defines its test with
:func:`mmkern.bench.runner.compare_with_baseline`; the cases come from :mod:`mmkern.bench`, the
same ones ``mmkern bench <suite>`` runs. ``--quick`` shrinks them to a seconds-long smoke run.
"""


from mmkern.bench import suite_cases


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="small benchmark sizes (CI smoke run)")


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        cases = suite_cases(metafunc.module.SUITE, quick=metafunc.config.getoption("--quick"))
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])
    if "impl" in metafunc.fixturenames:
        metafunc.parametrize("impl", ["baseline", "mmkern"])
