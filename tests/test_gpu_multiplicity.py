"""The GPU path of the predictive-multiplicity metrics (mmkern._gpu.multiplicity) and its kernels
in mmkern._C_cuda.

Three groups, as for similarity (tests/test_gpu_similarity.py):

(a) The torch implementation on CPU tensors (and on CUDA tensors where a GPU exists, through the
    ``device`` fixture) against :mod:`mmkern.reference`: exactly for hard disagreement, with
    ``tolerances.MULTIPLICITY`` for the rest (soft 1e-10, Rashomon capacity 1e-8). The same bad
    inputs raise the same exception with the same message as the host path, and the public
    functions hand device inputs to this module. The pointer wiring of the CUDA kernels is
    checked on the host with stand-ins that implement the contract of ``csrc/cuda/kernels.h`` by
    calling the CPU twins in ``mmkern._C``.
(b) The public API on real CUDA tensors (and CuPy arrays): results stay on the device and match
    the CPU results. Skipped without a GPU.
(c) ``mmkern._C_cuda``: argument checks that run without a GPU. Skipped when the module was not
    built.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

torch = pytest.importorskip("torch")

import mmkern  # noqa: E402
from _predictions import (  # noqa: E402
    HAND_HARD,
    HAND_SOFT,
    hard_population,
    one_hot,
    prediction_population,
    sparse_probs,
    with_layout,
)
from mmkern import _C  # noqa: E402
from mmkern import multiplicity as host  # noqa: E402
from mmkern import reference as ref  # noqa: E402
from mmkern.reference import multiplicity as ref_multiplicity  # noqa: E402
from mmkern._backend import Kind  # noqa: E402
from mmkern._gpu import multiplicity as gpu  # noqa: E402
from tolerances import multiplicity_tol  # noqa: E402

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch.cuda is not available")

METRICS = ("tv", "js", "hellinger", "kl")
LAYOUTS = ("C", "F", "sliced", "models-sliced")
#: Blahut-Arimoto settings for comparisons with the reference: tight enough that a stop one
#: iteration apart (rounding of the gap test) moves the capacity far less than the tolerance;
#: samples that reach the cap stop there on both sides with the same lower bound. The reference
#: runs Blahut-Arimoto in Python per sample, so those tests use tens of samples.
TIGHT = {"tol": 1e-10, "max_iter": 3000}
#: The settings of the summaries' capacities, on both sides (see _reference_capacities_from_host).
SUMMARY_CAPACITY = {"tol": 1e-9, "max_iter": 10_000}

#: CUDA (kernels, other summation orders, atomics across sample splits) vs the CPU kernels on
#: the same inputs. UNMEASURED: no GPU on the development machine; reasoned from float64
#: accumulation of the same per-sample terms in another order.
CUDA_VS_CPU = {"soft": {"rtol": 1e-12, "atol": 1e-14}, "rashomon": {"rtol": 1e-8, "atol": 1e-8}}


def _t(a, device="cpu"):
    return torch.from_numpy(np.asarray(a)).to(device)


def _np(v):
    return v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


def _population(rng, m=6, n=120, c=5, dtype=np.float64, **kwargs):
    return prediction_population(rng, m, n, c, dtype=dtype, **kwargs)


# ---------------------------------------------------------------------------------------------
# (a) the torch path vs the reference
# ---------------------------------------------------------------------------------------------


def test_hand_made_populations(device):
    d = gpu.disagreement_matrix(_t(HAND_HARD.preds, device))
    assert isinstance(d, torch.Tensor) and d.dtype == torch.float64 and d.device.type == device
    assert_array_equal(_np(d), HAND_HARD.disagreement)
    assert_allclose(_np(gpu.soft_disagreement_matrix(_t(HAND_SOFT.probs, device))), HAND_SOFT.tv,
                    **multiplicity_tol("soft"))
    assert_array_equal(_np(gpu.disagreement_matrix(_t(HAND_SOFT.probs, device))), HAND_SOFT.disagreement)


@pytest.mark.parametrize("label_dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                         np.uint32, np.uint64], ids=lambda t: np.dtype(t).name)
def test_disagreement_labels_exact(rng, device, label_dtype):
    preds, _ = hard_population(rng, 7, 301, 5, flip=0.4, dtype=label_dtype)
    got = gpu.disagreement_matrix(_t(preds, device))
    assert got.dtype == torch.float64 and got.shape == (7, 7)
    assert_array_equal(_np(got), ref.disagreement_matrix(preds))


@pytest.mark.parametrize("n_classes", [2, 256, 257, 65536])
def test_disagreement_code_widths(rng, device, n_classes):
    """uint8 codes up to 256 classes, uint16 codes beyond (labels up to 65535)."""
    preds, _ = hard_population(rng, 5, 203, n_classes, flip=0.7)
    preds[0, 0] = n_classes - 1
    assert_array_equal(_np(gpu.disagreement_matrix(_t(preds, device))), ref.disagreement_matrix(preds))
    scores = one_hot(preds[:, :40], n_classes) if n_classes <= 257 else None
    if scores is not None:
        assert_array_equal(_np(gpu.disagreement_matrix(_t(scores, device))), ref.disagreement_matrix(scores))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_disagreement_scores_and_layouts(rng, device, dtype, layout):
    pop = _population(rng, m=8, n=150, c=6, dtype=dtype)
    for scores in (pop.probs, pop.logits):
        got = gpu.disagreement_matrix(_t(with_layout(scores, layout), device))
        assert_array_equal(_np(got), ref.disagreement_matrix(scores))
    labels = np.argmax(pop.probs, axis=-1)
    assert_array_equal(_np(gpu.disagreement_matrix(_t(with_layout(labels, layout), device))),
                       ref.disagreement_matrix(labels))


def test_disagreement_ties_take_the_lowest_class(device):
    scores = np.array([[[0.5, 0.5], [0.25, 0.75]], [[0.25, 0.75], [0.5, 0.5]]])
    assert_array_equal(_np(gpu.disagreement_matrix(_t(scores, device))), [[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_soft_matches_reference(rng, device, dtype, metric, layout):
    pop = _population(rng, m=7, n=90, c=4, dtype=dtype)
    got = gpu.soft_disagreement_matrix(_t(with_layout(pop.probs, layout), device), metric)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and got.shape == (7, 7)
    want = ref.soft_disagreement_matrix(pop.probs, metric)
    assert_allclose(_np(got), want, **multiplicity_tol("soft", dtype))
    assert_array_equal(np.diag(_np(got)), 0.0)
    if metric != "kl":
        assert_array_equal(_np(got), _np(got).T)


@pytest.mark.parametrize("metric", METRICS)
def test_soft_exact_zeros_and_infinite_kl(rng, device, metric):
    probs = sparse_probs(rng, _population(rng, m=5, n=80, c=6).probs, 0.15)
    got = _np(gpu.soft_disagreement_matrix(_t(probs, device), metric))
    want = ref.soft_disagreement_matrix(probs, metric)
    assert not np.isnan(got).any()
    if metric == "kl":
        assert np.isinf(want).any()
        assert_array_equal(np.isinf(got), np.isinf(want))
    assert_allclose(got, want, **multiplicity_tol("soft"))


@pytest.mark.parametrize("metric", METRICS)
def test_soft_from_logits(rng, device, dtype, metric):
    pop = _population(rng, m=4, n=60, c=3, dtype=dtype)
    got = gpu.soft_disagreement_matrix(_t(pop.logits, device), metric, from_logits=True)
    want = ref.soft_disagreement_matrix(pop.logits, metric, from_logits=True)
    assert_allclose(_np(got), want, **multiplicity_tol("soft", dtype))


def test_half_precisions_are_upcast(rng):
    pop = _population(rng, m=4, n=50, c=3, dtype=np.float32)
    for half in (torch.float16, torch.bfloat16):
        t = torch.from_numpy(pop.logits).to(half)
        widened = t.float().numpy()
        assert_allclose(gpu.soft_disagreement_matrix(t, "js", from_logits=True).numpy(),
                        ref.soft_disagreement_matrix(widened, "js", from_logits=True), **multiplicity_tol("soft"))
        assert_array_equal(gpu.disagreement_matrix(t).numpy(), ref.disagreement_matrix(widened))
        # the host path sees the same float32 values
        assert_allclose(gpu.soft_disagreement_matrix(t, "tv", from_logits=True).numpy(),
                        mmkern.soft_disagreement_matrix(t, "tv", from_logits=True).numpy(),
                        **multiplicity_tol("soft"))


@pytest.mark.parametrize("families", [None, 6])
def test_rashomon_matches_reference(rng, device, dtype, families):
    pop = _population(rng, m=6, n=30, c=5, dtype=dtype, families=families)
    got, gap = gpu.rashomon_capacity(_t(pop.probs, device), return_gap=True, **TIGHT)
    assert got.dtype == torch.float64 and got.shape == (30,) and gap.shape == (30,)
    assert_allclose(_np(got), ref.rashomon_capacity(pop.probs, **TIGHT), **multiplicity_tol("rashomon", dtype))
    assert np.all(_np(gap) >= 0.0)
    assert np.all((_np(got) >= 1.0) & (_np(got) <= 5.0))


def test_rashomon_stops_where_the_host_kernel_stops(rng, device):
    """Same per-sample rule as blahut_arimoto: every sample stops at the same iteration as on the
    host, so the final gaps agree to rounding (a stop one iteration apart would change them by
    far more), with the default tol and with a cap that stops some samples early."""
    pop = _population(rng, m=5, n=200, c=4)
    for kwargs in ({}, {"tol": 1e-9}, {"max_iter": 7}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            got, gap = gpu.rashomon_capacity(_t(pop.probs, device), return_gap=True, **kwargs)
            want, want_gap = mmkern.rashomon_capacity(pop.probs, return_gap=True, **kwargs)
        assert_allclose(_np(gap), want_gap, rtol=1e-6, atol=1e-15, err_msg=str(kwargs))
        assert_allclose(_np(got), want, rtol=1e-13, atol=0, err_msg=str(kwargs))


def test_rashomon_identical_models_give_one(rng, device):
    p = _population(rng, m=1, n=30, c=6).probs
    probs = np.repeat(p, 5, axis=0)
    assert_allclose(_np(gpu.rashomon_capacity(_t(probs, device), **TIGHT)), 1.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_models, n_classes", [(2, 2), (3, 3), (5, 3), (4, 4)])
def test_rashomon_distinct_one_hot_models_give_c(device, n_models, n_classes):
    # model m puts all mass on class m % C on every sample: every class is some model's output
    labels = np.tile((np.arange(n_models) % n_classes)[:, None], (1, 3))
    probs = one_hot(labels, n_classes)
    got = _np(gpu.rashomon_capacity(_t(probs, device), **TIGHT))
    assert_allclose(got, float(n_classes), **multiplicity_tol("rashomon"))
    assert_allclose(got, ref.rashomon_capacity(probs, **TIGHT), **multiplicity_tol("rashomon"))


def test_rashomon_from_logits(rng, device):
    pop = _population(rng, m=4, n=20, c=3, families=4)
    got = gpu.rashomon_capacity(_t(pop.logits, device), from_logits=True, **TIGHT)
    assert_allclose(_np(got), ref.rashomon_capacity(pop.logits, from_logits=True, **TIGHT),
                    **multiplicity_tol("rashomon"))


def test_rashomon_warning_matches_the_host(rng):
    """Samples stopped by max_iter with a loose gap: the same RuntimeWarning as on the host."""
    probs = _population(rng, m=4, n=50, c=3).probs
    with pytest.warns(RuntimeWarning) as host_warnings:
        mmkern.rashomon_capacity(probs, max_iter=2)
    with pytest.warns(RuntimeWarning) as gpu_warnings:
        gpu.rashomon_capacity(_t(probs), max_iter=2)
    assert [str(w.message) for w in gpu_warnings] == [str(w.message) for w in host_warnings]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpu.rashomon_capacity(_t(probs))  # converged: no warning


def test_small_chunks_and_frequent_compaction(rng, monkeypatch):
    """Many steps over samples and rows, and the working set of Blahut-Arimoto shrinking as
    samples stop: the same results."""
    # distinct models: most samples converge within max_iter=2000, at very different iterations
    pop = _population(rng, m=9, n=61, c=4, families=9)
    want_soft = {m: ref.soft_disagreement_matrix(pop.probs, m) for m in METRICS}
    want_hard = ref.disagreement_matrix(pop.probs)
    want_rc, want_gaps = _C.rashomon_capacity(pop.probs, 1e-6, 2000)  # the host kernel's rule
    monkeypatch.setattr(gpu, "_CHUNK_BYTES", 5 * 8 * 9 * 4 * 32)  # 32 samples of Blahut-Arimoto
    monkeypatch.setattr(gpu, "_SYNC_EVERY", 1)
    t = _t(pop.probs)
    for metric in METRICS:
        assert_allclose(gpu.soft_disagreement_matrix(t, metric).numpy(), want_soft[metric],
                        **multiplicity_tol("soft"))
    assert_array_equal(gpu.disagreement_matrix(t).numpy(), want_hard)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # some samples reach max_iter
        values, gaps = gpu.rashomon_capacity(t, tol=1e-6, max_iter=2000, return_gap=True)
    assert_allclose(values.numpy(), want_rc, rtol=1e-13, atol=0)
    assert_allclose(gaps.numpy(), want_gaps, rtol=1e-6, atol=1e-15)
    monkeypatch.setattr(ref_multiplicity, "rashomon_capacity", _host_capacities)
    monkeypatch.setattr(gpu, "_CHUNK_BYTES", 4096)  # and 4-sample steps of everything else
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = gpu.predictive_multiplicity(t, _t(pop.labels), tol=1e-6, max_iter=2000)
    want = ref.predictive_multiplicity(pop.probs, pop.labels, tol=1e-6, max_iter=2000)
    _check_summary(got, want, np.float64)


@pytest.fixture
def _reference_capacities_from_host(monkeypatch):
    """The reference predictive_multiplicity takes its per-sample Rashomon capacities from the
    host kernel (instead of Python Blahut-Arimoto per sample; the capacities themselves are
    compared with the reference above), so the summaries can use more samples."""
    monkeypatch.setattr(ref_multiplicity, "rashomon_capacity", _host_capacities)


def _host_capacities(p, tol=SUMMARY_CAPACITY["tol"], max_iter=SUMMARY_CAPACITY["max_iter"]):
    """The host kernel's capacities of a float64 population (the reference's signature)."""
    values, _ = _C.rashomon_capacity(np.ascontiguousarray(p, dtype=np.float64), tol, max_iter)
    return values


def _check_summary(got, want, dtype, *, kind="torch"):
    """A PredictiveMultiplicity of the GPU path against the reference's (recursing into the
    correct / incorrect subsets)."""
    assert isinstance(got, mmkern.PredictiveMultiplicity)
    exact = ("disagreement", "mean_disagreement", "ambiguity", "discrepancy", "accuracy",
             "accuracy_mean", "accuracy_spread", "sample_disagreement")
    for field in dataclasses.fields(ref.PredictiveMultiplicity):
        name = field.name
        g, w = getattr(got, name), getattr(want, name)
        if name in ("correct", "incorrect"):
            assert (g is None) == (w is None), name
            if w is not None:
                _check_summary(g, w, dtype, kind=kind)
            continue
        if w is None:
            assert g is None, name
            continue
        if isinstance(w, np.ndarray):
            assert isinstance(g, torch.Tensor) and g.dtype == torch.float64, name
        else:
            assert isinstance(g, float), name
        if name in exact:
            assert_allclose(_np(g), w, **multiplicity_tol("counts"), err_msg=name)
        elif "rashomon" in name:
            assert_allclose(_np(g), w, **multiplicity_tol("rashomon", dtype), err_msg=name)
        else:
            assert_allclose(_np(g), w, **multiplicity_tol("soft", dtype), err_msg=name)


@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("reference", [None, 0, 3])
@pytest.mark.usefixtures("_reference_capacities_from_host")
def test_predictive_multiplicity_matches_reference(rng, device, dtype, with_labels, reference):
    pop = _population(rng, m=5, n=140, c=4, dtype=dtype)
    labels = pop.labels if with_labels else None
    got = gpu.predictive_multiplicity(_t(pop.probs, device), None if labels is None else _t(labels, device),
                                      reference, **SUMMARY_CAPACITY)
    want = ref.predictive_multiplicity(pop.probs, labels, reference, **SUMMARY_CAPACITY)
    assert got.n_models == 5 and got.n_samples == 140 and got.n_classes == 4 and got.reference == reference
    assert got.disagreement.device.type == device
    _check_summary(got, want, dtype)


@pytest.mark.usefixtures("_reference_capacities_from_host")
def test_predictive_multiplicity_from_logits_and_label_dtypes(rng):
    pop = _population(rng, m=4, n=40, c=3, families=4)
    want = ref.predictive_multiplicity(pop.logits, pop.labels, from_logits=True, **SUMMARY_CAPACITY)
    for label_dtype in (np.uint8, np.int16, np.uint32, np.int64):
        got = gpu.predictive_multiplicity(_t(pop.logits), _t(pop.labels.astype(label_dtype)),
                                          from_logits=True, **SUMMARY_CAPACITY)
        _check_summary(got, want, np.float64)


def test_predictive_multiplicity_all_models_right_or_wrong(device):
    """A subset can be empty (None), as on the host."""
    probs = one_hot(np.array([[0, 1, 2], [0, 1, 2]]), 3) * 0.9 + 0.1 / 3
    got = gpu.predictive_multiplicity(_t(probs, device), _t(np.array([0, 1, 2]), device))
    want = mmkern.predictive_multiplicity(probs, np.array([0, 1, 2]))
    assert got.incorrect is None and want.incorrect is None
    assert got.ambiguity == want.ambiguity == 0.0
    assert got.accuracy_mean == want.accuracy_mean == 1.0


# -- validation: the host path's exceptions and messages ---------------------------------------


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


def _same_error(host_call, gpu_call):
    with pytest.raises(Exception) as want:
        host_call()
    with pytest.raises(type(want.value)) as got:
        gpu_call()
    assert type(got.value) is type(want.value)
    assert str(got.value) == str(want.value)


@pytest.mark.parametrize("case", list(BAD_PREDS))
def test_disagreement_errors_match_the_host(case):
    a = BAD_PREDS[case]
    _same_error(lambda: mmkern.disagreement_matrix(a), lambda: gpu.disagreement_matrix(_t(a)))


@pytest.mark.parametrize("case", list(LARGE_LABELS))
def test_large_labels_follow_the_host(device, case):
    """The same result as the host path, or the same error where the host rejects the labels."""
    a = LARGE_LABELS[case]
    try:
        want = mmkern.disagreement_matrix(a)
    except ValueError:
        _same_error(lambda: mmkern.disagreement_matrix(a), lambda: gpu.disagreement_matrix(_t(a, device)))
        return
    assert_array_equal(_np(gpu.disagreement_matrix(_t(a, device))), want)
    assert_array_equal(want, ref.disagreement_matrix(a))


@pytest.mark.parametrize("case", list(_bad_probs()))
def test_probability_errors_match_the_host(case):
    a = _bad_probs()[case]
    calls = [
        ("soft_disagreement_matrix", {}), ("soft_disagreement_matrix", {"metric": "kl"}),
        ("rashomon_capacity", {}), ("predictive_multiplicity", {}),
    ]
    for fn, kwargs in calls:
        _same_error(lambda: getattr(mmkern, fn)(a, **kwargs), lambda: getattr(gpu, fn)(_t(a), **kwargs))
    logits = a.copy()
    if a.dtype.kind == "f" and a.ndim == 3 and a.size:
        logits[0, 0, 0] = np.inf
        _same_error(lambda: mmkern.soft_disagreement_matrix(logits, from_logits=True),
                    lambda: gpu.soft_disagreement_matrix(_t(logits), from_logits=True))


def test_argument_errors_match_the_host():
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
    for fn, args, kwargs in cases:
        gpu_args = tuple(_t(a) if isinstance(a, np.ndarray) else a for a in args)
        _same_error(lambda: getattr(mmkern, fn)(probs, *args, **kwargs),
                    lambda: getattr(gpu, fn)(_t(probs), *gpu_args, **kwargs))


def test_gpu_path_rejects_host_arrays():
    with pytest.raises(TypeError, match="torch tensor or a CuPy array"):
        gpu.disagreement_matrix(np.zeros((2, 3), np.int64))


# -- the public functions hand device inputs to the GPU path -----------------------------------


@pytest.mark.usefixtures("_reference_capacities_from_host")
def test_public_functions_dispatch_device_inputs(rng, monkeypatch):
    """With the inputs' kind reported as a device (CPU tensors standing in for CUDA ones), the
    public functions call mmkern._gpu.multiplicity with every argument and return its result."""
    calls = []

    class Recorder:
        def __getattr__(self, name):
            def call(*args, **kwargs):
                calls.append(name)
                return getattr(gpu, name)(*args, **kwargs)
            return call

    monkeypatch.setattr(host, "_gpu", lambda: Recorder())
    monkeypatch.setattr(host, "kind_of", lambda a: Kind("torch", "cuda:0"))
    monkeypatch.setattr(host, "common_kind", lambda arrays, names: Kind("torch", "cuda:0"))
    pop = _population(rng, m=4, n=60, c=3)
    probs, labels = _t(pop.probs), _t(pop.labels)
    assert_array_equal(mmkern.disagreement_matrix(probs).numpy(), ref.disagreement_matrix(pop.probs))
    assert_allclose(mmkern.soft_disagreement_matrix(_t(pop.logits), "js", from_logits=True).numpy(),
                    ref.soft_disagreement_matrix(pop.logits, "js", from_logits=True), **multiplicity_tol("soft"))
    values, gaps = mmkern.rashomon_capacity(probs, tol=1e-10, max_iter=500, return_gap=True)
    want, want_gaps = _C.rashomon_capacity(pop.probs, 1e-10, 500)
    assert_allclose(values.numpy(), want, rtol=1e-13, atol=0)
    assert_allclose(gaps.numpy(), want_gaps, rtol=1e-6, atol=1e-15)
    result = mmkern.predictive_multiplicity(probs, labels, 2, **SUMMARY_CAPACITY)
    _check_summary(result, ref.predictive_multiplicity(pop.probs, pop.labels, 2, **SUMMARY_CAPACITY), np.float64)
    assert calls == ["disagreement_matrix", "soft_disagreement_matrix", "rashomon_capacity",
                     "predictive_multiplicity"]
    with pytest.raises(ValueError, match="probs is on a GPU"):
        host._probabilities(probs)  # never copied to the host behind the caller's back


# -- the kernel wiring, on the host ------------------------------------------------------------


def _host_view(ptr, shape, dtype):
    """A C-ordered NumPy view of host memory at ``ptr``."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buf = (ctypes.c_char * max(1, count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


