"""Local loaders on small files in the real formats: MNIST/Fashion-MNIST IDX, CIFAR, SVHN."""

from __future__ import annotations

import gzip
import hashlib
import pickle

import numpy as np
import pytest

from _datafiles import (
    cifar_batch,
    idx_bytes,
    python2_pickle_bytes,
    write_bytes,
    write_cifar10,
    write_cifar100,
    write_idx_dataset,
    write_pickle,
    write_svhn,
)
from mmkern.data import load_dataset, read_cifar_batch, read_idx
from mmkern.data.local import DATA_DIR_ENV

NO_OOD = {"ood": None}


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_loader_reads_the_written_arrays(tmp_path, rng, name, gz):
    arrays = write_idx_dataset(tmp_path / name, rng, gz=gz)
    d = load_dataset(name, data_dir=tmp_path, **NO_OOD)
    assert d.name == name and d.num_classes == 10 and d.input_shape == (1, 28, 28)
    assert d.train.x.dtype == np.float32 and d.train.y.dtype == np.int64
    assert d.train.x.flags.c_contiguous
    np.testing.assert_array_equal(d.train.x[:, 0] * 255, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(d.train.y, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(np.rint(d.test.x[:, 0] * 255), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(d.test.y, arrays["t10k-labels-idx1-ubyte"])
    assert d.train.x.min() >= 0 and d.train.x.max() <= 1
    assert d.ood == {}
    files = d.info["files"]
    assert len(files) == 4 and all(len(f["sha256"]) == 64 for f in files)
    assert files[0]["path"].endswith("train-images-idx3-ubyte" + (".gz" if gz else ""))


@pytest.mark.parametrize("sub", ["MNIST/raw", "MNIST", "."])
def test_idx_folder_search(tmp_path, rng, sub):
    write_idx_dataset(tmp_path / sub, rng, n_train=10, n_test=10)
    d = load_dataset("mnist", data_dir=tmp_path, **NO_OOD)
    assert len(d.train) == 10


def test_data_dir_from_environment(tmp_path, rng, monkeypatch):
    write_idx_dataset(tmp_path / "mnist", rng, n_train=10, n_test=10)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert len(load_dataset("mnist", **NO_OOD).test) == 10
    monkeypatch.delenv(DATA_DIR_ENV)
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("mnist")


def test_idx_loader_attaches_corruptions(tmp_path, rng):
    write_idx_dataset(tmp_path, rng, n_train=10, n_test=10)
    d = load_dataset("mnist", data_dir=tmp_path, ood=["contrast", "pixel_shift"],
                     ood_severities=[2, 4])
    assert list(d.ood) == ["contrast-2", "contrast-4", "pixel_shift-2", "pixel_shift-4"]
    assert d.info["ood"]["pixel_shift-4"]["shift_pixels"] == 7


def test_read_idx_types_and_native_order(tmp_path):
    arr = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    path = write_bytes(tmp_path / "x.idx", idx_bytes(arr), gz=True)
    out = read_idx(path)
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    floats = np.linspace(0, 1, 5).astype(">f8")
    np.testing.assert_array_equal(read_idx(write_bytes(tmp_path / "f.idx", idx_bytes(floats))),
                                  floats)


def test_missing_idx_folder_and_file(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*expected layout"):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_dataset("mnist", data_dir=tmp_path / "nowhere")
    write_idx_dataset(tmp_path, rng, n_train=10, n_test=10)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*expected layout"):
        load_dataset("mnist", data_dir=tmp_path)


def _corrupt(path, data):
    path.write_bytes(data)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"\x08\x03" + b[2:], "bad IDX magic"),
    (lambda b: b[:2] + b"\x07" + b[3:], "bad IDX magic"),
    (lambda b: b[:-5], "truncated IDX data"),
    (lambda b: b + b"\x00\x00", "beyond"),
    (lambda b: b[:10], "truncated"),
    (lambda b: b[:2], "no header"),
])
def test_corrupt_idx_files(tmp_path, rng, damage, message):
    arrays = write_idx_dataset(tmp_path, rng, n_train=10, n_test=10)
    path = tmp_path / "train-images-idx3-ubyte"
    _corrupt(path, damage(idx_bytes(arrays["train-images-idx3-ubyte"])))
    with pytest.raises(ValueError, match=message) as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert "train-images-idx3-ubyte" in str(err.value)


def test_corrupt_gzip_and_inconsistent_idx(tmp_path, rng):
    arrays = write_idx_dataset(tmp_path, rng, n_train=10, n_test=10, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="corrupt gzip.*t10k-images|t10k-images.*corrupt gzip"):
        load_dataset("mnist", data_dir=tmp_path)
    path.write_bytes(good)
    # 9 labels for 10 images
    write_bytes(tmp_path / "t10k-labels-idx1-ubyte",
                idx_bytes(arrays["t10k-labels-idx1-ubyte"][:9]), gz=True)
    with pytest.raises(ValueError, match="10 images but .* 9 labels"):
        load_dataset("mnist", data_dir=tmp_path)
    # a label out of range
    write_bytes(tmp_path / "t10k-labels-idx1-ubyte",
                idx_bytes(np.full(10, 12, np.uint8)), gz=True)
    with pytest.raises(ValueError, match="label 12"):
        load_dataset("mnist", data_dir=tmp_path)
    # images with the wrong number of dimensions
    write_bytes(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(arrays["t10k-labels-idx1-ubyte"]),
                gz=True)
    write_bytes(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((10, 784), np.uint8)),
                gz=True)
    with pytest.raises(ValueError, match=r"uint8 images \(n, H, W\)"):
        load_dataset("mnist", data_dir=tmp_path)


