"""The NumPy predictive-multiplicity reference against hand-computed answers, closed forms,
independent formulations (SciPy, one-hot products, entropies) and properties."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import optimize, stats
from scipy.spatial import distance

from _predictions import (
    HAND_HARD,
    HAND_SOFT,
    LABEL_DTYPES,
    binary_symmetric_channel,
    dyadic_probs,
    entropy_nats,
    erasure_channel,
    hard_population,
    one_hot,
    prediction_population,
    softmax,
    sparse_probs,
    z_channel,
)
from mmkern import reference as ref

LN2 = math.log(2.0)

#: Independent formulations (entropies, SciPy, scalar optimisation) vs the reference.
CLOSE = {"rtol": 1e-12, "atol": 1e-14}


def _channel(rows) -> np.ndarray:
    """One sample's ``(M, C)`` channel matrix as an ``(M, 1, C)`` population."""
    return np.asarray(rows, dtype=np.float64)[:, None, :]


def _capacity(rows, **kwargs) -> float:
    return float(ref.rashomon_capacity(_channel(rows), **kwargs)[0])


def _mutual_information(w, rows) -> float:
    """I(W; Y) in nats of input weights ``w`` through the channel ``rows``: H(q) - sum w H(p)."""
    rows = np.asarray(rows, dtype=np.float64)
    q = np.asarray(w) @ rows
    return entropy_nats(q) - sum(wm * entropy_nats(r) for wm, r in zip(w, rows))


# ---------------------------------------------------------------------------------------------
# Hard disagreement
# ---------------------------------------------------------------------------------------------


def test_disagreement_hand_made():
    d = ref.disagreement_matrix(HAND_HARD.preds)
    assert d.dtype == np.float64 and d.shape == (3, 3)
    assert_array_equal(d, HAND_HARD.disagreement)


@pytest.mark.parametrize("dtype", LABEL_DTYPES, ids=lambda t: np.dtype(t).name)
def test_disagreement_any_integer_dtype(dtype):
    assert_array_equal(ref.disagreement_matrix(HAND_HARD.preds.astype(dtype)),
                       HAND_HARD.disagreement)


def test_disagreement_depends_only_on_equality_of_labels():
    # Relabelling classes injectively (to huge or unsigned values) changes nothing.
    relabel = np.array([7, 2**40, 3])
    assert_array_equal(ref.disagreement_matrix(relabel[HAND_HARD.preds]), HAND_HARD.disagreement)
    huge = np.array([2**64 - 1, 2**63, 5], dtype=np.uint64)[HAND_HARD.preds]
    assert_array_equal(ref.disagreement_matrix(huge), HAND_HARD.disagreement)


def test_disagreement_from_scores_takes_argmax_lowest_on_ties():
    # model 0 predicts (0, 1, 0); model 1 has exact ties resolved to the lowest index: (0, 0, 1)
    scores = np.array([
        [[0.6, 0.4], [0.3, 0.7], [0.9, 0.1]],
        [[0.5, 0.5], [0.5, 0.5], [0.25, 0.75]],
    ])
    assert_array_equal(ref.disagreement_matrix(scores), [[0.0, 2 / 3], [2 / 3, 0.0]])
    # logits give the same hard labels as their softmax
    rng = np.random.default_rng(3)
    pop = prediction_population(rng, 6, 300, 5)
    assert_array_equal(ref.disagreement_matrix(pop.logits), ref.disagreement_matrix(pop.probs))
    assert_array_equal(ref.disagreement_matrix(pop.probs),
                       ref.disagreement_matrix(np.argmax(pop.probs, axis=-1)))


@pytest.mark.parametrize("n_models, n_samples, n_classes", [(2, 1, 2), (7, 50, 3), (12, 333, 10)])
def test_disagreement_matches_one_hot_product(rng, n_models, n_samples, n_classes):
    preds, _ = hard_population(rng, n_models, n_samples, n_classes, flip=0.4)
    y = one_hot(preds, n_classes).reshape(n_models, -1)  # (M, n*C)
    agree = y @ y.T  # number of samples with equal labels, exact in float64
    expected = (n_samples - agree) / n_samples
    assert_array_equal(ref.disagreement_matrix(preds), expected)