class _HostKernels:
    """The contract of csrc/cuda/kernels.h's multiplicity twins, on host pointers, implemented by
    their CPU twins in mmkern._C: stands in for mmkern._C_cuda to check what the torch code
    passes (pointers, dtype codes, shapes, workspace sizes)."""

    def __init__(self):
        self.calls = []

    def disagreement_counts(self, codes, bits, models, n, counts, stream):
        self.calls.append(f"disagreement_counts/{bits}")
        assert stream == 0
        c = _host_view(codes, (models, n), {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits])
        _host_view(counts, (models, models), np.int64)[:] = (c[:, None, :] != c[None, :, :]).sum(axis=-1)

    def soft_disagreement(self, probs, dtype, models, n, classes, metric, out, stream):
        self.calls.append("soft_disagreement")
        p = _host_view(probs, (models, n, classes), (np.float32, np.float64)[dtype])
        _host_view(out, (models, models), np.float64)[:] = _C.soft_disagreement(p, metric)

    def rashomon_workspace_per_sample(self, models, classes):
        return models * classes + 3 * models + classes

    def rashomon_capacity(self, probs, dtype, models, n, classes, tol, max_iter, out, gap, workspace,
                          workspace_size, stream):
        self.calls.append("rashomon_capacity")
        assert workspace and workspace_size >= self.rashomon_workspace_per_sample(models, classes)
        p = _host_view(probs, (models, n, classes), (np.float32, np.float64)[dtype])
        values, gaps = _C.rashomon_capacity(p, tol, max_iter)
        _host_view(out, (n,), np.float64)[:] = values
        _host_view(gap, (n,), np.float64)[:] = gaps


