"""Spurious-cue variants of a dataset and their four counterfactual test sets (Lubana et al. 2023).

A *cue* is a small constant patch whose position is set by the class. It is pasted over the
input (replacing the values under it, in every channel). With C classes, classes 0..C-2 each own
one position and the last class, C-1, has no cue.

Cue geometry, by input kind (``s`` = ``cue_size``, ``c`` = the class):

- 1-D inputs ``(C, L)``: a segment ``[o_c, o_c + s)`` of length ``s`` (default 3), with
  ``o_c = round(c (L - s) / (K - 1))``.
- 2-D inputs ``(C, H, W)``: an ``s`` x ``s`` box (default ``s`` = 2 if ``min(H, W) < 16``, else
  3) in cell ``(c // g, c % g)`` of a ``g`` x ``g`` grid, ``g = ceil(sqrt(K))``, whose row
  offsets are ``round(i (H - s) / (g - 1))``, ``i = 0 .. g-1``, and column offsets likewise
  with W.

Here ``K = C - 1`` is the number of cued classes and ``round`` rounds half up. For 10 classes the
grid is 3 x 3 (class 0 top-left, 2 top-right, 4 centre, 8 bottom-right, class 9 none): box
offsets 0, 15, 29 on 32x32 images, 0, 13, 25 on 28x28, and 2x2 patches at 0, 3, 6 on 8x8
digits; MNIST-1D segments start at 0, 5, 9, 14, 19, 23, 28, 32, 37. CIFAR-100 (99 cued classes)
uses a 10 x 10 grid. Boxes of different classes never overlap (checked: ``g s <= H`` and
``<= W``; ``K s <= L`` in 1-D).

Default cue values: 1.0 in every channel for single-channel images (white, the top of the
[0, 1] range), ``(1, 0, 1)`` (magenta, rare in natural images) for RGB images, and 3.0 for 1-D
signals (MNIST-1D is standardised, so 3 standard deviations: a flat plateau unlike the data).
Any value, one per channel or one for all, can be given as ``cue_value``.

Training set: in each cued class c with ``n_c`` training samples, exactly
``floor(p n_c + 1/2)`` samples, chosen uniformly without replacement, carry the class's cue; the
others and all samples of class C-1 carry none. The i.i.d. test set (``Dataset.test``) follows
the same rule with its own draw. The counterfactual test sets are built from the clean test split:

- ``"cue-none"``: no cue on any sample.
- ``"cue"``: every sample carries its own class's cue (class C-1: none).
- ``"cue-random"``: every sample carries the cue of a class drawn uniformly from the cued classes
  other than its label (so the cue never agrees with the label; class C-1 samples draw from all
  K cued classes).
- ``"image-random"``: sample i shows the clean input of a test sample j drawn uniformly among
  those whose label differs from ``y_i``, carrying the cue of ``y_i`` (none if ``y_i = C - 1``),
  labelled ``y_i``. A model that reads the cue is right; one that reads the image is wrong.

All keep the test labels. The base dataset's OOD sets are kept unchanged (no cue). Which class's
cue each sample carries is in :attr:`SpuriousDataset.cue_class`, and the source of each
``image-random`` input in :attr:`SpuriousDataset.image_source`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmkern.data._arrays import ArraySplit, Dataset
from mmkern._validate import check_float, check_int
from mmkern.data._checks import check_seed, derive_rng

__all__ = ["COUNTERFACTUAL_SETS", "SpuriousCue", "SpuriousDataset", "make_spurious",
           "cue_layout", "cued_count"]

COUNTERFACTUAL_SETS: tuple[str, ...] = ("cue-none", "cue", "cue-random", "image-random")
"""Names of the four counterfactual test sets in ``SpuriousDataset.ood``."""

NO_CUE = -1
"""The value of :attr:`SpuriousDataset.cue_class` for a sample without a cue."""


def _round_half_up(v: float) -> int:
    return int(math.floor(v + 0.5))


def _offsets(extent: int, size: int, count: int) -> list[int]:
    if count == 1:
        return [_round_half_up((extent - size) / 2)]
    return [_round_half_up(i * (extent - size) / (count - 1)) for i in range(count)]


@dataclass(frozen=True, eq=False)
class SpuriousCue:
    """Where and what the cue of each class is.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, L)`` or ``(C, H, W)``.
    num_classes : int
        Number of classes; classes ``0 .. num_classes - 2`` have a cue, the last has none.
    size : int
        Segment length (1-D) or box side (2-D), in samples / pixels.
    value : tuple of float
        The value pasted in each channel, length C.
    positions : tuple of tuple of int
        Per cued class, the start offset ``(o,)`` (1-D) or ``(row, col)`` (2-D).
    """

    input_shape: tuple[int, ...]
    num_classes: int
    size: int
    value: tuple[float, ...]
    positions: tuple[tuple[int, ...], ...]

    @property
    def no_cue_class(self) -> int:
        """The class without a cue (the last one)."""
        return self.num_classes - 1

    def region(self, cls: int) -> tuple[slice, ...]:
        """Index of class ``cls``'s cue within one input (over all channels).

        Raises
        ------
        ValueError
            If ``cls`` has no cue (the last class) or is out of range.
        """
        cls = check_int(cls, "cls", low=0, high=self.num_classes - 2)
        return (slice(None),) + tuple(slice(o, o + self.size) for o in self.positions[cls])

    def mask(self, cls: int) -> np.ndarray:
        """Boolean mask of shape ``input_shape``, True where class ``cls``'s cue sits."""
        m = np.zeros(self.input_shape, dtype=bool)
        if cls != self.no_cue_class:
            m[self.region(cls)] = True
        return m

    def has_cue(self, x: np.ndarray, cls: int) -> np.ndarray:
        """Whether each input carries class ``cls``'s cue exactly, shape (n,) bool.

        Parameters
        ----------
        x : numpy.ndarray, shape (n, *input_shape)
        cls : int
            A cued class.
        """
        patch = np.asarray(x)[(slice(None),) + self.region(cls)]
        value = np.asarray(self.value, dtype=np.float32).reshape((1, -1) + (1,) * (patch.ndim - 2))
        return (patch == value).reshape(len(patch), -1).all(axis=1)

    def paste(self, x: np.ndarray, cue_class: np.ndarray) -> np.ndarray:
        """A copy of ``x`` with each sample's cue pasted over it.

        Parameters
        ----------
        x : numpy.ndarray of float32, shape (n, *input_shape)
        cue_class : numpy.ndarray of int, shape (n,)
            The class whose cue each sample receives; ``-1`` or the last class for none.

        Returns
        -------
        numpy.ndarray of float32, shape (n, *input_shape)
        """
        out = np.array(x, dtype=np.float32, copy=True, order="C")
        value = np.asarray(self.value, dtype=np.float32).reshape((-1,) + (1,) * (out.ndim - 2))
        for cls in range(self.num_classes - 1):
            idx = np.flatnonzero(cue_class == cls)
            if len(idx):
                out[(idx,) + self.region(cls)] = value
        return out

    def to_info(self) -> dict[str, Any]:
        """JSON-serialisable description."""
        return {"size": self.size, "value": list(self.value), "no_cue_class": self.no_cue_class,
                "positions": {str(c): list(p) for c, p in enumerate(self.positions)}}


