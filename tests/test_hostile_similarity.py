"""Hostile inputs to the similarity metrics: extreme magnitudes, non-finite values, damaged
accumulator state, and the argument checks. Each case asserts the exact outcome: the value, or the
exception type and the argument (or file) its message names.
"""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from _data import latent_activations

import mmkern
from mmkern import reference as ref

pytest.importorskip("torch")
import torch  # noqa: E402

from mmkern._backend import torch_route  # noqa: E402

#: Scales across float64's range (powers of two are exact: the metric is then bit-identical).
SCALES = [1e-300, 1e-150, 1e-85, 2.0**-400, 1e77, 1e153, 1e300, 2.0**600]
PAIR_METRICS = {
    "cka": lambda x, y: mmkern.cka(x, y),
    "cka-debiased": lambda x, y: mmkern.cka(x, y, debiased=True),
    "svcca": lambda x, y: mmkern.svcca(x, y),
    "pwcca": lambda x, y: mmkern.pwcca(x, y),
    "cca-mean": lambda x, y: mmkern.cca(x, y).mean,
}
REFERENCE = {
    "cka": lambda x, y: ref.cka(x, y),
    "cka-debiased": lambda x, y: ref.cka(x, y, debiased=True),
    "svcca": lambda x, y: ref.svcca(x, y),
    "pwcca": lambda x, y: ref.pwcca(x, y),
    "cca-mean": lambda x, y: ref.cca(x, y).mean,
}


@pytest.fixture(scope="module")
def pair():
    x, y = latent_activations(np.random.default_rng(7), 60, [6, 5])
    return x, y


def _value(v):
    return float(v.item()) if isinstance(v, torch.Tensor) else float(v)


@pytest.mark.parametrize("route", ["host", "torch-route"])
@pytest.mark.parametrize("scale", SCALES, ids=lambda s: f"{s:.0e}")
@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_metrics_are_scale_invariant_over_float64s_range(pair, metric, scale, route):
    x, y = pair
    expected = PAIR_METRICS[metric](x, y)
    if route == "host":
        got = PAIR_METRICS[metric](x * scale, y * scale)
    else:
        with torch_route():
            got = _value(PAIR_METRICS[metric](torch.from_numpy(x * scale), torch.from_numpy(y * scale)))
    assert np.isfinite(got)
    if route == "host" and np.log2(scale) == int(np.log2(scale)):  # an exact rescaling
        assert got == expected
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("scale", [1e-300, 1e-85, 1e77, 1e300], ids=lambda s: f"{s:.0e}")
@pytest.mark.parametrize("metric", PAIR_METRICS)
def test_reference_agrees_at_extreme_scales(pair, metric, scale):
    x, y = pair
    assert REFERENCE[metric](x * scale, y) == pytest.approx(PAIR_METRICS[metric](x, y), rel=1e-10, abs=1e-12)


POPULATION = {
    "pairwise_cka": lambda acts: mmkern.pairwise_cka(acts),
    "pairwise_cka-debiased": lambda acts: mmkern.pairwise_cka(acts, debiased=True),
    "pairwise_svcca": lambda acts: mmkern.pairwise_svcca(acts),
    "pairwise_pwcca": lambda acts: mmkern.pairwise_pwcca(acts),
    "cross_cka": lambda acts: mmkern.cross_cka(acts[:1], acts[1:]),
    "accumulator-cka": lambda acts: mmkern.SimilarityAccumulator(len(acts)).update(
        [a[:30] for a in acts]).update([a[30:] for a in acts]).cka(),
    "accumulator-svcca": lambda acts: mmkern.SimilarityAccumulator(len(acts)).update(
        [a[:30] for a in acts]).update([a[30:] for a in acts]).svcca(),
}


@pytest.mark.parametrize("scales", [(1e-300, 1.0, 1e300), (1e77, 1e77, 1e77), (1e-85, 1e-85, 1e153)],
                         ids=["mixed", "1e77", "tiny-and-huge"])
