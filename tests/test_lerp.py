"""The fused multi-alpha lerp (csrc/connectivity.h, mmkern.connectivity._lerp): exact against the formula."""

from __future__ import annotations

import numpy as np
import pytest

from mmkern import _C
from mmkern.connectivity._lerp import lerp_many

torch = pytest.importorskip("torch")

ALPHAS_21 = np.linspace(0.0, 1.0, 21)


def oracle(a: np.ndarray, b: np.ndarray, alphas) -> np.ndarray:
    """(1 - alpha) * a + alpha * b in float64, rounded to a's dtype once (the test oracle)."""
    al = np.asarray(alphas, dtype=np.float64)[:, None]
    a64, b64 = a.astype(np.float64)[None, :], b.astype(np.float64)[None, :]
    return ((1.0 - al) * a64 + al * b64).astype(a.dtype)


def endpoints(rng, p, dtype):
    a = (rng.standard_normal(p) * 3).astype(dtype)
    b = (rng.standard_normal(p) * 3).astype(dtype)
    return a, b


def assert_bitwise(x: np.ndarray, y: np.ndarray) -> None:
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


@pytest.mark.parametrize("k", [1, 21])
@pytest.mark.parametrize("p", [1, 7, 1000, 40_003])
def test_matches_float64_formula_bitwise(rng, dtype, k, p):
    a, b = endpoints(rng, p, dtype)
    alphas = ALPHAS_21 if k == 21 else np.array([0.3])
    out = _C.lerp_many(a, b, alphas)
    assert out.shape == (k, p) and out.dtype == dtype
    assert_bitwise(out, oracle(a, b, alphas))


def test_alphas_outside_unit_interval_and_irregular(rng, dtype):
    a, b = endpoints(rng, 513, dtype)
    alphas = np.array([-0.5, 1e-17, 0.1, 1 / 3, 0.7, 1 - 1e-16, 1.5, 2.0])
    assert_bitwise(lerp_many(a, b, alphas), oracle(a, b, alphas))


def test_endpoints_exact(rng, dtype):
    a, b = endpoints(rng, 2049, dtype)
    out = lerp_many(a, b, [0.0, 1.0])
    assert_bitwise(out[0], a)
    assert_bitwise(out[1], b)


def test_empty_parameter_vector_and_no_alphas(dtype):
    empty = np.zeros(0, dtype=dtype)
    out = lerp_many(empty, empty, ALPHAS_21)
    assert out.shape == (21, 0) and out.dtype == dtype
    a = np.ones(5, dtype=dtype)
    out = lerp_many(a, a, [])
    assert out.shape == (0, 5) and out.dtype == dtype


def test_torch_cpu_tensors(rng, dtype):
    a, b = endpoints(rng, 3001, dtype)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b).requires_grad_(False)
    out = lerp_many(ta, tb, ALPHAS_21)
    assert isinstance(out, torch.Tensor) and out.dtype == ta.dtype and out.shape == (21, 3001)
    assert_bitwise(out.numpy(), oracle(a, b, ALPHAS_21))
    # torch alphas are accepted too
    assert_bitwise(lerp_many(ta, tb, torch.tensor([0.25, 0.5])).numpy(), oracle(a, b, [0.25, 0.5]))


def test_torch_float64_expression_is_the_same_formula(rng, dtype):
    # The fallback of the CUDA route (plain torch expression) gives the kernel's bits.
    from mmkern.connectivity._lerp import _lerp_torch

    a, b = endpoints(rng, 999, dtype)
    expr = _lerp_torch(torch.from_numpy(a), torch.from_numpy(b), ALPHAS_21)
    assert_bitwise(expr.numpy(), lerp_many(a, b, ALPHAS_21))


@pytest.mark.parametrize("bad", [[0.0, np.nan], [np.inf], [[0.1, 0.2]]], ids=["nan", "inf", "2d"])
def test_bad_alphas(bad):
    a = np.zeros(3)
    with pytest.raises(ValueError, match="alphas"):
        lerp_many(a, a, bad)


def test_bad_endpoints():
    a64, a32 = np.zeros(4), np.zeros(4, dtype=np.float32)
    with pytest.raises(TypeError, match="a and b.*dtype"):
        lerp_many(a64, a32, [0.5])
    with pytest.raises(ValueError, match="a and b.*shape"):
        lerp_many(a64, np.zeros(5), [0.5])
    with pytest.raises(ValueError, match="a and b.*1-D"):
        lerp_many(np.zeros((2, 2)), np.zeros((2, 2)), [0.5])
    with pytest.raises(TypeError, match="float32 or float64"):
        lerp_many(np.zeros(4, dtype=np.int64), np.zeros(4, dtype=np.int64), [0.5])
    with pytest.raises(ValueError, match="contiguous"):
        lerp_many(np.zeros(8)[::2], np.zeros(8)[::2], [0.5])
    with pytest.raises(TypeError, match="a and b"):
        lerp_many(torch.zeros(4, dtype=torch.float64), a64, [0.5])
    with pytest.raises(TypeError, match="a and b.*dtype"):
        lerp_many(torch.zeros(4, dtype=torch.float64), torch.zeros(4), [0.5])


def test_binding_rechecks_invariants():
    # The C++ binding re-checks cheap invariants itself: a wrong dtype is a TypeError,
    # a wrong value or shape (std::invalid_argument) a ValueError.
    a = np.zeros(4)
    with pytest.raises(TypeError, match="same dtype"):
        _C.lerp_many(a, a.astype(np.float32), np.array([0.5]))
    with pytest.raises(ValueError, match="same shape"):
        _C.lerp_many(a, np.zeros(3), np.array([0.5]))
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.lerp_many(np.zeros(8)[::2], np.zeros(8)[::2], np.array([0.5]))
    with pytest.raises(TypeError, match="alphas"):
        _C.lerp_many(a, a, np.array([0.5], dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        _C.lerp_many(a, a, np.array([np.nan]))
    with pytest.raises(TypeError, match="float32 or float64"):
        _C.lerp_many(a.astype(np.int32), a.astype(np.int32), np.array([0.5]))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda is not available")
def test_cuda_matches_cpu(rng, dtype):
    a, b = endpoints(rng, 70_001, dtype)
    ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
    out = lerp_many(ta, tb, ALPHAS_21)
    assert out.device == ta.device and out.dtype == ta.dtype and out.shape == (21, 70_001)
    assert_bitwise(out.cpu().numpy(), lerp_many(a, b, ALPHAS_21))
    empty = torch.zeros(0, dtype=ta.dtype, device=ta.device)
    assert lerp_many(empty, empty, ALPHAS_21).shape == (21, 0)
