"""The fast predictive-multiplicity API (mmkern.disagreement_matrix, ...) against the reference.

Every fast result is compared with :mod:`mmkern.reference` run on the same values (float32 and
float16 probabilities widen exactly to float64, so both sides see the same numbers): hard
disagreement and ambiguity exactly, everything else with ``tests/tolerances.py``'s
``MULTIPLICITY`` table. Then known answers, memory layouts, integer dtypes, torch tensors and
every rejected input.

The reference runs Blahut-Arimoto one sample at a time in Python, and populations with
near-identical models need up to ``max_iter`` iterations per sample, so the Rashomon-capacity
comparisons at the default tolerance use tens of samples; the larger populations compare the
algorithm path at a small ``max_iter``. Reference results are cached per input (module-level),
so layouts, dtypes and torch tests reuse one reference run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import warnings
import zlib
from functools import lru_cache

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mmkern
from _predictions import (
    HAND_HARD,
    HAND_SOFT,
    LABEL_DTYPES,
    LAYOUTS,
    binary_symmetric_channel,
    dyadic_probs,
    entropy_nats,
    hard_population,
    one_hot,
    prediction_population,
    sparse_probs,
    with_layout,
)
from mmkern import reference as ref
from mmkern.reference import multiplicity as ref_multiplicity
from tolerances import multiplicity_tol

FLOAT_DTYPES = (np.float32, np.float64)


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()
METRICS = ("tv", "js", "hellinger", "kl")
SYMMETRIC_METRICS = ("tv", "js", "hellinger")
LN2 = math.log(2.0)

#: The Blahut-Arimoto settings of the API contract: ``tol=1e-9`` nats,
#: ``max_iter=10000``. Comparisons pass them explicitly to both sides so that they test the
#: algorithm; test_rashomon_defaults_follow_the_contract checks the defaults separately.
BA = {"tol": 1e-9, "max_iter": 10000}


# ---------------------------------------------------------------------------------------------
# Helpers: cached populations and reference runs, comparisons
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _population(n_models, n_samples, n_classes, dtype=np.float64, families=None):
    """A realistic population (cached, seeded from its parameters so every test sees the same)."""
    seed = zlib.crc32(repr((n_models, n_samples, n_classes, families)).encode())
    return prediction_population(np.random.default_rng(seed), n_models, n_samples, n_classes,
                                 families=families, dtype=np.dtype(dtype))


def _key(value):
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value).tobytes()
        return ("array", value.shape, value.dtype.str, hashlib.sha1(data).hexdigest())
    return value


_REFERENCE_CACHE: dict = {}


def _reference(name, *args, **kwargs):
    """``getattr(ref, name)(*args, **kwargs)``, cached by the values of the arguments."""
    key = (name, tuple(_key(a) for a in args), tuple(sorted((k, _key(v)) for k, v in
                                                            kwargs.items())))
    if key not in _REFERENCE_CACHE:
        _REFERENCE_CACHE[key] = getattr(ref, name)(*args, **kwargs)
    return _REFERENCE_CACHE[key]


_ORIGINAL_REFERENCE_RC = ref_multiplicity.rashomon_capacity


@pytest.fixture(autouse=True)
def _cached_reference_rashomon(monkeypatch):
    """The reference predictive_multiplicity computes its per-sample Rashomon capacities through
    the cached reference function (same values, computed once per population)."""
    def cached(p, **kwargs):
        key = ("rashomon_capacity/float64", _key(np.asarray(p, dtype=np.float64)),
               tuple(sorted(kwargs.items())))
        if key not in _REFERENCE_CACHE:
            _REFERENCE_CACHE[key] = _ORIGINAL_REFERENCE_RC(p, **kwargs)
        return _REFERENCE_CACHE[key]
    monkeypatch.setattr(ref_multiplicity, "rashomon_capacity", cached)


def _np(value):
    """A fast-path array result as NumPy (torch tensors are moved to the CPU)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _names(arg):
    """A regex matching the argument name as a word (``probs`` but not ``n_probs``)."""
    return rf"(?<![\w]){re.escape(arg)}(?![\w])"


def _assert_matrix(got, expected, kind, dtype=np.float64, *, shape=None):
    assert isinstance(got, np.ndarray), type(got)
    assert got.dtype == np.float64
    if shape is not None:
        assert got.shape == shape
    if kind == "exact":
        assert_array_equal(got, expected)
    else:
        assert_allclose(got, expected, **multiplicity_tol(kind, dtype))


RESULT_FIELDS = {
    # field: how it is compared ("exact", or a MULTIPLICITY kind)
    "mean_disagreement": "counts",
    "ambiguity": "counts",  # 1 - (fraction where all agree) is a valid order
    "discrepancy": "exact",
    "prediction_variance": "soft",
    "rashomon_capacity": "rashomon",
    "disagreement": "exact",
    "sample_disagreement": "counts",
    "sample_variance": "soft",
    "sample_rashomon_capacity": "rashomon",
    "viable_prediction_range": "soft",
    "accuracy": "exact",
    "accuracy_mean": "counts",
    "accuracy_spread": "exact",
}
SCALAR_FIELDS = ("mean_disagreement", "ambiguity", "discrepancy", "prediction_variance",
                 "rashomon_capacity", "accuracy_mean", "accuracy_spread")


def _assert_result(got, expected, dtype=np.float64, *, array_type=np.ndarray, path="result",
                   compare_subsets=True):
    """Compare every field of a fast PredictiveMultiplicity with the reference one."""
    assert type(got).__name__ == "PredictiveMultiplicity", path
    assert dataclasses.is_dataclass(got), path
    for name, kind in RESULT_FIELDS.items():
        g, e = getattr(got, name), getattr(expected, name)
        where = f"{path}.{name}"
        if e is None:
            assert g is None, where
            continue
        assert g is not None, where
        if name in SCALAR_FIELDS:
            assert isinstance(g, float), (where, type(g))
            g = np.float64(g)
        else:
            assert isinstance(g, array_type), (where, type(g))
            g = _np(g)
            assert g.dtype == np.float64 and g.shape == e.shape, (where, g.dtype, g.shape)
        if kind == "exact":
            assert_array_equal(g, e, err_msg=where)
        else:
            assert_allclose(g, e, err_msg=where, **multiplicity_tol(kind, dtype))
    if compare_subsets:
        for name in ("correct", "incorrect"):
            g, e = getattr(got, name), getattr(expected, name)
            if e is None:
                assert g is None, f"{path}.{name}"
            else:
                assert g is not None, f"{path}.{name}"
                _assert_result(g, e, dtype, array_type=array_type, path=f"{path}.{name}",
                               compare_subsets=False)


# ---------------------------------------------------------------------------------------------
# disagreement_matrix
# ---------------------------------------------------------------------------------------------

#: C = 1000 needs labels above 255 (wider codes); n = 70001 counts past 2**16.
HARD_SHAPES = [(2, 1, 2), (3, 7, 3), (17, 1000, 10), (50, 3001, 100), (5, 2048, 2),
               (4, 70001, 1000)]


def _shape_id(shape):
    return "M{}-n{}-C{}".format(*shape)


@pytest.mark.parametrize("shape", HARD_SHAPES, ids=_shape_id)
def test_disagreement_labels_match_reference(shape):
    m, n, c = shape
    preds, _ = hard_population(np.random.default_rng(m * n), m, n, c, flip=0.3)
    got = mmkern.disagreement_matrix(preds)
    _assert_matrix(got, _reference("disagreement_matrix", preds), "exact", shape=(m, m))
    assert_array_equal(np.diag(got), 0.0)
    assert_array_equal(got, got.T)


@pytest.mark.parametrize("dtype", LABEL_DTYPES, ids=lambda t: np.dtype(t).name)
def test_disagreement_label_dtypes(dtype):
    preds, _ = hard_population(np.random.default_rng(5), 9, 777, 100, flip=0.5)
    expected = _reference("disagreement_matrix", preds)
    _assert_matrix(mmkern.disagreement_matrix(preds.astype(dtype)), expected, "exact")