def test_raw_file_preferred_over_gz(tmp_path, rng):
    write_idx_dataset(tmp_path, rng, n_train=10, n_test=10, gz=True)
    arrays = write_idx_dataset(tmp_path, np.random.default_rng(99), n_train=10, n_test=10)
    d = load_dataset("mnist", data_dir=tmp_path, **NO_OOD)
    np.testing.assert_array_equal(np.rint(d.train.x[:, 0] * 255),
                                  arrays["train-images-idx3-ubyte"])


# --------------------------------------------------------------------------- CIFAR

@pytest.mark.parametrize("protocol", ["py2", 2, 4, 5])
@pytest.mark.parametrize("bytes_keys", [True, False], ids=["bytes-keys", "str-keys"])
def test_cifar10_loader(tmp_path, rng, protocol, bytes_keys):
    written = write_cifar10(tmp_path / "cifar-10-batches-py", rng, protocol=protocol,
                            bytes_keys=bytes_keys)
    d = load_dataset("cifar10", data_dir=tmp_path, **NO_OOD)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert len(d.train) == 20 and len(d.test) == 5
    expected = written["train_x"].reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(np.rint(d.train.x * 255), expected)
    np.testing.assert_array_equal(d.train.y, written["train_y"])
    np.testing.assert_array_equal(np.rint(d.test.x * 255),
                                  written["test_x"].reshape(-1, 3, 32, 32))
    np.testing.assert_array_equal(d.test.y, written["test_y"])


def test_python2_pickle_emulation_uses_old_opcodes_and_names():
    import pickletools

    batch, _, _ = cifar_batch(np.random.default_rng(0), 2, {"labels": 10})
    ops = {op.name for op, _, _ in pickletools.genops(python2_pickle_bytes(batch))}
    assert "SHORT_BINSTRING" in ops and "GLOBAL" in ops
    assert not ops & {"SHORT_BINBYTES", "BINUNICODE", "SHORT_BINUNICODE", "STACK_GLOBAL"}
    assert b"numpy.core.multiarray\n_reconstruct" in python2_pickle_bytes(batch)


