"""Spurious-cue variants: cue geometry, exact placement and counts, counterfactual sets, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mmkern.data import (
    COUNTERFACTUAL_SETS,
    ArraySplit,
    Dataset,
    SpuriousDataset,
    cue_layout,
    load_dataset,
    make_spurious,
)
from mmkern.data.spurious import cued_count

SHAPES = {"1d": (1, 40), "8x8": (1, 8, 8), "28x28": (1, 28, 28), "rgb32": (3, 32, 32)}


def _base(rng, input_shape, num_classes=10, n_train=400, n_test=200, ood=True) -> Dataset:
    """Random inputs (no value ever equals a cue value exactly), uneven class sizes."""
    def split(n):
        x = rng.random((n, *input_shape), dtype=np.float32) * 0.98 + 0.01
        y = rng.integers(0, num_classes, n)
        y[:num_classes] = np.arange(num_classes)  # every class present
        return ArraySplit(x, y)

    test = split(n_test)
    extra = {"shifted": ArraySplit(test.x[:7] * 0.5, test.y[:7])} if ood else {}
    return Dataset("toy", split(n_train), test, num_classes, input_shape, extra, {"seed": 1})


def _outside_equal(cue, a, b, cue_class):
    """a and b agree everywhere except under each sample's cue."""
    for i, c in enumerate(cue_class):
        keep = ~cue.mask(c) if c >= 0 else np.ones(cue.input_shape, bool)
        np.testing.assert_array_equal(a[i][keep], b[i][keep])


# --------------------------------------------------------------------------- geometry

@pytest.mark.parametrize("shape, size, positions", [
    ((1, 40), 3, [(0,), (5,), (9,), (14,), (19,), (23,), (28,), (32,), (37,)]),
    ((1, 8, 8), 2, [(r, c) for r in (0, 3, 6) for c in (0, 3, 6)]),
    ((1, 28, 28), 3, [(r, c) for r in (0, 13, 25) for c in (0, 13, 25)]),
    ((3, 32, 32), 3, [(r, c) for r in (0, 15, 29) for c in (0, 15, 29)]),
])
def test_documented_positions(shape, size, positions):
    cue = cue_layout(shape, 10)
    assert cue.size == size and list(cue.positions) == positions
    assert cue.no_cue_class == 9 and not cue.mask(9).any()


@pytest.mark.parametrize("shape, num_classes", [((1, 40), 10), ((1, 8, 8), 10),
                                                ((1, 28, 28), 10), ((3, 32, 32), 10),
                                                ((3, 32, 32), 100), ((2, 25), 5)])
def test_cues_are_disjoint_and_inside(shape, num_classes):
    cue = cue_layout(shape, num_classes)
    total = np.zeros(shape, int)
    for c in range(num_classes - 1):
        m = cue.mask(c)
        assert m.sum() == shape[0] * cue.size ** (len(shape) - 1)
        assert m.all(axis=0).sum() == m[0].sum()  # every channel
        total += m
    assert total.max() == 1


def test_default_values_by_kind():
    assert cue_layout((1, 40), 10).value == (3.0,)
    assert cue_layout((1, 8, 8), 10).value == (1.0,)
    assert cue_layout((3, 32, 32), 10).value == (1.0, 0.0, 1.0)
    assert cue_layout((3, 32, 32), 10, cue_value=0.25).value == (0.25,) * 3
    assert cue_layout((3, 32, 32), 10, cue_value=(0, 1, 0)).value == (0.0, 1.0, 0.0)


@pytest.mark.parametrize("n, p, expected", [(10, 0.6, 6), (7, 0.5, 4), (5, 0.9, 5), (9, 0.05, 0),
                                            (100, 1.0, 100), (11, 0.95, 10)])
def test_count_rule(n, p, expected):
    assert cued_count(n, p) == expected == math.floor(p * n + 0.5)


# --------------------------------------------------------------------------- train / test