LABEL_TABLES = {
    # three distinct labels of each dtype, including the extremes of its range
    "uint8": np.array([255, 128, 0], dtype=np.uint8),
    "int8": np.array([127, 0, 100], dtype=np.int8),
    "uint16": np.array([65535, 256, 0], dtype=np.uint16),
    "uint32": np.array([2**32 - 1, 2**31, 0], dtype=np.uint32),
    "int64": np.array([0, 2**40, 7], dtype=np.int64),
    "uint64": np.array([2**64 - 1, 2**63, 1], dtype=np.uint64),
}


@pytest.mark.parametrize("table", list(LABEL_TABLES))
def test_disagreement_large_label_values(table):
    # The contract: (M, n) integer labels of any int/uint dtype with values >= 0. Labels are
    # only compared for equality, so there is no upper bound.
    preds, _ = hard_population(np.random.default_rng(6), 4, 300, 3, flip=0.5)
    expected = ref.disagreement_matrix(preds)
    _assert_matrix(mmkern.disagreement_matrix(LABEL_TABLES[table][preds]), expected, "exact")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.int32, np.uint8, np.int64], ids=lambda t: np.dtype(t).name)
def test_disagreement_label_layouts(layout, dtype):
    preds, _ = hard_population(np.random.default_rng(7), 11, 513, 7, flip=0.4, dtype=dtype)
    expected = _reference("disagreement_matrix", preds)
    _assert_matrix(mmkern.disagreement_matrix(with_layout(preds, layout)), expected, "exact")
    # a transposed view of (n, M) storage
    stored = np.ascontiguousarray(preds.T)
    _assert_matrix(mmkern.disagreement_matrix(stored.T), expected, "exact")


@pytest.mark.parametrize("shape", [(2, 1, 2), (6, 301, 3), (23, 1500, 10), (8, 400, 100),
                                   (3, 200, 300)], ids=_shape_id)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_disagreement_from_scores(shape, dtype):
    pop = _population(*shape, dtype=dtype)
    expected = ref.disagreement_matrix(np.argmax(pop.probs, axis=-1))
    _assert_matrix(mmkern.disagreement_matrix(pop.probs), expected, "exact")
    # logits: the argmax of the logits themselves
    _assert_matrix(mmkern.disagreement_matrix(pop.logits),
                   ref.disagreement_matrix(np.argmax(pop.logits, axis=-1)), "exact")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_disagreement_from_scores_layouts_and_ties(layout):
    # dyadic probabilities have many exact ties: the lowest class wins, as np.argmax
    p = dyadic_probs(np.random.default_rng(8), 7, 400, 4, denominator=4)
    expected = ref.disagreement_matrix(np.argmax(p, axis=-1))
    for dtype in (np.float64, np.float32, np.float16):
        got = mmkern.disagreement_matrix(with_layout(p.astype(dtype), layout))
        _assert_matrix(got, expected, "exact")


def test_disagreement_hand_made():
    _assert_matrix(mmkern.disagreement_matrix(HAND_HARD.preds), HAND_HARD.disagreement, "exact")
    _assert_matrix(mmkern.disagreement_matrix(one_hot(HAND_HARD.preds, 3)),
                   HAND_HARD.disagreement, "exact")
    _assert_matrix(mmkern.disagreement_matrix(HAND_SOFT.probs), HAND_SOFT.disagreement, "exact")


def test_disagreement_is_a_metric():
    preds, _ = hard_population(np.random.default_rng(9), 12, 250, 3, flip=0.6)
    d = mmkern.disagreement_matrix(preds)
    assert np.all(d[:, :, None] <= d[:, None, :] + d.T[None, :, :] + 1e-15)  # d_ik <= d_ij + d_jk


# ---------------------------------------------------------------------------------------------
# soft_disagreement_matrix
# ---------------------------------------------------------------------------------------------

SOFT_SHAPES = [(2, 1, 2), (3, 40, 3), (12, 1500, 10), (50, 300, 10), (6, 800, 100)]