def test_disagreement_is_a_metric(rng):
    preds, _ = hard_population(rng, 9, 200, 4, flip=0.5)
    d = ref.disagreement_matrix(preds)
    assert_array_equal(d, d.T)
    assert_array_equal(np.diag(d), 0.0)
    assert np.all((d >= 0) & (d <= 1))
    assert_array_equal(d, np.round(d * 200) / 200)  # (count of samples) / n
    for i, j, k in itertools.product(range(9), repeat=3):
        assert d[i, k] <= d[i, j] + d[j, k] + 1e-15
    # identical models do not disagree; a model changed on every sample disagrees everywhere
    twins = np.stack([preds[0], preds[0], (preds[0] + 1) % 4])
    assert_array_equal(ref.disagreement_matrix(twins), [[0, 0, 1], [0, 0, 1], [1, 1, 0]])


# ---------------------------------------------------------------------------------------------
# Soft disagreement
# ---------------------------------------------------------------------------------------------


def test_soft_hand_made():
    tv = ref.soft_disagreement_matrix(HAND_SOFT.probs, "tv")
    assert tv.dtype == np.float64 and tv.shape == (3, 3)
    assert_allclose(tv, HAND_SOFT.tv, **CLOSE)
    # default metric is TV
    assert_array_equal(ref.soft_disagreement_matrix(HAND_SOFT.probs), tv)
    # models 0 and 2 agree on sample 1, so their Hellinger is half of sample 0's; 0 vs 1:
    h = ref.soft_disagreement_matrix(HAND_SOFT.probs[:2, 1:], "hellinger")
    assert h[0, 1] == pytest.approx(HAND_SOFT.hellinger_01_sample1, rel=1e-14)


def test_soft_two_point_closed_forms():
    # p = (1/2, 1/2), q = (1, 0) on one sample
    probs = _channel([[0.5, 0.5], [1.0, 0.0]])
    kl = ref.soft_disagreement_matrix(probs, "kl")
    assert kl[1, 0] == pytest.approx(LN2, rel=1e-15)          # 1 * log(1 / 0.5)
    assert kl[0, 1] == math.inf                                 # p puts mass where q has none
    m_js = 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)) \
        + 0.5 * (1.0 * math.log(1.0 / 0.75))
    assert ref.soft_disagreement_matrix(probs, "js")[0, 1] == pytest.approx(m_js, rel=1e-14)
    assert ref.soft_disagreement_matrix(probs, "tv")[0, 1] == pytest.approx(0.5, rel=1e-15)
    hel = math.sqrt(0.5 * ((math.sqrt(0.5) - 1.0) ** 2 + 0.5))
    assert ref.soft_disagreement_matrix(probs, "hellinger")[0, 1] == pytest.approx(hel, rel=1e-15)


