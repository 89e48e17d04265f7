"""scikit-learn's bundled 8x8 handwritten digits (no download), with corrupted OOD test sets.

1797 images of the digits 0..9 (UCI optical recognition data, 8x8 pixels, integer values
0..16), shipped inside scikit-learn (``sklearn.datasets.load_digits``). Inputs are float32
``(n, 1, 8, 8)``, scaled to [0, 1] by dividing by 16; nothing else (no normalisation).

Split: fixed and stratified, independent of ``seed``: in each class, ``floor(f n_c + 1/2)``
samples (``f = test_fraction``, default 0.2) drawn without replacement by a generator seeded with
``split_seed`` (default 0) form the test set; the rest form the training set; both are then put in
a random order by the same generator. With the defaults: 1438 training and 359 test samples.

OOD test sets: the test set under each corruption of :mod:`mmkern.data.corruptions` at the
requested severities, named ``"<corruption>-<severity>"``; their random draws derive from
``seed``.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from mmkern.data._arrays import Dataset
from mmkern.data._split import split_dataset, stratified_split
from mmkern.data.corruptions import CORRUPTIONS, DEFAULT_SEVERITIES

__all__ = ["load_digits", "stratified_split"]


def load_digits(*, seed: int = 0, test_fraction: float = 0.2, split_seed: int = 0,
                ood: Iterable[str] | str | None = CORRUPTIONS,
                ood_severities: Iterable[int] | int | None = DEFAULT_SEVERITIES) -> Dataset:
    """scikit-learn's 8x8 digits as a :class:`Dataset`.

    Parameters
    ----------
    seed : int, optional
        Seed of the corruptions' random draws (the split does not depend on it).
    test_fraction : float, optional
        Fraction in (0, 1) of each class in the test set.
    split_seed : int, optional
        Seed of the stratified split (fixed by default, so every ``seed`` sees the same split).
    ood : sequence of str or None, optional
        Corruptions from :data:`mmkern.data.corruptions.CORRUPTIONS` (default: all four);
        None or () for no OOD sets.
    ood_severities : sequence of int or None, optional
        Severities in 1..5 (default (1, 3, 5)).

    Returns
    -------
    Dataset
        ``name="digits"``, 10 classes, ``input_shape=(1, 8, 8)``, values in [0, 1]. Default
        ``ood`` keys: gaussian_noise-1, -3, -5, gaussian_blur-1, -3, -5, contrast-1, -3, -5,
        pixel_shift-1, -3, -5.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:  # pragma: no cover - the [train] extra installs it
        raise ImportError("the digits dataset needs scikit-learn: pip install 'mmkern[train]'") \
            from exc
    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0)
    labels = np.asarray(bunch.target, dtype=np.int64)
    x = images.reshape(len(labels), 1, 8, 8)
    import sklearn

    return split_dataset("digits", x, labels, test_fraction=test_fraction, split_seed=split_seed, seed=seed,
                         ood=ood, ood_severities=ood_severities, info={
                             "source": "sklearn.datasets.load_digits (bundled with scikit-learn, no download)",
                             "sklearn_version": sklearn.__version__,
                             "scaling": "x / 16 -> [0, 1]; no normalisation"})