def cue_layout(input_shape: tuple[int, ...], num_classes: int, *, cue_size: int | None = None,
               cue_value: float | tuple[float, ...] | None = None) -> SpuriousCue:
    """The cue geometry for one input shape (see the module docstring).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, L)`` for 1-D signals or ``(C, H, W)`` for images.
    num_classes : int
        At least 2.
    cue_size : int, optional
        Segment length or box side; default 3 in 1-D, 2 for images smaller than 16 pixels,
        else 3.
    cue_value : float or sequence of float, optional
        One value for all channels or one per channel; defaults in the module docstring.

    Returns
    -------
    SpuriousCue

    Raises
    ------
    ValueError
        If the shape is not 2- or 3-D, or the cues of all classes do not fit without overlap.
    """
    shape = tuple(int(s) for s in input_shape)
    num_classes = check_int(num_classes, "num_classes", low=2)
    if len(shape) not in (2, 3):
        raise ValueError(f"spurious cues need inputs of shape (C, L) or (C, H, W), got {shape}")
    channels = shape[0]
    cued = num_classes - 1
    if cue_size is None:
        cue_size = 3 if len(shape) == 2 or min(shape[1:]) >= 16 else 2
    size = check_int(cue_size, "cue_size", low=1)
    if cue_value is None:
        if len(shape) == 2:
            cue_value = 3.0
        elif channels == 3:
            cue_value = (1.0, 0.0, 1.0)
        else:
            cue_value = 1.0
    if isinstance(cue_value, numbers.Real):
        value = (check_float(cue_value, "cue_value"),) * channels
    else:
        value = tuple(check_float(v, "cue_value entry") for v in cue_value)
        if len(value) != channels:
            raise ValueError(f"cue_value needs 1 or {channels} values (one per channel), "
                             f"got {len(value)}")
    value = tuple(float(np.float32(v)) for v in value)
    if len(shape) == 2:
        length = shape[1]
        if cued * size > length:
            raise ValueError(f"{cued} cue segments of length cue_size={size} do not fit in "
                             f"length {length} without overlap; use a smaller cue_size")
        positions = tuple((o,) for o in _offsets(length, size, cued))
    else:
        g = math.isqrt(cued)
        g = g if g * g >= cued else g + 1
        h, w = shape[1:]
        if g * size > h or g * size > w:
            raise ValueError(f"a {g}x{g} grid of {size}x{size} cue boxes ({cued} classes) does "
                             f"not fit in {h}x{w} images without overlap; use a smaller cue_size")
        rows, cols = _offsets(h, size, g), _offsets(w, size, g)
        positions = tuple((rows[c // g], cols[c % g]) for c in range(cued))
    return SpuriousCue(shape, num_classes, size, value, positions)


def cued_count(n: int, p: float) -> int:
    """How many of ``n`` samples of a cued class carry the cue: ``floor(p n + 1/2)``."""
    return _round_half_up(p * n)


@dataclass(frozen=True, eq=False, repr=False)
class SpuriousDataset(Dataset):
    """A :class:`Dataset` with a class-determined spurious cue (see :func:`make_spurious`).

    Extra attributes
    ----------------
    cue : SpuriousCue
        The cue geometry and value.
    p : float
        Fraction of each cued class's training samples carrying the cue.
    cue_class : dict of str to numpy.ndarray of int64
        For ``"train"``, ``"test"`` and every key of ``ood``: per sample, the class whose cue it
        carries, or -1 for none. Shape (n,) of that split.
    image_source : numpy.ndarray of int64, shape (n_test,)
        For ``"image-random"``: the index in the clean test split of each shown input.
    """

    cue: SpuriousCue | None = None
    p: float = 1.0
    cue_class: dict[str, np.ndarray] = field(default_factory=dict)
    image_source: np.ndarray | None = None


def _assign(y: np.ndarray, p: float, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    cue_class = np.full(len(y), NO_CUE, dtype=np.int64)
    for cls in range(num_classes - 1):
        idx = np.flatnonzero(y == cls)
        chosen = rng.choice(idx, size=cued_count(len(idx), p), replace=False)
        cue_class[chosen] = cls
    return cue_class


def make_spurious(dataset: Dataset, p: float, *, seed: int = 0, cue_size: int | None = None,
                  cue_value: float | tuple[float, ...] | None = None) -> SpuriousDataset:
    """The spurious-cue version of a dataset, with its four counterfactual test sets.

    Parameters
    ----------
    dataset : Dataset
        Base dataset with inputs ``(C, L)`` or ``(C, H, W)``; it is not modified.
    p : float
        Cue proportion in (0, 1]: the fraction of each cued class's training samples carrying
        the cue (count rule in the module docstring).
    seed : int, optional
        Seed of the cue assignment and the counterfactual draws.
    cue_size, cue_value : optional
        Override the cue geometry and value (see :func:`cue_layout`).

    Returns
    -------
    SpuriousDataset
        Named ``"<base name>-spurious"``; ``train`` and ``test`` carry the cue with proportion p;
        ``ood`` holds ``"cue-none"``, ``"cue"``, ``"cue-random"``, ``"image-random"`` followed by
        the base OOD sets (unchanged). Inputs are float32 ``(n, *input_shape)``, labels int64.

    Raises
    ------
    TypeError
        If ``dataset`` is not a :class:`Dataset` or an argument has the wrong type.
    ValueError
        If ``p`` is not in (0, 1], the base already has an OOD set named like a counterfactual
        set, or the cues do not fit the input shape.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a Dataset, got {type(dataset).__name__}")
    p = check_float(p, "p", low=0.0, high=1.0, low_open=True)
    seed = check_seed(seed)
    if dataset.num_classes < 3:
        raise ValueError("make_spurious needs at least 3 classes (2 with a cue, for cue-random), "
                         f"got num_classes={dataset.num_classes}")
    clash = set(COUNTERFACTUAL_SETS) & set(dataset.ood)
    if clash:
        raise ValueError(f"dataset already has OOD sets named {sorted(clash)}; "
                         "is it already spurious?")
    cue = cue_layout(dataset.input_shape, dataset.num_classes, cue_size=cue_size,
                     cue_value=cue_value)
    k = dataset.num_classes - 1  # the class without a cue, and the number of cued classes
    train_y, test_x, test_y = dataset.train.y, dataset.test.x, dataset.test.y

    train_cue = _assign(train_y, p, dataset.num_classes, derive_rng(seed, "spurious", "train"))
    test_cue = _assign(test_y, p, dataset.num_classes, derive_rng(seed, "spurious", "test"))
    own_cue = np.where(test_y < k, test_y, NO_CUE)

    # cue-random: uniform over cued classes other than the label.
    rng = derive_rng(seed, "spurious", "cue-random")
    draw = rng.integers(0, k, size=len(test_y))  # for label k (no cue): any cued class
    other = rng.integers(0, k - 1, size=len(test_y))  # for label < k: skip the label
    random_cue = np.where(test_y < k, other + (other >= test_y), draw).astype(np.int64)

    # image-random: input of a uniformly drawn sample with a different label.
    rng = derive_rng(seed, "spurious", "image-random")
    order = np.argsort(test_y, kind="stable")
    counts = np.bincount(test_y, minlength=dataset.num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)])
    n_other = len(test_y) - counts[test_y]
    if len(test_y) and np.any(n_other == 0):
        raise ValueError("image-random needs test samples of at least two classes")
    r = np.floor(rng.random(len(test_y)) * n_other).astype(np.int64)
    r = np.minimum(r, n_other - 1)
    # Position r among the sorted samples, skipping the block of the sample's own class.
    pos = np.where(r < starts[test_y], r, r + counts[test_y])
    image_source = order[pos].astype(np.int64)

    sets = {
        "cue-none": ArraySplit(test_x.copy(), test_y.copy()),
        "cue": ArraySplit(cue.paste(test_x, own_cue), test_y.copy()),
        "cue-random": ArraySplit(cue.paste(test_x, random_cue), test_y.copy()),
        "image-random": ArraySplit(cue.paste(test_x[image_source], own_cue), test_y.copy()),
    }
    cue_class = {"train": train_cue, "test": test_cue,
                 "cue-none": np.full(len(test_y), NO_CUE, dtype=np.int64),
                 "cue": own_cue.astype(np.int64), "cue-random": random_cue,
                 "image-random": own_cue.astype(np.int64).copy()}
    for name, split in dataset.ood.items():
        sets[name] = split
        cue_class[name] = np.full(len(split), NO_CUE, dtype=np.int64)

    def per_class(assigned: np.ndarray, y: np.ndarray) -> list[int]:
        return [int(np.sum((y == c) & (assigned == c))) for c in range(k)]

    info = {
        "name": f"{dataset.name}-spurious",
        "spurious": {
            "p": p,
            "seed": seed,
            "cue": cue.to_info(),
            "count_rule": "per cued class: floor(p * n_c + 1/2) samples, uniformly without "
                          "replacement",
            "train_cued_per_class": per_class(train_cue, train_y),
            "test_cued_per_class": per_class(test_cue, test_y),
            "cue_random": "cue of a class drawn uniformly from the cued classes other than "
                          "the label",
            "image_random": "input of a sample drawn uniformly among those with another label, "
                            "with the cue of the original label",
            "counterfactual_sets": list(COUNTERFACTUAL_SETS),
        },
        "base": dataset.info,
    }
    return SpuriousDataset(
        name=f"{dataset.name}-spurious",
        train=ArraySplit(cue.paste(dataset.train.x, train_cue), train_y.copy()),
        test=ArraySplit(cue.paste(test_x, test_cue), test_y.copy()),
        num_classes=dataset.num_classes,
        input_shape=dataset.input_shape,
        ood=sets,
        info=info,
        cue=cue,
        p=p,
        cue_class=cue_class,
        image_source=image_source,
    )