def test_soft_disjoint_supports_reach_the_upper_bounds():
    probs = _channel([[0.3, 0.7, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]])
    assert ref.soft_disagreement_matrix(probs, "tv")[0, 1] == pytest.approx(1.0, rel=1e-15)
    assert ref.soft_disagreement_matrix(probs, "js")[0, 1] == pytest.approx(LN2, rel=1e-15)
    assert ref.soft_disagreement_matrix(probs, "hellinger")[0, 1] == pytest.approx(1.0, rel=1e-15)
    kl = ref.soft_disagreement_matrix(probs, "kl")
    assert kl[0, 1] == math.inf and kl[1, 0] == math.inf


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_soft_matches_independent_formulas(rng, n_classes):
    pop = prediction_population(rng, 5, 120, n_classes)
    p = pop.probs
    tv = ref.soft_disagreement_matrix(p, "tv")
    js = ref.soft_disagreement_matrix(p, "js")
    hel = ref.soft_disagreement_matrix(p, "hellinger")
    kl = ref.soft_disagreement_matrix(p, "kl")
    for i, j in itertools.permutations(range(5), 2):
        a, b = p[i], p[j]
        # SciPy's KL and JS distance (sqrt of the divergence, natural log)
        assert kl[i, j] == pytest.approx(np.mean(stats.entropy(a, b, axis=-1)), rel=1e-12)
        js_scipy = np.mean([distance.jensenshannon(a[x], b[x]) ** 2 for x in range(120)])
        assert js[i, j] == pytest.approx(js_scipy, rel=1e-10)
        # JS = H(m) - (H(p) + H(q)) / 2
        js_entropy = np.mean([entropy_nats((a[x] + b[x]) / 2)
                              - (entropy_nats(a[x]) + entropy_nats(b[x])) / 2
                              for x in range(120)])
        assert js[i, j] == pytest.approx(js_entropy, rel=1e-11)
        # TV = sum of the positive part; Hellinger^2 = 1 - Bhattacharyya coefficient
        assert tv[i, j] == pytest.approx(np.mean(np.sum(np.maximum(a - b, 0), axis=-1)),
                                         rel=1e-12)
        bc = np.sum(np.sqrt(a * b), axis=-1)
        assert hel[i, j] == pytest.approx(np.mean(np.sqrt(np.maximum(1 - bc, 0))), rel=1e-7)


def test_soft_properties(rng):
    pop = prediction_population(rng, 8, 150, 4, families=3)
    p = pop.probs
    tv, js, hel, kl = (ref.soft_disagreement_matrix(p, m) for m in ("tv", "js", "hellinger", "kl"))
    for name, mat, upper in [("tv", tv, 1.0), ("js", js, LN2), ("hellinger", hel, 1.0)]:
        assert mat.dtype == np.float64, name
        assert_array_equal(mat, mat.T, err_msg=name)
        assert_array_equal(np.diag(mat), 0.0, err_msg=name)
        assert np.all((mat >= 0) & (mat <= upper)), name
    assert_array_equal(np.diag(kl), 0.0)
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0)
    assert not np.allclose(kl, kl.T)
    for i, j, k in itertools.product(range(8), repeat=3):  # TV and Hellinger are metrics
        assert tv[i, k] <= tv[i, j] + tv[j, k] + 1e-15
        assert hel[i, k] <= hel[i, j] + hel[j, k] + 1e-15
    off = ~np.eye(8, dtype=bool)
    # Classical inequalities, per sample and hence for the means:
    # JS <= ln2 TV (Lin 1991); H^2 <= TV <= sqrt(2) H; Pinsker: KL >= 2 TV^2 >= 2 (mean TV)^2.
    assert np.all(js[off] <= LN2 * tv[off])
    assert np.all(tv[off] <= math.sqrt(2) * hel[off])
    assert np.all(kl[off] >= 2 * tv[off] ** 2)
    # The models of one family (0, 3, 6) are near-identical, across families they are not.
    assert tv[0, 3] < 0.1 * tv[0, 1]


def test_kl_exact_zeros(rng):
    pop = prediction_population(rng, 4, 200, 6)
    p = sparse_probs(rng, pop.probs, 0.05)
    assert np.any(p == 0)
    kl = ref.soft_disagreement_matrix(p, "kl")
    for i, j in itertools.permutations(range(4), 2):
        mismatch = np.any((p[i] > 0) & (p[j] == 0))
        assert (kl[i, j] == math.inf) == mismatch
    assert not np.any(np.isnan(kl))
    # zeros in p only (q has full support) never give inf: 0 log 0 = 0
    full = pop.probs.copy()
    full[0] = p[0]
    kl = ref.soft_disagreement_matrix(full, "kl")
    assert np.all(np.isfinite(kl[0]))
    # JS, TV and Hellinger stay finite and bounded with zeros
    assert np.all(ref.soft_disagreement_matrix(p, "js") <= LN2)
    assert np.all(np.isfinite(ref.soft_disagreement_matrix(p, "hellinger")))