@pytest.mark.parametrize("kind", list(SHAPES))
@pytest.mark.parametrize("p", [0.6, 0.9, 1.0])
def test_cue_exactly_where_stated(rng, kind, p):
    base = _base(rng, SHAPES[kind])
    d = make_spurious(base, p, seed=3)
    assert isinstance(d, SpuriousDataset) and d.name == "toy-spurious"
    cue, k = d.cue, base.num_classes - 1
    for split_name, split, base_split in (("train", d.train, base.train),
                                          ("test", d.test, base.test)):
        assigned = d.cue_class[split_name]
        np.testing.assert_array_equal(split.y, base_split.y)
        _outside_equal(cue, split.x, base_split.x, assigned)
        for c in range(k):
            carries = cue.has_cue(split.x, c)
            # the cue of c is present exactly on the samples assigned c, and only of class c
            np.testing.assert_array_equal(carries, assigned == c)
            in_class = base_split.y == c
            assert carries[in_class].sum() == cued_count(in_class.sum(), p)
            assert not carries[~in_class].any()
        # the last class and the non-cued fraction are untouched
        untouched = assigned == -1
        np.testing.assert_array_equal(split.x[untouched], base_split.x[untouched])
        assert np.all(assigned[base_split.y == k] == -1)
    per_class = d.info["spurious"]["train_cued_per_class"]
    counts = np.bincount(base.train.y, minlength=10)
    assert per_class == [cued_count(int(n), p) for n in counts[:k]]


def test_fraction_per_class_close_to_p(rng):
    base = _base(rng, (1, 8, 8), n_train=2000)
    d = make_spurious(base, 0.75, seed=0)
    for c in range(9):
        in_class = base.train.y == c
        frac = np.mean(d.cue_class["train"][in_class] == c)
        assert abs(frac - 0.75) <= 0.5 / in_class.sum() + 1e-12


# --------------------------------------------------------------------------- counterfactual sets

@pytest.mark.parametrize("kind", list(SHAPES))
def test_counterfactual_sets(rng, kind):
    base = _base(rng, SHAPES[kind])
    d = make_spurious(base, 0.8, seed=5)
    cue, k, y = d.cue, 9, base.test.y
    assert list(d.ood)[:4] == list(COUNTERFACTUAL_SETS)
    for name in COUNTERFACTUAL_SETS:
        np.testing.assert_array_equal(d.ood[name].y, y)

    # no cue
    np.testing.assert_array_equal(d.ood["cue-none"].x, base.test.x)
    assert np.all(d.cue_class["cue-none"] == -1)

    # every sample carries its own class's cue (the last class none)
    x = d.ood["cue"].x
    for c in range(k):
        np.testing.assert_array_equal(cue.has_cue(x, c), y == c)
    np.testing.assert_array_equal(x[y == k], base.test.x[y == k])
    _outside_equal(cue, x, base.test.x, d.cue_class["cue"])

    # randomized cue: a cued class other than the label, every time
    rc = d.cue_class["cue-random"]
    assert np.all((rc >= 0) & (rc < k)) and np.all(rc != y)
    x = d.ood["cue-random"].x
    for c in range(k):
        np.testing.assert_array_equal(cue.has_cue(x, c), rc == c)
    _outside_equal(cue, x, base.test.x, rc)
    assert set(np.unique(rc)) == set(range(k))  # all cued classes get drawn

    # randomized image: another class's input, the original label's cue
    src = d.image_source
    assert src.shape == y.shape and np.all(y[src] != y)
    assert len(np.unique(src)) > len(y) // 3
    x = d.ood["image-random"].x
    _outside_equal(cue, x, base.test.x[src], d.cue_class["image-random"])
    np.testing.assert_array_equal(d.cue_class["image-random"], np.where(y < k, y, -1))
    for c in range(k):
        np.testing.assert_array_equal(cue.has_cue(x, c), y == c)
    assert not np.any(np.all((x == base.test.x).reshape(len(y), -1), axis=1))

    # the base's OOD sets are kept without a cue
    np.testing.assert_array_equal(d.ood["shifted"].x, base.ood["shifted"].x)
    assert np.all(d.cue_class["shifted"] == -1)
    assert set(d.cue_class) == {"train", "test", *d.ood}