def test_cifar_channel_layout(tmp_path, rng):
    """The first 1024 values of a row are the red plane, row-major."""
    batch, data, _ = cifar_batch(rng, 2, {"labels": 10})
    data[:] = 0
    data[0, 5] = 255            # red, row 0, column 5
    data[0, 1024 + 32] = 128    # green, row 1, column 0
    data[1, 2048 + 1023] = 64   # blue, row 31, column 31
    path = write_pickle(tmp_path / "b", batch)
    images, _ = read_cifar_batch(path)
    assert images.shape == (2, 3, 32, 32)
    assert images[0, 0, 0, 5] == 255 and images[0, 1, 1, 0] == 128 and images[1, 2, 31, 31] == 64
    assert images.sum() == 255 + 128 + 64


@pytest.mark.parametrize("labels, classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_loader(tmp_path, rng, labels, classes):
    written = write_cifar100(tmp_path / "cifar-100-python", rng)
    d = load_dataset("cifar100", data_dir=tmp_path, labels=labels, **NO_OOD)
    assert d.num_classes == classes
    np.testing.assert_array_equal(d.train.y, written[f"train_{labels}"])
    np.testing.assert_array_equal(d.test.y, written[f"test_{labels}"])
    np.testing.assert_array_equal(np.rint(d.test.x * 255),
                                  written["test_x"].reshape(-1, 3, 32, 32))
    with pytest.raises(ValueError, match="labels must be"):
        load_dataset("cifar100", data_dir=tmp_path, labels="medium")


def test_cifar_missing_batch(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, rng)
    (folder / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4.*expected layout"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", data_dir=tmp_path)


class _Evil:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_cifar_corrupt_and_tampered_batches(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder, rng)
    target = folder / "data_batch_2"
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 3])
    with pytest.raises(ValueError, match="data_batch_2.*not a readable CIFAR"):
        load_dataset("cifar10", data_dir=tmp_path)
    write_pickle(target, {b"data": _Evil(), b"labels": [0]})
    with pytest.raises(ValueError, match=r"refusing to load global \w+\.eval"):
        load_dataset("cifar10", data_dir=tmp_path)
    write_pickle(target, [1, 2, 3])
    with pytest.raises(ValueError, match="expected a pickled dict"):
        load_dataset("cifar10", data_dir=tmp_path)
    batch, _, _ = cifar_batch(rng, 3, {"labels": 10})
    batch[b"data"] = batch[b"data"][:, :100]
    write_pickle(target, batch)
    with pytest.raises(ValueError, match=r"uint8 array \(n, 3072\)"):
        load_dataset("cifar10", data_dir=tmp_path)
    batch, _, _ = cifar_batch(rng, 3, {"labels": 10})
    batch[b"labels"] = batch[b"labels"][:2]
    write_pickle(target, batch)
    with pytest.raises(ValueError, match="3 integer labels"):
        load_dataset("cifar10", data_dir=tmp_path)
    batch, _, _ = cifar_batch(rng, 3, {"labels": 10})
    batch[b"labels"] = [0, 1, 10]
    write_pickle(target, batch)
    with pytest.raises(ValueError, match="outside 0..9"):
        load_dataset("cifar10", data_dir=tmp_path)
    del batch[b"labels"]
    write_pickle(target, batch)
    with pytest.raises(ValueError, match="needs keys 'data' and 'labels'"):
        load_dataset("cifar10", data_dir=tmp_path)


# --------------------------------------------------------------------------- SVHN