@pytest.mark.parametrize("shape", SOFT_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("metric", METRICS)
def test_soft_matches_reference(metric, dtype, shape):
    pop = _population(*shape, dtype=dtype)
    got = mmkern.soft_disagreement_matrix(pop.probs, metric)
    expected = _reference("soft_disagreement_matrix", pop.probs, metric)
    _assert_matrix(got, expected, "soft", dtype, shape=(shape[0], shape[0]))
    assert_array_equal(np.diag(got), 0.0)
    if metric in SYMMETRIC_METRICS:
        assert_array_equal(got, got.T)
    upper = {"tv": 1.0, "js": LN2, "hellinger": 1.0, "kl": np.inf}[metric]
    assert np.all((got >= 0.0) & (got <= upper + 1e-12))


def test_soft_default_metric_is_tv():
    pop = _population(4, 50, 3)
    assert_array_equal(mmkern.soft_disagreement_matrix(pop.probs),
                       mmkern.soft_disagreement_matrix(pop.probs, "tv"))
    assert_array_equal(mmkern.soft_disagreement_matrix(pop.probs, metric="js"),
                       mmkern.soft_disagreement_matrix(pop.probs, "js"))


@pytest.mark.parametrize("metric", METRICS)
def test_soft_hand_made_and_extremes(metric):
    if metric == "tv":
        _assert_matrix(mmkern.soft_disagreement_matrix(HAND_SOFT.probs, "tv"), HAND_SOFT.tv,
                       "soft")
    # identical models: exactly 0 (every per-sample term is 0)
    same = np.repeat(_population(1, 60, 5).probs, 3, axis=0)
    assert_allclose(mmkern.soft_disagreement_matrix(same, metric), 0.0, rtol=0, atol=1e-15)
    # disjoint supports: the upper bounds
    disjoint = np.array([[[0.3, 0.7, 0.0, 0.0]], [[0.0, 0.0, 0.5, 0.5]]])
    got = mmkern.soft_disagreement_matrix(disjoint, metric)
    expected = {"tv": 1.0, "js": LN2, "hellinger": 1.0, "kl": math.inf}[metric]
    assert got[0, 1] == pytest.approx(expected, rel=1e-15)
    assert got[1, 0] == pytest.approx(expected, rel=1e-15)


def test_single_class_population():
    # C = 1: every model puts all its mass on the one class; nothing can differ.
    p = np.ones((3, 5, 1))
    _assert_matrix(mmkern.disagreement_matrix(p), np.zeros((3, 3)), "exact")
    for metric in METRICS:
        _assert_matrix(mmkern.soft_disagreement_matrix(p, metric), np.zeros((3, 3)), "exact")
    assert_array_equal(mmkern.rashomon_capacity(p, **BA), np.ones(5))
    result = mmkern.predictive_multiplicity(p, np.zeros(5, dtype=np.int64), **BA)
    _assert_result(result, ref.predictive_multiplicity(p, np.zeros(5, dtype=np.int64), **BA))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("metric", METRICS)
def test_soft_exact_zeros(metric, dtype):
    # 0 log 0 = 0 in KL and JS; KL is +inf (never NaN) where p_i > 0 and p_j = 0
    p = sparse_probs(np.random.default_rng(10), _population(10, 500, 10).probs, 0.03)
    p = p.astype(dtype)
    assert np.any(p == 0)
    got = mmkern.soft_disagreement_matrix(p, metric)
    expected = _reference("soft_disagreement_matrix", p, metric)
    assert not np.any(np.isnan(got))
    assert_array_equal(np.isinf(got), np.isinf(expected))
    finite = np.isfinite(expected)
    assert_allclose(got[finite], expected[finite], **multiplicity_tol("soft", dtype))
    if metric == "kl":
        assert np.any(np.isinf(expected)) and np.any(finite & ~np.eye(10, dtype=bool))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("metric", METRICS)
def test_soft_from_logits(metric, dtype):
    pop = _population(9, 400, 10, dtype=dtype)
    got = mmkern.soft_disagreement_matrix(pop.logits, metric, from_logits=True)
    expected = _reference("soft_disagreement_matrix", pop.logits, metric, from_logits=True)
    _assert_matrix(got, expected, "soft", dtype)
    # large offsets per row (the softmax subtracts the maximum first): no overflow
    shifted = pop.logits.astype(np.float64) + np.linspace(-700, 700, 400)[None, :, None]
    got = mmkern.soft_disagreement_matrix(shifted, metric, from_logits=True)
    assert np.all(np.isfinite(got))
    _assert_matrix(got, ref.soft_disagreement_matrix(shifted, metric, from_logits=True), "soft")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_soft_layouts(layout, dtype):
    pop = _population(7, 333, 5, dtype=dtype)
    for metric in METRICS:
        expected = _reference("soft_disagreement_matrix", pop.probs, metric)
        got = mmkern.soft_disagreement_matrix(with_layout(pop.probs, layout), metric)
        _assert_matrix(got, expected, "soft", dtype)


def test_soft_float16_and_byte_order():
    p = dyadic_probs(np.random.default_rng(11), 5, 200, 6, denominator=64)
    for metric in METRICS:
        expected = ref.soft_disagreement_matrix(p, metric)
        _assert_matrix(mmkern.soft_disagreement_matrix(p.astype(np.float16), metric), expected,
                       "soft", np.float32)
        swapped = p.astype(np.dtype(np.float64).newbyteorder())
        _assert_matrix(mmkern.soft_disagreement_matrix(swapped, metric), expected, "soft")


@pytest.mark.parametrize("dtype, slack", [(np.float32, 5e-5), (np.float64, 5e-7)],
                         ids=["float32", "float64"])
def test_rows_within_tolerance_are_accepted_as_given(dtype, slack):
    # Rows may sum to 1 within 1e-4 (float32) / 1e-6 (float64); the values are used as given.
    p = _population(4, 30, 3, dtype=dtype, families=4).probs.copy()
    p[1, 7, 0] += dtype(slack)
    p[2, 3, 2] -= dtype(slack)
    for metric in METRICS:
        _assert_matrix(mmkern.soft_disagreement_matrix(p, metric),
                       ref.soft_disagreement_matrix(p, metric), "soft", dtype)
    assert_allclose(mmkern.rashomon_capacity(p, **BA), ref.rashomon_capacity(p, **BA),
                    **multiplicity_tol("rashomon", dtype))


# ---------------------------------------------------------------------------------------------
# rashomon_capacity
# ---------------------------------------------------------------------------------------------

#: Default tol/max_iter against the per-sample reference: small n (see the module docstring).
RC_SHAPES = [(2, 12, 2), (5, 10, 3), (20, 8, 10), (50, 6, 10), (8, 6, 100), (3, 10, 2)]


@pytest.mark.parametrize("shape", RC_SHAPES, ids=_shape_id)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_rashomon_matches_reference(shape, dtype):
    pop = _population(*shape, dtype=dtype)
    got = mmkern.rashomon_capacity(pop.probs, **BA)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64 and got.shape == (shape[1],)
    assert_allclose(got, _reference("rashomon_capacity", pop.probs, **BA),
                    **multiplicity_tol("rashomon", dtype))
    assert np.all((got >= 1.0) & (got <= min(shape[0], shape[2]) * (1 + 1e-12)))


@pytest.mark.parametrize("max_iter", [1, 2, 7, 60])
@pytest.mark.parametrize("shape", [(20, 400, 10), (50, 120, 3), (4, 300, 100)], ids=_shape_id)
def test_rashomon_follows_the_algorithm_step_by_step(shape, max_iter):
    # Few iterations on many samples: both implementations must take the same steps.
    pop = _population(*shape)
    with warnings.catch_warnings():  # samples stopped by max_iter may warn; not under test
        warnings.simplefilter("ignore", RuntimeWarning)
        got = mmkern.rashomon_capacity(pop.probs, tol=BA["tol"], max_iter=max_iter)
    expected = _reference("rashomon_capacity", pop.probs, tol=BA["tol"], max_iter=max_iter)
    assert_allclose(got, expected, **multiplicity_tol("rashomon"))


def test_rashomon_single_iteration_closed_form():
    # max_iter=1: one evaluation at uniform weights, lower = log(mean_m exp(KL(p_m || pbar))).
    pop = _population(5, 8, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = mmkern.rashomon_capacity(pop.probs, max_iter=1)
    for x in range(8):
        rows = pop.probs[:, x]
        pbar = rows.mean(axis=0)
        kl = [np.sum(r * np.log(r / pbar)) for r in rows]
        assert got[x] == pytest.approx(np.mean(np.exp(kl)), rel=1e-12)


def test_rashomon_defaults_follow_the_contract():
    # The contract fixes tol=1e-6 (nats) and max_iter=10000 as the defaults of rashomon_capacity
    # and of the per-sample capacities of predictive_multiplicity.
    pop = _population(5, 10, 3, families=5)
    explicit = mmkern.rashomon_capacity(pop.probs, tol=1e-6, max_iter=10000)
    assert_array_equal(mmkern.rashomon_capacity(pop.probs), explicit)
    assert_array_equal(mmkern.predictive_multiplicity(pop.probs).sample_rashomon_capacity,
                       explicit)


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-12])
def test_rashomon_tolerance(tol):
    pop = _population(6, 15, 3, families=6)
    got = mmkern.rashomon_capacity(pop.probs, tol=tol, max_iter=3000)
    expected = _reference("rashomon_capacity", pop.probs, tol=tol, max_iter=3000)
    assert_allclose(got, expected, **multiplicity_tol("rashomon"))


def test_rashomon_known_answers():
    # identical models: 1
    same = np.repeat(_population(1, 40, 7).probs, 6, axis=0)
    assert_allclose(mmkern.rashomon_capacity(same, **BA), 1.0, rtol=0, atol=1e-14)
    # M >= C models, each all mass on a different class: C
    for c in (2, 3, 10):
        orders = np.stack([np.random.default_rng(c + s).permutation(c) for s in range(9)], axis=1)
        probs = one_hot(orders, c)
        assert_allclose(mmkern.rashomon_capacity(probs, **BA), c, rtol=1e-12)
        extra = np.concatenate([probs, probs[:1], np.full((1, 9, c), 1.0 / c)])
        assert_allclose(mmkern.rashomon_capacity(extra, **BA), c, rtol=1e-8)
    # binary symmetric channel: 2 exp(-H(eps))
    for eps in (0.0, 0.1, 0.3, 0.5):
        got = mmkern.rashomon_capacity(binary_symmetric_channel(eps)[:, None, :], **BA)
        assert got[0] == pytest.approx(2.0 * math.exp(-entropy_nats([eps, 1 - eps])), rel=1e-12)
    # one-hot hand-made population: the number of distinct predicted classes
    assert_allclose(mmkern.rashomon_capacity(one_hot(HAND_HARD.preds, 3), **BA), [2, 1, 2, 2],
                    rtol=1e-8)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_rashomon_exact_zeros_and_logits(dtype):
    pop = _population(6, 8, 5, dtype=dtype, families=3)
    p = sparse_probs(np.random.default_rng(12), pop.probs, 0.05)
    assert_allclose(mmkern.rashomon_capacity(p, **BA), _reference("rashomon_capacity", p, **BA),
                    **multiplicity_tol("rashomon", dtype))
    assert_allclose(mmkern.rashomon_capacity(pop.logits, from_logits=True, **BA),
                    _reference("rashomon_capacity", pop.logits, from_logits=True, **BA),
                    **multiplicity_tol("rashomon", dtype))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rashomon_layouts(layout):
    pop = _population(7, 10, 4, families=7)
    for dtype in FLOAT_DTYPES:
        p = with_layout(pop.probs.astype(dtype), layout)
        expected = _reference("rashomon_capacity", pop.probs.astype(dtype), **BA)
        assert_allclose(mmkern.rashomon_capacity(p, **BA), expected,
                        **multiplicity_tol("rashomon", dtype))


# ---------------------------------------------------------------------------------------------
# predictive_multiplicity
# ---------------------------------------------------------------------------------------------

