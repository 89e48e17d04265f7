"""ArraySplit and Dataset contracts, and the load_dataset / dataset_names registry."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import mmkern.data as data
from mmkern.data import ArraySplit, Dataset, dataset_names, load_dataset


def test_public_api():
    for name in data.__all__:
        assert hasattr(data, name), name
    assert dataset_names() == ["mnist1d", "digits", "mnist5k", "mnist", "fashion_mnist", "cifar10",
                               "cifar100", "svhn"]


def test_array_split_converts_to_the_contract():
    x = np.asfortranarray(np.ones((4, 2, 3), np.float64))
    s = ArraySplit(x, np.arange(4, dtype=np.int32))
    assert s.x.dtype == np.float32 and s.x.flags.c_contiguous and s.y.dtype == np.int64
    assert len(s) == 4
    already = ArraySplit(s.x, s.y)
    assert already.x is s.x  # no copy when nothing changes
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.x = x


@pytest.mark.parametrize("x, y, error, message", [
    (np.ones((3, 2), np.uint8), np.arange(3), TypeError, "x must have a floating dtype"),
    (np.ones((3, 2)), np.ones(3), TypeError, "y must have an integer dtype"),
    (np.ones((3, 2)), np.ones(3, bool), TypeError, "y must have an integer dtype"),
    (np.ones(3), np.arange(3), ValueError, r"x must have shape \(n, \*input_shape\)"),
    (np.ones((3, 2)), np.zeros((3, 1), int), ValueError, r"y must have shape \(n,\)"),
    (np.ones((3, 2)), np.arange(4), ValueError, "x has 3 samples but y has 4"),
])
def test_array_split_errors(x, y, error, message):
    with pytest.raises(error, match=message):
        ArraySplit(x, y)


def _split(n=4, shape=(1, 5), labels=None):
    return ArraySplit(np.zeros((n, *shape), np.float32),
                      np.arange(n) % 3 if labels is None else labels)


def test_dataset_validation():
    d = Dataset("toy", _split(), _split(2), 3, [1, 5], {"a": _split(3)}, {"k": [1, 2]})
    assert d.input_shape == (1, 5) and isinstance(d.input_shape, tuple)
    assert "toy" in repr(d) and "ood: a" in repr(d)
    with pytest.raises(ValueError, match=r"test has inputs of shape \(1, 6\)"):
        Dataset("toy", _split(), _split(shape=(1, 6)), 3, (1, 5))
    with pytest.raises(ValueError, match=r"ood\['a'\] has labels outside \[0, 3\)"):
        Dataset("toy", _split(), _split(), 3, (1, 5), {"a": _split(labels=np.array([0, 1, 2, 3]))})
    with pytest.raises(TypeError, match="train must be an ArraySplit"):
        Dataset("toy", (np.zeros((2, 5)), np.zeros(2)), _split(), 3, (1, 5))
    with pytest.raises(TypeError, match="JSON-serialisable"):
        Dataset("toy", _split(), _split(), 3, (1, 5), info={"a": np.zeros(2)})
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        Dataset("toy", _split(), _split(), 1, (1, 5))
    with pytest.raises(TypeError, match="ood keys must be str"):
        Dataset("toy", _split(), _split(), 3, (1, 5), {1: _split()})


def test_unknown_dataset_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; valid: mnist1d, digits, mnist5k, "
                                         "mnist, fashion_mnist, cifar10, cifar100, svhn"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"spurious=p"):
        load_dataset("mnist1d-spurious")
    with pytest.raises(TypeError, match="name must be a str"):
        load_dataset(None)


def test_bad_seed_and_spurious():
    with pytest.raises(TypeError, match="seed must be an int"):
        load_dataset("digits", seed=1.5)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        load_dataset("digits", spurious=0.0)


def test_generated_datasets_ignore_data_dir(tmp_path):
    d = load_dataset("digits", data_dir=tmp_path / "nowhere", ood=None)
    assert len(d.test) == 359