@pytest.mark.parametrize("metric", ref.SOFT_METRICS)
def test_soft_from_logits(rng, metric):
    pop = prediction_population(rng, 4, 60, 5)
    expected = ref.soft_disagreement_matrix(softmax(pop.logits), metric)
    assert_allclose(ref.soft_disagreement_matrix(pop.logits, metric, from_logits=True),
                    expected, **CLOSE)
    # logits are defined up to a constant per row; large offsets must not overflow
    shifted = pop.logits + rng.normal(0, 500, size=(4, 60, 1))
    assert_allclose(ref.soft_disagreement_matrix(shifted, metric, from_logits=True),
                    expected, rtol=1e-9, atol=1e-12)


def test_soft_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric"):
        ref.soft_disagreement_matrix(HAND_SOFT.probs, "l2")


# ---------------------------------------------------------------------------------------------
# Rashomon capacity
# ---------------------------------------------------------------------------------------------


def test_rashomon_identical_models_give_one(rng):
    pop = prediction_population(rng, 1, 30, 4)
    same = np.repeat(pop.probs, 5, axis=0)
    rc = ref.rashomon_capacity(same)
    assert rc.dtype == np.float64 and rc.shape == (30,)
    assert_allclose(rc, 1.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_rashomon_distinct_one_hot_models_give_c(n_classes):
    # M = C models, each all mass on a different class (in shuffled order per sample)
    rng = np.random.default_rng(n_classes)
    orders = np.stack([rng.permutation(n_classes) for _ in range(5)], axis=1)  # (M, n)
    probs = one_hot(orders, n_classes)
    assert_allclose(ref.rashomon_capacity(probs), n_classes, rtol=1e-12)
    # M > C: extra models that duplicate a class or mix classes do not add capacity (a tight
    # tol: the default 1e-6 nats bounds the relative error by 1e-6 only)
    extra = np.concatenate([probs, probs[:1], np.full((1, 5, n_classes), 1.0 / n_classes)])
    assert_allclose(ref.rashomon_capacity(extra, tol=1e-12, max_iter=100_000), n_classes, rtol=1e-8)


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.1, 0.3, 0.5])
def test_rashomon_binary_symmetric_channel(eps):
    expected = 2.0 * math.exp(-entropy_nats([eps, 1 - eps]))
    assert _capacity(binary_symmetric_channel(eps)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.9])
def test_rashomon_z_channel(p):
    expected = 1.0 + (1.0 - p) * p ** (p / (1.0 - p))
    assert _capacity(z_channel(p)) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("eps", [0.0, 0.25, 0.6, 1.0])
def test_rashomon_erasure_channel(eps):
    assert _capacity(erasure_channel(eps)) == pytest.approx(2.0 ** (1.0 - eps), rel=1e-9)


def test_rashomon_two_models_match_scalar_maximisation(rng):
    # Capacity of a 2-input channel = max over w in [0, 1] of I(w): a 1-D concave problem.
    for n_classes in (2, 3, 10):
        pop = prediction_population(rng, 2, 6, n_classes, families=2)
        rc = ref.rashomon_capacity(pop.probs)
        for x in range(6):
            rows = pop.probs[:, x]
            best = optimize.minimize_scalar(lambda w: -_mutual_information([w, 1 - w], rows),
                                            bounds=(0, 1), method="bounded",
                                            options={"xatol": 1e-12})
            assert rc[x] == pytest.approx(math.exp(-best.fun), rel=1e-8)
            # Capacity is at least the mutual information of uniform weights = JS divergence
            js = ref.soft_disagreement_matrix(pop.probs[:, x:x + 1], "js")[0, 1]
            assert rc[x] >= math.exp(js) * (1 - 1e-12)