@pytest.mark.parametrize("label_dtype", [np.float64, np.uint8])
def test_svhn_loader(tmp_path, rng, label_dtype):
    written = write_svhn(tmp_path / "svhn", rng, label_dtype=label_dtype)
    d = load_dataset("svhn", data_dir=tmp_path, **NO_OOD)
    assert d.input_shape == (3, 32, 32) and len(d.train) == 11 and len(d.test) == 6
    # (32, 32, 3, n) -> (n, 3, 32, 32): pixel (row r, column c, channel k) of image i
    x = written["train_x"]
    np.testing.assert_array_equal(np.rint(d.train.x * 255), np.transpose(x, (3, 2, 0, 1)))
    assert d.train.x[4, 2, 7, 9] * 255 == pytest.approx(x[7, 9, 2, 4])
    # label 10 means the digit 0
    np.testing.assert_array_equal(d.train.y, written["train_y"].ravel().astype(int) % 10)
    assert 0 in d.train.y and 10 not in d.train.y


def test_svhn_extra(tmp_path, rng):
    write_svhn(tmp_path, rng, n_train=5, n_test=3, names=("train", "test", "extra"))
    assert len(load_dataset("svhn", data_dir=tmp_path, **NO_OOD).train) == 5
    assert len(load_dataset("svhn", data_dir=tmp_path, extra=True, **NO_OOD).train) == 10
    with pytest.raises(TypeError, match="extra must be a bool"):
        load_dataset("svhn", data_dir=tmp_path, extra=1)


def test_svhn_missing_and_corrupt(tmp_path, rng):
    write_svhn(tmp_path, rng)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(FileNotFoundError, match="test_32x32.mat.*expected layout"):
        load_dataset("svhn", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="extra_32x32.mat"):
        load_dataset("svhn", data_dir=tmp_path, extra=True)
    write_svhn(tmp_path, rng)
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, but not really" * 4)
    with pytest.raises(ValueError, match="test_32x32.mat.*not a readable MATLAB"):
        load_dataset("svhn", data_dir=tmp_path)
    from scipy.io import savemat

    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((28, 28, 1, 3), np.uint8),
                                          "y": np.ones((3, 1))})
    with pytest.raises(ValueError, match=r"'X' must be uint8 \(32, 32, 3, n\)"):
        load_dataset("svhn", data_dir=tmp_path)
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 3), np.uint8),
                                          "y": np.array([[1], [0], [11]])})
    with pytest.raises(ValueError, match="labels must be 1..10"):
        load_dataset("svhn", data_dir=tmp_path)
    savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 3), np.uint8)})
    with pytest.raises(ValueError, match="needs variables 'X' and 'y'"):
        load_dataset("svhn", data_dir=tmp_path)


def test_file_hashes_match(tmp_path, rng):
    write_svhn(tmp_path, rng)
    d = load_dataset("svhn", data_dir=tmp_path, **NO_OOD)
    for entry in d.info["files"]:
        with open(entry["path"], "rb") as f:
            data = f.read()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)


def test_gzip_detected_by_content(tmp_path, rng):
    arr = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    path = tmp_path / "images.idx"
    path.write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(path), arr)


def test_pickle_of_ndarray_subclass_is_refused(tmp_path):
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": np.ma.masked_array(np.zeros((1, 3072), np.uint8)),
                                   "labels": [0]}))
    with pytest.raises(ValueError, match="refusing to load global numpy.ma"):
        read_cifar_batch(path)


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_labels_as_numpy_values(tmp_path, rng, protocol):
    batch, data, labels = cifar_batch(rng, 4, {"labels": 10})
    path = tmp_path / "b"
    batch[b"labels"] = np.asarray(labels["labels"], dtype=np.int64)
    write_pickle(path, batch, protocol)
    np.testing.assert_array_equal(read_cifar_batch(path)[1], labels["labels"])
    batch[b"labels"] = [np.int64(v) for v in labels["labels"]]  # NumPy scalars
    write_pickle(path, batch, protocol)
    np.testing.assert_array_equal(read_cifar_batch(path)[1], labels["labels"])


def test_readers_on_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such IDX file"):
        read_idx(tmp_path / "x.idx")
    with pytest.raises(FileNotFoundError, match="no such CIFAR batch"):
        read_cifar_batch(tmp_path / "data_batch_1")
