"""The host route of the predictive-multiplicity metrics: NumPy arrays and torch CPU tensors over
``mmkern._C`` (``csrc/multiplicity.h``).

Inputs are viewed as NumPy arrays without copies; where a kernel needs C-contiguous input, the
copy is made visibly here. The device route (:mod:`mmkern.multiplicity._device`) has the same
entry points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmkern import _C
from mmkern._backend import as_host_array, is_torch, to_kind
from mmkern._dtypes import dtype_name, float_array, integer_array
from mmkern.multiplicity._checks import (
    check_labels_shape,
    check_probability_shape,
    check_probability_stats,
    class_range,
    code_bits,
)


as_array = as_host_array  # a NumPy view of a host input (lists become arrays)


def probabilities(probs: Any, name: str = "probs", from_logits: bool = False) -> np.ndarray:
    """A validated C-contiguous float32/float64 (M, n, C) array of probabilities (float64 from
    logits, by a float64 softmax)."""
    arr = as_array(probs, name)
    check_probability_shape(arr.shape, name)
    source = dtype_name(probs.dtype) if is_torch(probs) else arr.dtype.name  # NumPy has no bfloat16
    arr = float_array(arr, name)
    if from_logits:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity")
        z = arr.astype(np.float64) - arr.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    arr = np.ascontiguousarray(arr)
    check = _C.check_probabilities(arr)
    check_probability_stats(check["nonfinite"], check["negative"], check["min_sum"], check["max_sum"], source, name)
    return arr


def scores(preds: np.ndarray, name: str = "preds") -> tuple[np.ndarray, int]:
    """Hard class codes (M, n) of validated-shape (M, n, C) float scores (argmax, lowest class on
    ties) and their largest possible value."""
    if not np.issubdtype(preds.dtype, np.floating):
        raise TypeError(f"3-D {name} must be float scores (M, n, C), got dtype {preds.dtype}")
    arr = float_array(preds, name)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return hard_codes(np.ascontiguousarray(arr)), arr.shape[2] - 1


def hard_codes(probs: np.ndarray) -> np.ndarray:
    """uint8/uint16 argmax codes (M, n) of a C-contiguous (M, n, C) array."""
    return _C.argmax_codes(probs, 8 if code_bits(probs.shape[2] - 1) == 8 else 16)


def label_codes(labels: Any, name: str = "preds") -> tuple[np.ndarray, int]:
    """Validated (labels >= 0) compact C-contiguous class codes of 2-D integer labels and their
    largest value: the labels themselves as uint8 (one fused C++ pass, the common case) or
    uint16, else their ranks among the distinct labels (uint16 or uint32)."""
    labels = integer_array(labels, name)
    codes, lo, hi = _C.pack_labels(labels)
    class_range(lo, hi, name, None)
    bits = code_bits(hi)
    if bits == 8:
        return codes, hi
    if bits == 16:
        return np.ascontiguousarray(labels, dtype=np.uint16), hi
    distinct, ranks = np.unique(labels, return_inverse=True)
    dtype = np.uint16 if code_bits(len(distinct) - 1) <= 16 else np.uint32
    return np.ascontiguousarray(ranks.reshape(labels.shape), dtype=dtype), len(distinct) - 1


def true_labels(labels: Any, probs: np.ndarray) -> np.ndarray:
    """Validated int64 labels (n,) for probabilities (M, n, C)."""
    arr = integer_array(as_array(labels, "labels"), "labels")
    check_labels_shape(arr.shape, probs.shape[1], probs.shape)
    if arr.size:
        class_range(int(arr.min()), int(arr.max()), "labels", probs.shape[2])
    return arr.astype(np.int64)


def disagreement_rates(codes: np.ndarray, max_code: int) -> np.ndarray:
    """(M, M) float64 fraction of samples on which each pair of code rows differs (the codes'
    dtype already fits ``max_code``)."""
    return _C.disagreement_counts(np.ascontiguousarray(codes)) / codes.shape[1]


def soft_disagreement(p: np.ndarray, metric: int) -> np.ndarray:
    return _C.soft_disagreement(p, metric)


def capacities(p: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample Blahut-Arimoto capacity in nats and the final gap of its bounds, (n,) each."""
    return _C.rashomon_capacity(p, tol, max_iter)


def sample_statistics(p: np.ndarray, codes: np.ndarray, target: np.ndarray | None) -> dict:
    """Per-sample statistics (csrc/multiplicity.h, sample_statistics)."""
    return _C.sample_statistics(p, codes, None if target is None else np.ascontiguousarray(target, np.int64))


def float64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


result = to_kind  # a host result as the inputs' array kind
