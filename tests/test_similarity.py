"""The fast public similarity API (mmkern.svcca, ...) against the NumPy reference.

Every fast result is compared with :mod:`mmkern.reference` run on the same values (float32
inputs are widened exactly, so both see the same numbers), with the tolerance of the input dtype
from ``tests/tolerances.py``. Then properties, degenerate inputs, the streaming accumulator,
torch inputs and every rejected input.
"""

from __future__ import annotations

import contextlib
import math
import re

import numpy as np
import pytest
from numpy.testing import assert_allclose

import mmkern
from _data import latent_activations, noise_activations, with_layout
from _formulas import feature_debiased_cka
from mmkern import reference as ref
from tolerances import ACCUMULATOR, DEVICE_VS_HOST, PROPERTY, tol

# (n, d): d in {1, 7, 64, 300} and n in {d + 1, 3d, 10^4}, plus (4, 1) so that d = 1 has a case
# with n >= 4 for debiased CKA. (10^4, 300) is left out: the reference (full SVDs, a Python loop
# over 300 PWCCA variates, n x n debiased-CKA Grams) would take most of the test budget for no
# code path the other shapes do not already reach.
PAIR_SHAPES = [
    (2, 1), (3, 1), (4, 1), (10_000, 1),
    (8, 7), (21, 7), (10_000, 7),
    (65, 64), (192, 64), (10_000, 64),
    (301, 300), (900, 300),
]

#: The reference's debiased CKA forms n x n Gram matrices; above this n the test compares with
#: the feature-space formula instead (checked against the reference in the reference tests).
MAX_N_FOR_GRAM_REFERENCE = 3000


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _shape_id(shape):
    return f"n{shape[0]}-d{shape[1]}"