@pytest.mark.usefixtures("_reference_capacities_from_host")
def test_kernel_wiring_on_host(rng, dtype, monkeypatch):
    kernels = _HostKernels()
    monkeypatch.setattr(gpu, "_kernels_for", lambda device: kernels)
    monkeypatch.setattr(gpu, "_cuda_launch", lambda device: contextlib.nullcontext(0))
    monkeypatch.setattr(gpu, "_CHUNK_BYTES", 8 * 39 * 7)  # workspace for 7 samples of 39 doubles
    pop = _population(rng, m=5, n=30, c=4, dtype=dtype, families=5)
    probs = _t(with_layout(pop.probs, "sliced"))  # made contiguous, visibly, before the kernels
    assert_array_equal(gpu.disagreement_matrix(probs).numpy(), ref.disagreement_matrix(pop.probs))
    for n_classes in (300, 65536):  # 16-bit codes, labels >= 32768 included
        preds, _ = hard_population(rng, 4, 77, n_classes, flip=0.8)
        preds[1, :3] = (65535, 40000, 32768) if n_classes == 65536 else preds[1, :3]
        assert_array_equal(gpu.disagreement_matrix(_t(preds)).numpy(), ref.disagreement_matrix(preds))
    many = LARGE_LABELS["more-than-65536-distinct"]  # ranks as 32-bit codes, if the host allows them
    with contextlib.suppress(ValueError):
        assert_array_equal(gpu.disagreement_matrix(_t(many)).numpy(), ref.disagreement_matrix(many))
    for metric in METRICS:
        assert_allclose(gpu.soft_disagreement_matrix(probs, metric).numpy(),
                        ref.soft_disagreement_matrix(pop.probs, metric), **multiplicity_tol("soft", dtype))
    assert_allclose(gpu.rashomon_capacity(probs, **TIGHT).numpy(), ref.rashomon_capacity(pop.probs, **TIGHT),
                    **multiplicity_tol("rashomon", dtype))
    got = gpu.predictive_multiplicity(probs, _t(pop.labels), 1, **SUMMARY_CAPACITY)
    _check_summary(got, ref.predictive_multiplicity(pop.probs, pop.labels, 1, **SUMMARY_CAPACITY), dtype)
    assert {"disagreement_counts/8", "disagreement_counts/16", "soft_disagreement",
            "rashomon_capacity"} <= set(kernels.calls)


