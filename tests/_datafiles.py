"""Small dataset files in the real distribution formats, written by the tests themselves.

- IDX (MNIST / Fashion-MNIST): big-endian magic ``00 00 <type> <ndim>``, uint32 sizes, data;
  optionally gzipped.
- CIFAR python batches: pickled dicts with ``data`` uint8 (n, 3072) and ``labels`` (CIFAR-10) or
  ``fine_labels`` / ``coarse_labels`` (CIFAR-100).
- SVHN: MATLAB v5 ``.mat`` with ``X`` uint8 (32, 32, 3, n) and ``y`` (n, 1) in 1..10.

Each writer returns the arrays it wrote, so tests can compare the loader's output with them.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_TYPE_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
                  np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (uint8, int8, or big-endian int16/int32/float32/float64)."""
    array = np.asarray(array)
    code = IDX_TYPE_CODES[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_bytes(path: Path, data: bytes, gz: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def write_idx_dataset(folder: Path, rng: np.random.Generator, n_train: int = 30, n_test: int = 20,
                      size: int = 28, gz: bool = False) -> dict[str, np.ndarray]:
    """The four MNIST IDX files in ``folder``; returns the uint8 arrays written."""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.permutation(np.arange(n_test) % 10).astype(np.uint8),
    }
    for name, arr in arrays.items():
        write_bytes(Path(folder) / name, idx_bytes(arr), gz=gz)
    return arrays


def cifar_batch(rng: np.random.Generator, n: int, label_keys: dict[str, int],
                bytes_keys: bool = True) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    """A CIFAR batch dict with ``n`` random images; labels drawn per key below its class count."""
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = {k: rng.integers(0, c, n) for k, c in label_keys.items()}
    batch = {"batch_label": "testing batch", "data": data,
             "filenames": [f"img_{i}.png" for i in range(n)]}
    batch.update({k: [int(v) for v in lab] for k, lab in labels.items()})
    if bytes_keys:  # as the official files load with encoding="bytes"
        batch = {k.encode(): (v.encode() if isinstance(v, str) else v) for k, v in batch.items()}
    return batch, data, labels


def write_pickle(path: Path, obj, protocol: int = 2) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


class _Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did for the official CIFAR files: every str and bytes as a
    py2 ``str`` (BINSTRING opcodes) and NumPy globals under their old ``numpy.core`` names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core")
        name = name or obj.__qualname__
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)


def python2_pickle_bytes(obj) -> bytes:
    """``obj`` pickled (protocol 2) the way Python 2 wrote the official CIFAR batches."""
    buf = io.BytesIO()
    _Python2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_cifar10(folder: Path, rng: np.random.Generator, n_per_batch: int = 4,
                  protocol: int | str = 2, bytes_keys: bool = True) -> dict[str, np.ndarray]:
    """``data_batch_1..5`` and ``test_batch`` in ``folder``; returns the concatenated arrays.

    ``protocol="py2"`` writes Python 2 style pickles (see :func:`python2_pickle_bytes`).
    """
    def write(path, batch):
        if protocol == "py2":
            write_bytes(path, python2_pickle_bytes(batch))
        else:
            write_pickle(path, batch, protocol)

    xs, ys = [], []
    for i in range(1, 6):
        batch, data, labels = cifar_batch(rng, n_per_batch, {"labels": 10}, bytes_keys)
        write(Path(folder) / f"data_batch_{i}", batch)
        xs.append(data)
        ys.append(labels["labels"])
    batch, test_data, test_labels = cifar_batch(rng, n_per_batch + 1, {"labels": 10}, bytes_keys)
    write(Path(folder) / "test_batch", batch)
    return {"train_x": np.concatenate(xs), "train_y": np.concatenate(ys),
            "test_x": test_data, "test_y": test_labels["labels"]}


def write_cifar100(folder: Path, rng: np.random.Generator, n_train: int = 12,
                   n_test: int = 7) -> dict[str, np.ndarray]:
    """``train`` and ``test`` in ``folder``; returns data and fine/coarse labels."""
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        batch, data, labels = cifar_batch(rng, n, {"fine_labels": 100, "coarse_labels": 20})
        write_pickle(Path(folder) / name, batch)
        out[f"{name}_x"] = data
        out[f"{name}_fine"] = labels["fine_labels"]
        out[f"{name}_coarse"] = labels["coarse_labels"]
    return out


def write_svhn(folder: Path, rng: np.random.Generator, n_train: int = 11, n_test: int = 6,
               label_dtype=np.float64, names=("train", "test")) -> dict[str, np.ndarray]:
    """``<name>_32x32.mat`` files; labels cycle through 1..10 (10 is the digit 0)."""
    from scipy.io import savemat

    out = {}
    for name, n in zip(names, (n_train, n_test, n_train)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(label_dtype).reshape(n, 1)
        Path(folder).mkdir(parents=True, exist_ok=True)
        savemat(Path(folder) / f"{name}_32x32.mat", {"X": x, "y": y})
        out[f"{name}_x"] = x
        out[f"{name}_y"] = y
    return out
