"""The NumPy reference (mmkern.reference) against independent formulations and known answers."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from _data import latent_activations, noise_activations
from _formulas import (
    classic_cca_correlations,
    classic_pwcca,
    feature_debiased_cka,
    hsic_cka,
    song_debiased_cka,
    song_hsic_unbiased,
)
from mmkern import reference as ref
from mmkern.reference.similarity import _keep_count, _u_centered
from tolerances import FORMULA, PROPERTY


def _random_orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _column_space_basis(rng, n, singular_values):
    """(n, d) centered data with exactly the given singular values, and its left vectors."""
    d = len(singular_values)
    a = rng.standard_normal((n, d))
    a -= a.mean(axis=0)
    u, _ = np.linalg.qr(a)  # orthonormal columns, each orthogonal to the ones vector
    v = _random_orthogonal(rng, d)
    return u @ np.diag(singular_values) @ v.T, u


# ---------------------------------------------------------------------------------------------
# CCA
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, d1, d2", [(200, 5, 5), (300, 8, 3), (150, 2, 9), (50, 1, 4)])
def test_cca_matches_covariance_formula(rng, n, d1, d2):
    x, y = latent_activations(rng, n, [d1, d2], latent_dim=3, noise=0.7)
    result = ref.cca(x, y)
    assert isinstance(result, ref.CCAResult)
    assert result.correlations.dtype == np.float64
    assert result.correlations.shape == (min(d1, d2),)
    assert np.all(np.diff(result.correlations) <= 0)
    assert_allclose(result.correlations, classic_cca_correlations(x, y), **FORMULA)
    assert result.mean == pytest.approx(np.mean(result.correlations), rel=1e-15)
    assert result.r2 == pytest.approx(np.mean(result.correlations**2), rel=1e-15)
    assert isinstance(result.mean, float) and isinstance(result.r2, float)


def test_cca_of_invertible_linear_map_is_all_ones(rng):
    x = latent_activations(rng, 100, [6])[0]
    a = rng.standard_normal((6, 6)) + 3 * np.eye(6)
    result = ref.cca(x, x @ a + 5.0)
    assert_allclose(result.correlations, np.ones(6), **PROPERTY)
    assert result.mean == pytest.approx(1.0) and result.r2 == pytest.approx(1.0)


def test_cca_is_symmetric_and_invariant(rng):
    x, y = latent_activations(rng, 120, [7, 4])
    a = rng.standard_normal((7, 7)) + 3 * np.eye(7)
    b = rng.standard_normal((4, 4)) + 3 * np.eye(4)
    rho = ref.cca(x, y).correlations
    assert_allclose(ref.cca(y, x).correlations, rho, **PROPERTY)
    assert_allclose(ref.cca(x @ a - 1.0, y @ b + 2.0).correlations, rho, **PROPERTY)


def test_cca_drops_rank_deficient_directions(rng):
    x, y = latent_activations(rng, 80, [5, 4])
    x_deficient = np.hstack([x, x[:, :2], x[:, 1:2] - 2 * x[:, 3:4], np.full((80, 1), 7.0)])
    full = ref.cca(x, y)
    deficient = ref.cca(x_deficient, y)
    assert deficient.correlations.shape == full.correlations.shape
    assert_allclose(deficient.correlations, full.correlations, **FORMULA)


# ---------------------------------------------------------------------------------------------
# SVCCA
# ---------------------------------------------------------------------------------------------


def test_keep_count_rules():
    s = np.sqrt(np.array([50.0, 30.0, 15.0, 4.0, 1.0]))  # variances sum to 100
    assert _keep_count(s, 5, 0.5, "variance") == 1
    assert _keep_count(s, 5, 0.8, "variance") == 2  # reached exactly (needs KEEP_SLACK)
    assert _keep_count(s, 5, 0.8000001, "variance") == 3
    assert _keep_count(s, 5, 0.99, "variance") == 4
    assert _keep_count(s, 5, 0.9999, "variance") == 5
    assert _keep_count(s, 5, 1.0, "variance") == 5
    assert _keep_count(s, 3, 1.0, "variance") == 3  # only the numerically non-zero directions
    assert _keep_count(s, 5, 2, "variance") == 2
    assert _keep_count(s, 5, np.int64(7), "variance") == 5
    sv = np.array([5.0, 3.0, 1.5, 0.4, 0.1])  # singular values sum to 10
    assert _keep_count(sv, 5, 0.8, "singular_values") == 2
    assert _keep_count(sv, 5, 0.95, "singular_values") == 3
    # the same spectrum by variance: 25 + 9 = 34 of 36.42 is 0.934
    assert _keep_count(sv, 5, 0.9, "variance") == 2
    assert _keep_count(sv, 5, 0.95, "variance") == 3


@pytest.mark.parametrize("keep, keep_by, expected_k", [
    (0.5, "variance", 1), (0.8, "variance", 2), (0.9, "variance", 3), (0.99, "variance", 4),
    (0.5, "singular_values", 2), (3, "variance", 3), (1.0, "variance", 5),
])
def test_svcca_keeps_the_documented_number_of_directions(rng, keep, keep_by, expected_k):
    # x has singular values sqrt(50, 30, 15, 4, 1); y = one left singular direction u_j of x.
    # SVCCA(x, u_j) = 1 if x keeps direction j, else 0: this reads off k_x.
    x, u = _column_space_basis(rng, 60, np.sqrt([50.0, 30.0, 15.0, 4.0, 1.0]))
    for j in range(5):
        value = ref.svcca(x, u[:, j:j + 1], keep, keep_by=keep_by)
        assert value == pytest.approx(1.0 if j < expected_k else 0.0, abs=1e-10)


def test_svcca_known_answers(rng):
    x = latent_activations(rng, 400, [10], latent_dim=10, noise=0.1)[0]
    a = rng.standard_normal((10, 10)) + 3 * np.eye(10)
    assert ref.svcca(x, x) == pytest.approx(1.0)
    assert ref.svcca(x, x @ a, keep=1.0) == pytest.approx(1.0)
    assert ref.svcca(x, x @ a, keep=10) == pytest.approx(1.0)
    noise = noise_activations(rng, 400, 10)
    assert ref.svcca(x, noise) < 0.3
    assert ref.svcca(x, noise) < 0.5 * ref.svcca(x, x @ a + 0.1 * noise)


def test_svcca_with_keep_one_is_cca_mean(rng):
    x, y = latent_activations(rng, 150, [6, 9])
    assert ref.svcca(x, y, keep=1.0) == pytest.approx(ref.cca(x, y).mean, rel=1e-12)
    assert ref.svcca(x, y, keep=100) == pytest.approx(ref.cca(x, y).mean, rel=1e-12)


def test_svcca_batched(rng):
    xs = np.stack(latent_activations(rng, 50, [4, 4, 4]))
    ys = np.stack(latent_activations(rng, 50, [6, 6, 6]))
    out = ref.svcca(xs, ys, keep=0.9)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == (3,)
    assert_allclose(out, [ref.svcca(xs[i], ys[i], keep=0.9) for i in range(3)], rtol=0)
    assert isinstance(ref.svcca(xs[0], ys[0]), float)


# ---------------------------------------------------------------------------------------------
# PWCCA
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d1, d2", [(4, 4), (6, 3), (3, 6)])
def test_pwcca_matches_covariance_formula(rng, d1, d2):
    x, y = latent_activations(rng, 300, [d1, d2], latent_dim=3, noise=0.8)
    assert ref.pwcca(x, y) == pytest.approx(classic_pwcca(x, y), rel=1e-8)


def test_pwcca_known_answers(rng):
    x, y = latent_activations(rng, 200, [5, 7])
    assert ref.pwcca(x, x) == pytest.approx(1.0)
    assert ref.pwcca(x, x @ (rng.standard_normal((5, 5)) + 3 * np.eye(5))) == pytest.approx(1.0)
    rho = ref.cca(x, y).correlations
    value = ref.pwcca(x, y)
    assert rho.min() - 1e-12 <= value <= rho.max() + 1e-12
    # weights come from x: not symmetric in general
    assert ref.pwcca(x, y) != pytest.approx(ref.pwcca(y, x), rel=1e-6)


# ---------------------------------------------------------------------------------------------
# CKA
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, d1, d2", [(50, 5, 5), (40, 3, 12), (20, 30, 25), (4, 2, 3)])
def test_cka_matches_centering_matrix_formula(rng, n, d1, d2):
    x, y = latent_activations(rng, n, [d1, d2])
    assert ref.cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-10)


def test_u_centering_gives_song_estimator(rng):
    n = 12
    x, y = latent_activations(rng, n, [3, 5])
    k, g = x @ x.T, y @ y.T
    ours = np.sum(_u_centered(k) * _u_centered(g)) / (n * (n - 3))
    assert ours == pytest.approx(song_hsic_unbiased(k, g), rel=1e-10)
    # the U-centered matrix has zero diagonal and zero row sums
    kt = _u_centered(k)
    assert_allclose(np.diag(kt), 0.0, atol=0)
    assert_allclose(kt.sum(axis=1), 0.0, atol=1e-9 * np.abs(k).max())


@pytest.mark.parametrize("n, d1, d2", [(4, 2, 3), (5, 1, 1), (30, 4, 6), (60, 80, 10)])
def test_debiased_cka_matches_song_and_feature_space(rng, n, d1, d2):
    x, y = latent_activations(rng, n, [d1, d2])
    value = ref.cka(x, y, debiased=True)
    assert -1.0 <= value <= 1.0
    assert value == pytest.approx(feature_debiased_cka(x, y), rel=1e-8, abs=1e-10)
    if value not in (-1.0, 1.0, 0.0):  # song_debiased_cka has no clip / non-positive rule
        assert value == pytest.approx(song_debiased_cka(x, y), rel=1e-8, abs=1e-10)


def test_cka_invariances(rng):
    x, y = latent_activations(rng, 100, [8, 6])
    q = _random_orthogonal(rng, 8)
    for debiased in (False, True):
        base = ref.cka(x, y, debiased=debiased)
        assert ref.cka(x, x, debiased=debiased) == pytest.approx(1.0)
        assert ref.cka(y, x, debiased=debiased) == pytest.approx(base, rel=1e-12)
        assert ref.cka(x @ q, y, debiased=debiased) == pytest.approx(base, rel=1e-10)
        assert ref.cka(3.7 * x + 1.0, 0.2 * y, debiased=debiased) == pytest.approx(base, rel=1e-10)


def test_cka_works_with_more_features_than_samples(rng):
    x, y = latent_activations(rng, 10, [40, 25])
    assert 0.0 < ref.cka(x, y) <= 1.0
    assert np.isfinite(ref.cka(x, y, debiased=True))


def test_cka_batched(rng):
    xs = np.stack(latent_activations(rng, 30, [4, 4]))
    ys = np.stack(latent_activations(rng, 30, [5, 5]))
    for debiased in (False, True):
        out = ref.cka(xs, ys, debiased=debiased)
        assert out.shape == (2,) and out.dtype == np.float64
        assert_allclose(out, [ref.cka(xs[i], ys[i], debiased=debiased) for i in range(2)], rtol=0)


def test_debiased_cka_small_n_never_nan(rng):
    for _ in range(50):
        x = rng.standard_normal((4, 1))
        y = rng.standard_normal((4, 2))
        value = ref.cka(x, y, debiased=True)
        assert np.isfinite(value) and -1.0 <= value <= 1.0


# ---------------------------------------------------------------------------------------------
# Degenerate inputs, dtypes, pairwise and cross matrices
# ---------------------------------------------------------------------------------------------


def test_degenerate_inputs_are_finite_and_unchanged(rng):
    x, y = latent_activations(rng, 60, [4, 5])
    x_bad = np.hstack([x, np.full((60, 1), 2.5), x[:, :1], x[:, :1] + x[:, 1:2]])
    assert ref.cca(x_bad, y).correlations == pytest.approx(ref.cca(x, y).correlations, rel=1e-8)
    assert ref.svcca(x_bad, y, keep=1.0) == pytest.approx(ref.svcca(x, y, keep=1.0), rel=1e-8)
    assert ref.cka(x_bad[:, :5], y) == pytest.approx(ref.cka(x, y), rel=1e-12)
    assert ref.cka(x_bad[:, :5], y, debiased=True) == pytest.approx(
        ref.cka(x, y, debiased=True), rel=1e-10)
    for value in (ref.svcca(x_bad, y), ref.pwcca(x_bad, y), ref.pwcca(y, x_bad),
                  ref.cka(x_bad, y), ref.cka(x_bad, y, debiased=True)):
        assert np.isfinite(value)


def test_float32_inputs_are_converted_exactly(rng):
    x, y = latent_activations(rng, 50, [4, 3], dtype=np.float32)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    assert ref.svcca(x, y) == ref.svcca(x64, y64)
    assert ref.pwcca(x, y) == ref.pwcca(x64, y64)
    assert ref.cka(x, y, debiased=True) == ref.cka(x64, y64, debiased=True)
    assert np.array_equal(ref.cca(x, y).correlations, ref.cca(x64, y64).correlations)


def test_pairwise_and_cross(rng):
    acts = latent_activations(rng, 80, [3, 6, 4, 5])
    cases = [
        (ref.pairwise_svcca(acts, 0.95), lambda a, b: ref.svcca(a, b, 0.95)),
        (ref.pairwise_svcca(acts, 2, keep_by="singular_values"), lambda a, b: ref.svcca(a, b, 2)),
        (ref.pairwise_cca(acts), lambda a, b: ref.cca(a, b).mean),
        (ref.pairwise_cca(acts, statistic="r2"), lambda a, b: ref.cca(a, b).r2),
        (ref.pairwise_cka(acts), ref.cka),
        (ref.pairwise_cka(acts, debiased=True), lambda a, b: ref.cka(a, b, debiased=True)),
    ]
    for matrix, metric in cases:
        assert matrix.shape == (4, 4) and matrix.dtype == np.float64
        assert_allclose(matrix, matrix.T, rtol=0)
        assert_allclose(np.diag(matrix), 1.0, rtol=1e-12)
        for i in range(4):
            for j in range(4):
                if i != j:
                    assert matrix[i, j] == pytest.approx(metric(acts[i], acts[j]), rel=1e-12)
    p = ref.pairwise_pwcca(acts)
    assert_allclose(np.diag(p), 1.0, rtol=0)
    for i in range(4):
        for j in range(4):
            if i != j:
                assert p[i, j] == ref.pwcca(acts[i], acts[j])
    assert not np.allclose(p, p.T)

    stacked = np.stack(latent_activations(rng, 40, [5, 5, 5]))
    assert_allclose(ref.pairwise_svcca(stacked), ref.pairwise_svcca(list(stacked)), rtol=0)

    a, b = acts[:3], acts[3:] + acts[:1]
    for cross, metric in [(ref.cross_svcca(a, b), ref.svcca), (ref.cross_pwcca(a, b), ref.pwcca),
                          (ref.cross_cca(a, b, statistic="r2"), lambda u, v: ref.cca(u, v).r2),
                          (ref.cross_cka(a, b, debiased=True),
                           lambda u, v: ref.cka(u, v, debiased=True))]:
        assert cross.shape == (3, 2)
        for i in range(3):
            for j in range(2):
                assert cross[i, j] == pytest.approx(metric(a[i], b[j]), rel=1e-12)


def test_reference_minimal_validation(rng):
    x, y = latent_activations(rng, 20, [3, 3])
    with pytest.raises(ValueError):
        ref.svcca(x, y[:-1])
    with pytest.raises(ValueError, match="4"):
        ref.cka(x[:3], y[:3], debiased=True)
    with pytest.raises(ValueError, match="statistic"):
        ref.pairwise_cca([x, y], statistic="median")
    with pytest.raises(ValueError, match="keep_by"):
        ref.svcca(x, y, keep_by="energy")
    with pytest.raises(TypeError, match="keep"):
        ref.svcca(x, y, keep=True)
    with pytest.raises(ValueError, match="acts"):
        ref.pairwise_svcca([])
    with pytest.raises(ValueError, match="variance"):
        ref.cca(np.ones((10, 2)), y[:10])


def test_reference_public_names():
    import mmkern.reference as module

    for name in module.__all__:
        assert hasattr(module, name)
    assert ref.RANK_RTOL == 1e-10 and ref.KEEP_SLACK == 1e-10
    import mmkern

    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type):  # result classes: the fast one itself, or named in the doc
            assert (name == "CCAResult" or obj is getattr(mmkern, name, None)
                    or f":class:`mmkern.{name}`" in obj.__doc__)
        elif name == "reset_and_estimate_batchnorm":  # a step of the fast curve, not a function
            assert ":func:`mmkern.interpolation_curve`" in obj.__doc__
        elif callable(obj):
            assert f":func:`mmkern.{name}`" in obj.__doc__