@pytest.mark.parametrize("name", POPULATION)
def test_population_metrics_at_extreme_scales(name, scales):
    acts = latent_activations(np.random.default_rng(3), 60, [5, 6, 4])
    expected = POPULATION[name](acts)
    got = POPULATION[name]([a * s for a, s in zip(acts, scales)])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-300, 1e77, 1e300], ids=lambda s: f"{s:.0e}")
@pytest.mark.parametrize("debiased", [False, True])
def test_sample_space_cka_route_at_extreme_scales(scale, debiased):
    """n = 12 samples of 200 features: the n x n sample-Gram route."""
    acts = latent_activations(np.random.default_rng(4), 12, [200, 150])
    expected = mmkern.pairwise_cka(acts, debiased=debiased)
    got = mmkern.pairwise_cka([a * scale for a in acts], debiased=debiased)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_largest_finite_values_are_not_mistaken_for_infinity(pair, dtype):
    """Column sums of values near the dtype's maximum overflow; the data are still finite."""
    x, y = pair
    big = np.finfo(dtype).max / 4
    xs = (x / np.abs(x).max() * big).astype(dtype)
    assert mmkern.cka(xs, y) == pytest.approx(mmkern.cka(xs.astype(np.float64), y), rel=1e-12)
    assert mmkern.svcca(xs, y) == pytest.approx(mmkern.svcca(x, y), rel=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("where", ["x", "y"])
@pytest.mark.parametrize("metric", ["cka", "svcca", "pwcca"])
def test_non_finite_input_names_the_argument(pair, bad, where, metric):
    x, y = (a.copy() for a in pair)
    (x if where == "x" else y)[3, 2] = bad
    with pytest.raises(ValueError, match=rf"^{where} contains NaN or infinity$"):
        PAIR_METRICS[metric](x, y)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_model_of_a_population_is_named(bad):
    acts = latent_activations(np.random.default_rng(5), 40, [3, 3, 3])
    acts[2][0, 0] = bad
    with pytest.raises(ValueError, match=r"^acts\[2\] contains NaN or infinity$"):
        mmkern.pairwise_svcca(acts)
    with pytest.raises(ValueError, match=r"^acts_b\[1\] contains NaN or infinity$"):
        mmkern.cross_cka(acts[:1], acts[1:])


# ---------------------------------------------------------------------------------------------
# the streaming accumulator: batches far from the first, and damaged or edited state files
# ---------------------------------------------------------------------------------------------


def _accumulator(rng=None):
    rng = rng or np.random.default_rng(11)
    acts = latent_activations(rng, 80, [4, 3, 5])
    return mmkern.SimilarityAccumulator(3).update([a[:40] for a in acts]), acts


@pytest.mark.parametrize("factor", [1e250, 1e300])
def test_accumulator_refuses_a_batch_that_would_overflow(factor):
    acc, acts = _accumulator()
    before = acc.cka()
    batch = [a[40:].copy() for a in acts]
    batch[1] *= factor
    with pytest.raises(ValueError, match=r"^batches\[1\] reaches \|x\| = .*would overflow"):
        acc.update(batch)
    assert acc.n_samples == 40
    np.testing.assert_array_equal(acc.cka(), before)


def test_accumulator_first_batch_fixes_an_exact_scale():
    acc, acts = _accumulator()
    scaled = mmkern.SimilarityAccumulator(3)
    for part in (slice(0, 40), slice(40, 80)):
        scaled.update([a[part] * 2.0**700 for a in acts])
    acc.update([a[40:] for a in acts])
    np.testing.assert_array_equal(scaled.cka(), acc.cka())
    np.testing.assert_array_equal(scaled.svcca(), acc.svcca())


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    acc, _ = _accumulator()
    path = tmp_path_factory.mktemp("acc") / "acc.npz"
    acc.save(path)
    return path, path.read_bytes(), acc.cka()


def _load_outcome(path, data, expected):
    """A damaged file either loads to the same state or is a ValueError naming the file."""
    path.write_bytes(data)
    try:
        loaded = mmkern.SimilarityAccumulator.load(path)
    except ValueError as e:
        assert str(path) in str(e)
        return "refused"
    np.testing.assert_array_equal(loaded.cka(), expected)
    return "same"


@pytest.mark.parametrize("cut", [0, 1, 10, 22, 100, 500, 1000, 2000, 3000, -30, -1])
def test_truncated_accumulator_state_is_refused(saved, tmp_path, cut):
    path, data, expected = saved
    assert _load_outcome(tmp_path / "t.npz", data[:cut], expected) == "refused"


@pytest.mark.parametrize("fraction", np.linspace(0.0, 0.999, 48).tolist(), ids=lambda f: f"{f:.3f}")
def test_bit_flipped_accumulator_state_loads_identically_or_is_refused(saved, tmp_path, fraction):
    path, data, expected = saved
    flipped = bytearray(data)
    flipped[int(fraction * len(data))] ^= 0x10
    assert _load_outcome(tmp_path / "f.npz", bytes(flipped), expected) in ("same", "refused")


def _with_checksum(state: dict, path) -> None:
    """Save an edited state with its checksum recomputed (a deliberate edit): its fields must
    still be consistent."""
    from mmkern.similarity._accumulator import _checksum

    state = {k: v for k, v in state.items() if k != "checksum"}
    np.savez(path, **state, checksum=np.array(_checksum(state)))


EDITS = {
    "n changed": (lambda s: s.update(n=np.array(80)), "checksum does not match"),
    "gram dropped": (lambda s: s.pop("gram"), "checksum does not match"),
    "format dropped": (lambda s: s.pop("format"), "no format field"),
    "gram zeroed": (lambda s: s.update(gram=np.zeros_like(s["gram"])), "checksum does not match"),
}
CONSISTENT_EDITS = {
    "two widths for three models": (lambda s: s.update(widths=np.array([4, 3])), "widths must be 3 integers"),
    "no gram": (lambda s: s.pop("gram"), "fields .* are not the expected"),
    "gram shape": (lambda s: s.update(gram=s["gram"][:-1]), "gram must be float64 of shape"),
    "float32 shift": (lambda s: s.update(shift=s["shift"].astype(np.float32)), "shift must be float64"),
    "NaN colsum": (lambda s: s["colsum"].__setitem__(0, np.nan), "colsum contains NaN"),
    "zero width": (lambda s: s.update(widths=np.array([4, 3, 0])), "widths holds values outside"),
    "negative n": (lambda s: s.update(n=np.array(-1)), "n must be an integer >= 1"),
    "float n": (lambda s: s.update(n=np.array(40.0)), "n must be an integer >= 1"),
    "no models": (lambda s: s.update(n_models=np.array(0)), "n_models must be an integer >= 1"),
    "huge exponent": (lambda s: s.update(exponents=np.array([0, 5000, 0])), "exponents holds values outside"),
    "other format": (lambda s: s.update(format=np.array("something/1")), "no format field"),
    "extra field": (lambda s: s.update(extra=np.zeros(2)), "fields .* are not the expected"),
}


@pytest.mark.parametrize("edit", EDITS)
def test_edited_accumulator_state_fails_its_checksum(saved, tmp_path, edit):
    path, _, _ = saved
    state = dict(np.load(path))
    change, message = EDITS[edit]
    change(state)  # the original checksum stays
    target = tmp_path / "e.npz"
    np.savez(target, **state)
    with pytest.raises(ValueError, match=re.escape(str(target)) + ".*" + message):
        mmkern.SimilarityAccumulator.load(target)


@pytest.mark.parametrize("edit", CONSISTENT_EDITS)
def test_edited_state_with_a_recomputed_checksum_is_still_validated(saved, tmp_path, edit):
    path, _, _ = saved
    state = dict(np.load(path))
    change, message = CONSISTENT_EDITS[edit]
    change(state)
    target = tmp_path / "c.npz"
    _with_checksum(state, target)
    with pytest.raises(ValueError, match=re.escape(str(target)) + ".*" + message):
        mmkern.SimilarityAccumulator.load(target)


@pytest.mark.parametrize("content", ["npy", "pickle", "zip-of-text", "empty-npz", "directory"])
def test_foreign_files_are_not_accumulator_state(tmp_path, content):
    path = tmp_path / "x.npz"
    if content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif content == "pickle":
        with open(path, "wb") as f:
            np.save(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif content == "zip-of-text":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("gram.npy", "not an array")
    elif content == "empty-npz":
        np.savez(path)
    else:
        path.mkdir()
        with pytest.raises(FileNotFoundError, match="does not exist"):
            mmkern.SimilarityAccumulator.load(path)
        return
    with pytest.raises(ValueError, match=re.escape(str(path))):
        mmkern.SimilarityAccumulator.load(path)


# ---------------------------------------------------------------------------------------------
# the argument checks: one vocabulary (TypeError for a wrong type, ValueError for a wrong value)
# ---------------------------------------------------------------------------------------------

X = np.random.default_rng(0).normal(size=(20, 3))
ARGUMENTS = [
    ("cka debiased='yes'", lambda: mmkern.cka(X, X, debiased="yes"), TypeError, "debiased must be a bool"),
    ("cka debiased=1", lambda: mmkern.cka(X, X, debiased=1), TypeError, "debiased must be a bool"),
    ("cka debiased=None", lambda: mmkern.cka(X, X, debiased=None), TypeError, "debiased must be a bool"),
    ("cka debiased=array", lambda: mmkern.cka(X, X, debiased=np.array([True, False])), TypeError,
     "debiased must be a bool"),
    ("pairwise_cka debiased='no'", lambda: mmkern.pairwise_cka([X, X], debiased="no"), TypeError,
     "debiased must be a bool"),
    ("accumulator debiased='no'", lambda: mmkern.SimilarityAccumulator(1).update([X]).cka(debiased="no"),
     TypeError, "debiased must be a bool"),
    ("svcca keep_by list", lambda: mmkern.svcca(X, X, keep_by=["variance"]), TypeError, "keep_by must be a str"),
    ("svcca keep_by unknown", lambda: mmkern.svcca(X, X, keep_by="svd"), ValueError, "keep_by must be one of"),
    ("svcca keep str", lambda: mmkern.svcca(X, X, keep="0.9"), TypeError, "keep must be"),
    ("svcca keep nan", lambda: mmkern.svcca(X, X, keep=float("nan")), ValueError, "keep must be a fraction"),
    ("svcca keep 0", lambda: mmkern.svcca(X, X, keep=0.0), ValueError, "keep must be a fraction"),
    ("svcca keep True", lambda: mmkern.svcca(X, X, keep=True), TypeError, "keep must be"),
    ("svcca keep 99", lambda: mmkern.svcca(X, X, keep=99), ValueError, "keep=99 directions"),
    ("cca rtol str", lambda: mmkern.cca(X, X, rtol="1e-10"), TypeError, "rtol must be a real number"),
    ("cca rtol nan", lambda: mmkern.cca(X, X, rtol=float("nan")), ValueError, r"rtol must be in \[0, 1\)"),
    ("cca rtol 1", lambda: mmkern.cca(X, X, rtol=1.0), ValueError, r"rtol must be in \[0, 1\)"),
    ("cca rtol -1", lambda: mmkern.cca(X, X, rtol=-1.0), ValueError, r"rtol must be in \[0, 1\)"),
    ("pairwise_cca statistic int", lambda: mmkern.pairwise_cca([X, X], statistic=1), TypeError,
     "statistic must be a str"),
    ("pairwise_cca statistic unknown", lambda: mmkern.pairwise_cca([X, X], statistic="median"), ValueError,
     "statistic must be one of"),
    ("ragged x", lambda: mmkern.cka([[1.0, 2.0], [3.0]], X[:2]), ValueError, "^x is a ragged nested sequence"),
    ("ragged y", lambda: mmkern.svcca(X, [[1.0], [2.0, 3.0]] * 10), ValueError, "^y is a ragged nested sequence"),
    ("ragged model", lambda: mmkern.pairwise_cka([X, [[1.0, 2.0], [3.0]]]), ValueError,
     r"^acts\[1\] is a ragged nested sequence"),
    ("int activations", lambda: mmkern.cka(X.astype(np.int64), X), TypeError, "^x must be a floating-point"),
    ("bool activations", lambda: mmkern.cka(X, X > 0), TypeError, "^y must be a floating-point"),
    ("complex activations", lambda: mmkern.svcca(X + 0j, X), TypeError, "^x must be a floating-point"),
    ("object activations", lambda: mmkern.cka(X.astype(object), X), TypeError, "^x must be a floating-point"),
    ("string activations", lambda: mmkern.cka("abc", X), TypeError, "^x must be a floating-point"),
    ("1-D x", lambda: mmkern.cka(X[:, 0], X), ValueError, "^x must be 2-D"),
    ("4-D x", lambda: mmkern.cka(X[None, None], X), ValueError, r"^x must be 2-D \(n_samples, n_features\) or 3-D"),
    ("empty x", lambda: mmkern.cka(X[:0], X[:0]), ValueError, "^x is empty"),
    ("no features", lambda: mmkern.cka(X[:, :0], X), ValueError, "^x is empty"),
    ("samples differ", lambda: mmkern.cka(X, X[:10]), ValueError, "^y has 10 samples but x has 20"),
    ("batch sizes differ", lambda: mmkern.svcca(np.stack([X, X]), np.stack([X, X, X])), ValueError,
     "^y has 3 batch elements but x has 2"),
    ("batched and not", lambda: mmkern.cka(np.stack([X, X]), X), ValueError, "x is 3-D but y is 2-D"),
    ("no models", lambda: mmkern.pairwise_cka([]), ValueError, r"^acts holds no models"),
    ("not a population", lambda: mmkern.pairwise_cka(X), ValueError, "^acts must be a sequence"),
    ("constant x", lambda: mmkern.svcca(np.ones((20, 3)), X), ValueError, "^x has no variance"),
    ("n <= d", lambda: mmkern.svcca(X[:3], X[:3]), ValueError, "^x has n_samples=3 <= n_features=3"),
    ("debiased n < 4", lambda: mmkern.cka(X[:3], X[:3], debiased=True), ValueError, "needs at least 4 samples"),
    ("accumulator n_models str", lambda: mmkern.SimilarityAccumulator("2"), TypeError, "n_models must be an int"),
    ("accumulator n_models 0", lambda: mmkern.SimilarityAccumulator(0), ValueError, "n_models must be at least 1"),
    ("accumulator batches not a list", lambda: mmkern.SimilarityAccumulator(1).update(X), ValueError,
     "batches must be a list of 1 arrays"),
    ("accumulator empty", lambda: mmkern.SimilarityAccumulator(2).cka(), ValueError, "no samples accumulated"),
    ("meta tensor", lambda: mmkern.cka(torch.empty(10, 3, device="meta"), torch.empty(10, 3, device="meta")),
     ValueError, "^x is a torch tensor on meta"),
    ("meta and cpu", lambda: mmkern.cka(torch.zeros(10, 3), torch.empty(10, 3, device="meta")),
     ValueError, "^y is a torch tensor on meta"),
    ("torch int", lambda: mmkern.cka(torch.zeros(10, 3, dtype=torch.int32), torch.zeros(10, 3)),
     TypeError, "^x must be a floating-point"),
]


@pytest.mark.parametrize("case", ARGUMENTS, ids=[c[0] for c in ARGUMENTS])
def test_argument_errors(case):
    _, call, error, message = case
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_half_precision_activations_are_upcast(dtype):
    x, y = latent_activations(np.random.default_rng(9), 50, [4, 4])
    if dtype == "bfloat16":
        xs, ys = torch.from_numpy(x).bfloat16(), torch.from_numpy(y).bfloat16()
        widened = xs.float().numpy(), ys.float().numpy()
    else:
        xs, ys = x.astype(dtype), y.astype(dtype)
        widened = xs.astype(np.float32), ys.astype(np.float32)
    assert _value(mmkern.cka(xs, ys)) == pytest.approx(mmkern.cka(*widened), rel=1e-12)
