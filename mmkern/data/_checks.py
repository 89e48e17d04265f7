"""Argument checks and seed derivation shared by the dataset modules.

Every random draw in :mod:`mmkern.data` comes from a NumPy ``Generator`` derived from the user's
``seed`` and a fixed tuple of labels naming the purpose (e.g. ``("corruption",
"gaussian_noise")``), so each draw is reproducible on its own and independent of the others,
and nothing touches the global NumPy or ``random`` state.
"""

from __future__ import annotations

import numbers
import zlib
from typing import Any, Iterable, Sequence

import numpy as np

from mmkern._validate import check_int


def check_seed(seed: Any, name: str = "seed") -> int:
    """Return ``seed`` as a Python int in [0, 2**32).

    Raises
    ------
    TypeError
        If ``seed`` is not an integer (booleans are rejected).
    ValueError
        If ``seed`` is negative or not below 2**32.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**32:
        raise ValueError(f"{name} must be in [0, 2**32), got {seed}")
    return seed


def _label_word(label: str | int) -> int:
    if isinstance(label, str):
        return zlib.crc32(label.encode("utf-8"))
    return int(label)


def derive_seed(seed: int, *labels: str | int) -> int:
    """A 32-bit seed derived from ``seed`` and the purpose ``labels`` (stable across runs)."""
    entropy = [seed, *(_label_word(label) for label in labels)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0])


def derive_rng(seed: int, *labels: str | int) -> np.random.Generator:
    """A ``numpy.random.Generator`` for one purpose, derived from ``seed`` and ``labels``."""
    entropy = [seed, *(_label_word(label) for label in labels)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def check_names(values: Iterable[str] | str | None, name: str,
                valid: Sequence[str]) -> tuple[str, ...]:
    """A tuple of distinct names from ``valid``; ``None`` means none. A lone str is one name."""
    if values is None:
        return ()
    if isinstance(values, str):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of str, got {type(values).__name__}") from None
    for v in values:
        if not isinstance(v, str):
            raise TypeError(f"{name} must contain str, got {type(v).__name__}")
        if v not in valid:
            raise ValueError(f"{name}: unknown {v!r}; valid: {', '.join(valid)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} contains duplicates: {values}")
    return values


def check_severities(values: Iterable[int] | int | None, name: str = "ood_severities",
                     low: int = 1, high: int = 5) -> tuple[int, ...]:
    """Distinct severities in ``[low, high]`` as a tuple; None means none; a lone int is one."""
    if values is None:
        return ()
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of int, got {type(values).__name__}") from None
    out = tuple(check_int(v, f"{name} entry", low=low, high=high) for v in values)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} contains duplicates: {out}")
    return out