# ---------------------------------------------------------------------------------------------
# (b) real CUDA tensors through the public API
# ---------------------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.cuda
@pytest.mark.usefixtures("_reference_capacities_from_host")
def test_cuda_public_api_matches_cpu(rng, dtype):
    pop = _population(rng, m=40, n=3000, c=7, dtype=dtype)
    probs, labels = _t(pop.probs, "cuda"), _t(pop.labels, "cuda")
    got = mmkern.disagreement_matrix(probs)
    assert isinstance(got, torch.Tensor) and got.is_cuda and got.dtype == torch.float64
    assert_array_equal(_np(got), mmkern.disagreement_matrix(pop.probs))
    preds, _ = hard_population(rng, 33, 5001, 300)
    assert_array_equal(_np(mmkern.disagreement_matrix(_t(preds, "cuda"))), mmkern.disagreement_matrix(preds))
    for metric in METRICS:
        got = mmkern.soft_disagreement_matrix(probs, metric)
        assert got.is_cuda
        assert_allclose(_np(got), mmkern.soft_disagreement_matrix(pop.probs, metric), **CUDA_VS_CPU["soft"])
    got = mmkern.rashomon_capacity(probs, tol=1e-10)
    assert got.is_cuda
    assert_allclose(_np(got), mmkern.rashomon_capacity(pop.probs, tol=1e-10), **CUDA_VS_CPU["rashomon"])
    result = mmkern.predictive_multiplicity(probs, labels, 0, **SUMMARY_CAPACITY)
    assert result.sample_variance.is_cuda and result.disagreement.is_cuda
    _check_summary(result, ref.predictive_multiplicity(pop.probs, pop.labels, 0, **SUMMARY_CAPACITY), dtype)


