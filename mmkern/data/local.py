"""Real image datasets from files the user already has (never downloaded).

``data_dir`` is either the folder holding a dataset's files or a parent of one of its standard
subfolders, searched in this order (then ``data_dir`` itself):

- ``mnist``: subfolders ``mnist``, ``MNIST/raw``, ``MNIST``; ``fashion_mnist``: subfolders
  ``fashion_mnist``, ``fashion-mnist``, ``FashionMNIST/raw``, ``FashionMNIST``. Files (each raw
  or ``.gz``): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``.
- ``cifar10``: subfolder ``cifar-10-batches-py`` (the extracted ``cifar-10-python.tar.gz``);
  files ``data_batch_1`` .. ``data_batch_5``, ``test_batch``.
- ``cifar100``: subfolder ``cifar-100-python``; files ``train``, ``test``.
- ``svhn``: subfolders ``svhn``, ``SVHN``; files ``train_32x32.mat``, ``test_32x32.mat`` (and
  ``extra_32x32.mat`` with ``extra=True``).

When ``data_dir`` is None, the environment variable ``MMKERN_DATA_DIR`` is used.

Formats, as distributed:

- **IDX** (MNIST, Fashion-MNIST): big-endian header ``0x00 0x00 <type> <ndim>``, then ``ndim``
  uint32 sizes, then the data. Images are ``(n, H, W)`` uint8, labels ``(n,)`` uint8. Parsed here
  with NumPy: the magic number, the number of dimensions and the exact data size are validated.
  Gzipped files are recognised by their content, whatever their name; if both a raw and a
  ``.gz`` file exist, the raw one is read.
- **CIFAR python batches**: pickled dicts with ``data`` (uint8, ``(n, 3072)``: the 1024 red, then
  green, then blue values of a 32x32 image, row-major) and ``labels`` (CIFAR-10) or
  ``fine_labels`` / ``coarse_labels`` (CIFAR-100). Unpickled with a restricted unpickler that only
  admits the NumPy array reconstruction functions, so a tampered file cannot run code.
- **SVHN .mat** (MATLAB v5, read with ``scipy.io.loadmat``): ``X`` uint8 ``(32, 32, 3, n)`` and
  ``y`` ``(n, 1)`` with labels 1..10, where 10 is the digit 0 (mapped to 0 here).

Outputs: float32 channel-first images scaled to [0, 1] (uint8 / 255; no normalisation), int64
labels; ``ood`` holds the test set under the corruptions of :mod:`mmkern.data.corruptions`
(default: all four at severities 1, 3, 5; for CIFAR's 10000 test images that is 12 sets of
123 MB each: pass ``ood=None`` or fewer severities to save memory). ``info["files"]`` records each
file's path, size and SHA-256.

Errors: a missing folder or file raises ``FileNotFoundError``; a corrupt, truncated or
inconsistent file raises ``ValueError``; both name the file and the expected layout.
"""

from __future__ import annotations

import gzip
import hashlib
import codecs
import io
import math
import os
import pickle
import zlib
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from mmkern.data._arrays import ArraySplit, Dataset
from mmkern._validate import check_bool, check_choice
from mmkern.data._checks import check_names, check_seed, check_severities
from mmkern.data.corruptions import CORRUPTIONS, DEFAULT_SEVERITIES, corrupted_sets

__all__ = [
    "DATA_DIR_ENV",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_cifar100",
    "load_svhn",
    "read_idx",
    "read_cifar_batch",
]

DATA_DIR_ENV = "MMKERN_DATA_DIR"
"""Environment variable consulted when ``data_dir`` is None."""

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

_SUBDIRS = {
    "mnist": ("mnist", "MNIST/raw", "MNIST"),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", "FashionMNIST/raw", "FashionMNIST"),
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
    "svhn": ("svhn", "SVHN"),
}

_LAYOUT = {
    "mnist": "<dir>/train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
             "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]",
    "cifar10": "<dir>/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch "
               "(the extracted cifar-10-python.tar.gz)",
    "cifar100": "<dir>/cifar-100-python/train, test (the extracted cifar-100-python.tar.gz)",
    "svhn": "<dir>/train_32x32.mat, test_32x32.mat (and extra_32x32.mat with extra=True)",
}
_LAYOUT["fashion_mnist"] = _LAYOUT["mnist"]

# IDX type code -> big-endian NumPy dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# --------------------------------------------------------------------------- files and folders

