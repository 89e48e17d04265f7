"""The one validation vocabulary of mmkern's options: every public function checks its scalar
options with these helpers, so the same mistake gets the same exception everywhere.

The rule: a value of the wrong *type* (a str or float where an int is expected, a str where a
bool is expected, a list where a name is expected) raises ``TypeError``; a value of the right
type outside its range (a negative size, NaN, an unknown name) raises ``ValueError``. Both name
the argument. bool is never taken as a number, and no truthiness is read from strings or arrays.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import numpy as np


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int within ``[low, high]`` (either bound optional)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be {_bounds(low, high, False, False)}, got {value}")
    return value


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    """``">= 1"``, ``"< 1"`` or ``"in (0, 1]"``: the words for a range."""
    lo, hi = (f"{b:g}" if isinstance(b, float) else b for b in (low, high))
    if high is None:
        return f"{'>' if low_open else '>='} {lo}"
    if low is None:
        return f"{'<' if high_open else '<='} {hi}"
    return f"in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"


def check_positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1."""
    return check_int(value, name, low=1)


def check_batch_size(batch_size: Any) -> int:
    """A batch size: an int >= 1."""
    return check_positive_int(batch_size, "batch_size")


def check_float(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the given bounds (open or closed)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        words = "finite" if low is None and high is None else f"{_bounds(low, high, low_open, high_open)} (finite)"
        raise ValueError(f"{name} must be {words}, got {value}")
    return value


def check_positive(value: Any, name: str) -> float:
    """``value`` as a finite float > 0."""
    return check_float(value, name, low=0.0, low_open=True)


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a bool (NumPy booleans accepted; ints, strings and arrays rejected)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool (True or False), got {type(value).__name__} {value!r}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Iterable[str]) -> str:
    """``value`` as one of the names ``choices``."""
    choices = tuple(choices)
    listed = ", ".join(map(repr, choices))
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {listed}; got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
    return value