@needs_cuda
@pytest.mark.cuda
def test_cuda_kernels_match_torch_expressions(rng, monkeypatch):
    pop = _population(rng, m=37, n=2001, c=5)
    probs = _t(pop.probs, "cuda")
    with_kernels = {m: gpu.soft_disagreement_matrix(probs, m) for m in METRICS}
    hard = gpu.disagreement_matrix(probs)
    capacity = gpu.rashomon_capacity(probs, tol=1e-10)
    monkeypatch.setattr(gpu, "_kernels_for", lambda device: None)
    for metric in METRICS:
        assert_allclose(_np(with_kernels[metric]), _np(gpu.soft_disagreement_matrix(probs, metric)),
                        **CUDA_VS_CPU["soft"], err_msg=metric)
    assert_array_equal(_np(hard), _np(gpu.disagreement_matrix(probs)))
    assert_allclose(_np(capacity), _np(gpu.rashomon_capacity(probs, tol=1e-10)), **CUDA_VS_CPU["rashomon"])


@needs_cuda
@pytest.mark.cuda
def test_cuda_rejects_mixed_devices_and_bad_values(rng):
    pop = _population(rng, m=3, n=20, c=3)
    with pytest.raises(ValueError, match="move all inputs to one device"):
        mmkern.predictive_multiplicity(_t(pop.probs, "cuda"), _t(pop.labels))
    bad = pop.probs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"probs contains NaN or infinity \(1 entries\)"):
        mmkern.soft_disagreement_matrix(_t(bad, "cuda"))