#: (M, n, C, families): small n, the reference runs Blahut-Arimoto at the default tolerance.
PM_SHAPES = [(2, 10, 2, None), (5, 16, 3, 2), (12, 12, 10, 4), (30, 8, 10, 10), (4, 8, 100, 4)]


def _pm_id(shape):
    return "M{}-n{}-C{}-f{}".format(*shape)


@pytest.mark.parametrize("reference", [None, 1])
@pytest.mark.parametrize("with_labels", [False, True], ids=["no-labels", "labels"])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("shape", PM_SHAPES, ids=_pm_id)
def test_predictive_multiplicity_matches_reference(shape, dtype, with_labels, reference):
    m, n, c, families = shape
    pop = _population(m, n, c, dtype=dtype, families=families)
    labels = pop.labels if with_labels else None
    got = mmkern.predictive_multiplicity(pop.probs, labels, reference, **BA)
    expected = _reference("predictive_multiplicity", pop.probs, labels, reference, **BA)
    _assert_result(got, expected, dtype)


@pytest.mark.parametrize("reference", [None, 0])
def test_predictive_multiplicity_large_population(monkeypatch, reference):
    # M = 50, n = 2000: every figure against the reference, except that the reference takes its
    # per-sample Rashomon capacities from the fast rashomon_capacity (compared with the
    # reference on small populations above) instead of running Python Blahut-Arimoto 2000 times.
    # Blahut-Arimoto is capped at 50 iterations: converging 2000 samples of near-identical
    # models takes minutes even in C++, and the capacities are not what this test is about.
    pop = _population(50, 2000, 10, families=12)
    monkeypatch.setattr(ref_multiplicity, "rashomon_capacity",
                        lambda p, **kwargs: _np(mmkern.rashomon_capacity(p, **kwargs)))
    capped = {"tol": BA["tol"], "max_iter": 50}
    with warnings.catch_warnings():  # samples stopped by max_iter warn; not under test
        warnings.simplefilter("ignore", RuntimeWarning)
        got = mmkern.predictive_multiplicity(pop.probs, pop.labels, reference, **capped)
        expected = ref.predictive_multiplicity(pop.probs, pop.labels, reference, **capped)
    _assert_result(got, expected)


