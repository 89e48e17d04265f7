"""The fixed stratified train/test split of the bundled image sets, and the Dataset around it."""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from mmkern._validate import check_float
from mmkern.data._arrays import ArraySplit, Dataset
from mmkern.data._checks import check_seed, derive_rng
from mmkern.data.corruptions import corrupted_sets

def stratified_split(y: np.ndarray, test_fraction: float, seed: int,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train/test split.

    Parameters
    ----------
    y : numpy.ndarray of int, shape (n,)
        Labels.
    test_fraction : float
        In (0, 1); class c contributes ``floor(test_fraction * n_c + 1/2)`` test samples.
    seed : int
        Seed of the draw and of the final orders.

    Returns
    -------
    train_idx, test_idx : numpy.ndarray of int64
        Disjoint, together covering ``range(n)``, each in a random order.
    """
    rng = derive_rng(seed, "stratified_split")
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(math.floor(test_fraction * len(idx) + 0.5))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx = rng.permutation(np.concatenate(train)).astype(np.int64)
    test_idx = rng.permutation(np.concatenate(test)).astype(np.int64)
    return train_idx, test_idx


def split_dataset(name: str, x: np.ndarray, labels: np.ndarray, *, test_fraction: float, split_seed: int,
                  seed: int, ood: Iterable[str] | str | None, ood_severities: Iterable[int] | int | None,
                  info: dict) -> Dataset:
    """A :class:`Dataset` of images ``x`` (n, C, H, W) float32 in [0, 1] and int64 ``labels``
    (n,), split by :func:`stratified_split` (``test_fraction``, ``split_seed``), with the
    corrupted test sets of :func:`mmkern.data.corruptions.corrupted_sets` (``seed``); ``info``
    (source, scaling) is completed with the seeds and the split."""
    seed = check_seed(seed)
    split_seed = check_seed(split_seed, "split_seed")
    test_fraction = check_float(test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True,
                                high_open=True)
    train_idx, test_idx = stratified_split(labels, test_fraction, split_seed)
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise ValueError(f"test_fraction={test_fraction} leaves an empty split")
    train = ArraySplit(x[train_idx], labels[train_idx])
    test = ArraySplit(x[test_idx], labels[test_idx])
    sets, ood_info = corrupted_sets(test, ood, ood_severities, seed=seed)
    info = {"name": name, **info, "seed": seed,
            "split": {"rule": "stratified: per class floor(test_fraction * n_c + 1/2) test samples",
                      "test_fraction": test_fraction, "split_seed": split_seed,
                      "train": len(train), "test": len(test)},
            "ood": ood_info}
    return Dataset(name=name, train=train, test=test, num_classes=int(labels.max()) + 1,
                   input_shape=tuple(x.shape[1:]), ood=sets, info=info)