@needs_cuda
@pytest.mark.cuda
def test_cupy_inputs_return_cupy(rng):
    cupy = pytest.importorskip("cupy")
    pop = _population(rng, m=4, n=100, c=3)
    probs = cupy.asarray(pop.probs)
    got = mmkern.soft_disagreement_matrix(probs, "hellinger")
    assert isinstance(got, cupy.ndarray)
    assert_allclose(cupy.asnumpy(got), mmkern.soft_disagreement_matrix(pop.probs, "hellinger"), **CUDA_VS_CPU["soft"])
    result = mmkern.predictive_multiplicity(probs, cupy.asarray(pop.labels))
    assert isinstance(result.sample_rashomon_capacity, cupy.ndarray)


# ---------------------------------------------------------------------------------------------
# (c) the CUDA module itself (built whenever nvcc was found; runs without a GPU)
# ---------------------------------------------------------------------------------------------


def _cuda_module():
    return pytest.importorskip("mmkern._C_cuda", reason="mmkern._C_cuda was not built")


def test_cuda_module_multiplicity_argument_checks():
    module = _cuda_module()
    assert module.rashomon_workspace_per_sample(3, 4) == 3 * 4 + 3 * 3 + 4
    with pytest.raises(ValueError, match="bits"):
        module.disagreement_counts(16, 12, 3, 10, 16)
    with pytest.raises(ValueError, match="null codes"):
        module.disagreement_counts(0, 32, 3, 10, 16)
    with pytest.raises(ValueError, match="models"):
        module.disagreement_counts(16, 8, -1, 10, 16)
    with pytest.raises(ValueError, match="negative M or n"):
        module.disagreement_counts(16, 8, 3, -10, 16)
    with pytest.raises(ValueError, match="null counts"):
        module.disagreement_counts(16, 8, 3, 10, 0)
    with pytest.raises(ValueError, match="null codes"):
        module.disagreement_counts(0, 16, 3, 10, 16)
    with pytest.raises(ValueError, match="dtype"):
        module.soft_disagreement(16, 2, 3, 10, 4, 0, 16)
    with pytest.raises(ValueError, match="metric"):
        module.soft_disagreement(16, 0, 3, 10, 4, 4, 16)
    with pytest.raises(ValueError, match="C must be >= 1"):
        module.soft_disagreement(16, 1, 3, 10, 0, 0, 16)
    with pytest.raises(ValueError, match="null out"):
        module.soft_disagreement(16, 1, 3, 10, 4, 0, 0)
    with pytest.raises(ValueError, match="classes"):
        module.rashomon_capacity(16, 1, 3, 10, 2**31, 1e-6, 100, 16)
    with pytest.raises(ValueError, match="tol"):
        module.rashomon_capacity(16, 1, 3, 10, 4, 0.0, 100, 16, 0, 16, 1000)
    with pytest.raises(ValueError, match="max_iter"):
        module.rashomon_capacity(16, 1, 3, 10, 4, 1e-6, 0, 16, 0, 16, 1000)
    with pytest.raises(ValueError, match="null probs, out or workspace"):
        module.rashomon_capacity(16, 1, 3, 10, 4, 1e-6, 100, 16)
    with pytest.raises(ValueError, match="workspace_size must be at least 25"):
        module.rashomon_capacity(16, 1, 3, 10, 4, 1e-6, 100, 16, 0, 16, 24)
    # nothing to do: returns without touching the device
    module.disagreement_counts(0, 8, 0, 10, 0)
    module.soft_disagreement(0, 0, 0, 10, 3, 1, 0)
    module.rashomon_capacity(0, 0, 3, 0, 4, 1e-6, 100, 0)