def _y_width(d: int) -> int:
    """A second width that differs from ``d`` (except d = 1), to exercise d1 != d2."""
    return max(1, (2 * d) // 3 + 1) if d > 1 else 1


def _pair(rng, n, d, dtype, layout="C"):
    x, y = latent_activations(rng, n, [d, _y_width(d)], dtype=dtype)
    return with_layout(x, layout), with_layout(y, layout)


def _as64(a):
    return np.asarray(a).astype(np.float64)


def _reference_cka(x, y, debiased):
    if debiased and x.shape[0] > MAX_N_FOR_GRAM_REFERENCE:
        return feature_debiased_cka(_as64(x), _as64(y))
    return ref.cka(x, y, debiased=debiased)


def _approx(expected):
    """``pytest.approx`` with the tolerance of exact properties (self-similarity, invariances)."""
    return pytest.approx(expected, rel=PROPERTY["rtol"], abs=PROPERTY["atol"])


def _assert_close(actual, expected, dtype, inputs=()):
    """Compare with the dtype's tolerance. The in-memory fast path re-whitens each model
    (CholeskyQR2), so its error is ~eps * cond(X) like the reference's SVD: no widening for
    ill-conditioned inputs (``inputs`` is accepted for call-site symmetry and ignored)."""
    assert_allclose(actual, expected, **tol(dtype))


# ---------------------------------------------------------------------------------------------
# Single pairs: fast vs reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", PAIR_SHAPES, ids=_shape_id)
def test_cca_matches_reference(rng, shape, dtype, layout):
    x, y = _pair(rng, *shape, dtype, layout)
    got, want = mmkern.cca(x, y), ref.cca(x, y)
    assert isinstance(got.correlations, np.ndarray) and got.correlations.dtype == np.float64
    assert got.correlations.shape == want.correlations.shape
    assert isinstance(got.mean, float) and isinstance(got.r2, float)
    _assert_close(got.correlations, want.correlations, dtype, (x, y))
    _assert_close(got.mean, want.mean, dtype, (x, y))
    _assert_close(got.r2, want.r2, dtype, (x, y))


@pytest.mark.parametrize("shape", PAIR_SHAPES, ids=_shape_id)
def test_svcca_matches_reference(rng, shape, dtype, layout):
    x, y = _pair(rng, *shape, dtype, layout)
    got = mmkern.svcca(x, y)
    assert isinstance(got, float)
    _assert_close(got, ref.svcca(x, y), dtype, (x, y))


@pytest.mark.parametrize("keep, keep_by", [
    (0.6, "singular_values"), (0.5, "variance"), (1.0, "variance"), (3, "variance"),
    (0.95, "singular_values"),
])
@pytest.mark.parametrize("shape", PAIR_SHAPES, ids=_shape_id)
def test_svcca_options_match_reference(rng, shape, dtype, keep, keep_by):
    # the layouts are covered by test_svcca_matches_reference; here the choice of k
    x, y = _pair(rng, *shape, dtype)
    if isinstance(keep, int):
        keep = min(keep, x.shape[1], y.shape[1])
    _assert_close(mmkern.svcca(x, y, keep, keep_by=keep_by),
                  ref.svcca(x, y, keep, keep_by=keep_by), dtype, (x, y))


@pytest.mark.parametrize("shape", PAIR_SHAPES, ids=_shape_id)
def test_pwcca_matches_reference(rng, shape, dtype, layout):
    x, y = _pair(rng, *shape, dtype, layout)
    got_xy, got_yx = mmkern.pwcca(x, y), mmkern.pwcca(y, x)
    assert isinstance(got_xy, float)
    _assert_close(got_xy, ref.pwcca(x, y), dtype, (x, y))
    _assert_close(got_yx, ref.pwcca(y, x), dtype, (x, y))


@pytest.mark.parametrize("debiased", [False, True], ids=["biased", "debiased"])
@pytest.mark.parametrize("shape", PAIR_SHAPES + [(5, 40), (30, 300)], ids=_shape_id)
def test_cka_matches_reference(rng, shape, dtype, layout, debiased):
    n, d = shape
    if debiased and n < 4:
        pytest.skip("debiased CKA needs n >= 4 (tested in the error cases)")
    x, y = _pair(rng, n, d, dtype, layout)
    got = mmkern.cka(x, y, debiased=debiased)
    assert isinstance(got, float)
    _assert_close(got, _reference_cka(x, y, debiased), dtype)


@pytest.mark.parametrize("keep, keep_by, expected_k", [
    (0.5, "variance", 1), (0.8, "variance", 2), (0.79999, "variance", 2), (0.8000001, "variance", 3),
    (0.95, "variance", 3), (0.99, "variance", 4), (0.5, "singular_values", 2), (1.0, "variance", 5),
])
def test_svcca_keeps_the_documented_number_of_directions(rng, keep, keep_by, expected_k):
    # x has singular values sqrt(50, 30, 15, 4, 1) (so keep=0.8 is reached exactly, up to the
    # KEEP_SLACK rounding allowance); y = one left singular vector u_j of x. SVCCA(x, u_j) is 1
    # when x keeps direction j and 0 otherwise, which reads off the k the fast path chose.
    n, variances = 60, np.array([50.0, 30.0, 15.0, 4.0, 1.0])
    a = rng.standard_normal((n, 5))
    u, _ = np.linalg.qr(a - a.mean(axis=0))
    x = u @ np.diag(np.sqrt(variances)) @ _orthogonal(rng, 5).T + 5.0
    got = [mmkern.svcca(x, u[:, j:j + 1], keep, keep_by=keep_by) for j in range(5)]
    assert_allclose(got, [1.0] * expected_k + [0.0] * (5 - expected_k), atol=1e-9)


def test_non_native_byte_order_is_accepted(rng):
    x, y = latent_activations(rng, 50, [4, 3])
    swapped = x.astype(x.dtype.newbyteorder())
    _assert_close(mmkern.svcca(swapped, y), ref.svcca(x, y), np.float64)


def test_float16_is_upcast(rng):
    x, y = latent_activations(rng, 100, [6, 4], dtype=np.float16)
    x64, y64 = _as64(x), _as64(y)
    _assert_close(mmkern.svcca(x, y), ref.svcca(x64, y64), np.float32)
    _assert_close(mmkern.cca(x, y).correlations, ref.cca(x64, y64).correlations, np.float32)
    _assert_close(mmkern.pwcca(x, y), ref.pwcca(x64, y64), np.float32)
    _assert_close(mmkern.cka(x, y, debiased=True), ref.cka(x64, y64, debiased=True), np.float32)
    _assert_close(mmkern.pairwise_svcca([x, y]), ref.pairwise_svcca([x64, y64]), np.float32)


def test_mixed_dtypes_and_layouts(rng):
    x, y = latent_activations(rng, 120, [9, 5])
    x32 = x.astype(np.float32)
    yf = with_layout(y, "sliced")
    _assert_close(mmkern.svcca(x32, yf), ref.svcca(x32, yf), np.float32)
    _assert_close(mmkern.pwcca(yf, x32), ref.pwcca(yf, x32), np.float32)
    _assert_close(mmkern.pairwise_cca([x32, yf, with_layout(x, "F")]),
                  ref.pairwise_cca([x32, yf, x]), np.float32)


# ---------------------------------------------------------------------------------------------
# Batched (b, n, d) inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["svcca", "pwcca", "cka", "cka_debiased"])
def test_batched_matches_reference(rng, dtype, layout, metric):
    b, n = 3, 60
    xs = np.stack([np.hstack(latent_activations(rng, n, [5])) for _ in range(b)]).astype(dtype)
    ys = np.stack([np.hstack(latent_activations(rng, n, [8])) for _ in range(b)]).astype(dtype)
    xs, ys = with_layout(xs, layout), with_layout(ys, layout)
    if metric == "cka_debiased":
        got, want = mmkern.cka(xs, ys, debiased=True), ref.cka(xs, ys, debiased=True)
    else:
        got, want = getattr(mmkern, metric)(xs, ys), getattr(ref, metric)(xs, ys)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (b,)
    _assert_close(got, want, dtype)
    # each item equals the unbatched call
    for i in range(b):
        single = (mmkern.cka(xs[i], ys[i], debiased=True) if metric == "cka_debiased"
                  else getattr(mmkern, metric)(xs[i], ys[i]))
        assert got[i] == pytest.approx(single, rel=1e-12, abs=1e-14)


def test_batched_svcca_options(rng):
    xs = np.stack(latent_activations(rng, 40, [6, 6, 6, 6]))
    ys = np.stack(latent_activations(rng, 40, [3, 3, 3, 3]))
    for keep, keep_by in [(2, "variance"), (0.7, "singular_values")]:
        _assert_close(mmkern.svcca(xs, ys, keep, keep_by=keep_by),
                      ref.svcca(xs, ys, keep, keep_by=keep_by), np.float64)


# ---------------------------------------------------------------------------------------------
# Pairwise and cross matrices
# ---------------------------------------------------------------------------------------------


def _population(rng, case, dtype):
    if case == "M8-mixed-widths":
        widths = [1, 13, 40, 7, 25, 3, 40, 18]
        return latent_activations(rng, 200, widths, dtype=dtype)
    if case == "M3-n10000":
        return latent_activations(rng, 10_000, [1, 7, 5], dtype=dtype)
    if case == "M1":
        return latent_activations(rng, 30, [4], dtype=dtype)
    if case == "M2-n=d+1":
        return latent_activations(rng, 41, [40, 40], dtype=dtype)
    if case == "M5-stacked":
        return np.stack(latent_activations(rng, 50, [6] * 5, dtype=dtype))
    if case == "M4-layouts":
        acts = latent_activations(rng, 90, [5, 9, 5, 11], dtype=dtype)
        return [with_layout(a, lay) for a, lay in zip(acts, ["C", "F", "sliced", "sliced"])]
    raise ValueError(case)


POPULATIONS = ["M8-mixed-widths", "M3-n10000", "M1", "M2-n=d+1", "M5-stacked", "M4-layouts"]

PAIRWISE_METRICS = {
    "svcca": (lambda m, a: m.pairwise_svcca(a), True),
    "svcca-sv-0.8": (lambda m, a: m.pairwise_svcca(a, 0.8, keep_by="singular_values"), True),
    "svcca-int1": (lambda m, a: m.pairwise_svcca(a, 1), True),
    "cca-mean": (lambda m, a: m.pairwise_cca(a), True),
    "cca-r2": (lambda m, a: m.pairwise_cca(a, statistic="r2"), True),
    "pwcca": (lambda m, a: m.pairwise_pwcca(a), False),
    "cka": (lambda m, a: m.pairwise_cka(a), True),
    "cka-debiased": (lambda m, a: m.pairwise_cka(a, debiased=True), True),
}


@pytest.mark.parametrize("metric", list(PAIRWISE_METRICS))
@pytest.mark.parametrize("case", POPULATIONS)
def test_pairwise_matches_reference(rng, case, metric, dtype):
    acts = _population(rng, case, dtype)
    call, symmetric = PAIRWISE_METRICS[metric]
    m = len(acts)
    if metric == "cka-debiased" and case == "M3-n10000":
        # the reference forms 10^4 x 10^4 Gram matrices; use the feature-space formula
        want = np.array([[feature_debiased_cka(a, b) for b in acts] for a in acts])
    else:
        want = call(ref, acts)
    got = call(mmkern, acts)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (m, m)
    _assert_close(got, want, dtype, () if metric.startswith("cka") else list(acts))
    assert_allclose(np.diag(got), 1.0, **PROPERTY)
    if symmetric:
        assert_allclose(got, got.T, rtol=0, atol=0)


def test_edge_shapes_pairwise_and_streaming(rng, edge_shape, layout):
    n, d = edge_shape
    acts = [with_layout(a, layout) for a in latent_activations(rng, n, [d, d, max(1, d - 1)])]
    calls = [
        (mmkern.pairwise_svcca, ref.pairwise_svcca, "svcca"),
        (mmkern.pairwise_cca, ref.pairwise_cca, "cca"),
        (mmkern.pairwise_pwcca, ref.pairwise_pwcca, "pwcca"),
        (mmkern.pairwise_cka, ref.pairwise_cka, "cka"),
    ]
    acc = mmkern.SimilarityAccumulator(3)
    acc.update([a[:1] for a in acts])  # a single first row
    if n > 1:
        acc.update([a[1:] for a in acts])
    for fast, slow, method in calls:
        inputs = () if method == "cka" else acts
        _assert_close(fast(acts), slow(acts), np.float64, inputs)
        _assert_close(getattr(acc, method)(), slow(acts), np.float64, inputs)
    if n >= 4:
        _assert_close(mmkern.pairwise_cka(acts, debiased=True), ref.pairwise_cka(acts, debiased=True),
                      np.float64)
        _assert_close(acc.cka(debiased=True), ref.pairwise_cka(acts, debiased=True), np.float64)


def test_pairwise_accepts_tuples_and_stacked_arrays(rng):
    acts = latent_activations(rng, 60, [5, 5, 5])
    stacked = np.stack(acts)
    expected = mmkern.pairwise_svcca(acts)
    assert_allclose(mmkern.pairwise_svcca(tuple(acts)), expected, rtol=0)
    assert_allclose(mmkern.pairwise_svcca(stacked), expected, rtol=1e-13)
    assert_allclose(mmkern.pairwise_svcca(np.asfortranarray(stacked)), expected, rtol=1e-13)


@pytest.mark.parametrize("metric", ["svcca", "cca", "cca-r2", "pwcca", "cka", "cka-debiased"])
def test_cross_matches_reference(rng, dtype, metric):
    acts = latent_activations(rng, 150, [4, 9, 6, 12, 3], dtype=dtype)
    a, b = acts[:3], [acts[3], with_layout(acts[4], "sliced")]
    calls = {
        "svcca": lambda m: m.cross_svcca(a, b, 0.9),
        "cca": lambda m: m.cross_cca(a, b),
        "cca-r2": lambda m: m.cross_cca(a, b, statistic="r2"),
        "pwcca": lambda m: m.cross_pwcca(a, b),
        "cka": lambda m: m.cross_cka(a, b),
        "cka-debiased": lambda m: m.cross_cka(a, b, debiased=True),
    }
    got = calls[metric](mmkern)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (3, 2)
    _assert_close(got, calls[metric](ref), dtype)


def test_cross_is_consistent_with_pairwise(rng):
    acts = latent_activations(rng, 100, [4, 6, 8, 5])
    full = mmkern.pairwise_svcca(acts)
    cross = mmkern.cross_svcca(acts[:2], acts[2:])
    assert_allclose(cross, full[:2, 2:], rtol=1e-12)
    pw = mmkern.pairwise_pwcca(acts)
    assert_allclose(mmkern.cross_pwcca(acts[2:], acts[:2]), pw[2:, :2], rtol=1e-12)
    stacked = np.stack(latent_activations(rng, 50, [3, 3, 3]))
    assert mmkern.cross_cka(stacked, stacked[:1]).shape == (3, 1)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


def _invertible(rng, d):
    return rng.standard_normal((d, d)) / np.sqrt(d) + 2.0 * np.eye(d)


def _orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def test_self_similarity_is_one(rng):
    x = latent_activations(rng, 300, [12])[0]
    assert mmkern.svcca(x, x) == _approx(1.0)
    assert mmkern.svcca(x, x, 4) == _approx(1.0)
    result = mmkern.cca(x, x)
    assert_allclose(result.correlations, 1.0, **PROPERTY)
    assert result.mean == _approx(1.0)
    assert result.r2 == _approx(1.0)
    assert mmkern.pwcca(x, x) == _approx(1.0)
    assert mmkern.cka(x, x) == _approx(1.0)
    assert mmkern.cka(x, x, debiased=True) == _approx(1.0)


def test_symmetry(rng):
    x, y = latent_activations(rng, 200, [10, 6])
    assert mmkern.svcca(x, y) == _approx(mmkern.svcca(y, x))
    assert_allclose(mmkern.cca(x, y).correlations, mmkern.cca(y, x).correlations, **PROPERTY)
    assert mmkern.cka(x, y) == _approx(mmkern.cka(y, x))
    assert mmkern.cka(x, y, debiased=True) == _approx(mmkern.cka(y, x, debiased=True))
    # PWCCA weights come from the first argument: not symmetric
    assert mmkern.pwcca(x, y) != pytest.approx(mmkern.pwcca(y, x), rel=1e-6)


@pytest.mark.parametrize("d1, d2", [(7, 7), (12, 5), (1, 3)])
def test_cca_and_svcca_invariant_to_invertible_maps(rng, d1, d2):
    x, y = latent_activations(rng, 400, [d1, d2])
    a, b = _invertible(rng, d1), _invertible(rng, d2)
    xa, yb = x @ a + 3.0, y @ b - 1.0
    assert_allclose(mmkern.cca(xa, yb).correlations, mmkern.cca(x, y).correlations, **PROPERTY)
    assert mmkern.svcca(xa, yb, 1.0) == _approx(mmkern.svcca(x, y, 1.0))
    if d1 == d2:  # an int keep covering every direction (a smaller k is not invariant)
        assert mmkern.svcca(xa, yb, d1) == _approx(mmkern.svcca(x, y, d1))
    assert mmkern.svcca(x @ a, x, 1.0) == _approx(1.0)
    assert mmkern.svcca(x @ a, x, d1) == _approx(1.0)
    assert mmkern.pwcca(x @ a, x) == _approx(1.0)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariant_to_orthogonal_maps_and_scaling(rng, debiased):
    x, y = latent_activations(rng, 150, [9, 14])
    base = mmkern.cka(x, y, debiased=debiased)
    q = _orthogonal(rng, 9)
    assert mmkern.cka(x @ q, y, debiased=debiased) == _approx(base)
    assert mmkern.cka(4.5 * x, 0.01 * y, debiased=debiased) == _approx(base)
    assert mmkern.cka(x + 100.0, y, debiased=debiased) == _approx(base)
    pair = mmkern.pairwise_cka([x, x @ q * 2.0, y], debiased=debiased)
    assert pair[0, 1] == _approx(1.0)


def test_svcca_of_noise_is_far_below_linear_transform(rng):
    n, d = 2000, 20
    x = latent_activations(rng, n, [d], latent_dim=d, noise=0.3)[0]
    linear = mmkern.svcca(x, x @ _invertible(rng, d) + 0.05 * rng.standard_normal((n, d)))
    noise = mmkern.svcca(x, noise_activations(rng, n, d))
    assert linear > 0.95
    assert noise < 0.2
    acts = [x, x @ _invertible(rng, d), noise_activations(rng, n, d)]
    p = mmkern.pairwise_svcca(acts)
    assert p[0, 1] > 0.99 and p[0, 2] < 0.2 and p[1, 2] < 0.2


# ---------------------------------------------------------------------------------------------
# Degenerate inputs: constant columns, rank deficiency
# ---------------------------------------------------------------------------------------------


def _degenerate_cases(rng):
    n = 120
    x, y = latent_activations(rng, n, [6, 5])
    z = rng.standard_normal((n, 3))
    return {
        "constant-columns": np.hstack([x[:, :2], np.full((n, 1), 1e3), x[:, 2:], np.zeros((n, 1))]),
        "duplicated-columns": np.hstack([x, x[:, :3]]),
        "dependent-columns": np.hstack([x, x[:, :1] - 2.5 * x[:, 4:5], x @ rng.standard_normal((6, 2))]),
        "low-rank": z @ rng.standard_normal((3, 10)) + 4.0,
        "one-variable-column": np.hstack([np.full((n, 3), -2.0), x[:, :1]]),
    }, y


@pytest.mark.parametrize("case", ["constant-columns", "duplicated-columns", "dependent-columns",
                                  "low-rank", "one-variable-column"])
def test_degenerate_inputs_match_reference_and_are_finite(rng, case):
    cases, y = _degenerate_cases(rng)
    x = cases[case]
    k_max = min(x.shape[1], y.shape[1])
    results = {
        "cca": (mmkern.cca(x, y).correlations, ref.cca(x, y).correlations),
        "cca-yx": (mmkern.cca(y, x).correlations, ref.cca(y, x).correlations),
        "svcca": (mmkern.svcca(x, y), ref.svcca(x, y)),
        "svcca-1.0": (mmkern.svcca(x, y, 1.0), ref.svcca(x, y, 1.0)),
        "svcca-int": (mmkern.svcca(x, y, 3), ref.svcca(x, y, 3)),
        "svcca-int-max": (mmkern.svcca(x, y, k_max), ref.svcca(x, y, k_max)),  # above the rank
        "pwcca": (mmkern.pwcca(x, y), ref.pwcca(x, y)),
        "pwcca-yx": (mmkern.pwcca(y, x), ref.pwcca(y, x)),
        "cka": (mmkern.cka(x, y), ref.cka(x, y)),
        "cka-debiased": (mmkern.cka(x, y, debiased=True), ref.cka(x, y, debiased=True)),
        "self-svcca": (mmkern.svcca(x, x), 1.0),
        "self-cka": (mmkern.cka(x, x), 1.0),
    }
    for name, (got, want) in results.items():
        assert np.all(np.isfinite(got)), name
        assert np.shape(got) == np.shape(want), name
        assert_allclose(got, want, err_msg=name, **tol(np.float64))
    acts = [x, y, x[:, ::-1].copy()]
    for fast, slow in [(mmkern.pairwise_svcca(acts), ref.pairwise_svcca(acts)),
                       (mmkern.pairwise_pwcca(acts), ref.pairwise_pwcca(acts)),
                       (mmkern.pairwise_cca(acts, statistic="r2"), ref.pairwise_cca(acts, statistic="r2")),
                       (mmkern.pairwise_cka(acts, debiased=True), ref.pairwise_cka(acts, debiased=True))]:
        assert np.all(np.isfinite(fast))
        _assert_close(fast, slow, np.float64)


def test_debiased_cka_tiny_samples_never_nan(rng):
    for _ in range(30):
        x = rng.standard_normal((4, 1))
        y = rng.standard_normal((4, 3))
        got = mmkern.cka(x, y, debiased=True)
        assert np.isfinite(got) and -1.0 <= got <= 1.0
        assert got == pytest.approx(ref.cka(x, y, debiased=True), rel=1e-9, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Streaming accumulator
# ---------------------------------------------------------------------------------------------

ACC_METHODS = {
    "svcca": (lambda acc: acc.svcca(), lambda a: mmkern.pairwise_svcca(a)),
    "svcca-int": (lambda acc: acc.svcca(2), lambda a: mmkern.pairwise_svcca(a, 2)),
    "svcca-sv": (lambda acc: acc.svcca(0.7, keep_by="singular_values"),
                 lambda a: mmkern.pairwise_svcca(a, 0.7, keep_by="singular_values")),
    "cca": (lambda acc: acc.cca(), lambda a: mmkern.pairwise_cca(a)),
    "cca-r2": (lambda acc: acc.cca(statistic="r2"), lambda a: mmkern.pairwise_cca(a, statistic="r2")),
    "pwcca": (lambda acc: acc.pwcca(), lambda a: mmkern.pairwise_pwcca(a)),
    "cka": (lambda acc: acc.cka(), lambda a: mmkern.pairwise_cka(a)),
    "cka-debiased": (lambda acc: acc.cka(debiased=True), lambda a: mmkern.pairwise_cka(a, debiased=True)),
}

BATCH_SIZES = [1, 37, 200, 3, 1, 158]  # uneven, starting with a single row; sums to 400


def _accumulate(acc, acts, sizes):
    start = 0
    for size in sizes:
        acc.update([a[start:start + size] for a in acts])
        start += size
    return acc


def _stream_population(rng, dtype=np.float64):
    # large offsets stress the centering of streamed sums; a constant column stresses rank
    acts = latent_activations(rng, sum(BATCH_SIZES), [3, 8, 5, 12], dtype=dtype)
    acts = [a + np.asarray(50.0, dtype=dtype) for a in acts]
    acts[1][:, 2] = 7.0
    return acts


def test_accumulator_matches_in_memory(rng):
    acts = _stream_population(rng)
    acc = _accumulate(mmkern.SimilarityAccumulator(len(acts)), acts, BATCH_SIZES)
    assert acc.n_samples == sum(BATCH_SIZES)
    for name, (streamed, in_memory) in ACC_METHODS.items():
        got = streamed(acc)
        assert isinstance(got, np.ndarray) and got.shape == (4, 4) and got.dtype == np.float64, name
        assert_allclose(got, in_memory(acts), err_msg=name, **ACCUMULATOR)
    assert_allclose(acc.svcca(), ref.pairwise_svcca(acts), **ACCUMULATOR)
    assert_allclose(acc.pwcca(), ref.pairwise_pwcca(acts), **ACCUMULATOR)
    assert_allclose(acc.cka(debiased=True), ref.pairwise_cka(acts, debiased=True), **ACCUMULATOR)


def test_accumulator_float32_batches(rng):
    acts = _stream_population(rng, np.float32)
    acc = _accumulate(mmkern.SimilarityAccumulator(4), [with_layout(a, "sliced") for a in acts],
                      BATCH_SIZES)
    _assert_close(acc.svcca(), ref.pairwise_svcca(acts), np.float32)
    _assert_close(acc.cka(), ref.pairwise_cka(acts), np.float32)


def test_accumulator_save_load_resumes(rng, tmp_path):
    acts = _stream_population(rng)
    path = tmp_path / "acc.npz"
    acc = _accumulate(mmkern.SimilarityAccumulator(4), [a[:238] for a in acts], BATCH_SIZES[:3])
    acc.save(path)
    partial = acc.svcca()
    resumed = mmkern.SimilarityAccumulator.load(path)
    assert resumed.n_samples == 238
    assert_allclose(resumed.svcca(), partial, rtol=1e-13, atol=1e-15)
    _accumulate(resumed, [a[238:] for a in acts], BATCH_SIZES[3:])
    _accumulate(acc, [a[238:] for a in acts], BATCH_SIZES[3:])
    assert resumed.n_samples == acc.n_samples == sum(BATCH_SIZES)
    for name, (streamed, in_memory) in ACC_METHODS.items():
        assert_allclose(streamed(resumed), streamed(acc), rtol=1e-13, atol=1e-15, err_msg=name)
        assert_allclose(streamed(resumed), in_memory(acts), err_msg=name, **ACCUMULATOR)
    # an empty accumulator round-trips too
    mmkern.SimilarityAccumulator(2).save(tmp_path / "empty.npz")
    empty = mmkern.SimilarityAccumulator.load(tmp_path / "empty.npz")
    assert empty.n_samples == 0
    empty.update([acts[0][:50], acts[2][:50]])
    assert_allclose(empty.cka(), mmkern.pairwise_cka([acts[0][:50], acts[2][:50]]), **ACCUMULATOR)


def test_accumulator_bad_input(rng, tmp_path):
    acts = _stream_population(rng)
    acc = _accumulate(mmkern.SimilarityAccumulator(4), acts, [100])
    before = acc.svcca()
    bad = [a[100:120].copy() for a in acts]
    bad[2][3, 1] = np.nan
    with pytest.raises(ValueError, match=re.escape("2]")):
        acc.update(bad)
    assert acc.n_samples == 100
    assert_allclose(acc.svcca(), before, rtol=0, atol=0)
    with pytest.raises(ValueError):
        acc.update([a[:10] for a in acts[:3]])  # wrong number of models
    with pytest.raises(ValueError):
        acc.update([acts[0][:10, :2], *[a[:10] for a in acts[1:]]])  # width changed
    with pytest.raises(ValueError):
        acc.update([acts[0][:10], acts[1][:11], *[a[:10] for a in acts[2:]]])  # n differs
    with pytest.raises(TypeError):
        acc.update([acts[0][:10].astype(np.int64), *[a[:10] for a in acts[1:]]])
    with pytest.raises(ValueError):
        mmkern.SimilarityAccumulator(0)
    with pytest.raises(ValueError):
        mmkern.SimilarityAccumulator(2).svcca()  # nothing accumulated
    with pytest.raises(ValueError, match="sample"):
        _accumulate(mmkern.SimilarityAccumulator(4), acts, [5]).svcca()  # n <= d
    assert np.all(np.isfinite(_accumulate(mmkern.SimilarityAccumulator(4), acts, [5]).cka()))
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError):
        mmkern.SimilarityAccumulator.load(tmp_path / "junk.npz")


# ---------------------------------------------------------------------------------------------
# torch inputs: torch out, on every route (the ``device`` fixture: host, torch route, CUDA), with
# the host route's NumPy results as ground truth and tolerances.DEVICE_VS_HOST per dtype
# ---------------------------------------------------------------------------------------------

#: Every public similarity call on three models (x, y, z) of one array kind.
PUBLIC_CALLS = {
    "svcca": lambda m, x, y, z: m.svcca(x, y),
    "svcca-keep-2": lambda m, x, y, z: m.svcca(x, y, 2),
    "svcca-singular-values": lambda m, x, y, z: m.svcca(x, y, 0.8, keep_by="singular_values"),
    "pwcca": lambda m, x, y, z: m.pwcca(x, y),
    "cka": lambda m, x, y, z: m.cka(x, y),
    "cka-debiased": lambda m, x, y, z: m.cka(x, y, debiased=True),
    "cca-mean": lambda m, x, y, z: m.cca(x, y).mean,
    "cca-r2": lambda m, x, y, z: m.cca(x, y).r2,
    "cca-correlations": lambda m, x, y, z: m.cca(x, y).correlations,
    "batched-svcca": lambda m, x, y, z: m.svcca(_stack(x, z), _stack(y, y)),
    "batched-pwcca": lambda m, x, y, z: m.pwcca(_stack(x, z), _stack(y, 2 * y + 1)),
    "batched-cka": lambda m, x, y, z: m.cka(_stack(x, z), _stack(y, 2 * y + 1), debiased=True),
    "pairwise-svcca": lambda m, x, y, z: m.pairwise_svcca([x, y, z], 0.9),
    "pairwise-cca-r2": lambda m, x, y, z: m.pairwise_cca([x, y, z], statistic="r2"),
    "pairwise-pwcca": lambda m, x, y, z: m.pairwise_pwcca([x, y, z]),
    "pairwise-cka": lambda m, x, y, z: m.pairwise_cka([x, y, z]),
    "pairwise-cka-debiased": lambda m, x, y, z: m.pairwise_cka([x, y, z], debiased=True),
    "cross-svcca": lambda m, x, y, z: m.cross_svcca([x], [y, z]),
    "cross-pwcca": lambda m, x, y, z: m.cross_pwcca([x, z], [y]),
    "cross-cka": lambda m, x, y, z: m.cross_cka([x, z], [y]),
}


def _stack(a, b):
    if isinstance(a, np.ndarray):
        return np.stack([a, b])
    import torch

    return torch.stack([a, b])


def _tensors(arrays, device):
    import torch

    return [torch.from_numpy(np.asarray(a)).to(device) for a in arrays]


def _host(v):
    return v.cpu().numpy() if hasattr(v, "cpu") else np.asarray(v)


def _on_every_route(fn, arrays, device, dtype):
    """``fn(*tensors)`` on the device's route against ``fn(*arrays)`` on the host route: same
    result type (a float, or a float64 tensor on the device), values within DEVICE_VS_HOST."""
    import torch

    want = fn(*arrays)
    got = fn(*_tensors(arrays, device))
    if isinstance(want, np.ndarray):
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        assert got.device.type == device and got.shape == want.shape
    else:
        assert isinstance(got, float)
    assert_allclose(_host(got), want, **DEVICE_VS_HOST[np.dtype(dtype)])
    return got


@pytest.mark.parametrize("call", list(PUBLIC_CALLS))
def test_torch_inputs_on_every_route(rng, device, dtype, call):
    torch = pytest.importorskip("torch")
    x, y, z = latent_activations(rng, 150, [6, 9, 6], dtype=dtype)
    fn = lambda *a: PUBLIC_CALLS[call](mmkern, *a)  # noqa: E731
    _on_every_route(fn, [x, y, z], device, dtype)
    # A transposed (column-major) view of z: the other read orientation of the row pack.
    tz = torch.from_numpy(np.ascontiguousarray(z.T)).to(device).T
    tx, ty = _tensors([x, y], device)
    assert_allclose(_host(fn(tx, ty, tz)), fn(x, y, z), **DEVICE_VS_HOST[np.dtype(dtype)])


@pytest.mark.parametrize("metric", ["svcca", "cca", "pwcca", "cka", "cka-debiased"])
def test_device_route_matches_reference(rng, device, dtype, layout, metric):
    pytest.importorskip("torch")
    acts = [with_layout(a, layout) for a in latent_activations(rng, 90, [5, 9, 1, 7], dtype=dtype)]
    fast, slow = {
        "svcca": (mmkern.pairwise_svcca, ref.pairwise_svcca),
        "cca": (mmkern.pairwise_cca, ref.pairwise_cca),
        "pwcca": (mmkern.pairwise_pwcca, ref.pairwise_pwcca),
        "cka": (mmkern.pairwise_cka, ref.pairwise_cka),
        "cka-debiased": (lambda a: mmkern.pairwise_cka(a, debiased=True), lambda a: ref.pairwise_cka(a, debiased=True)),
    }[metric]
    got = _host(fast(_tensors(acts, device)))
    assert_allclose(got, slow(acts), **tol(dtype))


@pytest.mark.parametrize("keep, keep_by", [
    (0.99, "variance"), (0.5, "variance"), (1.0, "variance"), (0.8, "singular_values"),
    (0.3, "singular_values"), (1, "variance"), (3, "variance"),
])
def test_device_route_svcca_keep_modes(rng, device, dtype, keep, keep_by):
    pytest.importorskip("torch")
    acts = latent_activations(rng, 120, [6, 10, 8], dtype=dtype, latent_dim=4)
    got = mmkern.pairwise_svcca(_tensors(acts, device), keep, keep_by=keep_by)
    assert_allclose(_host(got), ref.pairwise_svcca(acts, keep, keep_by=keep_by), **tol(dtype))


@pytest.mark.parametrize("case", ["constant-columns", "duplicated-columns", "dependent-columns",
                                  "low-rank", "one-variable-column"])
@pytest.mark.parametrize("call", ["pairwise-svcca", "pairwise-cca-r2", "pairwise-pwcca", "pairwise-cka",
                                  "pairwise-cka-debiased", "cca-correlations", "svcca-keep-2"])
def test_device_route_degenerate_inputs(rng, device, case, call):
    """Constant, duplicated and dependent columns and low rank: the same ranks, the same values
    on both routes (one implementation of the rank and keep rules, _C.factor_counts)."""
    pytest.importorskip("torch")
    cases, y = _degenerate_cases(rng)
    x = cases[case]
    fn = lambda *a: PUBLIC_CALLS[call](mmkern, *a)  # noqa: E731
    _on_every_route(fn, [x, y, x[:, ::-1].copy()], device, np.float64)


def test_device_route_edge_shapes(rng, device, edge_shape, layout):
    pytest.importorskip("torch")
    n, d = edge_shape
    acts = [with_layout(a, layout) for a in latent_activations(rng, n, [d, d, max(1, d - 1)])]
    for call in ("pairwise-svcca", "pairwise-pwcca", "pairwise-cka", "cca-correlations"):
        _on_every_route(lambda *a: PUBLIC_CALLS[call](mmkern, *a), acts, device, np.float64)
    if n >= 4:
        _on_every_route(lambda *a: mmkern.pairwise_cka(list(a), debiased=True), acts, device, np.float64)


def _respectrum(a, dtype, kappa=3e4):
    """``a`` with its centered singular values replaced by a geometric spectrum of condition
    number ``kappa`` (its column space, hence its canonical correlations, unchanged)."""
    mean = a.mean(axis=0)
    u, s, vt = np.linalg.svd(a - mean, full_matrices=False)
    return ((u * (s[0] * np.geomspace(1.0, 1.0 / kappa, s.size))) @ vt + mean).astype(dtype)


@pytest.mark.parametrize("shape", [(200, (8, 11, 6)), (41, (40, 20, 15))], ids=["n-200", "n-equals-d-plus-1"])
def test_device_route_ill_conditioned_inputs_need_no_widening(rng, device, dtype, shape):
    """cond(X) = 3e4, where the Gram route's error eps cond(X)^2 would exceed the table: the
    device route re-whitens (CholeskyQR2) like the host route and meets the reference's
    tolerance."""
    pytest.importorskip("torch")
    n, widths = shape
    acts = [_respectrum(a, dtype) for a in latent_activations(rng, n, list(widths))]
    tensors = _tensors(acts, device)
    for fast, slow in ((mmkern.pairwise_svcca, ref.pairwise_svcca), (mmkern.pairwise_cca, ref.pairwise_cca),
                       (mmkern.pairwise_pwcca, ref.pairwise_pwcca)):
        assert_allclose(_host(fast(tensors)), slow(acts), **tol(dtype))
    assert_allclose(_host(mmkern.cca(tensors[0], tensors[1]).correlations), ref.cca(acts[0], acts[1]).correlations,
                    **tol(dtype))


def test_device_route_rtol_changes_the_rank(rng, device):
    pytest.importorskip("torch")
    x, y = latent_activations(rng, 100, [6, 5])
    x = np.hstack([x, x[:, :1] + 1e-4 * rng.standard_normal((100, 1))])  # a tiny extra direction
    tx, ty = _tensors([x, y], device)
    for rtol in (1e-10, 1e-6):
        got = mmkern.cca(tx, ty, rtol=rtol).correlations
        want = ref.cca(x, y, rtol=rtol).correlations
        assert got.shape == want.shape
        assert_allclose(_host(got), want, **tol(np.float64))


def test_device_route_small_chunks(rng, monkeypatch, device):
    """Many row chunks, one-model tiles of the CKA products and many pair chunks: the same values."""
    pytest.importorskip("torch")
    from mmkern.similarity import _device

    acts = latent_activations(rng, 301, [10, 12, 8, 11])
    want = {m: f(acts) for m, f in (("svcca", mmkern.pairwise_svcca), ("pwcca", mmkern.pairwise_pwcca))}
    want["cka"] = mmkern.pairwise_cka(acts, debiased=True)
    monkeypatch.setattr(_device, "_CHUNK_BYTES", 8 * 41 * 64)  # 64-row chunks, 1-pair steps
    monkeypatch.setattr(_device, "_TILE_COLUMNS", 15)
    tensors = _tensors(acts, device)
    for metric, got in (("svcca", mmkern.pairwise_svcca(tensors)), ("pwcca", mmkern.pairwise_pwcca(tensors)),
                        ("cka", mmkern.pairwise_cka(tensors, debiased=True))):
        assert_allclose(_host(got), want[metric], **DEVICE_VS_HOST[np.dtype(np.float64)], err_msg=metric)


@pytest.mark.parametrize("debiased", [False, True])
def test_device_route_cka_sample_space(rng, device, dtype, debiased, monkeypatch):
    """Wide layers, few samples (M n^2 < D^2): CKA through n x n sample Grams on both routes (one
    route rule, _checks.use_sample_space), and the feature-space route on the same data agrees."""
    pytest.importorskip("torch")
    from mmkern.similarity import _checks

    acts = latent_activations(rng, 12, [40, 55, 30], dtype=dtype)
    got = _on_every_route(lambda *a: mmkern.pairwise_cka(list(a), debiased=debiased), acts, device, dtype)
    monkeypatch.setattr(_checks, "use_sample_space", lambda *args: False)
    feature = mmkern.pairwise_cka(_tensors(acts, device), debiased=debiased)
    assert_allclose(_host(feature), _host(got), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("offset", [1e3, 1e8])
def test_variance_floor_is_one_rule(rng, device, offset):
    """A model just below the variance floor (every column constant up to rounding) is rejected
    on both routes with the same message; one just above it is accepted on both, with the same
    value. The floor is the sum of the columns' floors (_checks.variance_floors)."""
    pytest.importorskip("torch")
    x = latent_activations(rng, 64, [4])[0]
    const = np.full((64, 3), offset)
    floor = 64 * (64 * np.finfo(np.float64).eps * offset) ** 2  # per column
    below = const.copy()
    below[0, 0] += 0.5 * np.sqrt(floor)  # total centered variance ~ floor / 4 < 3 floors
    # One column above its own floor (1.5 floors) but the model below the sum of the three: the
    # case where a per-column rule (the old device route's) and the host's disagreed.
    drift = const.copy()
    drift[:2, 0] += np.array([-1.0, 1.0]) * np.sqrt(0.75 * floor)
    above = const.copy()
    above[:2, 0] += np.array([-1.0, 1.0]) * np.sqrt(4 * floor)  # 8 floors > 3 floors
    for bad in (const, below, drift):
        with pytest.raises(ValueError) as host_error:
            mmkern.cka(x, bad)
        with pytest.raises(ValueError) as device_error:
            mmkern.cka(*_tensors([x, bad], device))
        assert str(device_error.value) == str(host_error.value) == "y has no variance: every column is constant"
    _on_every_route(lambda a, b: mmkern.cka(a, b), [x, above], device, np.float64)


def test_device_route_ties_in_keep(rng, device):
    """A cumulative variance fraction equal to ``keep`` up to rounding keeps that many directions
    (KEEP_SLACK) on both routes and in the reference."""
    pytest.importorskip("torch")
    n = 200
    q, _ = np.linalg.qr(rng.standard_normal((n, 3)) - rng.standard_normal((1, 3)))
    q -= q.mean(axis=0)
    q, _ = np.linalg.qr(q)  # orthonormal, centered columns
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    x = (q * np.sqrt([0.5, 0.49, 0.01])) @ rot + 3.0  # variance fractions 0.5, 0.49, 0.01
    y = latent_activations(rng, n, [4])[0]
    for keep in (0.99, 0.5, 0.49 + 0.5, 0.8):
        got = _on_every_route(lambda a, b: mmkern.svcca(a, b, keep), [x, y], device, np.float64)
        assert got == pytest.approx(ref.svcca(x, y, keep), rel=1e-9)


def test_factor_counts_is_the_kernels_rule():
    """_C.factor_counts (what the device route calls) applies numerical_rank and
    svcca_keep_count of csrc/common/similarity_math.h, model by model."""
    from mmkern import _C

    evals = np.array([4.0, 3.0, 2.0, 1.0, 1.0, 1e-9, 1e-11, 0.0, 0.0, 0.0])
    offsets = [0, 4, 8, 10]
    modes = _C.KEEP_MODES
    rank, kept = _C.factor_counts(evals, offsets, 1e-10, 0.7, modes["variance"])
    assert rank.tolist() == [4, 2, 0] and kept.tolist() == [2, 1, 0]  # 7/10 reaches 0.7
    assert _C.factor_counts(evals, offsets, 1e-10, 0.7 + 1e-11, 0)[1][0] == 2  # within KEEP_SLACK
    assert _C.factor_counts(evals, offsets, 1e-10, 0.7 + 1e-9, 0)[1][0] == 3
    assert _C.factor_counts(evals, offsets, 1e-10, 1.0, 0)[1].tolist() == [4, 2, 0]
    assert _C.factor_counts(evals, offsets, 1e-10, 3.0, modes["count"])[1].tolist() == [3, 2, 0]
    two = np.array([4.0, 1.0])
    assert _C.factor_counts(two, [0, 2], 1e-10, 2.0 / 3.0, modes["singular_values"])[1].tolist() == [1]
    with pytest.raises(TypeError, match="evals"):
        _C.factor_counts(evals.astype(np.float32), offsets, 1e-10, 0.7, 0)  # no hidden casts


def test_device_route_projection_rejects_dependent_directions(rng):
    """A model whose projected block is not positive definite: RuntimeError naming it, as on the
    host (csrc/cpu/projected_pairs.cpp)."""
    torch = pytest.importorskip("torch")
    from mmkern.similarity import _device

    tensors = [torch.from_numpy(a) for a in latent_activations(rng, 50, [4, 3])]
    tensors, mean, _ = _device.column_means(tensors, ["x", "y"])
    joint = _device._first_pass(tensors, ["x", "y"], mean, None, False)
    fac = _device._factor(joint, 1e-10, 1.0, 0)
    bases = [fac.basis[0], torch.cat([fac.basis[1], fac.basis[1][:, :1]], dim=1)]  # a repeated column
    with pytest.raises(RuntimeError, match=r"^y: projected directions are not numerically independent"):
        _device._project(tensors, ["x", "y"], joint, bases, np.array([0]), np.array([1]), set())


def test_device_route_batches_in_one_call(rng, monkeypatch):
    """(b, n, d) device input is one call of the device route (2b models, b pairs), whose results
    stay on the device."""
    torch = pytest.importorskip("torch")
    from mmkern._backend import torch_route
    from mmkern.similarity import _device

    calls = []
    real = _device.pair_metrics
    monkeypatch.setattr(_device, "pair_metrics", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    xs = np.stack(latent_activations(rng, 80, [5, 5, 5, 5]))
    ys = np.stack(latent_activations(rng, 80, [7, 7, 7, 7]))
    with torch_route():
        got = mmkern.svcca(torch.from_numpy(xs), torch.from_numpy(ys))
    assert calls == [8] and isinstance(got, torch.Tensor) and got.shape == (4,)
    assert_allclose(got.numpy(), mmkern.svcca(xs, ys), **DEVICE_VS_HOST[np.dtype(np.float64)])


def test_device_route_kernel_wiring_on_host(rng, monkeypatch):
    """The kernel calls of the device route, with mmkern._C_cuda's contract implemented on host
    pointers: mixed dtypes and layouts, every metric, both CKA routes."""
    torch = pytest.importorskip("torch")
    from _kernel_standins import HostKernels
    from mmkern._backend import torch_route
    from mmkern.similarity import _device

    kernels = HostKernels()
    monkeypatch.setattr(_device, "kernels_for", lambda device: kernels)
    monkeypatch.setattr(_device, "cuda_launch", lambda device: contextlib.nullcontext(0))
    x, y, z = latent_activations(rng, 70, [5, 8, 3])
    # float32 Fortran order, a sliced view, a transposed torch view
    tensors = [torch.from_numpy(with_layout(x.astype(np.float32), "F")), torch.from_numpy(with_layout(y, "sliced")),
               torch.from_numpy(np.ascontiguousarray(z.T)).T]
    acts = [x.astype(np.float32).astype(np.float64), y, z]
    with torch_route():
        for fast, slow in ((lambda a: mmkern.pairwise_svcca(a, 0.9), lambda a: ref.pairwise_svcca(a, 0.9)),
                           (mmkern.pairwise_cca, ref.pairwise_cca), (mmkern.pairwise_pwcca, ref.pairwise_pwcca),
                           (mmkern.pairwise_cka, ref.pairwise_cka),
                           (lambda a: mmkern.pairwise_cka(a, debiased=True), lambda a: ref.pairwise_cka(a, debiased=True))):
            assert_allclose(fast(tensors).numpy(), slow(acts), **tol(np.float64))
        assert set(kernels.calls) == {"pack_rows", "pair_summaries", "cka_from_norms"}
        kernels.calls.clear()
        wide = [torch.from_numpy(with_layout(a, "sliced")) for a in latent_activations(rng, 9, [30, 41])]
        got = mmkern.pairwise_cka(wide, debiased=True)  # the sample-space route
    assert set(kernels.calls) == {"pack_rows", "cka_from_norms"}
    assert_allclose(got.numpy(), ref.pairwise_cka([w.numpy() for w in wide], debiased=True), **tol(np.float64))


def test_device_route_rejects_what_the_host_rejects(rng, device):
    """Bad inputs: the same exception type and message on both routes."""
    torch = pytest.importorskip("torch")
    x, y = latent_activations(rng, 30, [4, 3])
    nan = y.copy()
    nan[7, 1] = np.nan
    cases = [
        lambda a, b: mmkern.pairwise_cka([a, b.astype(np.int32) if isinstance(b, np.ndarray) else b.to(torch.int32)]),
        lambda a, b: mmkern.cca(a > 0, b),
        lambda a, b: mmkern.svcca(a, b[1:]),
        lambda a, b: mmkern.svcca(a, b[None]),
        lambda a, b: mmkern.cka(a, b[:, :0]),
        lambda a, b: mmkern.cka(a[:3], b[:3], debiased=True),
        lambda a, b: mmkern.svcca(_stack(a, a), _stack(b, b)[:1]),
        lambda a, b: mmkern.pairwise_svcca([a, b], keep=9),
        lambda a, b: mmkern.svcca(a[:3], b[:3]),
    ]
    for case in cases:
        with pytest.raises(Exception) as host_error:
            case(x, y)
        with pytest.raises(type(host_error.value)) as device_error:
            case(*_tensors([x, y], device))
        assert str(device_error.value) == str(host_error.value)
    for bad_y in (nan, np.full((30, 3), 2.5)):
        with pytest.raises(ValueError) as host_error:
            mmkern.pairwise_svcca([x, bad_y])
        with pytest.raises(ValueError) as device_error:
            mmkern.pairwise_svcca(_tensors([x, bad_y], device))
        assert str(device_error.value) == str(host_error.value)


def test_device_route_needs_torch(monkeypatch):
    """Without torch the device route raises an ImportError that says what is missing."""
    import importlib
    import sys

    monkeypatch.delitem(sys.modules, "mmkern.similarity._device", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="needs PyTorch"):
        importlib.import_module("mmkern.similarity._device")


def test_other_torch_devices_are_refused(rng):
    """Tensors on a torch device other than the CPU or CUDA (here: meta): a clear error naming
    the argument, never the float64 device route."""
    torch = pytest.importorskip("torch")
    x = torch.empty((10, 3), device="meta")
    y = torch.from_numpy(latent_activations(rng, 10, [2])[0])
    with pytest.raises(ValueError, match=r"^x is a torch tensor on meta: mmkern computes on the CPU or on CUDA"):
        mmkern.svcca(x, y)
    with pytest.raises(ValueError, match=r"acts\[1\] is a torch tensor on meta"):
        mmkern.pairwise_cka([y, x])


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda(), reason="torch.cuda is not available")
def test_cuda_rejects_mixed_devices(rng):
    torch = pytest.importorskip("torch")
    x, y = latent_activations(rng, 30, [4, 3])
    with pytest.raises(ValueError, match="move all inputs to one device"):
        mmkern.cka(torch.from_numpy(x).cuda(), torch.from_numpy(y))


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda(), reason="torch.cuda is not available")
def test_cuda_kernels_match_the_torch_fallback(rng, monkeypatch):
    """On a GPU: the device route with mmkern._C_cuda's kernels and without them agree."""
    pytest.importorskip("torch")
    from mmkern.similarity import _device

    acts = latent_activations(rng, 100, [5, 7, 4])
    tensors = _tensors(acts, "cuda")
    calls = {"svcca": mmkern.pairwise_svcca, "pwcca": mmkern.pairwise_pwcca,
             "cka": lambda a: mmkern.pairwise_cka(a, debiased=True)}
    with_kernels = {k: f(tensors).cpu().numpy() for k, f in calls.items()}
    monkeypatch.setattr(_device, "kernels_for", lambda device: None)
    for k, f in calls.items():
        assert_allclose(f(tensors).cpu().numpy(), with_kernels[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda(), reason="torch.cuda is not available")
def test_cupy_inputs_return_cupy(rng):
    cupy = pytest.importorskip("cupy")
    x, y, z = latent_activations(rng, 80, [5, 6, 4])
    cx, cy, cz = (cupy.asarray(a) for a in (x, y, z))
    assert mmkern.svcca(cx, cy) == pytest.approx(mmkern.svcca(x, y), rel=1e-9)
    assert isinstance(mmkern.cca(cx, cy).correlations, cupy.ndarray)
    pw = mmkern.pairwise_pwcca([cx, cy, cz])
    assert isinstance(pw, cupy.ndarray)
    assert_allclose(cupy.asnumpy(pw), mmkern.pairwise_pwcca([x, y, z]), rtol=1e-9)


def test_torch_float32_half_and_views(rng):
    torch = pytest.importorskip("torch")
    x, y = latent_activations(rng, 70, [5, 8], dtype=np.float32)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    _assert_close(mmkern.svcca(tx, ty), ref.svcca(x, y), np.float32)
    # a non-contiguous torch view (transpose of a transpose slice)
    view = torch.from_numpy(np.ascontiguousarray(y.T)).T[:, 1:]
    _assert_close(mmkern.pwcca(tx, view), ref.pwcca(x, y[:, 1:]), np.float32)
    half = tx.half()
    _assert_close(mmkern.cka(half, ty), ref.cka(half.double().numpy(), y), np.float32)
    with pytest.raises(TypeError, match=r"\bx\b"):
        mmkern.svcca(tx.to(torch.int32), ty)
    with pytest.raises(TypeError, match=r"\by\b"):
        mmkern.cka(tx, ty.to(torch.bool))


# ---------------------------------------------------------------------------------------------
# Rejected inputs
# ---------------------------------------------------------------------------------------------

PAIR_FUNCTIONS = {
    "svcca": lambda x, y: mmkern.svcca(x, y),
    "cca": lambda x, y: mmkern.cca(x, y),
    "pwcca": lambda x, y: mmkern.pwcca(x, y),
    "cka": lambda x, y: mmkern.cka(x, y),
    "cka-debiased": lambda x, y: mmkern.cka(x, y, debiased=True),
}

POPULATION_FUNCTIONS = {
    "pairwise_svcca": lambda acts: mmkern.pairwise_svcca(acts),
    "pairwise_cca": lambda acts: mmkern.pairwise_cca(acts),
    "pairwise_pwcca": lambda acts: mmkern.pairwise_pwcca(acts),
    "pairwise_cka": lambda acts: mmkern.pairwise_cka(acts),
    "cross_svcca": lambda acts: mmkern.cross_svcca(acts[:1], acts),
    "cross_cka": lambda acts: mmkern.cross_cka(acts[:1], acts, debiased=True),
}


def _names(arg):
    """A regex matching the argument name as a word (``x`` but not ``max``)."""
    return rf"(?<![\w]){re.escape(arg)}(?![\w])"


@pytest.fixture
def xy(rng):
    return latent_activations(rng, 30, [4, 3])


@pytest.mark.parametrize("fn", list(PAIR_FUNCTIONS))
def test_rejects_mismatched_samples(xy, fn):
    x, y = xy
    with pytest.raises(ValueError, match=_names("y")):
        PAIR_FUNCTIONS[fn](x, y[:-1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["x", "y"])
@pytest.mark.parametrize("fn", list(PAIR_FUNCTIONS))
def test_rejects_non_finite(xy, fn, which, bad):
    x, y = (a.copy() for a in xy)
    (x if which == "x" else y)[17, 1] = bad
    with pytest.raises(ValueError, match=_names(which)):
        PAIR_FUNCTIONS[fn](x, y)


@pytest.mark.parametrize("fn", list(PAIR_FUNCTIONS))
def test_rejects_wrong_dimensions(xy, fn):
    x, y = xy
    with pytest.raises(ValueError, match=_names("x")):
        PAIR_FUNCTIONS[fn](x[:, 0], y)
    with pytest.raises(ValueError, match=_names("y")):
        PAIR_FUNCTIONS[fn](x, y[None, None])
    with pytest.raises(ValueError):
        PAIR_FUNCTIONS[fn](x[None, None], y[None, None])
    with pytest.raises(ValueError):
        PAIR_FUNCTIONS[fn](x[None], y)  # batched x with unbatched y (or 3-D cca)
    with pytest.raises(ValueError, match=_names("x")):
        PAIR_FUNCTIONS[fn](np.float64(1.0), y)


@pytest.mark.parametrize("fn", list(PAIR_FUNCTIONS))
def test_rejects_empty(xy, fn):
    x, y = xy
    with pytest.raises(ValueError, match=_names("x")):
        PAIR_FUNCTIONS[fn](x[:0], y[:0])
    with pytest.raises(ValueError, match=_names("y")):
        PAIR_FUNCTIONS[fn](x, y[:, :0])


@pytest.mark.parametrize("bad_dtype", [np.int32, np.int64, np.bool_, np.complex128, np.uint8])
@pytest.mark.parametrize("fn", list(PAIR_FUNCTIONS))
def test_rejects_non_float_dtypes(xy, fn, bad_dtype):
    x, y = xy
    with pytest.raises(TypeError, match=_names("x")):
        PAIR_FUNCTIONS[fn](x.astype(bad_dtype), y)
    with pytest.raises(TypeError, match=_names("y")):
        PAIR_FUNCTIONS[fn](x, y.astype(bad_dtype))


@pytest.mark.parametrize("keep", [0.0, -0.5, 1.5, math.nan, math.inf, 0, -3, 1000])
def test_rejects_bad_keep(xy, keep):
    x, y = xy
    with pytest.raises(ValueError, match=_names("keep")):
        mmkern.svcca(x, y, keep)
    with pytest.raises(ValueError, match=_names("keep")):
        mmkern.pairwise_svcca([x, y], keep)


def test_rejects_bool_keep_and_bad_keep_by(xy):
    x, y = xy
    for keep in (True, False, np.bool_(True)):
        with pytest.raises(TypeError, match=_names("keep")):
            mmkern.svcca(x, y, keep)
    with pytest.raises(ValueError, match="keep_by"):
        mmkern.svcca(x, y, keep_by="eigenvalues")
    with pytest.raises(ValueError, match="keep_by"):
        mmkern.cross_svcca([x], [y], keep_by="var")
    acc = _accumulate(mmkern.SimilarityAccumulator(2), [x, y], [30])
    with pytest.raises(ValueError, match="keep_by"):
        acc.svcca(keep_by="s")
    with pytest.raises(TypeError, match=_names("keep")):
        acc.svcca(True)


def test_rejects_bad_statistic(xy):
    x, y = xy
    for call in (lambda: mmkern.pairwise_cca([x, y], statistic="median"),
                 lambda: mmkern.cross_cca([x], [y], statistic="R2"),
                 lambda: _accumulate(mmkern.SimilarityAccumulator(2), [x, y], [30]).cca(statistic="max")):
        with pytest.raises(ValueError, match="statistic"):
            call()


@pytest.mark.parametrize("fn", ["svcca", "cca", "pwcca"])
@pytest.mark.parametrize("n_minus_d", [0, -1, -20])
def test_cca_family_needs_more_samples_than_features(rng, fn, n_minus_d):
    n = 20
    x, y = latent_activations(rng, n, [n - n_minus_d, 5])
    for args in ((x, y), (y, x)):
        with pytest.raises(ValueError) as info:
            PAIR_FUNCTIONS[fn](*args)
        message = str(info.value).lower()
        assert "sample" in message and "feature" in message
    pairwise = {"svcca": mmkern.pairwise_svcca, "cca": mmkern.pairwise_cca, "pwcca": mmkern.pairwise_pwcca}
    with pytest.raises(ValueError, match=re.escape("acts[1]")):
        pairwise[fn]([y, x])
    # CKA is defined there
    _assert_close(mmkern.cka(x, y), ref.cka(x, y), np.float64)
    _assert_close(mmkern.cka(x, y, debiased=True), ref.cka(x, y, debiased=True), np.float64)
    _assert_close(mmkern.pairwise_cka([y, x]), ref.pairwise_cka([y, x]), np.float64)


@pytest.mark.parametrize("fn", list(PAIR_FUNCTIONS))
def test_rejects_all_constant_input(xy, fn):
    x, y = xy
    for const in (np.zeros_like(x), np.full_like(x, 3.25)):
        with pytest.raises(ValueError, match=_names("x")):
            PAIR_FUNCTIONS[fn](const, y)
        with pytest.raises(ValueError, match=_names("y")):
            PAIR_FUNCTIONS[fn](y, const)


def test_rejects_debiased_cka_with_fewer_than_four_samples(rng):
    x, y = latent_activations(rng, 3, [2, 2])
    with pytest.raises(ValueError, match="4"):
        mmkern.cka(x, y, debiased=True)
    with pytest.raises(ValueError, match="4"):
        mmkern.pairwise_cka([x, y], debiased=True)
    assert np.isfinite(mmkern.cka(x, y))  # the biased estimator is fine


@pytest.mark.parametrize("fn", list(POPULATION_FUNCTIONS))
def test_population_errors_name_the_model(rng, fn):
    acts = latent_activations(rng, 30, [4, 3, 5, 2])
    call = POPULATION_FUNCTIONS[fn]
    with pytest.raises(ValueError):
        call([])
    bad = [a.copy() for a in acts]
    bad[2][0, 0] = np.nan
    with pytest.raises(ValueError, match=re.escape("[2]")):
        call(bad)
    with pytest.raises(ValueError, match=re.escape("[2]")):
        call(acts[:2] + [acts[2][:-1]] + acts[3:])  # different n
    with pytest.raises(ValueError, match=re.escape("[2]")):
        call(acts[:2] + [acts[2][:, 0]] + acts[3:])  # 1-D
    with pytest.raises(TypeError, match=re.escape("[2]")):
        call(acts[:2] + [acts[2].astype(np.int64)] + acts[3:])
    with pytest.raises(ValueError, match=re.escape("[2]")):
        call(acts[:2] + [np.ones_like(acts[2])] + acts[3:])  # no variance


def test_population_names(rng):
    acts = latent_activations(rng, 30, [4, 3])
    with pytest.raises(ValueError, match=re.escape("acts[1]")):
        mmkern.pairwise_svcca([acts[0], acts[1][:-2]])
    with pytest.raises(ValueError, match=re.escape("acts_b[0]")):
        mmkern.cross_cka(acts, [acts[1][:-2]])
    with pytest.raises(ValueError, match="acts_b"):
        mmkern.cross_pwcca(acts, [])
    with pytest.raises(ValueError, match="acts_a"):
        mmkern.cross_cca([], acts)
    with pytest.raises(ValueError, match="acts"):
        mmkern.pairwise_cka(np.zeros((0, 30, 4)))


def test_rejects_bad_rtol(xy):
    x, y = xy
    for rtol in (-1e-3, math.nan):
        with pytest.raises(ValueError, match="rtol"):
            mmkern.cca(x, y, rtol=rtol)


def test_host_twins_of_the_device_tails_take_arrays_as_they_are(rng):
    """_C.pair_summaries and _C.cka_from_norms (the device route's fallback tails) compute the
    same as the host route and refuse arrays they would have to convert (no hidden copies)."""
    from mmkern import _C

    rho = np.array([[0.9, 0.5, 0.2], [1.0, 0.0, 0.0]])
    count = np.array([3, 1], np.int64)
    got = _C.pair_summaries(rho, count, mean=True, r2=True)
    assert_allclose(got["mean"], [1.6 / 3, 1.0], rtol=1e-15)
    assert_allclose(got["r2"], [(0.81 + 0.25 + 0.04) / 3, 1.0], rtol=1e-15)
    with pytest.raises(TypeError, match=r"^count must be a int64 array"):
        _C.pair_summaries(rho, count.astype(np.int32), mean=True)
    with pytest.raises(ValueError, match=r"^rho must be a C-contiguous float64 array"):
        _C.pair_summaries(np.asfortranarray(rho), count, mean=True)
    acts = latent_activations(rng, 40, [3, 4])
    first, second = np.array([0, 0, 1], np.int64), np.array([0, 1, 1], np.int64)
    xs = [a - a.mean(axis=0) for a in acts]
    fro2 = np.array([[np.sum((xi.T @ xj) ** 2) for xj in xs] for xi in xs])
    got = _C.cka_from_norms(first, second, fro2[first, second].copy(), np.diag(fro2).copy(), 40.0)
    assert_allclose(got["cka"], mmkern.pairwise_cka(acts)[first, second], rtol=1e-12)
    with pytest.raises(TypeError, match=r"^first must be a int64 array"):
        _C.cka_from_norms(first.astype(np.int32), second, fro2[first, second].copy(), np.diag(fro2).copy(), 40.0)


@pytest.mark.parametrize("scales", [(1.0, 1.0, 1.0), (1e200, 1.0, 1e-150)], ids=["unit", "extreme"])
def test_accumulators_of_disjoint_shards_merge_exactly(rng, scales):
    import functools

    acts = [a * s for a, s in zip(latent_activations(rng, 400, [5, 4, 6]), scales)]
    acts[0] = acts[0] + 3.0 * scales[0]  # far from zero: the shards' shifts differ
    full = mmkern.SimilarityAccumulator(3).update(acts)
    cuts = [0, 37, 180, 181, 400]
    shards = [mmkern.SimilarityAccumulator(3).update([a[lo:hi] for a in acts]) for lo, hi in zip(cuts, cuts[1:])]
    shards[1].update([a[:0] for a in acts])  # an empty batch changes nothing
    merged = functools.reduce(mmkern.SimilarityAccumulator.merge, shards)
    assert merged.n_samples == 400 and all(s.n_samples == hi - lo for s, lo, hi in zip(shards, cuts, cuts[1:]))
    for name, (streamed, _) in ACC_METHODS.items():
        assert_allclose(streamed(merged), streamed(full), rtol=1e-11, atol=1e-12, err_msg=name)
    assert_allclose(merged.cka(debiased=True), full.cka(debiased=True), rtol=1e-10, atol=1e-12)
    tree = shards[0].merge(shards[1]).merge(shards[2].merge(shards[3]))  # any order, any grouping
    assert_allclose(tree.svcca(), merged.svcca(), rtol=1e-12, atol=1e-13)


def test_merge_with_an_empty_accumulator_and_bad_partners(rng):
    acts = latent_activations(rng, 60, [3, 3])
    acc = mmkern.SimilarityAccumulator(2).update(acts)
    empty = mmkern.SimilarityAccumulator(2)
    assert_allclose(acc.merge(empty).cka(), acc.cka(), rtol=0, atol=0)
    assert_allclose(empty.merge(acc).cka(), acc.cka(), rtol=0, atol=0)
    assert empty.merge(empty).n_samples == 0
    with pytest.raises(ValueError, match="other holds 3 models, this accumulator 2"):
        acc.merge(mmkern.SimilarityAccumulator(3))
    with pytest.raises(ValueError, match="widths"):
        acc.merge(mmkern.SimilarityAccumulator(2).update([acts[0], acts[1][:, :2]]))
    with pytest.raises(TypeError, match="other must be a SimilarityAccumulator"):
        acc.merge(acts)
