"""scikit-learn digits: values, fixed stratified split, corrupted OOD sets, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmkern.data import CORRUPTIONS, corrupt, load_dataset, load_digits
from mmkern.data.digits import stratified_split


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_shapes_values_and_names(digits):
    d = digits
    assert d.name == "digits" and d.num_classes == 10 and d.input_shape == (1, 8, 8)
    assert len(d.train) == 1438 and len(d.test) == 359
    assert d.train.x.dtype == np.float32 and d.train.y.dtype == np.int64
    assert d.train.x.min() == 0 and d.train.x.max() == 1
    assert np.all(np.isin(np.rint(d.train.x * 16), np.arange(17)))
    assert list(d.ood) == [f"{c}-{s}" for c in CORRUPTIONS for s in (1, 3, 5)]
    json.dumps(d.info)


def test_same_images_as_sklearn(digits):
    from sklearn.datasets import load_digits as sk

    bunch = sk()
    ours = np.concatenate([digits.train.x, digits.test.x]).reshape(-1, 64) * 16
    theirs = bunch.data
    # same multiset of (image, label) rows
    a = np.column_stack([ours, np.concatenate([digits.train.y, digits.test.y])])
    b = np.column_stack([theirs, bunch.target])
    np.testing.assert_array_equal(a[np.lexsort(a.T[::-1])], b[np.lexsort(b.T[::-1])])


def test_split_is_stratified_and_fixed(digits):
    counts = np.bincount(np.concatenate([digits.train.y, digits.test.y]))
    test_counts = np.bincount(digits.test.y)
    np.testing.assert_array_equal(test_counts, np.floor(0.2 * counts + 0.5).astype(int))
    other = load_digits(seed=9, ood=None)
    np.testing.assert_array_equal(other.test.x, digits.test.x)  # seed does not move the split
    moved = load_digits(split_seed=1, ood=None)
    assert not np.array_equal(moved.test.y, digits.test.y)
    half = load_digits(test_fraction=0.5, ood=None)
    assert abs(len(half.test) - 1797 / 2) <= 5


def test_stratified_split_partition():
    y = np.repeat(np.arange(3), [5, 7, 9])
    tr, te = stratified_split(y, 0.3, 0)
    assert sorted(np.concatenate([tr, te])) == list(range(21))
    np.testing.assert_array_equal(np.bincount(y[te]), [2, 2, 3])


def test_ood_sets_are_the_corrupted_test_set(digits):
    for key in ("gaussian_noise-3", "pixel_shift-5", "contrast-1"):
        c, s = key.rsplit("-", 1)
        np.testing.assert_array_equal(digits.ood[key].x,
                                      corrupt(digits.test.x, c, int(s), seed=0))
        np.testing.assert_array_equal(digits.ood[key].y, digits.test.y)


def test_seed_changes_only_random_corruptions(digits):
    other = load_digits(seed=1)
    assert not np.array_equal(other.ood["gaussian_noise-1"].x, digits.ood["gaussian_noise-1"].x)
    np.testing.assert_array_equal(other.ood["gaussian_blur-3"].x, digits.ood["gaussian_blur-3"].x)
    again = load_digits()
    for key in digits.ood:
        np.testing.assert_array_equal(again.ood[key].x, digits.ood[key].x)


def test_options():
    d = load_dataset("digits", ood="contrast", ood_severities=(2, 4))
    assert list(d.ood) == ["contrast-2", "contrast-4"]
    assert load_dataset("digits", ood=()).ood == {}
    with pytest.raises(ValueError, match="test_fraction must be in"):
        load_dataset("digits", test_fraction=1.0)
    with pytest.raises(ValueError, match="ood_severities entry must be in"):
        load_dataset("digits", ood_severities=[6])
    with pytest.raises(TypeError, match="takes no option.*num_samples"):
        load_dataset("digits", num_samples=10)