def _data_root(data_dir: Any, dataset: str) -> Path:
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV)
        if not data_dir:
            raise ValueError(f"{dataset} is read from local files: pass data_dir (the CLI's "
                             f"--data-dir) or set {DATA_DIR_ENV}; expected layout: "
                             f"{_LAYOUT[dataset]}")
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be a path, got {type(data_dir).__name__}")
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: data_dir {str(root)!r} is not a folder; expected "
                                f"layout: {_LAYOUT[dataset]}")
    return root


def _find(root: Path, dataset: str, marker: Sequence[str]) -> Path:
    """The first candidate folder holding any of the ``marker`` file names."""
    candidates = [root / sub for sub in _SUBDIRS[dataset]] + [root]
    for folder in candidates:
        if any((folder / m).is_file() for m in marker):
            return folder
    searched = ", ".join(repr(str(c)) for c in candidates)
    raise FileNotFoundError(f"{dataset}: no {' or '.join(marker)} in any of {searched}; "
                            f"expected layout: {_LAYOUT[dataset]}")


def _require(folder: Path, names: Sequence[str], dataset: str) -> Path:
    """The first existing file among ``names`` in ``folder``."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{dataset}: missing file {str(folder / names[0])!r}"
                            + (f" (or {', '.join(names[1:])})" if len(names) > 1 else "")
                            + f"; expected layout: {_LAYOUT[dataset]}")


def _read_bytes(path: Path, record: list[dict] | None) -> bytes:
    data = path.read_bytes()
    if record is not None:
        record.append({"path": str(path.resolve()), "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()})
    return data


def _check_ood(ood: Any, ood_severities: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Validate the OOD options before any file is read."""
    return check_names(ood, "ood", CORRUPTIONS), check_severities(ood_severities)


# --------------------------------------------------------------------------- IDX

#: Deflate expands at most about 1032-fold: a gzipped IDX file whose header claims more data than
#: that is refused before anything is decompressed.
_GZIP_MAX_RATIO = 1032


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """An IDX array from a file's bytes (raw or gzip): the header is read first, and at most the
    bytes it describes are decompressed (one more, to detect trailing data)."""
    where = repr(str(path))
    gz = raw[:2] == b"\x1f\x8b"
    stream = gzip.GzipFile(fileobj=io.BytesIO(raw)) if gz else io.BytesIO(raw)
    try:
        head = stream.read(4)
        if len(head) < 4:
            raise ValueError(f"{where}: not an IDX file (only {len(head)} bytes, no header)")
        if head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
            raise ValueError(f"{where}: bad IDX magic number 0x{head.hex()} (expected 0x0000 then "
                             "a type code 08/09/0B/0C/0D/0E and the number of dimensions)")
        ndim = head[3]
        sizes = stream.read(4 * ndim)
        if ndim == 0 or len(sizes) < 4 * ndim:
            raise ValueError(f"{where}: IDX header for {ndim} dimensions is truncated or empty")
        dims = tuple(int(d) for d in np.frombuffer(sizes, dtype=">u4"))
        dtype = np.dtype(_IDX_TYPES[head[2]])
        expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
        if gz and expected > _GZIP_MAX_RATIO * len(raw):
            raise ValueError(f"{where}: IDX dimensions {dims} describe {expected} bytes, more than "
                             f"a {len(raw)}-byte gzip file can hold")
        if not gz and expected > len(raw):
            raise ValueError(f"{where}: truncated IDX data: dimensions {dims} need {expected} bytes, "
                             f"found {len(raw) - 4 - 4 * ndim}")
        data = stream.read(expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{where}: corrupt gzip data ({type(exc).__name__}: {exc})") from None
    if len(data) < expected:
        raise ValueError(f"{where}: truncated IDX data: dimensions {dims} need {expected} bytes, "
                         f"found {len(data)}")
    if len(data) > expected:
        rest = len(data) - expected + len(stream.read(1 << 20))
        raise ValueError(f"{where}: IDX file has {rest}{'+' if rest > 1 << 20 else ''} bytes "
                         f"beyond the {expected} its dimensions {dims} describe")
    arr = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzipped).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    numpy.ndarray
        Native byte order, shape and dtype as stored (uint8 for MNIST images and labels).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the gzip stream, the magic number, the header or the data size is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such IDX file {str(path)!r}")
    return _parse_idx(path.read_bytes(), path)


def _idx_file(folder: Path, base: str, dataset: str, record: list[dict]) -> np.ndarray:
    path = _require(folder, (base, base + ".gz"), dataset)
    return _parse_idx(_read_bytes(path, record), path)


