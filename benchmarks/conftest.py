"""pytest-benchmark options: ``--quick`` shrinks every case to a seconds-long smoke run."""


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="small benchmark sizes (CI smoke run)")
