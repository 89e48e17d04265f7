"""Predictive multiplicity: how differently a population of models predicts.

Populations are model-first: hard labels ``(M, n)`` (integers) or probabilities ``(M, n, C)``
(float32 or float64). Definitions (the contract; ``mmkern.reference`` implements them literally):

- **disagreement** D[i, j]: fraction of samples on which the hard predictions (argmax, lowest
  class on ties) of models i and j differ (the churn between them).
- **soft disagreement**, mean over samples of: ``"tv"`` 1/2 ||p_i - p_j||_1; ``"js"`` the
  Jensen-Shannon divergence (nats, in [0, ln 2]); ``"hellinger"`` sqrt(1/2 sum (sqrt p_i -
  sqrt p_j)^2); ``"kl"`` KL(p_i || p_j) (nats; entry [i, j], not symmetric; +inf when model j gives
  zero probability to a class model i does not, never NaN).
- **ambiguity** (Marx et al. 2020): fraction of samples on which not all models agree (with a
  reference model r in the population this equals the fraction where some model differs from r);
  **discrepancy**: max over models m of the fraction where m differs from r, or without a
  reference the largest pairwise disagreement.
- **prediction variance**: mean over samples and classes of the across-model variance (ddof=0)
  of p_m(x)_c; per sample, **vote disagreement** 1 - max_c (fraction of models predicting c).
- **viable prediction range**: per sample, max_m - min_m of p_m(x)_t for the true class t (or the
  reference model's, else the majority vote's, prediction when no labels are given).
- **Rashomon capacity** (Hsu & Calmon 2022): per sample, the capacity of the channel whose rows
  are the M model output distributions, by Blahut-Arimoto from uniform weights until the upper and
  lower capacity bounds are within ``tol`` nats (default 1e-6; or ``max_iter`` iterations),
  reported as exp(lower bound) = 2^(capacity in bits), in [1, C].

Probabilities are validated (finite, non-negative, each row summing to 1 within
:data:`PROB_ATOL`); logits are accepted only with ``from_logits=True`` (softmax in float64), never
guessed. Labels may be any integer dtype. Inputs may be NumPy arrays, torch tensors or CuPy arrays;
results are float64 of the input's array kind. Device inputs (CUDA tensors, CuPy arrays) are
computed on their device by :mod:`mmkern._gpu.multiplicity`, and the results stay there.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmkern import _C
from mmkern._backend import common_kind, kind_of, to_host, to_kind
from mmkern._dtypes import float_array

__all__ = [
    "CAPACITY_WARN_GAP",
    "PROB_ATOL",
    "PredictiveMultiplicity",
    "disagreement_matrix",
    "soft_disagreement_matrix",
    "rashomon_capacity",
    "predictive_multiplicity",
]

PROB_ATOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-6}
"""How far from 1 a row of probabilities may sum, per dtype."""

_SOFT_METRICS = {"tv": 0, "js": 1, "hellinger": 2, "kl": 3}


# ---------------------------------------------------------------------------------------------
# validation and conversion (visible, here; the kernels take C-contiguous arrays)
# ---------------------------------------------------------------------------------------------


def _host_array(a: Any, name: str) -> np.ndarray:
    if isinstance(a, (list, tuple)):
        a = np.asarray(a)
    if kind_of(a).is_gpu:  # device inputs are dispatched to _gpu() before they get here
        raise ValueError(f"{name} is on a GPU; this operation runs on the host")
    return to_host(a)


def _gpu():
    from mmkern._gpu import multiplicity as gpu_multiplicity

    return gpu_multiplicity


def _check_models(m: int, name: str) -> None:
    if m < 2:
        raise ValueError(f"{name} must hold at least 2 models (axis 0), got {m}")


def _probabilities(probs: Any, name: str = "probs", from_logits: bool = False) -> np.ndarray:
    """A validated C-contiguous float32/float64 (M, n, C) array of probabilities."""
    arr = _host_array(probs, name)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be 3-D (models, samples, classes), got shape {tuple(arr.shape)}")
    m, n, c = arr.shape
    _check_models(m, name)
    if n == 0 or c == 0:
        raise ValueError(f"{name} is empty (shape {tuple(arr.shape)}); it needs samples and classes")
    arr = float_array(arr, name)
    if from_logits:
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity")
        z = arr.astype(np.float64) - arr.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)
    arr = np.ascontiguousarray(arr)
    check = _C.check_probabilities(arr)
    if check["nonfinite"]:
        raise ValueError(f"{name} contains NaN or infinity ({check['nonfinite']} entries)")
    if check["negative"]:
        raise ValueError(f"{name} has {check['negative']} negative entries; probabilities must be >= 0 "
                         "(pass from_logits=True for logits)")
    atol = PROB_ATOL[arr.dtype]
    if check["min_sum"] < 1 - atol or check["max_sum"] > 1 + atol:
        raise ValueError(
            f"rows of {name} must sum to 1 within {atol:g} (found sums from {check['min_sum']:.6g} to "
            f"{check['max_sum']:.6g}); pass from_logits=True for logits"
        )
    return arr


def _integer_array(a: Any, name: str) -> np.ndarray:
    arr = _host_array(a, name)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _class_range(arr: np.ndarray, name: str, n_classes: int | None) -> None:
    """``ValueError`` for a label below 0 or (with ``n_classes``) not below ``n_classes``."""
    if arr.size == 0:
        return
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        bad = lo if lo < 0 else hi
        what = f"the class range [0, {n_classes})" if n_classes is not None else "the labels >= 0"
        raise ValueError(f"{name} holds the label {bad}, outside {what}")


def _codes(labels: np.ndarray) -> np.ndarray:
    """Compact C-contiguous class codes for equality tests: the labels themselves as uint8 or
    uint16 when they fit, else their ranks among the distinct labels (uint16 or uint32)."""
    hi = int(labels.max()) if labels.size else 0
    if hi < 2**16:
        return np.ascontiguousarray(labels, dtype=np.uint8 if hi < 256 else np.uint16)
    distinct, ranks = np.unique(labels, return_inverse=True)
    return np.ascontiguousarray(ranks.reshape(labels.shape), dtype=np.uint16 if len(distinct) < 2**16 else np.uint32)


def _label_codes(labels: np.ndarray, name: str) -> np.ndarray:
    """Validated (labels >= 0) compact class codes of 2-D integer labels: one fused C++ pass when
    every label fits in uint8 (the common case), else :func:`_codes`."""
    codes, lo, hi = _C.pack_labels(labels)
    _class_range(np.array([lo, hi]), name, None)
    return codes if hi < 256 else _codes(labels)


def _hard_codes(probs: np.ndarray) -> np.ndarray:
    return _C.argmax_codes(probs, 8 if probs.shape[2] <= 256 else 16)


def _check_reference(reference: Any, m: int) -> int | None:
    if reference is None:
        return None
    if isinstance(reference, (bool, np.bool_)) or not isinstance(reference, numbers.Integral):
        raise TypeError(f"reference must be a model index (int), got {type(reference).__name__}")
    if not 0 <= reference < m:
        raise ValueError(f"reference={reference} is not a model index in [0, {m})")
    return int(reference)


def _result_kind(*inputs):
    return common_kind(list(inputs), [f"input {i}" for i in range(len(inputs))])


# ---------------------------------------------------------------------------------------------
# matrices
# ---------------------------------------------------------------------------------------------


def disagreement_matrix(preds):
    """Pairwise disagreement (churn) of M models: D[i, j] = fraction of samples where they differ.

    Parameters
    ----------
    preds : array, shape (M, n) of integer labels, or (M, n, C) of probabilities or logits
        Hard predictions, or scores whose argmax over the last axis (lowest class on ties) is the
        prediction. Labels may be any integer dtype, values >= 0.

    Returns
    -------
    array, shape (M, M), float64
        Symmetric, zero diagonal; a metric on the models (triangle inequality holds).
    """
    kind = _result_kind(preds)
    if kind.is_gpu:
        return _gpu().disagreement_matrix(preds)
    arr = _host_array(preds, "preds")
    if arr.ndim == 3:
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"3-D preds must be float scores (M, n, C), got dtype {arr.dtype}")
        arr = float_array(arr, "preds")
        _check_models(arr.shape[0], "preds")
        if arr.shape[1] == 0 or arr.shape[2] == 0:
            raise ValueError(f"preds is empty (shape {arr.shape})")
        if not np.isfinite(arr).all():
            raise ValueError("preds contains NaN or infinity")
        codes = _hard_codes(np.ascontiguousarray(arr))
    elif arr.ndim == 2:
        labels = _integer_array(arr, "preds")
        _check_models(labels.shape[0], "preds")
        if labels.shape[1] == 0:
            raise ValueError(f"preds is empty (shape {labels.shape}); it needs samples")
        codes = _label_codes(labels, "preds")
    else:
        raise ValueError(f"preds must be (M, n) labels or (M, n, C) scores, got shape {tuple(arr.shape)}")
    out = _C.disagreement_counts(codes) / codes.shape[1]
    return to_kind(out, kind)


def soft_disagreement_matrix(probs, metric: str = "tv", *, from_logits: bool = False):
    """Pairwise mean soft disagreement of M models' output distributions.

    Parameters
    ----------
    probs : array, shape (M, n, C), float32 or float64
        Probabilities (rows sum to 1), or logits with ``from_logits=True``.
    metric : {"tv", "js", "hellinger", "kl"}
        Total variation, Jensen-Shannon divergence (nats), Hellinger distance, or KL divergence
        (entry [i, j] = KL(model i || model j); +inf where the support of j misses i's).
    from_logits : bool, default False
        Apply a softmax (float64) first.

    Returns
    -------
    array, shape (M, M), float64
        Zero diagonal; symmetric except for ``"kl"``.
    """
    if metric not in _SOFT_METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, _SOFT_METRICS))}, got {metric!r}")
    kind = _result_kind(probs)
    if kind.is_gpu:
        return _gpu().soft_disagreement_matrix(probs, metric, from_logits=from_logits)
    p = _probabilities(probs, from_logits=from_logits)
    return to_kind(_C.soft_disagreement(p, _SOFT_METRICS[metric]), kind)


# ---------------------------------------------------------------------------------------------
# per-sample figures and the population summary
# ---------------------------------------------------------------------------------------------


CAPACITY_WARN_GAP = 1e-3
"""Rashomon capacity warns when a sample stops at ``max_iter`` with its capacity bounds more than
this many nats apart: its value (a lower bound) may then be off by more than 0.1%."""


def _capacities(p: np.ndarray, tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample Rashomon capacity (n,) and the final gap between its bounds (n,) in nats."""
    values, gaps = _C.rashomon_capacity(p, tol, max_iter)
    loose = gaps > max(tol, CAPACITY_WARN_GAP)
    if loose.any():
        warnings.warn(
            f"Rashomon capacity: {int(loose.sum())} of {len(gaps)} samples reached max_iter={max_iter} "
            f"with capacity bounds up to {gaps.max():.2g} nats apart; their values are lower bounds. "
            "Raise max_iter for tighter values.",
            RuntimeWarning,
            stacklevel=3,
        )
    return values, gaps


def _capacity_args(tol: float, max_iter: int) -> tuple[float, int]:
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not float(tol) > 0:
        raise ValueError(f"tol must be a positive float, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    return float(tol), int(max_iter)


def rashomon_capacity(probs, *, from_logits: bool = False, tol: float = 1e-6, max_iter: int = 10_000,
                      return_gap: bool = False):
    """Per-sample Rashomon capacity of a population (Hsu & Calmon 2022).

    Parameters
    ----------
    probs : array, shape (M, n, C), float32 or float64
        Probabilities, or logits with ``from_logits=True``.
    tol : float, default 1e-6
        Blahut-Arimoto stops when the upper and lower capacity bounds are within ``tol`` nats,
        so the reported exp(capacity) is within a relative ``tol`` of the true value.
    max_iter : int, default 10000
        Iteration cap per sample. Channels with nearly identical rows converge slowly (the gap
        shrinks like 1/iterations); a sample stopped by the cap reports its lower bound, and a
        ``RuntimeWarning`` is raised when any such gap exceeds :data:`CAPACITY_WARN_GAP`.
    return_gap : bool, default False
        Also return the final gap between the bounds, per sample.

    Returns
    -------
    capacity : array, shape (n,), float64
        exp(capacity) in [1, C]: 1 when all models agree exactly, C when M >= C models put all
        their mass on C different classes.
    gap : array, shape (n,), float64
        Only with ``return_gap``: upper - lower capacity bound in nats (<= tol unless capped).
    """
    tol, max_iter = _capacity_args(tol, max_iter)
    kind = _result_kind(probs)
    if kind.is_gpu:
        return _gpu().rashomon_capacity(probs, from_logits=from_logits, tol=tol, max_iter=max_iter,
                                        return_gap=return_gap)
    values, gaps = _capacities(_probabilities(probs, from_logits=from_logits), tol, max_iter)
    return (to_kind(values, kind), to_kind(gaps, kind)) if return_gap else to_kind(values, kind)


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


def _summary(codes, per_sample, labels, reference, n_classes, kind, subsets) -> PredictiveMultiplicity:
    """The population figures from hard codes (M, n) and per-sample arrays (a documented
    composition of the disagreement and sample-statistics kernels)."""
    m, n = codes.shape
    d = _C.disagreement_counts(codes) / n
    off_diagonal = d[~np.eye(m, dtype=bool)]
    accuracy = correct = incorrect = None
    if labels is not None:
        accuracy = (codes == labels).mean(axis=1)
        if subsets:
            decider = codes[reference] if reference is not None else per_sample["majority"]
            right = decider == labels
            correct, incorrect = (
                _summary(np.ascontiguousarray(codes[:, mask]), {k: v[mask] for k, v in per_sample.items()},
                         labels[mask], reference, n_classes, kind, subsets=False) if mask.any() else None
                for mask in (right, ~right)
            )
    return PredictiveMultiplicity(
        n_models=m,
        n_samples=n,
        n_classes=n_classes,
        disagreement=to_kind(d, kind),
        mean_disagreement=float(off_diagonal.mean()),
        ambiguity=float(1.0 - per_sample["all_agree"].mean()),
        discrepancy=float(d[:, reference].max() if reference is not None else d.max()),
        prediction_variance=float(per_sample["variance"].mean()),
        rashomon_capacity=float(per_sample["capacity"].mean()),
        sample_disagreement=to_kind(per_sample["vote_disagreement"], kind),
        sample_variance=to_kind(per_sample["variance"], kind),
        sample_rashomon_capacity=to_kind(per_sample["capacity"], kind),
        viable_prediction_range=to_kind(per_sample["range"], kind),
        reference=reference,
        accuracy=None if accuracy is None else to_kind(accuracy, kind),
        accuracy_mean=None if accuracy is None else float(accuracy.mean()),
        accuracy_spread=None if accuracy is None else float(accuracy.max() - accuracy.min()),
        correct=correct,
        incorrect=incorrect,
    )


def predictive_multiplicity(probs, labels=None, reference=None, *, from_logits: bool = False,
                            tol: float = 1e-6, max_iter: int = 10_000) -> PredictiveMultiplicity:
    """Every predictive-multiplicity figure of a population, per population and per sample.

    Parameters
    ----------
    probs : array, shape (M, n, C), float32 or float64
        Probabilities, or logits with ``from_logits=True``.
    labels : array, shape (n,), integer, optional
        True classes: enables accuracy, the correct / incorrect subsets, and the viable prediction
        range of the true class.
    reference : int, optional
        Index of a reference model for ambiguity / discrepancy (Marx et al. 2020).
    tol, max_iter
        Blahut-Arimoto settings of the Rashomon capacity (see :func:`rashomon_capacity`).

    Returns
    -------
    PredictiveMultiplicity
    """
    tol, max_iter = _capacity_args(tol, max_iter)
    kind = _result_kind(probs) if labels is None else _result_kind(probs, labels)
    if kind.is_gpu:
        return _gpu().predictive_multiplicity(probs, labels, reference, from_logits=from_logits, tol=tol,
                                              max_iter=max_iter)
    p = _probabilities(probs, from_logits=from_logits)
    m, n, c = p.shape
    reference = _check_reference(reference, m)
    if labels is not None:
        labels = _integer_array(labels, "labels")
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},) to match probs {p.shape}, got {tuple(labels.shape)}")
        _class_range(labels, "labels", c)
        labels = labels.astype(np.int64)
    codes = _hard_codes(p)
    target = labels if labels is not None else (codes[reference].astype(np.int64) if reference is not None else None)
    per_sample = _C.sample_statistics(p, codes, target)
    per_sample["capacity"], _ = _capacities(p, tol, max_iter)
    return _summary(codes, per_sample, labels, reference, c, kind, subsets=True)