def _load_idx_dataset(name: str, data_dir: Any, seed: int, ood: Any, ood_severities: Any,
                      source: str) -> Dataset:
    seed = check_seed(seed)
    ood, ood_severities = _check_ood(ood, ood_severities)
    root = _data_root(data_dir, name)
    folder = _find(root, name, (_IDX_FILES[0], _IDX_FILES[0] + ".gz"))
    files: list[dict] = []
    arrays = [_idx_file(folder, base, name, files) for base in _IDX_FILES]
    splits = []
    for (images, labels), (img_name, lab_name) in zip(
            (arrays[:2], arrays[2:]), (_IDX_FILES[:2], _IDX_FILES[2:])):
        img_path, lab_path = repr(str(folder / img_name)), repr(str(folder / lab_name))
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"{name}: {img_path} must hold uint8 images (n, H, W), got "
                             f"{images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise ValueError(f"{name}: {lab_path} must hold uint8 labels (n,), got "
                             f"{labels.dtype} {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{name}: {img_path} has {len(images)} images but {lab_path} has "
                             f"{len(labels)} labels")
        if len(labels) and labels.max() > 9:
            raise ValueError(f"{name}: {lab_path} has label {labels.max()}, expected 0..9")
        x = images.astype(np.float32)[:, None]
        x /= np.float32(255.0)
        splits.append(ArraySplit(x, labels.astype(np.int64)))
    train, test = splits
    if train.x.shape[1:] != test.x.shape[1:]:
        raise ValueError(f"{name}: training images are {train.x.shape[2:]} but test images are "
                         f"{test.x.shape[2:]}")
    return _finish(name, train, test, 10, seed, ood, ood_severities, files,
                   {"source": source, "format": "IDX", "folder": str(folder.resolve())})


# --------------------------------------------------------------------------- CIFAR

class _NDArrayName:
    """What ``numpy.ndarray`` unpickles to: a name for :func:`_reconstruct`, never callable, so
    a file cannot allocate an array of its choice (``numpy.ndarray(shape)`` is uninitialised
    memory)."""


def _array_dtype(spec: Any, *args: Any) -> np.dtype:
    """``numpy.dtype`` for the unpickler: only integer dtypes (CIFAR's uint8 ``data``, and labels
    re-saved as NumPy integers); never objects, whose pickled items could be anything."""
    if isinstance(spec, bytes):  # Python 2 pickles
        spec = spec.decode("latin1")
    if not isinstance(spec, (str, np.dtype)):
        raise pickle.UnpicklingError(f"refusing a dtype given as {type(spec).__name__}")
    try:
        dtype = np.dtype(spec, False, True)  # a copy: its pickled state must not touch NumPy's own
    except TypeError:
        raise pickle.UnpicklingError(f"refusing the dtype {spec!r}") from None
    if dtype.kind not in "iu":
        raise pickle.UnpicklingError(f"refusing a {dtype} array: CIFAR batches hold integers")
    return dtype


def _scalar(dtype: Any, data: Any) -> Any:
    """A pickled NumPy integer scalar (a label), from the bytes the file holds."""
    if not isinstance(dtype, np.dtype) or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("refusing a malformed NumPy scalar")
    return np.frombuffer(data, dtype=dtype)[0]


