"""mmkern.analysis.pair_stats: each statistic against a direct scipy computation, the Mantel
test's exact p-value against an enumeration of the permutations, its calibration on unrelated
metrics, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from mmkern.analysis.pair_stats import compare_groups, correlation, mantel, mean_ci, pair_values


def _distances(points: np.ndarray) -> np.ndarray:
    return np.sqrt(((points[:, None, :] - points[None, :, :]) ** 2).sum(-1))


def test_pair_values_are_the_upper_triangle_row_by_row():
    m = np.array([[0, 1, 2, 3], [1, 0, 4, 5], [2, 4, 0, 6], [3, 5, 6, 0]], dtype=float)
    assert pair_values(m).tolist() == [1, 2, 3, 4, 5, 6]
    assert pair_values(np.asfortranarray(m)).tolist() == [1, 2, 3, 4, 5, 6]
    assert pair_values(np.zeros((1, 1))).size == 0
    with pytest.raises(ValueError, match="rm must be square"):
        pair_values(np.zeros((2, 3)), "rm")
    with pytest.raises(ValueError, match="rm must be symmetric"):
        pair_values(np.triu(m), "rm")
    with pytest.raises(ValueError, match="rm holds 2 values that are not finite"):
        pair_values(np.where(m == 6, np.nan, m), "rm")
    with pytest.raises(ValueError, match="rm must be 2-D"):
        pair_values(np.zeros(3), "rm")


def test_mean_ci_is_scipys_bca_bootstrap_over_pairs(rng):
    values = rng.gamma(2.0, 0.1, size=28)
    out = mean_ci(values, n_resamples=2000, seed=3)
    direct = stats.bootstrap((values,), np.mean, n_resamples=2000, method="BCa", vectorized=False,
                             rng=np.random.default_rng(3)).confidence_interval
    assert out == {"mean": pytest.approx(values.mean(), rel=1e-15), "ci_low": pytest.approx(direct.low, rel=1e-12),
                   "ci_high": pytest.approx(direct.high, rel=1e-12), "n_pairs": 28}
    assert out["ci_low"] < out["mean"] < out["ci_high"]
    assert mean_ci(values, n_resamples=2000, seed=3) == out  # seeded: reproducible
    wider = mean_ci(values, confidence=0.99, n_resamples=2000, seed=3)
    assert wider["ci_low"] < out["ci_low"] and wider["ci_high"] > out["ci_high"]


def test_mean_ci_edge_cases():
    assert mean_ci([0.25] * 6) == {"mean": 0.25, "ci_low": 0.25, "ci_high": 0.25, "n_pairs": 6}
    assert mean_ci([0.25]) == {"mean": 0.25, "ci_low": None, "ci_high": None, "n_pairs": 1}
    big = mean_ci(np.array([1e300, 2e300, 1.5e300, 1.2e300]), n_resamples=500)
    assert big["ci_low"] is not None and np.isfinite(big["ci_high"])
    with pytest.raises(ValueError, match="values holds no pair"):
        mean_ci([])
    with pytest.raises(ValueError, match="values holds 1 values that are not finite"):
        mean_ci([0.1, np.inf])
    with pytest.raises(ValueError, match="confidence must be"):
        mean_ci([0.1, 0.2], confidence=1.0)
    with pytest.raises(TypeError, match="values must be an array of real numbers"):
        mean_ci(["a", "b"])


def test_compare_groups_is_kruskal_then_mann_whitney_with_benjamini_hochberg(rng):
    groups = {"seed": rng.normal(0.30, 0.02, 10), "width": rng.normal(0.45, 0.03, 10),
              "optimizer": rng.normal(0.31, 0.02, 15)}
    out = compare_groups(groups)
    k = stats.kruskal(*groups.values())
    assert out["kruskal"] == {"statistic": pytest.approx(k.statistic), "p_value": pytest.approx(k.pvalue)}
    names = list(itertools.combinations(groups, 2))
    raw = [stats.mannwhitneyu(groups[a], groups[b], alternative="two-sided").pvalue for a, b in names]
    adjusted = stats.false_discovery_control(raw, method="bh")
    for row, (a, b), p, q in zip(out["pairwise"], names, raw, adjusted):
        assert (row["a"], row["b"]) == (a, b)
        assert row["p_value"] == pytest.approx(p) and row["p_adjusted"] == pytest.approx(q)
    assert [r["group"] for r in out["ranking"]][0] == "width"
    assert all(r["median"] == pytest.approx(np.median(groups[r["group"]])) for r in out["ranking"])


def test_compare_groups_edge_cases_and_errors():
    same = compare_groups({"a": [0.2, 0.2, 0.2], "b": [0.2, 0.2]})
    assert same["kruskal"] is None and same["pairwise"][0]["p_value"] == 1.0
    with pytest.raises(ValueError, match="at least 2 groups"):
        compare_groups({"a": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"groups\['b'\] must hold at least 2 pairs"):
        compare_groups({"a": [0.1, 0.2], "b": [0.3]})
    with pytest.raises(TypeError, match="groups must be a mapping"):
        compare_groups([[0.1, 0.2], [0.3, 0.4]])


def test_correlation_is_scipys_with_paired_bootstrap_intervals(rng):
    x = rng.uniform(0, 1, 21)
    y = 0.5 * x + rng.normal(0, 0.1, 21)
    out = correlation(x, y, n_resamples=1000, seed=1)
    assert out["n_pairs"] == 21
    for method, test in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        result = test(x, y)
        assert out[method]["r"] == pytest.approx(result.statistic) and out[method]["p_value"] == pytest.approx(result.pvalue)
        ci = stats.bootstrap((x, y), lambda a, b: test(a, b).statistic, paired=True, n_resamples=1000,
                             vectorized=False, method="BCa", rng=np.random.default_rng(1)).confidence_interval
        assert (out[method]["ci_low"], out[method]["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
        assert out[method]["ci_low"] < out[method]["r"] < out[method]["ci_high"]


def test_correlation_edge_cases_and_errors():
    constant = correlation([0.1, 0.1, 0.1, 0.1], [0.2, 0.3, 0.4, 0.5])
    assert constant["spearman"] == {"r": None, "ci_low": None, "ci_high": None, "p_value": None}
    with pytest.raises(ValueError, match="x and y must hold the same pairs"):
        correlation([0.1, 0.2, 0.3], [0.1, 0.2])
    with pytest.raises(ValueError, match="at least 3 pairs"):
        correlation([0.1, 0.2], [0.1, 0.2])
    with pytest.raises(ValueError, match="y holds 1 values that are not finite"):
        correlation([0.1, 0.2, 0.3], [0.1, np.nan, 0.3])


def test_mantel_exact_p_value_is_the_fraction_of_model_permutations(rng):
    m = 5  # 120 permutations: scipy enumerates them all
    a = _distances(rng.normal(size=(m, 2)))
    b = a + _distances(rng.normal(size=(m, 2))) * 0.5
    out = mantel(a, b, method="pearson", alternative="greater")
    upper = np.triu_indices(m, 1)
    observed = stats.pearsonr(a[upper], b[upper]).statistic
    null = [stats.pearsonr(a[np.ix_(p, p)][upper], b[upper]).statistic for p in itertools.permutations(range(m))]
    assert out["r"] == pytest.approx(observed)
    assert out["p_value"] == pytest.approx(np.mean(np.array(null) >= observed - 1e-12))
    assert (out["n_models"], out["n_pairs"], out["n_permutations"]) == (5, 10, 120)
    for alternative in ("two-sided", "greater", "less"):  # scipy's exact test, on one group
        def statistic(order):
            order = np.asarray(order)
            return stats.pearsonr(a[np.ix_(order, order)][upper], b[upper]).statistic

        scipy_p = stats.permutation_test((np.arange(m),), statistic, permutation_type="pairings",
                                         alternative=alternative, vectorized=False).pvalue
        assert mantel(a, b, method="pearson", alternative=alternative)["p_value"] == pytest.approx(scipy_p, rel=1e-12)


def test_mantel_rejects_about_five_percent_of_unrelated_metrics():
    """Calibration: two metrics between the same models that have nothing to do with each other
    (distances of two independent embeddings), 200 populations of 7 models."""
    p_values = []
    for seed in range(200):
        g = np.random.default_rng(seed)
        a, b = _distances(g.normal(size=(7, 3))), _distances(g.normal(size=(7, 3)))
        p_values.append(mantel(a, b, method="pearson", n_resamples=199, seed=seed)["p_value"])
    rejected = int(np.sum(np.array(p_values) <= 0.05))
    assert 1 <= rejected <= 24  # binomial(200, 0.05): mean 10; outside [1, 24] with probability < 1e-4
    assert stats.kstest(p_values, "uniform").pvalue > 1e-3  # and the null is uniform-ish


def test_mantel_detects_a_relation_and_refuses_bad_input(rng):
    a = _distances(rng.normal(size=(8, 2)))
    out = mantel(a, a ** 2, n_resamples=999)
    assert out["r"] == pytest.approx(1.0) and out["p_value"] < 0.01 and out["n_permutations"] == 999
    assert mantel(a, np.ones((8, 8)))["r"] is None
    with pytest.raises(ValueError, match="same models"):
        mantel(a, a[:7, :7])
    with pytest.raises(ValueError, match="at least 3 models"):
        mantel(a[:2, :2], a[:2, :2])
    with pytest.raises(ValueError, match="method must be one of"):
        mantel(a, a, method="kendall")
    with pytest.raises(ValueError, match="b must be symmetric"):
        mantel(a, np.triu(a))


def test_a_stratified_mantel_test_permutes_models_within_each_group(rng):
    groups_a = [_distances(rng.normal(size=(n, 2))) for n in (4, 3)]
    groups_b = [g + 0.3 * _distances(rng.normal(size=(len(g), 2))) for g in groups_a]
    out = mantel(groups_a, groups_b, method="pearson", alternative="greater")
    uppers = [np.triu_indices(len(g), 1) for g in groups_a]
    y = np.concatenate([g[u] for g, u in zip(groups_b, uppers)])

    def pooled(orders):
        return stats.pearsonr(np.concatenate([g[np.ix_(o, o)][u] for g, o, u in zip(groups_a, orders, uppers)]),
                              y).statistic

    observed = pooled([range(4), range(3)])
    null = [pooled([list(p), list(q)]) for p in itertools.permutations(range(4)) for q in itertools.permutations(range(3))]
    assert out["r"] == pytest.approx(observed)
    assert out["p_value"] == pytest.approx(np.mean(np.array(null) >= observed - 1e-12))
    assert (out["n_models"], out["n_groups"], out["n_pairs"], out["n_permutations"]) == (7, 2, 9, 144)
    with pytest.raises(ValueError, match="same models"):
        mantel(groups_a, groups_b[:1])
    with pytest.raises(ValueError, match=r"b\[1\] must be symmetric"):
        mantel(groups_a, [groups_b[0], np.triu(groups_b[1])])