def test_rashomon_bounds_and_invariances(rng):
    pop = prediction_population(rng, 6, 12, 3, families=4)
    p = sparse_probs(rng, pop.probs, 0.02)  # some exact zeros: 0 log 0 = 0
    rc = ref.rashomon_capacity(p)
    assert np.all((rc >= 1.0) & (rc <= 3.0))
    # capacity <= log M as well: two models can never exceed 2
    assert np.all(ref.rashomon_capacity(p[:2]) <= 2.0)
    # lower bound: mutual information of uniform weights
    for x in range(12):
        assert rc[x] >= math.exp(_mutual_information(np.full(6, 1 / 6), p[:, x])) * (1 - 1e-12)
    # order of classes does not matter; order of models changes the iterates only by rounding
    assert_allclose(ref.rashomon_capacity(p[..., ::-1]), rc, rtol=1e-9)
    assert_allclose(ref.rashomon_capacity(p[::-1]), rc, rtol=1e-9)
    # duplicating a model leaves the capacity unchanged; not the iterates, though, and samples
    # whose near-identical models keep the bounds apart until max_iter stop ~1e-6 below it
    assert_allclose(ref.rashomon_capacity(np.concatenate([p, p[:1]])), rc, rtol=1e-5)


def test_rashomon_single_iteration_is_the_first_lower_bound(rng):
    # With max_iter=1 the only evaluation is at uniform weights w = 1/M, where q is the mean
    # output pbar and lower = log(mean_m exp(KL(p_m || pbar))) (>= I(uniform) by Jensen).
    pop = prediction_population(rng, 5, 8, 4)
    rc = ref.rashomon_capacity(pop.probs, max_iter=1)
    for x in range(8):
        rows = pop.probs[:, x]
        kl = stats.entropy(rows, np.mean(rows, axis=0)[None, :], axis=-1)
        assert rc[x] == pytest.approx(np.mean(np.exp(kl)), rel=1e-12)
        assert rc[x] >= math.exp(_mutual_information(np.full(5, 0.2), rows))
    # more iterations only raise the lower bound
    assert np.all(ref.rashomon_capacity(pop.probs, max_iter=20) >= rc - 1e-15)
    # a loose tolerance stops early, below the converged value
    assert np.all(ref.rashomon_capacity(pop.probs, tol=1e-2) <= ref.rashomon_capacity(pop.probs)
                  + 1e-12)