def _reconstruct(subtype: Any, shape: Any, code: Any) -> np.ndarray:
    """The empty array of a pickled ndarray (protocol 2 to 4), filled by its state afterwards;
    NumPy's ``__setstate__`` then checks that the file holds exactly its bytes."""
    if subtype is not _NDArrayName or shape != (0,) or code not in (b"b", "b"):
        raise pickle.UnpicklingError("refusing an array reconstruction other than NumPy's own")
    return np.ndarray((0,), np.uint8)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """A pickled ndarray of protocol 5: a copy of bytes the file holds (bounded by its size)."""
    dtype = _array_dtype(dtype)
    if not isinstance(buffer, (bytes, bytearray)) or not isinstance(shape, tuple) \
            or not all(isinstance(d, int) and d >= 0 for d in shape) or order not in ("C", "F"):
        raise pickle.UnpicklingError("refusing a malformed array")
    if math.prod(shape) * dtype.itemsize != len(buffer):
        raise pickle.UnpicklingError(f"array of shape {shape} does not match its {len(buffer)} bytes")
    return np.frombuffer(bytes(buffer), dtype=dtype).reshape(shape, order=order).copy()


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits only what real CIFAR python batches contain: dicts, lists, bytes, ints and integer
    NumPy arrays and scalars whose bytes are in the file; any other global is refused."""

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.numeric", "_frombuffer"): _frombuffer,
        ("numpy._core.multiarray", "scalar"): _scalar,
        ("numpy", "ndarray"): _NDArrayName,
        ("numpy", "dtype"): _array_dtype,
        ("_codecs", "encode"): codecs.encode,  # Python 2 byte strings in protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        canonical = module.replace("numpy.core", "numpy._core", 1) \
            if module.startswith("numpy.core") else module
        if (canonical, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return self._ALLOWED[(canonical, name)]


def _unpickle(data: bytes, path: Path) -> dict:
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # any parse failure of an untrusted file
        raise ValueError(f"{str(path)!r}: not a readable CIFAR python batch "
                         f"({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{str(path)!r}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar_batch(path: str | os.PathLike, label_key: str = "labels",
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch.

    Parameters
    ----------
    path : str or os.PathLike
    label_key : str, optional
        ``"labels"`` (CIFAR-10), ``"fine_labels"`` or ``"coarse_labels"`` (CIFAR-100).

    Returns
    -------
    images : numpy.ndarray of uint8, shape (n, 3, 32, 32)
    labels : numpy.ndarray of int64, shape (n,)

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a pickled dict with a uint8 ``data`` array ``(n, 3072)`` and ``n`` integer
        labels under ``label_key``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such CIFAR batch {str(path)!r}")
    check_choice(label_key, "label_key", _CIFAR_CLASSES)
    return _cifar_arrays(_unpickle(path.read_bytes(), path), path, label_key)


#: The label keys of CIFAR batches and their numbers of classes.
_CIFAR_CLASSES = {"labels": 10, "fine_labels": 100, "coarse_labels": 20}


def _cifar_arrays(batch: dict, path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    where = repr(str(path))
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{where}: a CIFAR batch needs keys 'data' and {label_key!r}, found "
                         f"{sorted(map(str, batch))}")
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072:
        desc = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
                else type(data).__name__)
        raise ValueError(f"{where}: 'data' must be a uint8 array (n, 3072), got {desc}")
    try:
        labels = np.asarray(batch[label_key])
    except Exception:
        labels = np.asarray([])
    if labels.ndim != 1 or len(labels) != len(data) or (
            len(labels) and not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"{where}: {label_key!r} must hold {len(data)} integer labels, got "
                         f"{labels.dtype} {labels.shape}")
    classes = _CIFAR_CLASSES[label_key]
    if len(labels) and (labels.min() < 0 or labels.max() >= classes):
        bad = labels.min() if labels.min() < 0 else labels.max()
        raise ValueError(f"{where}: {label_key!r} holds the label {bad}, outside 0..{classes - 1}")
    return data.reshape(len(data), 3, 32, 32), labels.astype(np.int64)


def _cifar_split(folder: Path, names: Sequence[str], label_key: str, dataset: str,
                 files: list[dict]) -> ArraySplit:
    xs, ys = [], []
    for name in names:
        path = _require(folder, (name,), dataset)
        images, labels = _cifar_arrays(_unpickle(_read_bytes(path, files), path), path,
                                       label_key)
        xs.append(images)
        ys.append(labels)
    x = np.concatenate(xs).astype(np.float32)
    x /= np.float32(255.0)
    return ArraySplit(x, np.concatenate(ys))


# --------------------------------------------------------------------------- SVHN

def _svhn_split(folder: Path, names: Sequence[str], files: list[dict]) -> ArraySplit:
    try:
        from scipy.io import loadmat
    except ImportError as exc:  # pragma: no cover - scipy is a core dependency
        raise ImportError("SVHN needs scipy") from exc
    xs, ys = [], []
    for name in names:
        path = _require(folder, (name,), "svhn")
        where = repr(str(path))
        try:
            mat = loadmat(io.BytesIO(_read_bytes(path, files)), variable_names=("X", "y"))
        except Exception as exc:  # any parse failure of the file
            raise ValueError(f"svhn: {where} is not a readable MATLAB v5 file with 'X' and 'y' "
                             f"({type(exc).__name__}: {exc})") from None
        if "X" not in mat or "y" not in mat:
            raise ValueError(f"svhn: {where} needs variables 'X' and 'y', found "
                             f"{sorted(k for k in mat if not k.startswith('__'))}")
        images, labels = np.asarray(mat["X"]), np.asarray(mat["y"])
        if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.dtype != np.uint8:
            raise ValueError(f"svhn: {where}: 'X' must be uint8 (32, 32, 3, n), got "
                             f"{images.dtype} {images.shape}")
        n = images.shape[3]
        if labels.dtype.kind not in "iuf":  # a MATLAB cell, struct, char or complex array
            raise ValueError(f"svhn: {where}: 'y' must be a real numeric array (n, 1), got "
                             f"{labels.dtype} {labels.shape}")
        if labels.size != n or (labels.ndim == 2 and 1 not in labels.shape) or labels.ndim > 2:
            raise ValueError(f"svhn: {where}: 'y' must hold {n} labels (n, 1), got {labels.shape}")
        labels = labels.reshape(-1)
        if n and (not np.all(labels == np.round(labels)) or labels.min() < 1
                  or labels.max() > 10):
            raise ValueError(f"svhn: {where}: labels must be 1..10 (10 is the digit 0)")
        xs.append(np.transpose(images, (3, 2, 0, 1)))
        ys.append(labels.astype(np.int64) % 10)
    x = np.concatenate(xs).astype(np.float32)
    x /= np.float32(255.0)
    return ArraySplit(x, np.concatenate(ys))


# --------------------------------------------------------------------------- loaders

def _finish(name: str, train: ArraySplit, test: ArraySplit, num_classes: int, seed: int,
            ood: Any, ood_severities: Any, files: list[dict], extra: dict) -> Dataset:
    sets, ood_info = corrupted_sets(test, ood, ood_severities, seed=seed)
    info = {"name": name, **extra, "scaling": "uint8 / 255 -> [0, 1]; no normalisation",
            "seed": seed, "train": len(train), "test": len(test), "files": files,
            "ood": ood_info}
    return Dataset(name=name, train=train, test=test, num_classes=num_classes,
                   input_shape=train.x.shape[1:], ood=sets, info=info)


_OOD_DOC = """    seed : int, optional
        Seed of the corruptions' random draws.
    ood : sequence of str or None, optional
        Corruptions from :data:`mmkern.data.corruptions.CORRUPTIONS` applied to the test set
        (default: all four); None or () for no OOD sets.
    ood_severities : sequence of int or None, optional
        Severities in 1..5 (default (1, 3, 5))."""


def load_mnist(data_dir: str | os.PathLike | None = None, *, seed: int = 0,
               ood: Iterable[str] | str | None = CORRUPTIONS,
               ood_severities: Iterable[int] | int | None = DEFAULT_SEVERITIES) -> Dataset:
    """MNIST from local IDX files.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See the module docstring (default: ``$MMKERN_DATA_DIR``).
{ood}

    Returns
    -------
    Dataset
        ``name="mnist"``, 10 classes, ``input_shape=(1, 28, 28)`` (as stored), values in [0, 1].

    Raises
    ------
    FileNotFoundError, ValueError
        Missing or corrupt files (the message names the file and the expected layout).
    """
    return _load_idx_dataset("mnist", data_dir, seed, ood, ood_severities,
                             "MNIST (LeCun et al.), local IDX files")


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, seed: int = 0,
                       ood: Iterable[str] | str | None = CORRUPTIONS,
                       ood_severities: Iterable[int] | int | None = DEFAULT_SEVERITIES,
                       ) -> Dataset:
    """Fashion-MNIST from local IDX files (same file names as MNIST).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See the module docstring (default: ``$MMKERN_DATA_DIR``).
{ood}

    Returns
    -------
    Dataset
        ``name="fashion_mnist"``, 10 classes, ``input_shape=(1, 28, 28)``, values in [0, 1].

    Raises
    ------
    FileNotFoundError, ValueError
        Missing or corrupt files (the message names the file and the expected layout).
    """
    return _load_idx_dataset("fashion_mnist", data_dir, seed, ood, ood_severities,
                             "Fashion-MNIST (Xiao et al.), local IDX files")


def load_cifar10(data_dir: str | os.PathLike | None = None, *, seed: int = 0,
                 ood: Iterable[str] | str | None = CORRUPTIONS,
                 ood_severities: Iterable[int] | int | None = DEFAULT_SEVERITIES) -> Dataset:
    """CIFAR-10 from the local python batches (``cifar-10-batches-py``).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See the module docstring (default: ``$MMKERN_DATA_DIR``).
{ood}

    Returns
    -------
    Dataset
        ``name="cifar10"``, 10 classes, ``input_shape=(3, 32, 32)``, values in [0, 1];
        training set ``data_batch_1`` .. ``data_batch_5`` in that order.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing or corrupt files (the message names the file and the expected layout).
    """
    seed = check_seed(seed)
    ood, ood_severities = _check_ood(ood, ood_severities)
    root = _data_root(data_dir, "cifar10")
    folder = _find(root, "cifar10", ("data_batch_1",))
    files: list[dict] = []
    train = _cifar_split(folder, [f"data_batch_{i}" for i in range(1, 6)], "labels",
                         "cifar10", files)
    test = _cifar_split(folder, ["test_batch"], "labels", "cifar10", files)
    return _finish("cifar10", train, test, 10, seed, ood, ood_severities, files,
                   {"source": "CIFAR-10 (Krizhevsky 2009), local python batches",
                    "format": "CIFAR python pickle", "folder": str(folder.resolve())})


def load_cifar100(data_dir: str | os.PathLike | None = None, *, seed: int = 0,
                  labels: str = "fine", ood: Iterable[str] | str | None = CORRUPTIONS,
                  ood_severities: Iterable[int] | int | None = DEFAULT_SEVERITIES) -> Dataset:
    """CIFAR-100 from the local python files (``cifar-100-python``).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See the module docstring (default: ``$MMKERN_DATA_DIR``).
    labels : {"fine", "coarse"}, optional
        The 100 fine classes (default) or the 20 coarse superclasses.
{ood}

    Returns
    -------
    Dataset
        ``name="cifar100"``, 100 (or 20) classes, ``input_shape=(3, 32, 32)``, values in [0, 1].

    Raises
    ------
    FileNotFoundError, ValueError
        Missing or corrupt files (the message names the file and the expected layout), or
        an unknown ``labels``.
    """
    seed = check_seed(seed)
    ood, ood_severities = _check_ood(ood, ood_severities)
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    num_classes = 100 if labels == "fine" else 20
    key = f"{labels}_labels"
    root = _data_root(data_dir, "cifar100")
    folder = _find(root, "cifar100", ("train",))
    files: list[dict] = []
    train = _cifar_split(folder, ["train"], key, "cifar100", files)
    test = _cifar_split(folder, ["test"], key, "cifar100", files)
    return _finish("cifar100", train, test, num_classes, seed, ood, ood_severities, files,
                   {"source": "CIFAR-100 (Krizhevsky 2009), local python files",
                    "format": "CIFAR python pickle", "labels": labels,
                    "folder": str(folder.resolve())})


def load_svhn(data_dir: str | os.PathLike | None = None, *, seed: int = 0, extra: bool = False,
              ood: Iterable[str] | str | None = CORRUPTIONS,
              ood_severities: Iterable[int] | int | None = DEFAULT_SEVERITIES) -> Dataset:
    """SVHN (cropped digits) from the local ``.mat`` files.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See the module docstring (default: ``$MMKERN_DATA_DIR``).
    extra : bool, optional
        Append ``extra_32x32.mat`` (531131 images) to the training set.
{ood}

    Returns
    -------
    Dataset
        ``name="svhn"``, 10 classes (label 10 of the files is the digit 0),
        ``input_shape=(3, 32, 32)``, values in [0, 1].

    Raises
    ------
    FileNotFoundError, ValueError
        Missing or corrupt files (the message names the file and the expected layout).
    """
    seed = check_seed(seed)
    extra = check_bool(extra, "extra")
    ood, ood_severities = _check_ood(ood, ood_severities)
    root = _data_root(data_dir, "svhn")
    folder = _find(root, "svhn", ("train_32x32.mat",))
    files: list[dict] = []
    train_names = ["train_32x32.mat"] + (["extra_32x32.mat"] if extra else [])
    train = _svhn_split(folder, train_names, files)
    test = _svhn_split(folder, ["test_32x32.mat"], files)
    return _finish("svhn", train, test, 10, seed, ood, ood_severities, files,
                   {"source": "SVHN cropped digits (Netzer et al. 2011), local .mat files",
                    "format": "MATLAB v5", "extra": extra, "folder": str(folder.resolve())})


for _f in (load_mnist, load_fashion_mnist, load_cifar10, load_cifar100, load_svhn):
    _f.__doc__ = _f.__doc__.replace("{ood}", _OOD_DOC)
del _f