def test_predictive_multiplicity_hand_made():
    h = HAND_SOFT
    result = mmkern.predictive_multiplicity(h.probs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ambiguity = 0.0
    assert_array_equal(result.disagreement, h.disagreement)
    assert result.mean_disagreement == pytest.approx(1 / 3, rel=1e-15)
    assert (result.ambiguity, result.discrepancy) == (0.5, 0.5)
    assert_allclose(result.sample_variance, h.sample_variance, rtol=1e-12)
    assert result.prediction_variance == pytest.approx(h.prediction_variance, rel=1e-12)
    assert_allclose(result.viable_prediction_range, h.range_majority, rtol=1e-12)
    assert result.accuracy is None and result.accuracy_mean is None
    assert result.accuracy_spread is None
    assert result.correct is None and result.incorrect is None
    for r in range(3):
        by_ref = mmkern.predictive_multiplicity(h.probs, reference=r)
        assert (by_ref.ambiguity, by_ref.discrepancy) == (0.5, 0.5)
        assert_allclose(by_ref.viable_prediction_range, h.range_reference[r], rtol=1e-12)

    with_labels = mmkern.predictive_multiplicity(h.probs, h.labels)
    assert_allclose(with_labels.viable_prediction_range, h.range_labels, rtol=1e-12)
    assert_array_equal(with_labels.accuracy, h.accuracy)
    assert with_labels.accuracy_mean == pytest.approx(2 / 3, rel=1e-15)
    assert with_labels.accuracy_spread == 0.5
    # majority vote (0, 2) vs labels (1, 2): correct on sample 1 only
    assert with_labels.correct.sample_variance.shape == (1,)
    assert with_labels.incorrect.sample_variance.shape == (1,)
    assert with_labels.incorrect.ambiguity == 1.0
    # model 2 is right on both samples: no incorrect subset
    assert mmkern.predictive_multiplicity(h.probs, h.labels, 2).incorrect is None

    hard = mmkern.predictive_multiplicity(one_hot(HAND_HARD.preds, 3))
    assert hard.ambiguity == HAND_HARD.ambiguity and hard.discrepancy == HAND_HARD.discrepancy
    assert_allclose(hard.sample_disagreement, HAND_HARD.sample_disagreement, rtol=1e-15)
    for r, expected in enumerate(HAND_HARD.discrepancy_by_reference):
        assert mmkern.predictive_multiplicity(one_hot(HAND_HARD.preds, 3), reference=r
                                              ).discrepancy == expected


def test_predictive_multiplicity_numpy_integer_reference():
    pop = _population(4, 12, 5, families=4)
    expected = _reference("predictive_multiplicity", pop.probs, pop.labels, 2, **BA)
    for reference in (np.int64(2), np.uint8(2), np.int32(2)):
        _assert_result(mmkern.predictive_multiplicity(pop.probs, pop.labels, reference, **BA),
                       expected)


def test_predictive_multiplicity_subsets_have_no_subsets():
    # Resolution of a spec ambiguity (correct/incorrect are computed by predictive_multiplicity
    # on a subset with its labels, which would recurse forever on the correct subset): the
    # subsets carry their accuracy fields but no subsets of their own.
    h = HAND_SOFT
    result = mmkern.predictive_multiplicity(h.probs, h.labels)
    for sub in (result.correct, result.incorrect):
        assert sub.correct is None and sub.incorrect is None
    assert_array_equal(_np(result.correct.accuracy), [1.0, 1.0, 1.0])
    assert_array_equal(_np(result.incorrect.accuracy), [0.0, 0.0, 1.0])


@pytest.mark.parametrize("dtype", LABEL_DTYPES, ids=lambda t: np.dtype(t).name)
def test_predictive_multiplicity_label_dtypes(dtype):
    pop = _population(4, 12, 5, families=4)
    expected = _reference("predictive_multiplicity", pop.probs, pop.labels, None, **BA)
    got = mmkern.predictive_multiplicity(pop.probs, pop.labels.astype(dtype), **BA)
    _assert_result(got, expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_predictive_multiplicity_from_logits(dtype):
    pop = _population(5, 14, 4, dtype=dtype, families=5)
    got = mmkern.predictive_multiplicity(pop.logits, pop.labels, 3, from_logits=True, **BA)
    expected = _reference("predictive_multiplicity", pop.logits, pop.labels, 3,
                          from_logits=True, **BA)
    _assert_result(got, expected, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_predictive_multiplicity_layouts(layout):
    pop = _population(6, 12, 3, dtype=np.float32, families=3)
    expected = _reference("predictive_multiplicity", pop.probs, pop.labels, None, **BA)
    labels = with_layout(pop.labels[None, :].astype(np.int32), layout)[0]
    got = mmkern.predictive_multiplicity(with_layout(pop.probs, layout), labels, **BA)
    _assert_result(got, expected, np.float32)


# ---------------------------------------------------------------------------------------------
# torch inputs: torch out
# ---------------------------------------------------------------------------------------------


def test_torch_disagreement(device):
    torch = pytest.importorskip("torch")
    preds, _ = hard_population(np.random.default_rng(13), 8, 500, 6, flip=0.4)
    expected = _reference("disagreement_matrix", preds)
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        got = mmkern.disagreement_matrix(torch.from_numpy(preds).to(device=device, dtype=dtype))
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        assert got.device.type == device and tuple(got.shape) == (8, 8)
        assert_array_equal(_np(got), expected)
    pop = _population(8, 300, 10)
    got = mmkern.disagreement_matrix(torch.from_numpy(pop.probs).to(device))
    assert_array_equal(_np(got), ref.disagreement_matrix(pop.probs))
    # a non-contiguous view
    view = torch.from_numpy(np.ascontiguousarray(preds.T)).to(device).T
    assert_array_equal(_np(mmkern.disagreement_matrix(view)), expected)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_torch_soft_and_rashomon(device, dtype):
    torch = pytest.importorskip("torch")
    pop = _population(6, 12, 4, dtype=dtype, families=6)
    probs = torch.from_numpy(pop.probs).to(device)
    for metric in METRICS:
        got = mmkern.soft_disagreement_matrix(probs, metric)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        assert got.device.type == device
        assert_allclose(_np(got), _reference("soft_disagreement_matrix", pop.probs, metric),
                        **multiplicity_tol("soft", dtype))
    got = mmkern.rashomon_capacity(probs, **BA)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    assert got.device.type == device and tuple(got.shape) == (12,)
    assert_allclose(_np(got), _reference("rashomon_capacity", pop.probs, **BA),
                    **multiplicity_tol("rashomon", dtype))
    logits = torch.from_numpy(pop.logits).to(device)
    assert_allclose(_np(mmkern.soft_disagreement_matrix(logits, "js", from_logits=True)),
                    _reference("soft_disagreement_matrix", pop.logits, "js", from_logits=True),
                    **multiplicity_tol("soft", dtype))
    # non-contiguous view: classes-first storage, transposed back
    view = torch.from_numpy(np.ascontiguousarray(np.moveaxis(pop.probs, 2, 0))).to(device)
    view = view.permute(1, 2, 0)
    assert_allclose(_np(mmkern.soft_disagreement_matrix(view, "hellinger")),
                    _reference("soft_disagreement_matrix", pop.probs, "hellinger"),
                    **multiplicity_tol("soft", dtype))


def test_torch_half_probabilities():
    torch = pytest.importorskip("torch")
    p = dyadic_probs(np.random.default_rng(14), 4, 100, 5, denominator=32)
    got = mmkern.soft_disagreement_matrix(torch.from_numpy(p).half(), "kl")
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    expected = ref.soft_disagreement_matrix(p, "kl")
    assert_array_equal(np.isinf(_np(got)), np.isinf(expected))
    finite = np.isfinite(expected)
    assert_allclose(_np(got)[finite], expected[finite], **multiplicity_tol("soft", np.float32))


def test_torch_predictive_multiplicity(device):
    torch = pytest.importorskip("torch")
    pop = _population(5, 24, 3, families=2)
    expected = _reference("predictive_multiplicity", pop.probs, pop.labels, None, **BA)
    got = mmkern.predictive_multiplicity(torch.from_numpy(pop.probs).to(device),
                                         torch.from_numpy(pop.labels).to(device), **BA)
    _assert_result(got, expected, array_type=torch.Tensor)
    assert got.disagreement.device.type == device
    for dtype in (torch.int8, torch.int32, torch.uint8):
        got = mmkern.predictive_multiplicity(torch.from_numpy(pop.probs).to(device),
                                             torch.from_numpy(pop.labels).to(device, dtype), **BA)
        _assert_result(got, expected, array_type=torch.Tensor)


# ---------------------------------------------------------------------------------------------
# the device route on every device (``device`` fixture: host, torch route, CUDA): the host
# route's NumPy results are the ground truth; the same errors with the same messages
# ---------------------------------------------------------------------------------------------


def _t(a, device="cpu"):
    import torch

    return torch.from_numpy(np.asarray(a)).to(device)


#: Blahut-Arimoto settings for comparisons with the reference: tight enough that a stop one
#: iteration apart (rounding of the gap test) moves the capacity far less than the tolerance.
TIGHT = {"tol": 1e-10, "max_iter": 3000}


@pytest.mark.parametrize("label_dtype", LABEL_DTYPES, ids=lambda t: np.dtype(t).name)
def test_device_disagreement_labels_exact(device, label_dtype):
    pytest.importorskip("torch")
    preds, _ = hard_population(np.random.default_rng(31), 7, 301, 5, flip=0.4, dtype=label_dtype)
    assert_array_equal(_np(mmkern.disagreement_matrix(_t(preds, device))), _reference("disagreement_matrix", preds))


@pytest.mark.parametrize("n_classes", [2, 256, 257, 65536])
def test_device_disagreement_code_widths(device, n_classes):
    """uint8 codes up to 256 classes, 16 bits beyond (labels up to 65535), on every route."""
    pytest.importorskip("torch")
    preds, _ = hard_population(np.random.default_rng(n_classes), 5, 203, n_classes, flip=0.7)
    preds[0, 0] = n_classes - 1
    assert_array_equal(_np(mmkern.disagreement_matrix(_t(preds, device))), mmkern.disagreement_matrix(preds))
    if n_classes <= 257:
        scores = one_hot(preds[:, :40], n_classes)
        assert_array_equal(_np(mmkern.disagreement_matrix(_t(scores, device))), mmkern.disagreement_matrix(scores))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_device_scores_soft_and_layouts(device, dtype, layout):
    pytest.importorskip("torch")
    pop = _population(8, 150, 6, dtype=dtype)
    for scores in (pop.probs, pop.logits):
        assert_array_equal(_np(mmkern.disagreement_matrix(_t(with_layout(scores, layout), device))),
                           mmkern.disagreement_matrix(scores))
    probs = _t(with_layout(pop.probs, layout), device)
    for metric in METRICS:
        got = _np(mmkern.soft_disagreement_matrix(probs, metric))
        assert_allclose(got, mmkern.soft_disagreement_matrix(pop.probs, metric), **multiplicity_tol("soft", dtype))
        assert_array_equal(np.diag(got), 0.0)
        if metric != "kl":
            assert_array_equal(got, got.T)


def test_device_ties_take_the_lowest_class(device):
    pytest.importorskip("torch")
    scores = np.array([[[0.5, 0.5], [0.25, 0.75]], [[0.25, 0.75], [0.5, 0.5]]])
    assert_array_equal(_np(mmkern.disagreement_matrix(_t(scores, device))), [[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("metric", METRICS)
def test_device_soft_exact_zeros_and_infinite_kl(device, metric):
    pytest.importorskip("torch")
    probs = sparse_probs(np.random.default_rng(32), _population(5, 80, 6).probs, 0.15)
    got = _np(mmkern.soft_disagreement_matrix(_t(probs, device), metric))
    want = mmkern.soft_disagreement_matrix(probs, metric)
    assert not np.isnan(got).any()
    assert_array_equal(np.isinf(got), np.isinf(want))
    assert_allclose(got, want, **multiplicity_tol("soft"))


def test_device_half_precisions_are_upcast():
    torch = pytest.importorskip("torch")
    from mmkern._backend import torch_route

    pop = _population(4, 50, 3, dtype=np.float32)
    for half in (torch.float16, torch.bfloat16):
        t = torch.from_numpy(pop.logits).to(half)
        widened = t.float().numpy()
        host = mmkern.soft_disagreement_matrix(t, "js", from_logits=True)
        with torch_route():
            device = mmkern.soft_disagreement_matrix(t, "js", from_logits=True)
            assert_array_equal(mmkern.disagreement_matrix(t).numpy(), ref.disagreement_matrix(widened))
        assert_allclose(device.numpy(), host.numpy(), **multiplicity_tol("soft"))
        assert_allclose(host.numpy(), ref.soft_disagreement_matrix(widened, "js", from_logits=True),
                        **multiplicity_tol("soft"))


@pytest.mark.parametrize("families", [None, 6])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_device_rashomon_matches_reference(device, dtype, families):
    pytest.importorskip("torch")
    pop = _population(6, 30, 5, dtype=dtype, families=families)
    got, gap = mmkern.rashomon_capacity(_t(pop.probs, device), return_gap=True, **TIGHT)
    assert_allclose(_np(got), _reference("rashomon_capacity", pop.probs, **TIGHT), **multiplicity_tol("rashomon", dtype))
    assert np.all(_np(gap) >= 0.0) and np.all((_np(got) >= 1.0) & (_np(got) <= 5.0))


def test_device_rashomon_stops_where_the_host_stops(device):
    """Every sample stops at the same iteration as on the host (the rule of blahut_arimoto), so
    the final gaps agree to rounding, with the default tol and with a cap that stops samples."""
    pytest.importorskip("torch")
    pop = _population(5, 200, 4)
    for kwargs in ({}, {"tol": 1e-9}, {"max_iter": 7}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got, gap = mmkern.rashomon_capacity(_t(pop.probs, device), return_gap=True, **kwargs)
            want, want_gap = mmkern.rashomon_capacity(pop.probs, return_gap=True, **kwargs)
        assert_allclose(_np(gap), want_gap, rtol=1e-6, atol=1e-15, err_msg=str(kwargs))
        assert_allclose(_np(got), want, rtol=1e-13, atol=0, err_msg=str(kwargs))


@pytest.mark.parametrize("n_models, n_classes", [(2, 2), (3, 3), (5, 3), (4, 4)])
def test_device_rashomon_known_values(device, n_models, n_classes):
    """Identical models give 1; models putting all mass on every class in turn give C."""
    pytest.importorskip("torch")
    same = np.repeat(_population(1, 30, 6).probs, 5, axis=0) if n_models == 2 else None
    if same is not None:
        assert_allclose(_np(mmkern.rashomon_capacity(_t(same, device), **TIGHT)), 1.0, rtol=0, atol=1e-12)
    probs = one_hot(np.tile((np.arange(n_models) % n_classes)[:, None], (1, 3)), n_classes)
    assert_allclose(_np(mmkern.rashomon_capacity(_t(probs, device), **TIGHT)), float(n_classes),
                    **multiplicity_tol("rashomon"))


def test_device_rashomon_warning_is_the_hosts(device):
    """Samples stopped by max_iter with a loose gap: the same RuntimeWarning on every route (one
    implementation, _checks.capacity_values)."""
    pytest.importorskip("torch")
    probs = _population(4, 50, 3).probs
    with pytest.warns(RuntimeWarning) as host_warnings:
        mmkern.rashomon_capacity(probs, max_iter=2)
    with pytest.warns(RuntimeWarning) as device_warnings:
        mmkern.rashomon_capacity(_t(probs, device), max_iter=2)
    assert [str(w.message) for w in device_warnings] == [str(w.message) for w in host_warnings]
    assert device_warnings[0].filename == __file__  # attributed to the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mmkern.rashomon_capacity(_t(probs, device))  # converged: no warning


def test_device_small_chunks_and_frequent_compaction(monkeypatch):
    """Many steps over samples and rows, and the working set of Blahut-Arimoto shrinking as
    samples stop: the same results as the host route."""
    pytest.importorskip("torch")
    from mmkern._backend import torch_route
    from mmkern.multiplicity import _device

    pop = _population(9, 61, 4, families=9)  # distinct models: stops at very different iterations
    want_soft = {m: mmkern.soft_disagreement_matrix(pop.probs, m) for m in METRICS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # some samples reach max_iter
        want_rc, want_gaps = mmkern.rashomon_capacity(pop.probs, tol=1e-6, max_iter=2000, return_gap=True)
        want_pm = mmkern.predictive_multiplicity(pop.probs, pop.labels, tol=1e-6, max_iter=2000)
    monkeypatch.setattr(_device, "_CHUNK_BYTES", 5 * 8 * 9 * 4 * 32)  # 32 samples of Blahut-Arimoto
    monkeypatch.setattr(_device, "_SYNC_EVERY", 1)
    t = _t(pop.probs)
    with torch_route(), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for metric in METRICS:
            assert_allclose(mmkern.soft_disagreement_matrix(t, metric).numpy(), want_soft[metric],
                            **multiplicity_tol("soft"))
        assert_array_equal(mmkern.disagreement_matrix(t).numpy(), mmkern.disagreement_matrix(pop.probs))
        values, gaps = mmkern.rashomon_capacity(t, tol=1e-6, max_iter=2000, return_gap=True)
        assert_allclose(values.numpy(), want_rc, rtol=1e-13, atol=0)
        assert_allclose(gaps.numpy(), want_gaps, rtol=1e-6, atol=1e-15)
        monkeypatch.setattr(_device, "_CHUNK_BYTES", 4096)  # and 4-sample steps of everything else
        got = mmkern.predictive_multiplicity(t, _t(pop.labels), tol=1e-6, max_iter=2000)
    _assert_same_summary(got, want_pm)


def _assert_same_summary(got, want, dtype=np.float64):
    """A PredictiveMultiplicity of torch tensors against the host route's (recursing into the
    correct / incorrect subsets)."""
    import torch

    exact = ("disagreement", "mean_disagreement", "ambiguity", "discrepancy", "accuracy", "accuracy_mean",
             "accuracy_spread", "sample_disagreement")
    for field in dataclasses.fields(mmkern.PredictiveMultiplicity):
        name = field.name
        g, w = getattr(got, name), getattr(want, name)
        if name in ("correct", "incorrect"):
            assert (g is None) == (w is None), name
            if w is not None:
                _assert_same_summary(g, w, dtype)
            continue
        if w is None:
            assert g is None, name
        elif isinstance(w, np.ndarray):
            assert isinstance(g, torch.Tensor) and g.dtype == torch.float64, name
            kind = "counts" if name in exact else "rashomon" if "rashomon" in name else "soft"
            assert_allclose(_np(g), w, **multiplicity_tol(kind, dtype), err_msg=name)
        elif isinstance(w, float):
            assert isinstance(g, float), name
            kind = "counts" if name in exact else "rashomon" if "rashomon" in name else "soft"
            assert_allclose(g, w, **multiplicity_tol(kind, dtype), err_msg=name)
        else:
            assert g == w, name


@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("reference", [None, 0, 3])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_device_predictive_multiplicity(device, dtype, with_labels, reference):
    pytest.importorskip("torch")
    pop = _population(5, 140, 4, dtype=dtype)
    labels = pop.labels if with_labels else None
    got = mmkern.predictive_multiplicity(_t(pop.probs, device), None if labels is None else _t(labels, device),
                                         reference, **BA)
    want = mmkern.predictive_multiplicity(pop.probs, labels, reference, **BA)
    assert got.disagreement.device.type == device
    _assert_same_summary(got, want, dtype)


def test_device_predictive_multiplicity_logits_labels_and_subsets(device):
    pytest.importorskip("torch")
    pop = _population(4, 40, 3, families=4)
    want = mmkern.predictive_multiplicity(pop.logits, pop.labels, from_logits=True, **BA)
    for label_dtype in (np.uint8, np.int16, np.uint32, np.int64):
        got = mmkern.predictive_multiplicity(_t(pop.logits, device), _t(pop.labels.astype(label_dtype), device),
                                             from_logits=True, **BA)
        _assert_same_summary(got, want)
    probs = one_hot(np.array([[0, 1, 2], [0, 1, 2]]), 3) * 0.9 + 0.1 / 3  # every model right: no incorrect
    got = mmkern.predictive_multiplicity(_t(probs, device), _t(np.array([0, 1, 2]), device))
    assert got.incorrect is None and got.ambiguity == 0.0 and got.accuracy_mean == 1.0


def _bad_probs():
    good = np.full((3, 4, 2), 0.5)
    nan, neg, unnorm = good.copy(), good.copy(), good * 2
    nan[1, 2, 0] = np.nan
    neg[0, 1] = (-0.5, 1.5)
    return {
        "2-D": good[0], "one-model": good[:1], "no-samples": good[:, :0], "no-classes": good[:, :, :0],
        "integer": good.astype(np.int64), "bool": good > 0, "complex": good.astype(np.complex128),
        "nan": nan, "negative": neg, "unnormalised": unnorm, "float32-unnormalised": (good * 1.01).astype(np.float32),
    }


BAD_PREDS = {
    "1-D": np.zeros(4, np.int64),
    "4-D": np.zeros((2, 3, 2, 2)),
    "float-labels": np.zeros((3, 4)),
    "bool-labels": np.zeros((3, 4), bool),
    "integer-scores": np.zeros((3, 4, 2), np.int32),
    "complex-scores": np.zeros((3, 4, 2), np.complex64),
    "one-model": np.zeros((1, 4), np.int64),
    "no-samples": np.zeros((3, 0), np.int64),
    "no-sample-scores": np.zeros((3, 0, 2)),
    "no-class-scores": np.zeros((3, 4, 0)),
    "nan-scores": np.where(np.arange(24).reshape(3, 4, 2) == 5, np.nan, 0.5),
    "negative-label": np.array([[0, 1], [-1, 0]], np.int8),
    "negative-large-label": np.array([[0, 2**40], [-(2**40), 0]], np.int64),
}

#: Labels of 2**16 and beyond (codes as ranks among the distinct labels, 16 or 32 bits).
LARGE_LABELS = {
    "65536": np.array([[0, 65536, 7], [1, 0, 7]], np.int64),
    "2**40": np.array([[2**40, 3, 2**40], [2**40, 2**40 + 1, 5]], np.int64),
    "uint64-top-bit": np.array([[0, 2**64 - 1, 2**63], [2**63, 2**64 - 1, 0]], np.uint64),
    "more-than-65536-distinct": np.stack([np.arange(70_000) * 3 + 70_000,
                                          np.where(np.arange(70_000) % 5 == 0, 1, np.arange(70_000) * 3 + 70_000)]),
}


def _same_error(call, host_args, device_args):
    with pytest.raises(Exception) as want:
        call(*host_args)
    with pytest.raises(type(want.value)) as got:
        call(*device_args)
    assert type(got.value) is type(want.value) and str(got.value) == str(want.value)


@pytest.mark.parametrize("case", list(BAD_PREDS))
def test_device_disagreement_errors_are_the_hosts(device, case):
    pytest.importorskip("torch")
    a = BAD_PREDS[case]
    _same_error(mmkern.disagreement_matrix, (a,), (_t(a, device),))


@pytest.mark.parametrize("case", list(LARGE_LABELS))
def test_device_large_labels_follow_the_host(device, case):
    """The same result as the host route, or the same error where the host rejects the labels."""
    pytest.importorskip("torch")
    a = LARGE_LABELS[case]
    try:
        want = mmkern.disagreement_matrix(a)
    except ValueError:
        _same_error(mmkern.disagreement_matrix, (a,), (_t(a, device),))
        return
    assert_array_equal(_np(mmkern.disagreement_matrix(_t(a, device))), want)
    assert_array_equal(want, ref.disagreement_matrix(a))


@pytest.mark.parametrize("case", list(_bad_probs()))
def test_device_probability_errors_are_the_hosts(device, case):
    pytest.importorskip("torch")
    a = _bad_probs()[case]
    for fn, kwargs in [(mmkern.soft_disagreement_matrix, {}), (mmkern.soft_disagreement_matrix, {"metric": "kl"}),
                       (mmkern.rashomon_capacity, {}), (mmkern.predictive_multiplicity, {})]:
        _same_error(lambda p: fn(p, **kwargs), (a,), (_t(a, device),))
    if a.dtype.kind == "f" and a.ndim == 3 and a.size:
        logits = a.copy()
        logits[0, 0, 0] = np.inf
        _same_error(lambda p: mmkern.soft_disagreement_matrix(p, from_logits=True), (logits,), (_t(logits, device),))


def test_device_argument_errors_are_the_hosts(device):
    pytest.importorskip("torch")
    probs = np.full((3, 4, 2), 0.5)
    cases = [
        ("soft_disagreement_matrix", (), {"metric": "cosine"}),
        ("rashomon_capacity", (), {"tol": 0.0}),
        ("rashomon_capacity", (), {"max_iter": 0}),
        ("rashomon_capacity", (), {"tol": "1e-6"}),
        ("predictive_multiplicity", (None, 3), {}),
        ("predictive_multiplicity", (None, -1), {}),
        ("predictive_multiplicity", (None, True), {}),
        ("predictive_multiplicity", (None, 1.0), {}),
        ("predictive_multiplicity", (np.zeros(4),), {}),
        ("predictive_multiplicity", (np.zeros(4, bool),), {}),
        ("predictive_multiplicity", (np.zeros(3, np.int64),), {}),
        ("predictive_multiplicity", (np.zeros((4, 1), np.int64),), {}),
        ("predictive_multiplicity", (np.array([0, 1, 2, 0]),), {}),
        ("predictive_multiplicity", (np.array([0, 1, -1, 0]),), {}),
        ("predictive_multiplicity", (), {"tol": -1.0}),
    ]
    for name, args, kwargs in cases:
        device_args = tuple(_t(a, device) if isinstance(a, np.ndarray) else a for a in args)
        fn = getattr(mmkern, name)
        _same_error(lambda p, *rest: fn(p, *rest, **kwargs), (probs, *args), (_t(probs, device), *device_args))


def test_device_kernel_wiring_on_host(monkeypatch):
    """The kernel calls of the device route, with mmkern._C_cuda's contract implemented on host
    pointers: code widths, dtype codes, a workspace sized from (reported) free memory."""
    torch = pytest.importorskip("torch")
    import contextlib

    from _kernel_standins import HostKernels
    from mmkern._backend import torch_route
    from mmkern.multiplicity import _device

    kernels = HostKernels()
    monkeypatch.setattr(_device, "kernels_for", lambda device: kernels)
    monkeypatch.setattr(_device, "cuda_launch", lambda device: contextlib.nullcontext(0))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4 * 8 * 39 * 7, 1 << 30))  # 7 samples
    for dtype in FLOAT_DTYPES:
        pop = _population(5, 30, 4, dtype=dtype, families=5)
        probs = _t(with_layout(pop.probs, "sliced"))  # made contiguous, visibly, before the kernels
        with torch_route():
            assert_array_equal(mmkern.disagreement_matrix(probs).numpy(), ref.disagreement_matrix(pop.probs))
            for n_classes in (300, 65536):  # 16-bit codes, labels >= 32768 included
                preds, _ = hard_population(np.random.default_rng(n_classes), 4, 77, n_classes, flip=0.8)
                if n_classes == 65536:
                    preds[1, :3] = (65535, 40000, 32768)
                assert_array_equal(mmkern.disagreement_matrix(_t(preds)).numpy(), ref.disagreement_matrix(preds))
            for metric in METRICS:
                assert_allclose(mmkern.soft_disagreement_matrix(probs, metric).numpy(),
                                mmkern.soft_disagreement_matrix(pop.probs, metric), **multiplicity_tol("soft", dtype))
            assert_allclose(mmkern.rashomon_capacity(probs, **TIGHT).numpy(),
                            mmkern.rashomon_capacity(pop.probs, **TIGHT), **multiplicity_tol("rashomon", dtype))
            got = mmkern.predictive_multiplicity(probs, _t(pop.labels), 1, **BA)
        _assert_same_summary(got, mmkern.predictive_multiplicity(pop.probs, pop.labels, 1, **BA), dtype)
    assert {"disagreement_counts/8", "disagreement_counts/16", "soft_disagreement",
            "rashomon_capacity"} <= set(kernels.calls)


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda(), reason="torch.cuda is not available")
def test_cuda_at_scale_and_without_kernels(monkeypatch):
    """On a GPU: a larger population against the host route, and the device route with and
    without mmkern._C_cuda's kernels."""
    pytest.importorskip("torch")
    from mmkern.multiplicity import _device

    pop = _population(40, 3000, 7)
    probs, labels = _t(pop.probs, "cuda"), _t(pop.labels, "cuda")
    result = mmkern.predictive_multiplicity(probs, labels, 0, **BA)
    assert result.sample_variance.is_cuda and result.disagreement.is_cuda
    _assert_same_summary(result, mmkern.predictive_multiplicity(pop.probs, pop.labels, 0, **BA))
    with_kernels = {m: _np(mmkern.soft_disagreement_matrix(probs, m)) for m in METRICS}
    capacity = _np(mmkern.rashomon_capacity(probs, tol=1e-10))
    monkeypatch.setattr(_device, "kernels_for", lambda device: None)
    for metric in METRICS:
        assert_allclose(_np(mmkern.soft_disagreement_matrix(probs, metric)), with_kernels[metric], rtol=1e-12,
                        atol=1e-14, err_msg=metric)
    assert_allclose(_np(mmkern.rashomon_capacity(probs, tol=1e-10)), capacity, **multiplicity_tol("rashomon"))
    with pytest.raises(ValueError, match="move all inputs to one device"):
        mmkern.predictive_multiplicity(probs, _t(pop.labels))


@pytest.mark.cuda
@pytest.mark.skipif(not _cuda(), reason="torch.cuda is not available")
def test_cupy_inputs_return_cupy():
    cupy = pytest.importorskip("cupy")
    pop = _population(4, 100, 3)
    got = mmkern.soft_disagreement_matrix(cupy.asarray(pop.probs), "hellinger")
    assert isinstance(got, cupy.ndarray)
    assert_allclose(cupy.asnumpy(got), mmkern.soft_disagreement_matrix(pop.probs, "hellinger"), **multiplicity_tol("soft"))
    result = mmkern.predictive_multiplicity(cupy.asarray(pop.probs), cupy.asarray(pop.labels))
    assert isinstance(result.sample_rashomon_capacity, cupy.ndarray)


def test_torch_rejects_bad_dtypes():
    torch = pytest.importorskip("torch")
    pop = _population(3, 10, 4)
    with pytest.raises(TypeError, match=_names("probs")):
        mmkern.soft_disagreement_matrix(torch.from_numpy(pop.probs).to(torch.int32))
    with pytest.raises(TypeError, match=_names("labels")):
        mmkern.predictive_multiplicity(torch.from_numpy(pop.probs),
                                       torch.from_numpy(pop.labels).double())


# ---------------------------------------------------------------------------------------------
# Rejected inputs
# ---------------------------------------------------------------------------------------------

#: The functions that take probabilities, each called with the probabilities as ``probs``.
PROB_FUNCTIONS = {
    "soft_tv": lambda p, **kw: mmkern.soft_disagreement_matrix(p, "tv", **kw),
    "soft_kl": lambda p, **kw: mmkern.soft_disagreement_matrix(p, "kl", **kw),
    "rashomon_capacity": lambda p, **kw: mmkern.rashomon_capacity(p, **kw),
    "predictive_multiplicity": lambda p, **kw: mmkern.predictive_multiplicity(p, **kw),
}


@pytest.fixture
def valid_probs():
    return _population(4, 30, 3, families=4).probs.copy()


@pytest.mark.parametrize("fn", list(PROB_FUNCTIONS))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=lambda t: np.dtype(t).name)
def test_rejects_unnormalised_rows(fn, dtype, valid_probs):
    # the tolerance is 1e-4 for float32 and 1e-6 for float64: 3x over it is rejected
    slack = {np.float32: 3e-4, np.float64: 3e-6}[dtype]
    for delta in (slack, -slack):
        p = valid_probs.astype(dtype)
        p[2, 11, 1] += dtype(delta)
        with pytest.raises(ValueError, match=_names("probs")):
            PROB_FUNCTIONS[fn](p)
    half = valid_probs.astype(dtype) * dtype(0.5)
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](half)


@pytest.mark.parametrize("fn", list(PROB_FUNCTIONS))
def test_rejects_logits_unless_asked(fn):
    logits = _population(4, 30, 3).logits
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](logits)
    PROB_FUNCTIONS[fn](logits, from_logits=True)  # accepted when asked


@pytest.mark.parametrize("fn", list(PROB_FUNCTIONS))
def test_rejects_negative_probabilities(fn, valid_probs):
    p = valid_probs.copy()
    # keep the row sum at 1 so that only the sign is wrong
    p[1, 4] = [1.25, -0.25, 0.0]
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fn", list(PROB_FUNCTIONS))
def test_rejects_non_finite(fn, bad, valid_probs):
    p = valid_probs.copy()
    p[3, 29, 2] = bad
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](p)
    if np.isnan(bad):
        logits = _population(4, 30, 3).logits.copy()
        logits[0, 5, 1] = bad
        with pytest.raises(ValueError, match=_names("probs")):
            PROB_FUNCTIONS[fn](logits, from_logits=True)


def test_disagreement_rejects_nan_scores():
    logits = _population(3, 20, 4).logits.copy()
    logits[2, 19, 3] = np.nan
    with pytest.raises(ValueError, match=_names("preds")):
        mmkern.disagreement_matrix(logits)


@pytest.mark.parametrize("fn", list(PROB_FUNCTIONS))
def test_rejects_too_few_models_and_empty(fn, valid_probs):
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](valid_probs[:1])
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](valid_probs[:0])
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](valid_probs[:, :0])
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](valid_probs[:, :, :0])


