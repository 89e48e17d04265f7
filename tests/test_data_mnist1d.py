"""MNIST-1D: fidelity to the package generator, determinism, RNG isolation, OOD shifts, errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from mmkern.data import OOD_FAMILIES, load_dataset, load_mnist1d
from mmkern.data import mnist1d as m1d

SMALL = {"num_samples": 200, "ood_samples": 50}


@pytest.fixture(scope="module")
def default():
    return load_dataset("mnist1d")


def _package_make_dataset(num_samples, seed, **overrides):
    """The package's own make_dataset, run with the caller's global RNG state restored."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.seed = num_samples, seed
    for k, v in overrides.items():
        setattr(args, k, v)
    state, py_state = np.random.get_state(), random.getstate()
    try:
        return make_dataset(args)
    finally:
        np.random.set_state(state)
        random.setstate(py_state)


@pytest.mark.parametrize("overrides", [{}, {"shear_scale": 1.5, "max_translation": 30},
                                       {"shuffle_seq": True}])
def test_identical_to_package_make_dataset(overrides):
    ours = load_mnist1d(seed=42, num_samples=300, ood=None, **overrides)
    ref = _package_make_dataset(300, 42, **overrides)
    np.testing.assert_array_equal(ours.train.x[:, 0], ref["x"].astype(np.float32))
    np.testing.assert_array_equal(ours.test.x[:, 0], ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(ours.train.y, ref["y"])
    np.testing.assert_array_equal(ours.test.y, ref["y_test"])


def test_default_dataset(default):
    d = default
    assert d.name == "mnist1d" and d.num_classes == 10 and d.input_shape == (1, 40)
    assert len(d.train) == 4000 and len(d.test) == 1000
    assert d.train.x.dtype == np.float32 and d.train.x.flags.c_contiguous
    assert d.train.y.dtype == np.int64
    assert list(d.ood) == [f"{f}-{k}" for f in OOD_FAMILIES for k in (1, 3, 5)]
    for split in d.ood.values():
        assert len(split) == 500
        np.testing.assert_array_equal(np.bincount(split.y), np.full(10, 50))
    allx = np.concatenate([d.train.x, d.test.x])
    assert abs(allx.mean()) < 1e-5 and allx.std() == pytest.approx(1, abs=1e-5)
    info = json.loads(json.dumps(d.info))
    assert info["generator_args"]["shear_scale"] == 0.75
    assert info["ood"]["noise-3"]["changed"] == {"corr_noise_scale": 0.4375,
                                                 "iid_noise_scale": 0.035}
    assert info["ood"]["translation-5"]["changed"] == {"max_translation": 72}
    assert info["ood"]["scale-1"]["changed"]["scale_coeff"] == pytest.approx(0.7)
    assert info["ood"]["shear-5"]["changed"] == {"shear_scale": 3.75}


def test_documented_severity_tables():
    args = m1d.generator_args()
    table = {
        "noise": [(0.3125, 0.025), (0.375, 0.03), (0.4375, 0.035), (0.5, 0.04), (0.625, 0.05)],
        "shear": [1.125, 1.5, 2.25, 3.0, 3.75],
        "translation": [53, 58, 62, 67, 72],
        "scale": [0.7, 1.0, 1.3, 1.6, 1.9],
    }
    for k in range(1, 6):
        noise = m1d.ood_generator_args(args, "noise", k)
        assert (noise["corr_noise_scale"], noise["iid_noise_scale"]) == \
            pytest.approx(table["noise"][k - 1])
        assert m1d.ood_generator_args(args, "shear", k)["shear_scale"] == table["shear"][k - 1]
        assert m1d.ood_generator_args(args, "translation", k)["max_translation"] == \
            table["translation"][k - 1]
        assert m1d.ood_generator_args(args, "scale", k)["scale_coeff"] == \
            pytest.approx(table["scale"][k - 1])


def _roughness(x):  # high-frequency energy: grows with noise
    return np.mean(np.diff(x[:, 0], axis=1) ** 2)


def _slope_spread(x):  # spread of the linear trend: grows with shear
    t = np.linspace(-0.5, 0.5, x.shape[-1])
    t -= t.mean()
    return np.std(x[:, 0] @ t / (t @ t))


def _amplitude_spread(x):  # spread of per-signal amplitude: grows with scale
    return np.std(x[:, 0].std(axis=1))


def _late_peaks(x):  # fraction with the largest deviation in the last 8 positions
    dev = np.abs(x[:, 0] - np.median(x[:, 0], axis=1, keepdims=True))
    return np.mean(dev.argmax(axis=1) >= 32)


@pytest.mark.parametrize("family, stat, factor", [
    ("noise", _roughness, 2.0), ("shear", _slope_spread, 2.5),
    ("scale", _amplitude_spread, 1.3), ("translation", _late_peaks, 2.0),
])
def test_ood_sets_shift_the_distribution(default, family, stat, factor):
    d = default
    iid, iid_train = stat(d.test.x), stat(d.train.x[:1000])
    assert abs(iid - iid_train) < 0.25 * iid  # the statistic is stable on i.i.d. data
    values = [stat(d.ood[f"{family}-{k}"].x) for k in (1, 3, 5)]
    assert values[2] > factor * iid, (iid, values)
    assert values[0] <= values[1] * 1.05 <= values[2] * 1.1, values  # grows with severity


def test_severities_share_draws(default):
    d = default
    for family in ("noise", "shear", "scale"):  # the same draws, in the same order
        np.testing.assert_array_equal(d.ood[f"{family}-1"].y, d.ood[f"{family}-5"].y)
    # translation's draw of the shift consumes the stream differently per range
    assert not np.array_equal(d.ood["translation-1"].y, d.ood["translation-5"].y)
    # the noise family differs only in the noise: signals stay strongly correlated
    a, b = d.ood["noise-1"].x[:, 0], d.ood["noise-5"].x[:, 0]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8
    assert not np.array_equal(d.ood["noise-1"].y, d.test.y[:500])


def test_deterministic_per_seed_and_seed_matters():
    m1d._CACHE.clear()
    a = load_mnist1d(seed=7, **SMALL)
    m1d._CACHE.clear()
    b = load_mnist1d(seed=7, **SMALL)
    c = load_mnist1d(seed=8, **SMALL)
    for key in ("train", "test"):
        np.testing.assert_array_equal(getattr(a, key).x, getattr(b, key).x)
        np.testing.assert_array_equal(getattr(a, key).y, getattr(b, key).y)
        assert not np.array_equal(getattr(a, key).x, getattr(c, key).x)
    for key in a.ood:
        np.testing.assert_array_equal(a.ood[key].x, b.ood[key].x)
        assert not np.array_equal(a.ood[key].x, c.ood[key].x)
    assert a.info == b.info


def test_global_rng_state_untouched():
    m1d._CACHE.clear()
    np.random.seed(1234)
    random.seed(99)
    np_state, py_state = np.random.get_state(), random.getstate()
    load_mnist1d(seed=3, **SMALL)
    after = np.random.get_state()
    assert np.array_equal(np_state[1], after[1]) and np_state[2:] == after[2:]
    assert random.getstate() == py_state


def test_cache_returns_fresh_copies():
    a = load_mnist1d(seed=5, **SMALL)
    a.train.x[:] = 0
    a.ood["noise-1"].y[:] = 0
    a.info["seed"] = -1
    b = load_mnist1d(seed=5, **SMALL)
    assert b.train.x.any() and b.ood["noise-1"].y.any() and b.info["seed"] == 5


def test_options_sizes_and_length():
    d = load_mnist1d(num_samples=205, train_split=0.6, ood=["shear"], ood_severities=[2],
                     ood_samples=37, final_seq_length=60)
    assert len(d.train) == 120 and len(d.test) == 80  # 10 * (205 // 10) samples
    assert d.input_shape == (1, 60) and list(d.ood) == ["shear-2"]
    assert len(d.ood["shear-2"]) == 30


def test_shuffled_sequence_uses_the_iid_permutation():
    plain = load_mnist1d(seed=2, ood=["noise"], ood_severities=[3], **SMALL)
    shuffled = load_mnist1d(seed=2, ood=["noise"], ood_severities=[3], shuffle_seq=True,
                            **SMALL)
    perm = np.asarray(shuffled.info["sequence_permutation"])
    assert sorted(perm) == list(range(40)) and plain.info["sequence_permutation"] is None
    np.testing.assert_allclose(shuffled.test.x, plain.test.x[:, :, perm], atol=1e-6)
    np.testing.assert_allclose(shuffled.ood["noise-3"].x, plain.ood["noise-3"].x[:, :, perm],
                               atol=1e-6)


@pytest.mark.parametrize("options, error, message", [
    ({"num_samples": 5}, ValueError, "num_samples must be >= 20"),
    ({"num_samples": 100.0}, TypeError, "num_samples must be an int"),
    ({"train_split": 1.0}, ValueError, "train_split must be in"),
    ({"num_samples": 20, "train_split": 0.01}, ValueError, "empty split"),
    ({"padding": (10, 5)}, ValueError, r"padding\[1\] must be >= 10"),
    ({"padding": 5}, TypeError, "padding must be a pair"),
    ({"max_translation": 100}, ValueError, r"max_translation must be in \[1, 72\]"),
    ({"scale_coeff": 2.0}, ValueError, "scale_coeff must be in"),
    ({"shear_scale": -1}, ValueError, "shear_scale must be >= 0"),
    ({"shuffle_seq": 1}, TypeError, "shuffle_seq must be a bool"),
    ({"ood": ["blur"]}, ValueError, "ood: unknown 'blur'; valid: noise, shear"),
    ({"ood_severities": [0]}, ValueError, "ood_severities entry must be in"),
    ({"ood_samples": 3}, ValueError, "ood_samples must be >= 10"),
    ({"seed": -1}, ValueError, "seed must be in"),
    ({"seed": 2**32}, ValueError, "seed must be in"),
    ({"shear_scale": 0.0}, ValueError, "'shear' OOD family needs shear_scale > 0"),
    ({"scale_coeff": 1.95}, ValueError, "'scale' OOD family needs scale_coeff < 1.9"),
    ({"max_translation": 72}, ValueError, "'translation' OOD family needs max_translation"),
    ({"corr_noise_scale": 0, "iid_noise_scale": 0}, ValueError, "'noise' OOD family"),
])
def test_bad_options(options, error, message):
    with pytest.raises(error, match=message):
        load_dataset("mnist1d", **options)


def test_zero_nuisance_is_fine_without_its_family():
    d = load_mnist1d(shear_scale=0.0, ood=["noise"], ood_severities=[1], **SMALL)
    assert list(d.ood) == ["noise-1"]


def test_unknown_option_lists_valid_ones():
    with pytest.raises(TypeError, match="takes no option.*noise_scale.*valid options: .*"
                                        "num_samples.*corr_noise_scale"):
        load_dataset("mnist1d", noise_scale=0.1)
