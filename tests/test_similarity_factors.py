"""Per-model factors (mmkern.similarity._factors), the pieces of the tiled matrices of
mmkern.distributed: any block of pairs computed from the factors equals the in-memory matrix."""

from __future__ import annotations

import numpy as np
import pytest

import mmkern
from mmkern.similarity._checks import OPTS_DEFAULT, metric_args
from mmkern.similarity._factors import block_values, model_factor

METRICS = {
    "svcca": ("svcca", {}, mmkern.pairwise_svcca, mmkern.cross_svcca),
    "svcca_count": ("svcca", {"keep": 1}, lambda a: mmkern.pairwise_svcca(a, 1),
                    lambda a, b: mmkern.cross_svcca(a, b, 1)),
    "svcca_singular_values": ("svcca", {"keep": 0.9, "keep_by": "singular_values"},
                              lambda a: mmkern.pairwise_svcca(a, 0.9, keep_by="singular_values"),
                              lambda a, b: mmkern.cross_svcca(a, b, 0.9, keep_by="singular_values")),
    "cca": ("cca", {}, mmkern.pairwise_cca, mmkern.cross_cca),
    "cca_r2": ("cca", {"statistic": "r2"}, lambda a: mmkern.pairwise_cca(a, statistic="r2"),
               lambda a, b: mmkern.cross_cca(a, b, statistic="r2")),
    "pwcca": ("pwcca", {}, mmkern.pairwise_pwcca, mmkern.cross_pwcca),
    "cka": ("cka", {}, mmkern.pairwise_cka, mmkern.cross_cka),
    "cka_debiased": ("cka", {"debiased": True}, lambda a: mmkern.pairwise_cka(a, debiased=True),
                     lambda a, b: mmkern.cross_cka(a, b, debiased=True)),
}


def _factors(acts, metric, opts):
    names = [f"acts[{i}]" for i in range(len(acts))]
    name, kwargs = metric_args(metric, acts[0].shape[0], [a.shape[1] for a in acts], names,
                               **{**OPTS_DEFAULT, **opts})
    return [model_factor(a, nm, name, kwargs) for a, nm in zip(acts, names)]


def _population(kind: str, rng):
    n = 200
    z = rng.normal(size=(n, 5))
    if kind == "random":
        return [(z @ rng.normal(size=(5, d)) + 0.5 * rng.normal(size=(n, d))).astype(t)
                for d, t in zip((6, 9, 4, 7, 5), (np.float32, np.float64) * 3)]
    if kind == "edge":  # d = 1, rank-deficient, a constant column, Fortran order, a strided view
        wide = rng.normal(size=(n, 16))
        deficient = z[:, :3] @ rng.normal(size=(3, 8))
        constant = np.column_stack([z[:, :4], np.full(n, 7.0)])
        return [z[:, :1].copy(), deficient, constant, np.asfortranarray(z @ rng.normal(size=(5, 6))), wide[:, ::2]]
    if kind == "n_just_above_d":
        return [rng.normal(size=(10, d)) for d in (9, 8, 9)]
    if kind == "extreme":
        return [z * 1e-200, (z @ rng.normal(size=(5, 5))) * 1e250, z[:, :3].astype(np.float32) * 1e30]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["random", "edge", "n_just_above_d", "extreme"])
@pytest.mark.parametrize("key", list(METRICS))
def test_blocks_from_factors_equal_the_in_memory_matrices(kind, key):
    metric, opts, pairwise, cross = METRICS[key]
    acts = _population(kind, np.random.default_rng(3))
    factors = _factors(acts, metric, opts)
    np.testing.assert_allclose(block_values(factors, None), pairwise(acts), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(block_values(factors[:2], factors[2:]), cross(acts[:2], acts[2:]),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_factors_of_wide_layers_are_sample_grams(debiased):
    rng = np.random.default_rng(1)
    acts = [rng.normal(size=(40, 90)), rng.normal(size=(40, 12)), rng.normal(size=(40, 200))]
    factors = _factors(acts, "cka", {"debiased": debiased})
    assert [f.sample_gram for f in factors] == [True, False, True]
    assert factors[0].data.shape == (40, 40)
    np.testing.assert_allclose(block_values(factors, None), mmkern.pairwise_cka(acts, debiased=debiased),
                               rtol=1e-12, atol=1e-12)


def test_a_factor_is_no_larger_than_its_kept_subspace():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 4)) @ rng.normal(size=(4, 30)) + 1e-3 * rng.normal(size=(500, 30))
    svcca_factor, = _factors([x], "svcca", {})
    cca_factor, = _factors([x], "cca", {})
    assert svcca_factor.data.shape == (500, svcca_factor.keep) and svcca_factor.keep < 30
    assert cca_factor.data.shape == (500, 30)
    assert svcca_factor.loadings is None and _factors([x], "pwcca", {})[0].loadings.shape == (30, 30)


@pytest.mark.parametrize("bad, message", [
    (np.full((20, 3), np.nan), r"acts\[0\] contains NaN or infinity"),
    (np.ones((20, 3)), r"acts\[0\]"),
])
@pytest.mark.parametrize("metric", ["svcca", "cka"])
def test_factors_refuse_what_the_in_memory_functions_refuse(bad, message, metric):
    with pytest.raises(ValueError, match=message):
        _factors([bad], metric, {})
    with pytest.raises(ValueError, match=message.replace("acts\\[0\\]", "acts\\[0\\]")):
        getattr(mmkern, f"pairwise_{metric}")([bad, np.random.default_rng(0).normal(size=(20, 3))])
