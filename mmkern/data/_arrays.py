"""The two containers every loader returns: :class:`ArraySplit` and :class:`Dataset`.

Conventions (the contract the training module relies on):

- inputs ``x`` are float32, C-contiguous, shape ``(n, *input_shape)``; images are channel-first
  ``(C, H, W)`` with values in [0, 1] (no mean/std normalisation is baked in: normalise in the
  model or the training loop if you want it); 1-D signals are ``(C, L)`` (MNIST-1D: ``(1, 40)``,
  standardised by its generator);
- labels ``y`` are int64, shape ``(n,)``, values in ``[0, num_classes)``;
- ``info`` is JSON-serialisable (plain dicts, lists, strings, numbers, booleans, None).

Both classes are frozen dataclasses compared by identity (``eq=False``): the arrays inside are
NumPy arrays, for which field-wise ``==`` has no single truth value.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ArraySplit", "Dataset"]


@dataclass(frozen=True, eq=False)
class ArraySplit:
    """One labelled set of samples.

    Parameters
    ----------
    x : array_like of floating dtype, shape (n, *input_shape)
        Inputs. Stored as float32, C-contiguous (converted only if needed). Integer inputs are
        rejected rather than silently cast (raw uint8 images must be scaled first).
    y : array_like of integer dtype, shape (n,)
        Class labels. Stored as int64.

    Raises
    ------
    TypeError
        If ``x`` is not floating or ``y`` is not integer.
    ValueError
        If ``x`` has fewer than 2 dimensions, ``y`` is not 1-D, or their lengths differ.
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        x = np.asarray(self.x)
        y = np.asarray(self.y)
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"ArraySplit: x must have a floating dtype, got {x.dtype}")
        if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
            raise TypeError(f"ArraySplit: y must have an integer dtype, got {y.dtype}")
        if x.ndim < 2:
            raise ValueError(f"ArraySplit: x must have shape (n, *input_shape), got {x.shape}")
        if y.ndim != 1:
            raise ValueError(f"ArraySplit: y must have shape (n,), got {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"ArraySplit: x has {x.shape[0]} samples but y has {y.shape[0]}")
        object.__setattr__(self, "x", np.ascontiguousarray(x, dtype=np.float32))
        object.__setattr__(self, "y", np.ascontiguousarray(y, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        return f"ArraySplit(x: float32{self.x.shape}, y: int64{self.y.shape})"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset: training set, i.i.d. test set and named out-of-distribution test sets.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``"mnist1d"``, ``"digits"``, ``"cifar10"``, ``"mnist1d-spurious"``.
    train : ArraySplit
        Training set.
    test : ArraySplit
        The i.i.d. test set (same distribution as ``train``).
    num_classes : int
        Number of classes C; every label is in ``[0, C)``.
    input_shape : tuple of int
        Shape of one input: ``(1, 40)`` for MNIST-1D, ``(1, 8, 8)`` digits, ``(1, 28, 28)``
        MNIST / Fashion-MNIST, ``(3, 32, 32)`` CIFAR / SVHN.
    ood : dict of str to ArraySplit
        Named shifted or counterfactual test sets (e.g. ``"noise-3"``, ``"gaussian_noise-5"``,
        ``"cue-random"``). Empty when there are none.
    info : dict
        JSON-serialisable description: generator parameters, seeds, split rule, source files,
        and the exact parameters of every OOD set.

    Raises
    ------
    TypeError, ValueError
        If the splits' input shapes differ from ``input_shape``, a label is outside
        ``[0, num_classes)``, or ``info`` is not JSON-serialisable.
    """

    name: str
    train: ArraySplit
    test: ArraySplit
    num_classes: int
    input_shape: tuple[int, ...]
    ood: dict[str, ArraySplit] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Dataset: name must be a non-empty str, got {self.name!r}")
        if not isinstance(self.num_classes, numbers.Integral) or self.num_classes < 2:
            raise ValueError(f"Dataset: num_classes must be an int >= 2, got {self.num_classes!r}")
        object.__setattr__(self, "num_classes", int(self.num_classes))
        shape = tuple(int(s) for s in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "ood", dict(self.ood))
        for key in self.ood:
            if not isinstance(key, str):
                raise TypeError(f"Dataset: ood keys must be str, got {key!r}")
        splits = {"train": self.train, "test": self.test}
        splits.update({f"ood[{k!r}]": v for k, v in self.ood.items()})
        for where, split in splits.items():
            if not isinstance(split, ArraySplit):
                raise TypeError(f"Dataset: {where} must be an ArraySplit, "
                                f"got {type(split).__name__}")
            if split.x.shape[1:] != shape:
                raise ValueError(f"Dataset: {where} has inputs of shape {split.x.shape[1:]}, "
                                 f"expected input_shape {shape}")
            if len(split) and (split.y.min() < 0 or split.y.max() >= self.num_classes):
                raise ValueError(f"Dataset: {where} has labels outside [0, {self.num_classes})")
        try:
            json.dumps(self.info)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Dataset: info must be JSON-serialisable ({exc})") from None

    def __repr__(self) -> str:
        ood = ", ".join(self.ood) or "none"
        return (f"{type(self).__name__}({self.name!r}: train {len(self.train)}, "
                f"test {len(self.test)}, {self.num_classes} classes, "
                f"input_shape {self.input_shape}, ood: {ood})")