@pytest.mark.parametrize("fn", list(PROB_FUNCTIONS))
def test_rejects_wrong_dimensions(fn, valid_probs):
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](valid_probs[:, :, 0])
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](valid_probs[None])
    with pytest.raises(ValueError, match=_names("probs")):
        PROB_FUNCTIONS[fn](valid_probs[0, 0])


@pytest.mark.parametrize("bad_dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex128])
@pytest.mark.parametrize("fn", list(PROB_FUNCTIONS))
def test_rejects_non_float_probabilities(fn, bad_dtype):
    p = one_hot(HAND_HARD.preds, 3).astype(bad_dtype)
    with pytest.raises(TypeError, match=_names("probs")):
        PROB_FUNCTIONS[fn](p)


def test_disagreement_rejects_bad_preds():
    preds = HAND_HARD.preds.copy()
    with pytest.raises(ValueError, match=_names("preds")):
        mmkern.disagreement_matrix(preds[:1])  # M < 2
    with pytest.raises(ValueError, match=_names("preds")):
        mmkern.disagreement_matrix(preds[:, :0])  # n = 0
    with pytest.raises(ValueError, match=_names("preds")):
        mmkern.disagreement_matrix(preds[0])  # 1-D
    with pytest.raises(ValueError, match=_names("preds")):
        mmkern.disagreement_matrix(preds[None, None])  # 4-D
    with pytest.raises(TypeError, match=_names("preds")):
        mmkern.disagreement_matrix(preds.astype(np.float64))  # (M, n) must be integer labels
    with pytest.raises(TypeError, match=_names("preds")):
        mmkern.disagreement_matrix(preds.astype(np.complex128))
    for dtype in (np.int8, np.int32, np.int64):
        negative = preds.astype(dtype)
        negative[1, 2] = -3
        with pytest.raises(ValueError, match=_names("preds")) as info:
            mmkern.disagreement_matrix(negative)
        assert "-3" in str(info.value)


def test_rejects_bad_labels(valid_probs):
    labels = np.array([0, 1, 2] * 10)
    for bad_dtype in (np.float64, np.float32, np.complex128):
        with pytest.raises(TypeError, match=_names("labels")):
            mmkern.predictive_multiplicity(valid_probs, labels.astype(bad_dtype))
    for value in (3, 7, -1):
        bad = labels.copy()
        bad[13] = value
        with pytest.raises(ValueError, match=_names("labels")) as info:
            mmkern.predictive_multiplicity(valid_probs, bad)
        assert str(value) in str(info.value)
    big = labels.astype(np.uint8)
    big[0] = 200
    with pytest.raises(ValueError, match=_names("labels")) as info:
        mmkern.predictive_multiplicity(valid_probs, big)
    assert "200" in str(info.value)


def test_rejects_label_shape_mismatch(valid_probs):
    labels = np.array([0, 1, 2] * 10)
    for bad in (labels[:-1], np.concatenate([labels, labels[:1]])):
        with pytest.raises(ValueError, match=_names("labels")) as info:
            mmkern.predictive_multiplicity(valid_probs, bad)
        message = str(info.value)
        assert str(bad.shape[0]) in message and "30" in message, message
    with pytest.raises(ValueError, match=_names("labels")):
        mmkern.predictive_multiplicity(valid_probs, labels[None, :])


def test_rejects_bad_metric(valid_probs):
    for metric in ("l1", "TV ", "euclidean", ""):
        with pytest.raises(ValueError, match=_names("metric")):
            mmkern.soft_disagreement_matrix(valid_probs, metric)


def test_rejects_bad_reference(valid_probs):
    for reference in (4, 5, 1000):
        with pytest.raises(ValueError, match=_names("reference")):
            mmkern.predictive_multiplicity(valid_probs, reference=reference)