def test_rashomon_from_logits(rng):
    pop = prediction_population(rng, 4, 6, 3, families=4)
    assert_allclose(ref.rashomon_capacity(pop.logits, from_logits=True),
                    ref.rashomon_capacity(softmax(pop.logits)), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# predictive_multiplicity
# ---------------------------------------------------------------------------------------------


def test_predictive_multiplicity_hand_made_soft():
    h = HAND_SOFT
    result = ref.predictive_multiplicity(h.probs)
    assert isinstance(result, ref.PredictiveMultiplicity)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ambiguity = 0.0
    assert_array_equal(result.disagreement, h.disagreement)
    assert result.mean_disagreement == pytest.approx(1 / 3, rel=1e-15)
    assert result.ambiguity == 0.5
    assert result.discrepancy == 0.5
    assert_allclose(result.sample_disagreement, [1 / 3, 0.0], rtol=1e-15)
    assert_allclose(result.sample_variance, h.sample_variance, rtol=1e-12)
    assert result.prediction_variance == pytest.approx(h.prediction_variance, rel=1e-12)
    assert_allclose(result.viable_prediction_range, h.range_majority, rtol=1e-12)
    assert result.rashomon_capacity == pytest.approx(np.mean(result.sample_rashomon_capacity),
                                                     rel=1e-15)
    assert np.all(result.sample_rashomon_capacity > 1.0)
    assert result.accuracy is None and result.accuracy_mean is None
    assert result.accuracy_spread is None
    assert result.correct is None and result.incorrect is None
    for name in ("mean_disagreement", "ambiguity", "discrepancy", "prediction_variance",
                 "rashomon_capacity"):
        assert type(getattr(result, name)) is float, name
    for name in ("sample_disagreement", "sample_variance", "sample_rashomon_capacity",
                 "viable_prediction_range"):
        arr = getattr(result, name)
        assert arr.dtype == np.float64 and arr.shape == (2,), name

    for r in range(3):
        by_ref = ref.predictive_multiplicity(h.probs, reference=r)
        assert by_ref.ambiguity == 0.5
        assert by_ref.discrepancy == 0.5
        assert_allclose(by_ref.viable_prediction_range, h.range_reference[r], rtol=1e-12)


def test_predictive_multiplicity_hand_made_labels():
    h = HAND_SOFT
    result = ref.predictive_multiplicity(h.probs, h.labels)
    assert_allclose(result.viable_prediction_range, h.range_labels, rtol=1e-12)
    assert result.accuracy.dtype == np.float64
    assert_array_equal(result.accuracy, h.accuracy)
    assert result.accuracy_mean == pytest.approx(2 / 3, rel=1e-15)
    assert result.accuracy_spread == 0.5
    # majority vote (0, 2) vs labels (1, 2): correct on sample 1, incorrect on sample 0
    correct, incorrect = result.correct, result.incorrect
    assert correct.disagreement.shape == (3, 3) and correct.sample_variance.shape == (1,)
    assert_array_equal(correct.accuracy, [1.0, 1.0, 1.0])
    assert correct.ambiguity == 0.0
    assert_allclose(correct.viable_prediction_range, [0.4], rtol=1e-12)
    assert_array_equal(incorrect.accuracy, [0.0, 0.0, 1.0])
    assert incorrect.ambiguity == 1.0
    assert incorrect.discrepancy == 1.0
    assert_allclose(incorrect.sample_variance, h.sample_variance[:1], rtol=1e-12)
    for sub in (correct, incorrect):
        assert sub.correct is None and sub.incorrect is None  # one level only
    # reference model 2 is right on both samples: no incorrect subset
    by_ref = ref.predictive_multiplicity(h.probs, h.labels, reference=2)
    assert by_ref.incorrect is None
    assert by_ref.correct.sample_variance.shape == (2,)
    assert_allclose(by_ref.correct.sample_variance, h.sample_variance, rtol=1e-15)
    # reference model 0 is right on sample 1 only
    by_ref = ref.predictive_multiplicity(h.probs, h.labels, reference=0)
    assert by_ref.correct.sample_variance.shape == (1,)
    assert by_ref.incorrect.discrepancy == 1.0  # model 2 differs from model 0 on sample 0


def test_predictive_multiplicity_hand_made_hard():
    # One-hot models: the channel of a sample is noiseless, so its capacity is the log of the
    # number of distinct predicted classes and there is no variance within a class vote.
    h = HAND_HARD
    result = ref.predictive_multiplicity(one_hot(h.preds, 3))
    assert_array_equal(result.disagreement, h.disagreement)
    assert result.mean_disagreement == pytest.approx(h.mean_disagreement, rel=1e-15)
    assert result.ambiguity == h.ambiguity
    assert result.discrepancy == h.discrepancy
    assert_allclose(result.sample_disagreement, h.sample_disagreement, rtol=1e-15)
    assert_allclose(result.sample_rashomon_capacity, [2, 1, 2, 2], rtol=1e-8)
    # two models vote a, one votes b: variance 2/9 on classes a and b, 0 on the third
    assert_allclose(result.sample_variance, [4 / 27, 0, 4 / 27, 4 / 27], rtol=1e-14)
    assert_allclose(result.viable_prediction_range, [1, 0, 1, 1])
    for r, expected in enumerate(h.discrepancy_by_reference):
        by_ref = ref.predictive_multiplicity(one_hot(h.preds, 3), reference=r)
        assert by_ref.discrepancy == expected
        assert by_ref.ambiguity == h.ambiguity


def test_predictive_multiplicity_is_consistent(rng):
    pop = prediction_population(rng, 6, 16, 3, families=3)
    for reference in (None, 4):
        result = ref.predictive_multiplicity(pop.probs, pop.labels, reference)
        d = result.disagreement
        assert_array_equal(d, ref.disagreement_matrix(pop.probs))
        assert result.mean_disagreement == pytest.approx(d.sum() / 30, rel=1e-14)
        assert result.ambiguity == np.mean(result.sample_disagreement > 0)
        assert result.prediction_variance == pytest.approx(np.mean(result.sample_variance),
                                                           rel=1e-14)
        assert_array_equal(result.sample_rashomon_capacity, ref.rashomon_capacity(pop.probs))
        assert result.accuracy_spread == np.max(result.accuracy) - np.min(result.accuracy)
        hard = np.argmax(pop.probs, axis=-1)
        if reference is None:
            assert result.discrepancy == np.max(d)
            votes = np.stack([np.bincount(hard[:, x], minlength=3) for x in range(16)])
            decider = np.argmax(votes, axis=1)
        else:
            assert result.discrepancy == np.max(d[reference])
            decider = hard[reference]
        right = decider == pop.labels
        n_correct = result.correct.sample_variance.shape[0] if result.correct else 0
        n_incorrect = result.incorrect.sample_variance.shape[0] if result.incorrect else 0
        assert (n_correct, n_incorrect) == (right.sum(), (~right).sum())
        if result.correct is not None:
            assert_array_equal(result.correct.sample_variance, result.sample_variance[right])
            assert_array_equal(result.correct.viable_prediction_range,
                               result.viable_prediction_range[right])


def test_predictive_multiplicity_from_logits(rng):
    pop = prediction_population(rng, 3, 10, 4, families=3)
    a = ref.predictive_multiplicity(pop.logits, pop.labels, from_logits=True)
    b = ref.predictive_multiplicity(softmax(pop.logits), pop.labels)
    assert_array_equal(a.disagreement, b.disagreement)
    assert_allclose(a.sample_variance, b.sample_variance, **CLOSE)
    assert_allclose(a.sample_rashomon_capacity, b.sample_rashomon_capacity, rtol=1e-9)


def test_dyadic_probabilities_keep_exact_ties(rng):
    # Exact ties in dyadic probabilities go to the lowest class everywhere.
    p = dyadic_probs(rng, 4, 50, 3, denominator=4)
    hard = np.argmax(p, axis=-1)
    assert_array_equal(ref.disagreement_matrix(p), ref.disagreement_matrix(hard))


# ---------------------------------------------------------------------------------------------
# Minimal validation
# ---------------------------------------------------------------------------------------------


def test_reference_rejects_malformed_input():
    p = HAND_SOFT.probs
    with pytest.raises(ValueError, match="preds"):
        ref.disagreement_matrix(p[0, 0])
    with pytest.raises(ValueError, match="models"):
        ref.disagreement_matrix(HAND_HARD.preds[:1])
    with pytest.raises(TypeError, match="preds"):
        ref.disagreement_matrix(HAND_HARD.preds.astype(np.float64))
    with pytest.raises(ValueError, match="probs"):
        ref.soft_disagreement_matrix(p[:, :, 0])
    with pytest.raises(ValueError, match="models"):
        ref.rashomon_capacity(p[:1])
    with pytest.raises(ValueError, match="sample"):
        ref.predictive_multiplicity(p[:, :0])
    with pytest.raises(ValueError, match="labels"):
        ref.predictive_multiplicity(p, HAND_SOFT.labels[:1])
    with pytest.raises(ValueError, match="labels"):
        ref.predictive_multiplicity(p, np.array([0, 3]))
    with pytest.raises(TypeError, match="labels"):
        ref.predictive_multiplicity(p, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reference"):
        ref.predictive_multiplicity(p, reference=3)
