"""mmkern.analysis.pair_stats: each statistic against a direct scipy computation, the Mantel
test's exact p-value against an enumeration of the permutations, its calibration on unrelated
metrics, and bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from mmkern.analysis.finite_sample import finite_sample
from mmkern.analysis.pair_stats import (association, compare_groups, correlation, mantel, mean_ci, pair_values,
                                        partial_correlation, within_groups)


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


def test_a_mantel_test_on_the_pairs_within_groups_rejects_about_five_percent_of_unrelated_metrics():
    """Calibration of the test claim (2) is judged by: 9 models in two groups sharing one, the
    pairs within the groups correlated, every model permuted; 200 populations."""
    groups = [[0, 1, 2, 3, 4], [0, 5, 6, 7, 8]]
    _, mask = within_groups(groups, 9)
    p_values = []
    for seed in range(200):
        g = np.random.default_rng(seed)
        a, b = _distances(g.normal(size=(9, 3))), _distances(g.normal(size=(9, 3)))
        p_values.append(mantel(a, b, pairs=mask, n_resamples=199, seed=seed)["p_value"])
    rejected = int(np.sum(np.array(p_values) <= 0.05))
    assert 1 <= rejected <= 24
    assert stats.kstest(p_values, "uniform").pvalue > 1e-3


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


def _partial(x, y, z, test=stats.spearmanr):
    """The partial correlation by its textbook route: correlate the residuals of x and y after a
    least-squares fit on z (of their ranks, for Spearman's)."""
    if test is stats.spearmanr:
        x, y, z = (stats.rankdata(v) for v in (x, y, z))
    design = np.column_stack([np.ones_like(z), z])
    rx = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    ry = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    return stats.pearsonr(rx, ry).statistic


def test_partial_correlation_is_the_correlation_of_residuals_with_a_paired_bootstrap(rng):
    z = rng.normal(size=40)
    x, y = z + rng.normal(size=40) * 0.5, z + rng.normal(size=40) * 0.5
    for method, test in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        out = partial_correlation(x, y, z, method=method, n_resamples=500, seed=1)
        assert out["r"] == pytest.approx(_partial(x, y, z, test), abs=1e-12)
        assert out["ci_low"] < out["r"] < out["ci_high"] and out["n_pairs"] == 40
    # y driven by z alone: x adds nothing; y driven by x: it does
    assert abs(partial_correlation(rng.normal(size=200), z.repeat(5) + rng.normal(size=200) * 0.1, z.repeat(5),
                                   n_resamples=200)["r"]) < 0.25
    assert partial_correlation(x, x + 0.1 * rng.normal(size=40), z, n_resamples=200)["ci_low"] > 0.5
    assert partial_correlation(np.ones(5), np.arange(5.0), np.arange(5.0) ** 2)["r"] is None
    assert partial_correlation(np.arange(5.0), np.arange(5.0) ** 3, np.arange(5.0))["r"] is None  # z determines x
    with pytest.raises(ValueError, match="at least 4 pairs"):
        partial_correlation([1, 2, 3], [1, 2, 3], [3, 1, 2])
    with pytest.raises(ValueError, match="same pairs"):
        partial_correlation([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3])
    with pytest.raises(ValueError, match="z holds 1 values that are not finite"):
        partial_correlation([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, np.inf, 4])


def test_a_partial_mantel_test_permutes_the_models_of_a(rng):
    m = 5
    c = _distances(rng.normal(size=(m, 2)))
    a = c + _distances(rng.normal(size=(m, 2)))
    b = c + _distances(rng.normal(size=(m, 2)))
    upper = np.triu_indices(m, 1)
    out = mantel(a, b, given=c, alternative="greater")
    assert out["r"] == pytest.approx(_partial(a[upper], b[upper], c[upper]), abs=1e-12)
    null = [_partial(a[np.ix_(p, p)][upper], b[upper], c[upper]) for p in itertools.permutations(range(m))]
    assert out["p_value"] == pytest.approx(np.mean(np.array(null) >= out["r"] - 1e-12))
    assert out["n_permutations"] == 120
    with pytest.raises(ValueError, match="given must be over the same models"):
        mantel(a, b, given=c[:4, :4])
    assert mantel(a, b, given=np.ones((m, m)) - np.eye(m))["r"] is None


def test_a_mantel_test_on_some_pairs_permutes_every_model(rng):
    m = 5
    a = _distances(rng.normal(size=(m, 2)))
    b = a + _distances(rng.normal(size=(m, 2)))
    mask = np.zeros((m, m), dtype=bool)
    mask[np.ix_([0, 1, 2], [0, 1, 2])] = mask[np.ix_([0, 3, 4], [0, 3, 4])] = True
    np.fill_diagonal(mask, False)
    upper = np.triu_indices(m, 1)
    keep = mask[upper]
    out = mantel(a, b, pairs=mask, alternative="greater")
    observed = stats.spearmanr(a[upper][keep], b[upper][keep]).statistic
    null = [stats.spearmanr(a[np.ix_(p, p)][upper][keep], b[upper][keep]).statistic
            for p in itertools.permutations(range(m))]
    assert out["r"] == pytest.approx(observed, abs=1e-12) and out["n_pairs"] == 6
    assert out["p_value"] == pytest.approx(np.mean(np.array(null) >= observed - 1e-12))
    given = _distances(rng.normal(size=(m, 2)))
    partial = mantel(a, b, given=given, pairs=mask)["r"]
    assert partial == pytest.approx(_partial(a[upper][keep], b[upper][keep], given[upper][keep]), abs=1e-12)
    with pytest.raises(ValueError, match="symmetric boolean"):
        mantel(a, b, pairs=np.triu(mask))
    with pytest.raises(ValueError, match="single matrices"):
        mantel([a, a], [b, b], pairs=mask)


def test_association_pools_the_pairs_within_groups_and_tests_them_two_ways(rng):
    m = 8
    a = _distances(rng.normal(size=(m, 2)))
    b = a + _distances(rng.normal(size=(m, 2)))
    groups = [[0, 1, 2, 3], [0, 4, 5, 6, 7]]  # model 0 in both, as a base member
    out = association(a, b, groups, n_resamples=300, seed=2)
    models, mask = within_groups(groups, m)
    assert models == list(range(m)) and mask.sum() == 2 * (6 + 10)
    upper = np.triu_indices(m, 1)
    x, y = a[upper][mask[upper]], b[upper][mask[upper]]
    corr = correlation(x, y, n_resamples=300, seed=2)
    stratified = mantel([a[np.ix_(g, g)] for g in groups], [b[np.ix_(g, g)] for g in groups], n_resamples=300,
                        seed=2)
    assert out == {"spearman": corr["spearman"]["r"], "ci_low": corr["spearman"]["ci_low"],
                   "ci_high": corr["spearman"]["ci_high"], "pearson": corr["pearson"]["r"],
                   "p_value": mantel(a, b, pairs=mask, n_resamples=300, seed=2)["p_value"],
                   "p_within": stratified["p_value"], "n_pairs": 16, "n_groups": 2, "n_models": 8}
    whole = association(a, b, n_resamples=300)
    assert whole["n_pairs"] == 28 and whole["p_within"] is None
    assert whole["p_value"] == mantel(a, b, n_resamples=300)["p_value"]
    # only the groups' models are permuted: a model outside them changes nothing
    bigger_a, bigger_b = np.pad(a, (0, 1), constant_values=9.0), np.pad(b, (0, 1), constant_values=3.0)
    np.fill_diagonal(bigger_a, 0), np.fill_diagonal(bigger_b, 0)
    assert association(bigger_a, bigger_b, groups, n_resamples=300, seed=2) == out
    assert association(np.zeros((3, 3)), a[:3, :3]) is None
    with pytest.raises(ValueError, match="indices of the 8 models"):
        association(a, b, [[0, 9]])
    with pytest.raises(ValueError, match="same models"):
        association(a, b[:4, :4])


def _group(rng, k, scale):
    points = rng.normal(size=(k, 3)) * scale
    return {"rm": _distances(points), "pm_iid": _distances(points) * 0.5, "pm_ood": _distances(points) * 0.8 + 0.1,
            "ood_accuracy": rng.uniform(0.5, 0.9, size=(k, 4))}


def test_finite_sample_errors_enumerate_every_subset_and_ranks_use_the_full_groups(rng):
    groups = {f"g{i}": _group(rng, 5, 1.0 + i) for i in range(4)}
    out = finite_sample(groups, draws=50, seed=1)
    assert out["k"] == [2, 3, 4, 5] and out["n_groups"] == 4 and out["draws"] == 50
    g = groups["g0"]
    full = (g["rm"].sum()) / 20

    def mean_rm(s):
        return g["rm"][np.ix_(s, s)].sum() / (len(s) * (len(s) - 1))

    for k in (2, 3, 4):  # the error of group g0 alone, by enumeration
        mine = finite_sample({"g0": g, "g1": g, "g2": g}, draws=1)["error"]["rm"][k - 2]
        direct = np.mean([abs(mean_rm(list(s)) - full) / full for s in itertools.combinations(range(5), k)])
        assert mine == pytest.approx(direct, rel=1e-12)
    assert all(v[-1] == 0.0 for v in out["error"].values())
    spread = {n: float((grp["ood_accuracy"].max(0) - grp["ood_accuracy"].min(0)).mean()) for n, grp in groups.items()}
    for n in groups:
        assert out["full"][n]["ood_accuracy_spread"] == pytest.approx(spread[n])
    row = out["rank_correlation"]["pm_iid->ood_accuracy_spread"]
    expected = stats.spearmanr([out["full"][n]["pm_iid"] for n in groups], [spread[n] for n in groups]).statistic
    assert [row[f][-1] for f in ("mean", "low", "high")] == pytest.approx([expected] * 3, abs=1e-12)
    # the groups' PM grow with their scale, and so does every subset's: a perfect ranking at every k
    assert out["rank_correlation"]["pm_iid->pm_ood"]["mean"][0] > 0.5
    assert finite_sample(groups, draws=50, seed=1) == out  # seeded


def test_finite_sample_refuses_bad_groups(rng):
    with pytest.raises(ValueError, match="at least 3 groups"):
        finite_sample({"a": _group(rng, 3, 1), "b": _group(rng, 3, 1)})
    bad = _group(rng, 3, 1)
    bad["pm_ood"] = bad["pm_ood"][:2]
    with pytest.raises(ValueError, match=r"groups\['a'\]\['pm_ood'\] must be a finite square"):
        finite_sample({"a": bad, "b": _group(rng, 3, 1), "c": _group(rng, 3, 1)})
    bad = _group(rng, 3, 1)
    bad["ood_accuracy"] = bad["ood_accuracy"][:2]
    with pytest.raises(ValueError, match="ood_accuracy"):
        finite_sample({"a": bad, "b": _group(rng, 3, 1), "c": _group(rng, 3, 1)})
    with pytest.raises(ValueError, match="at least 2 models"):
        finite_sample({"a": _group(rng, 1, 1), "b": _group(rng, 3, 1), "c": _group(rng, 3, 1)})


def test_stacked_correlation_is_scipys_per_sample_ties_included(rng):
    from mmkern.analysis.pair_stats import stacked_correlation

    x = rng.integers(0, 4, size=(30, 12)).astype(float)  # many ties
    y = x + rng.integers(0, 3, size=(30, 12))
    x[0] = 1.0  # a constant sample: NaN, as scipy's
    for method, test in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        got = stacked_correlation(method)(x, y)
        with np.errstate(invalid="ignore"), pytest.warns(stats.ConstantInputWarning):
            expected = np.array([test(a, b).statistic for a, b in zip(x, y)])
        np.testing.assert_allclose(got[1:], expected[1:], rtol=1e-12)
        assert np.isnan(got[0]) and np.isnan(expected[0])
    with pytest.raises(ValueError, match="method must be one of"):
        stacked_correlation("kendall")
