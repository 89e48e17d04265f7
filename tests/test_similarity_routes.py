"""Each internal route of the similarity kernels agrees with the reference.

mmkern picks a route per call: SVCCA by a projected second pass, CCA/PWCCA/CKA through the
feature-space Gram, CKA through n x n sample Grams when that is smaller (wide layers, few
samples), and the streaming accumulator through its Gram. These tests pin inputs that select each
route, so a route cannot silently go untested.
"""

from __future__ import annotations

import numpy as np
import pytest

import mmkern
from mmkern import reference
from mmkern.similarity import _host as S

from tolerances import tol


def _population(rng, n, widths, dtype=np.float64):
    z = rng.standard_normal((n, 6))
    return [(z @ rng.standard_normal((6, d)) + 0.3 * rng.standard_normal((n, d)) + 2.0).astype(dtype) for d in widths]


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_sample_space_route(rng, debiased):
    acts = _population(rng, 12, [40, 55, 30])  # M n^2 = 432 < D^2 = 15625: sample route
    assert len(acts) * 12**2 < sum(a.shape[1] for a in acts) ** 2
    got = mmkern.pairwise_cka(acts, debiased=debiased)
    np.testing.assert_allclose(got, reference.pairwise_cka(acts, debiased=debiased), **tol(np.float64))


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_feature_space_route(rng, debiased):
    acts = _population(rng, 400, [5, 9, 7])  # M n^2 >> D^2: feature route
    got = mmkern.pairwise_cka(acts, debiased=debiased)
    np.testing.assert_allclose(got, reference.pairwise_cka(acts, debiased=debiased), **tol(np.float64))


def test_cka_routes_agree_on_the_same_data(rng):
    acts = _population(rng, 20, [30, 25])
    sample = mmkern.pairwise_cka(acts, debiased=True)  # public call: sample route
    # The feature-space route on the same data, through the internal pipeline.
    names = ["a", "b"]
    first, second = np.triu_indices(2)
    arrays, mean, _ = S.column_means(acts, names)
    feature_stats, gram, norm_products = S._host_gram(arrays, names, mean, moments=True)
    factors = S.factors(gram, feature_stats, ["cka_debiased"], 1e-10, 0.99, 0)
    feature = factors.pairs(first, second, ["cka_debiased"], norm_products)["cka_debiased"]
    np.testing.assert_allclose(sample[first, second], feature, rtol=1e-10, atol=1e-12)


def test_svcca_projected_route_matches_gram_route(rng):
    """In-memory SVCCA (projection pass) and the accumulator (full Gram) give the same matrix."""
    acts = _population(rng, 300, [20, 35, 12, 20])
    acc = mmkern.SimilarityAccumulator(4).update(acts)
    np.testing.assert_allclose(mmkern.pairwise_svcca(acts), acc.svcca(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mmkern.pairwise_svcca(acts, keep=5), acc.svcca(keep=5), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(mmkern.pairwise_svcca(acts), reference.pairwise_svcca(acts), **tol(np.float64))


def test_zero_variance_is_reported_on_every_route(rng):
    x = rng.standard_normal((10, 30))
    const = np.full((10, 30), 0.1)
    with pytest.raises(ValueError, match=r"acts\[1\] has no variance"):
        mmkern.pairwise_cka([x, const])  # sample route
    with pytest.raises(ValueError, match=r"acts\[1\] has no variance"):
        mmkern.pairwise_cka([x[:, :3], const[:, :3]])  # feature route
    with pytest.raises(ValueError, match="y has no variance"):
        mmkern.svcca(rng.standard_normal((50, 3)), np.full((50, 2), 7.0))  # projection route
