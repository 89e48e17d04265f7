"""Shared fixtures: dtypes, a seeded rng, devices (and so the two routes), edge shapes, layouts."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from _data import LAYOUTS

DTYPES = (np.float32, np.float64)

#: (n, d) edge shapes for single-pair tests: n = d + 1, d = 1, odd sizes, n = 3d.
EDGE_SHAPES = ((2, 1), (3, 1), (8, 7), (21, 7), (13, 5), (65, 64), (97, 32))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(params=DTYPES, ids=lambda t: np.dtype(t).name)
def dtype(request):
    """Accepted floating dtypes of activations."""
    return np.dtype(request.param)


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A NumPy generator seeded from the test's id: reproducible, different per test case."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=[
    "cpu",
    "torch-route",
    pytest.param("cuda", marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not _cuda_available(), reason="torch.cuda is not available"),
    ]),
])
def device(request) -> str:
    """Torch device of the inputs, and with it the route that computes them.

    ``"cpu"``: torch CPU tensors on the host route (the C++ kernels). ``"torch-route"``: torch
    CPU tensors on the device route (mmkern._backend.torch_route), the stand-in for a GPU on a
    machine without one. ``"cuda"``: CUDA tensors (the device route with mmkern._C_cuda), skipped
    without a GPU. The fixture's value is the torch device to put the tensors on.
    """
    if request.param == "torch-route":
        pytest.importorskip("torch")
        from mmkern._backend import torch_route

        with torch_route():
            yield "cpu"
        return
    yield request.param


@pytest.fixture(params=EDGE_SHAPES, ids=lambda s: f"n{s[0]}-d{s[1]}")
def edge_shape(request) -> tuple[int, int]:
    """An (n, d) edge shape."""
    return request.param


@pytest.fixture(params=LAYOUTS)
def layout(request) -> str:
    """Memory layout of inputs: C-ordered, Fortran-ordered or a non-contiguous slice."""
    return request.param


#: Case names of ``_connectivity_cases.MODELS`` (kept here so collecting needs no torch).
CONNECTIVITY_CASES = ("cnn-bn", "cnn-ln-gn", "mlp", "mlp-bn-dropout", "mlp-dropout", "mlp-nobias")


@pytest.fixture(params=["reference", "mmkern"])
def impl(request):
    """The connectivity module under test: the plain reference loop or the fast path."""
    pytest.importorskip("torch")
    from _connectivity_cases import IMPLEMENTATIONS

    return IMPLEMENTATIONS[request.param]


@pytest.fixture(params=CONNECTIVITY_CASES)
def setup(request):
    """(model_a, model_b, data, bn_data): two small torch models of one case and their data."""
    pytest.importorskip("torch")
    from _connectivity_cases import make_setup

    return make_setup(request.param)
