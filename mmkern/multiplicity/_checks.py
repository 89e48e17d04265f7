"""The rules of the predictive-multiplicity metrics that both routes apply: constants, checks and
their messages, the class-code widths, the Rashomon capacity's reported value and warning, and
the result type.

The host route (:mod:`mmkern.multiplicity._host`) and the device route
(:mod:`mmkern.multiplicity._device`) compute the statistics these functions judge (on NumPy
arrays or torch tensors; the functions use only operations both share), so the two accept and
reject the same inputs with the same messages. The soft-metric codes are read from ``mmkern._C``,
where the C++ headers define them.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmkern import _C
from mmkern._backend import array_module, host_floats
from mmkern._validate import check_choice, check_positive, check_positive_int

PROB_ATOL = {"float16": 2e-3, "bfloat16": 1e-2, "float32": 1e-4, "float64": 1e-6}
"""How far from 1 a row of probabilities may sum, per input dtype (before float16 and bfloat16 are
upcast): a softmax rounded to float16 sums to 1 within about its eps / 2 = 5e-4, to bfloat16
within 4e-3."""

LOGITS_HINT = 0.05
"""Rows summing further than this from 1 look like logits, and the message says so; closer ones
look like rounded or truncated probabilities, and the message suggests renormalising."""

CAPACITY_WARN_GAP = 1e-3
"""Rashomon capacity warns when a sample stops at ``max_iter`` with its capacity bounds more than
this many nats apart: its value (a lower bound) may then be off by more than 0.1%."""

SOFT_METRICS: dict = dict(_C.SOFT_METRICS)
"""Soft disagreement metrics and their kernel codes: "tv", "js", "hellinger", "kl"."""


@dataclass(frozen=True)
class PredictiveMultiplicity:
    """Predictive multiplicity of a population on one evaluation set.

    Population figures are floats; per-sample arrays have shape (n,) and the input's array kind.
    Fields that need labels are None without them; ``correct`` / ``incorrect`` are the same
    summary restricted to the samples the reference model (else the majority vote) gets right /
    wrong, or None when that subset is empty.
    """

    n_models: int
    n_samples: int
    n_classes: int
    disagreement: Any
    mean_disagreement: float
    ambiguity: float
    discrepancy: float
    prediction_variance: float
    rashomon_capacity: float
    sample_disagreement: Any
    sample_variance: Any
    sample_rashomon_capacity: Any
    viable_prediction_range: Any
    reference: int | None = None
    accuracy: Any = None
    accuracy_mean: float | None = None
    accuracy_spread: float | None = None
    correct: "PredictiveMultiplicity | None" = None
    incorrect: "PredictiveMultiplicity | None" = None


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------


def check_models(m: int, name: str) -> None:
    if m < 2:
        raise ValueError(f"{name} must hold at least 2 models (axis 0), got {m}")


def check_probability_shape(shape, name: str) -> None:
    """(M, n, C) with M >= 2 models and no empty axis."""
    if len(shape) != 3:
        raise ValueError(f"{name} must be 3-D (models, samples, classes), got shape {tuple(shape)}")
    check_models(shape[0], name)
    if shape[1] == 0 or shape[2] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}); it needs samples and classes")


def check_probability_stats(nonfinite: int, negative: int, min_sum: float, max_sum: float, dtype: str,
                            name: str) -> None:
    """The verdict on a probability array from its counts of non-finite and negative entries and
    its smallest and largest row sums (``dtype``: the name of the input's dtype, before upcasting)."""
    if nonfinite:
        raise ValueError(f"{name} contains NaN or infinity ({int(nonfinite)} entries)")
    if negative:
        raise ValueError(f"{name} has {int(negative)} negative entries; probabilities must be >= 0 "
                         "(pass from_logits=True for logits)")
    atol = PROB_ATOL[dtype]
    if min_sum < 1 - atol or max_sum > 1 + atol:
        far = min_sum < 1 - LOGITS_HINT or max_sum > 1 + LOGITS_HINT
        hint = "pass from_logits=True for logits" if far else "renormalise them (p / p.sum(-1, keepdims=True))"
        raise ValueError(
            f"rows of {name} must sum to 1 within {atol:g} for {dtype} input (found sums from "
            f"{min_sum:.6g} to {max_sum:.6g}); {hint}"
        )


def check_preds_shape(shape, name: str = "preds") -> int:
    """The dimensionality (2: labels, 3: scores) of disagreement_matrix's ``preds``."""
    if len(shape) not in (2, 3):
        raise ValueError(f"{name} must be (M, n) labels or (M, n, C) scores, got shape {tuple(shape)}")
    check_models(shape[0], name)
    if 0 in tuple(shape)[1:]:
        what = "; it needs samples" if len(shape) == 2 else ""
        raise ValueError(f"{name} is empty (shape {tuple(shape)}){what}")
    return len(shape)


def class_range(lo: int, hi: int, name: str, n_classes: int | None) -> None:
    """``ValueError`` for a label below 0 or (with ``n_classes``) not below ``n_classes``, from the
    labels' smallest and largest values."""
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        bad = lo if lo < 0 else hi
        what = f"the class range [0, {n_classes})" if n_classes is not None else "the labels >= 0"
        raise ValueError(f"{name} holds the label {bad}, outside {what}")


def check_labels_shape(shape, n: int, probs_shape) -> None:
    if tuple(shape) != (n,):
        raise ValueError(f"labels must have shape ({n},) to match probs {tuple(probs_shape)}, got {tuple(shape)}")


def code_bits(max_code: int) -> int:
    """Bits of the packed class codes whose largest value is ``max_code``: 8, 16 or 32. Labels of
    2**16 and beyond are replaced by their ranks among the distinct labels first (so that
    ``max_code`` is below the number of distinct labels)."""
    return 8 if max_code < 256 else 16 if max_code < 2**16 else 32


def check_reference(reference: Any, m: int) -> int | None:
    if reference is None:
        return None
    if isinstance(reference, (bool, np.bool_)) or not isinstance(reference, numbers.Integral):
        raise TypeError(f"reference must be a model index (int), got {type(reference).__name__}")
    if not 0 <= reference < m:
        raise ValueError(f"reference={reference} is not a model index in [0, {m})")
    return int(reference)


def check_soft_metric(metric: Any) -> int:
    return SOFT_METRICS[check_choice(metric, "metric", SOFT_METRICS)]


def capacity_args(tol: float, max_iter: int) -> tuple[float, int]:
    return check_positive(tol, "tol"), check_positive_int(max_iter, "max_iter")


# ---------------------------------------------------------------------------------------------
# the Rashomon capacity's reported value, and the population summary
# ---------------------------------------------------------------------------------------------


def capacity_values(capacity, gaps, n_classes: int, tol: float, max_iter: int):
    """The reported Rashomon capacity min(C, e^capacity) of Blahut-Arimoto's per-sample capacity
    in nats (its lower bound), for every route; a ``RuntimeWarning`` when samples stopped at
    ``max_iter`` with their bounds more than ``max(tol, CAPACITY_WARN_GAP)`` nats apart.
    ``capacity`` and ``gaps`` are (n,) float64 NumPy arrays or torch tensors; so is the result."""
    xp = array_module(capacity)
    values = xp.clip(xp.exp(capacity), None, float(n_classes))
    loose = gaps > max(tol, CAPACITY_WARN_GAP)
    n_loose, worst = host_floats([loose.sum(), gaps.max()])
    if n_loose:
        warnings.warn(
            f"Rashomon capacity: {int(n_loose)} of {len(gaps)} samples reached max_iter={max_iter} "
            f"with capacity bounds up to {worst:.2g} nats apart; their values are lower bounds. "
            "Raise max_iter for tighter values.",
            RuntimeWarning,
            stacklevel=3,
        )
    return values