def test_cue_random_is_uniform_over_other_cued_classes(rng):
    base = _base(rng, (1, 40), n_test=9000, ood=False)
    d = make_spurious(base, 1.0, seed=0)
    y, rc = base.test.y, d.cue_class["cue-random"]
    for label in (0, 4, 9):
        counts = np.bincount(rc[y == label], minlength=9)
        expected = (y == label).sum() / (9 if label == 9 else 8)
        others = [c for c in range(9) if c != label]
        assert np.all(np.abs(counts[others] - expected) < 5 * np.sqrt(expected))
        if label < 9:
            assert counts[label] == 0


def test_deterministic_and_seeded(rng):
    base = _base(rng, (3, 32, 32), n_train=100, n_test=50)
    a, b = make_spurious(base, 0.7, seed=1), make_spurious(base, 0.7, seed=1)
    c = make_spurious(base, 0.7, seed=2)
    for key in ("train", "test", "cue-random"):
        np.testing.assert_array_equal(a.cue_class[key], b.cue_class[key])
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.image_source, b.image_source)
    assert not np.array_equal(a.cue_class["train"], c.cue_class["train"])
    assert not np.array_equal(a.image_source, c.image_source)


def test_base_not_modified_and_info(rng):
    base = _base(rng, (1, 8, 8))
    before = base.train.x.copy(), base.test.x.copy()
    d = make_spurious(base, 0.9, seed=0, cue_size=1, cue_value=0.5)
    np.testing.assert_array_equal(base.train.x, before[0])
    np.testing.assert_array_equal(base.test.x, before[1])
    info = json.loads(json.dumps(d.info))
    assert info["spurious"]["p"] == 0.9 and info["spurious"]["cue"]["size"] == 1
    assert info["spurious"]["cue"]["value"] == [0.5] and info["base"] == {"seed": 1}
    assert info["spurious"]["cue"]["positions"]["4"] == [4, 4]  # round(3.5) = 4
    assert "SpuriousDataset('toy-spurious'" in repr(d)


def test_real_datasets_via_load_dataset():
    d = load_dataset("digits", spurious=0.8, ood=None)
    assert d.name == "digits-spurious" and list(d.ood) == list(COUNTERFACTUAL_SETS)
    y = d.train.y
    for c in range(9):
        carries = d.cue.has_cue(d.train.x, c)
        # digits' own pixels can be 1.0, so check the assigned samples and the count
        assert carries[d.cue_class["train"] == c].all()
        assert (d.cue_class["train"] == c).sum() == cued_count((y == c).sum(), 0.8)
    m = load_dataset("mnist1d", spurious=1.0, num_samples=200, ood=None, cue_size=2)
    assert m.cue.size == 2 and m.input_shape == (1, 40)
    assert np.all(m.cue.has_cue(m.train.x, 3) == (m.train.y == 3))


@pytest.mark.parametrize("p, error", [(0, ValueError), (1.5, ValueError), (-0.2, ValueError),
                                      (float("nan"), ValueError), ("0.5", TypeError),
                                      (True, TypeError)])
def test_bad_p(rng, p, error):
    with pytest.raises(error, match="p must"):
        make_spurious(_base(rng, (1, 40), n_train=20, n_test=20), p)


def test_other_errors(rng):
    base = _base(rng, (1, 8, 8), n_train=30, n_test=20)
    with pytest.raises(TypeError, match="dataset must be a Dataset"):
        make_spurious(base.train, 0.5)
    with pytest.raises(ValueError, match="not fit"):
        make_spurious(base, 0.5, cue_size=3)
    with pytest.raises(ValueError, match="not fit"):
        make_spurious(_base(rng, (1, 20), n_train=30, n_test=20), 0.5)
    with pytest.raises(ValueError, match="cue_value needs 1 or 1 values"):
        make_spurious(base, 0.5, cue_value=(1.0, 0.0))
    with pytest.raises(ValueError, match="already has OOD sets"):
        make_spurious(make_spurious(base, 0.5), 0.5)
    with pytest.raises(ValueError, match="at least 3 classes"):
        make_spurious(_base(rng, (1, 8, 8), num_classes=2, n_train=10, n_test=10), 0.5)
    with pytest.raises(ValueError, match=r"\(C, L\) or \(C, H, W\)"):
        cue_layout((40,), 10)
    with pytest.raises(TypeError, match="only apply with spurious"):
        load_dataset("digits", cue_size=2)
