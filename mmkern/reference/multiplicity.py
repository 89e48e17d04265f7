"""Plain NumPy reference implementations of the predictive-multiplicity metrics.

These functions are the ground truth of the test suite and the baseline of the benchmarks. They
are written literally from the definitions in ``docs/definitions.md`` ("Predictive
multiplicity") and the API contract, for clarity and not for speed: the disagreement matrices are Python
loops over pairs of models, and Blahut-Arimoto is a Python loop over samples. The fast functions
of :mod:`mmkern.multiplicity` compute the same quantities and must agree with these (exactly for
hard disagreement, to rounding for the rest).

Conventions shared by every function:

* Populations are model-first: ``M`` models, ``n`` samples, ``C`` classes. Hard predictions are
  ``(M, n)`` integer labels; soft predictions are ``(M, n, C)`` probabilities (or logits with
  ``from_logits=True``).
* Every floating input is converted to a float64 NumPy array first (float32 and float16 values
  are represented exactly in float64, so the reference run on them sees the same numbers as the
  fast path). Logits become probabilities by a float64 softmax over the last axis, computed
  after subtracting the row maximum.
* The hard prediction of a model on a sample is ``argmax_c p_m(x)_c`` with ties going to the
  lowest class index (as :func:`numpy.argmax`).
* Validation is minimal (numbers of dimensions, matching shapes, ``M >= 2``, ``n >= 1``, metric
  names, the reference index); the fast functions do the user-facing validation of values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = [
    "SOFT_METRICS",
    "PredictiveMultiplicity",
    "disagreement_matrix",
    "predictive_multiplicity",
    "rashomon_capacity",
    "soft_disagreement_matrix",
]

#: The metrics of :func:`soft_disagreement_matrix`.
SOFT_METRICS = ("tv", "js", "hellinger", "kl")


@dataclass(frozen=True)
class PredictiveMultiplicity:
    """Predictive multiplicity of a population of models (reference version).

    Reference for :class:`mmkern.PredictiveMultiplicity`, as returned by
    :func:`predictive_multiplicity`.

    Attributes
    ----------
    mean_disagreement : float
        Mean of the off-diagonal entries of :attr:`disagreement`.
    ambiguity : float
        Fraction of samples on which at least one model's hard prediction differs from the
        reference model's; without a reference, the fraction of samples on which not all models
        agree (the two coincide).
    discrepancy : float
        With a reference ``r``: ``max_m disagreement[m, r]``; without one:
        ``max_{i, j} disagreement[i, j]``.
    prediction_variance : float
        Mean over samples and classes of the across-model population variance (``ddof=0``) of
        ``p_m(x)_c``.
    rashomon_capacity : float
        Mean over samples of :attr:`sample_rashomon_capacity`.
    disagreement : numpy.ndarray
        float64, shape ``(M, M)``: the hard disagreement matrix (:func:`disagreement_matrix`).
    sample_disagreement : numpy.ndarray
        float64, shape ``(n,)``: ``1 - max_c`` (fraction of models whose hard prediction is c).
    sample_variance : numpy.ndarray
        float64, shape ``(n,)``: mean over classes of the across-model variance.
    sample_rashomon_capacity : numpy.ndarray
        float64, shape ``(n,)``: :func:`rashomon_capacity` (with the ``tol``/``max_iter`` given to
        :func:`predictive_multiplicity`, by default the same defaults).
    viable_prediction_range : numpy.ndarray
        float64, shape ``(n,)``: ``max_m p_m(x)_t - min_m p_m(x)_t`` with ``t`` the true label
        when labels are given, else the reference model's hard prediction, else the majority
        vote (ties: lowest class).
    accuracy : numpy.ndarray or None
        float64, shape ``(M,)``: accuracy of each model; None without labels.
    accuracy_mean : float or None
        Mean of :attr:`accuracy`; None without labels.
    accuracy_spread : float or None
        ``max - min`` of :attr:`accuracy`; None without labels.
    correct : PredictiveMultiplicity or None
        The same figures on the samples where the reference model (without a reference, the
        majority vote) is correct, computed with the subset's labels and the same reference; None
        without labels or when that subset is empty. Its own ``correct``/``incorrect`` are None
        (one level only).
    incorrect : PredictiveMultiplicity or None
        The same on the samples where it is incorrect.
    """

    mean_disagreement: float
    ambiguity: float
    discrepancy: float
    prediction_variance: float
    rashomon_capacity: float
    disagreement: np.ndarray
    sample_disagreement: np.ndarray
    sample_variance: np.ndarray
    sample_rashomon_capacity: np.ndarray
    viable_prediction_range: np.ndarray
    accuracy: Optional[np.ndarray] = None
    accuracy_mean: Optional[float] = None
    accuracy_spread: Optional[float] = None
    correct: Optional["PredictiveMultiplicity"] = None
    incorrect: Optional["PredictiveMultiplicity"] = None


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis in float64, after subtracting the maximum of each row."""
    z = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def _check_population(shape: tuple, name: str) -> None:
    if shape[0] < 2:
        raise ValueError(f"{name} must hold at least 2 models (axis 0), got shape {shape}")
    if shape[1] < 1:
        raise ValueError(f"{name} must hold at least 1 sample (axis 1), got shape {shape}")


def _probabilities(probs, from_logits: bool, name: str = "probs") -> np.ndarray:
    """``probs`` as a float64 ``(M, n, C)`` array of probabilities."""
    p = np.asarray(probs).astype(np.float64)
    if p.ndim != 3:
        raise ValueError(f"{name} must have shape (M, n, C), got shape {p.shape}")
    _check_population(p.shape, name)
    if p.shape[2] < 1:
        raise ValueError(f"{name} must have at least 1 class (axis 2), got shape {p.shape}")
    return _softmax(p) if from_logits else p


def _hard_predictions(preds, name: str = "preds") -> np.ndarray:
    """``(M, n)`` integer labels, or the argmax over the last axis of ``(M, n, C)`` scores."""
    a = np.asarray(preds)
    if a.ndim == 3:
        return np.argmax(a.astype(np.float64), axis=-1)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (M, n) or (M, n, C), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} of shape (M, n) must hold integer labels, got dtype {a.dtype}")
    _check_population(a.shape, name)
    return a


def _labels(labels, n: int, n_classes: int) -> np.ndarray:
    a = np.asarray(labels)
    if a.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match probs, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), found values from {a.min()} "
                         f"to {a.max()}")
    return a.astype(np.int64)


def _reference_index(reference, n_models: int) -> Optional[int]:
    if reference is None:
        return None
    r = int(reference)
    if not 0 <= r < n_models:
        raise ValueError(f"reference must be a model index in [0, {n_models}), got {reference}")
    return r


def _kl_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-sample KL(p || q) of ``(n, C)`` rows: 0 log 0 = 0, +inf where p > 0 and q = 0."""
    terms = np.zeros_like(p)
    both = (p > 0.0) & (q > 0.0)
    terms[both] = p[both] * np.log(p[both] / q[both])
    terms[(p > 0.0) & (q == 0.0)] = np.inf
    return np.sum(terms, axis=-1)


def _tv(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 0.5 * np.sum(np.abs(p - q), axis=-1)


def _js(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    m = 0.5 * (p + q)
    return 0.5 * _kl_terms(p, m) + 0.5 * _kl_terms(q, m)


def _hellinger(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2, axis=-1))


_PER_SAMPLE = {"tv": _tv, "js": _js, "hellinger": _hellinger, "kl": _kl_terms}


def _blahut_arimoto(p: np.ndarray, tol: float, max_iter: int) -> float:
    """Rashomon capacity ``exp(capacity)`` of one ``(M, C)`` channel matrix ``p``.

    Starts from uniform input weights; each iteration computes the output distribution
    ``q = w^T p``, the divergences ``D_m = KL(p_m || q)``, the lower bound
    ``log(sum_m w_m exp(D_m))`` and the upper bound ``max_m D_m`` of the capacity; it stops when
    ``upper - lower <= tol`` or after ``max_iter`` evaluations of the bounds, and otherwise
    updates ``w_m <- w_m exp(D_m) / sum``. Returns ``exp(lower)`` of the last evaluation,
    clipped to ``[1, C]``.
    """
    n_models, n_classes = p.shape
    # D_m = sum_c p_mc log(p_mc / q_c) = sum_c p_mc log p_mc - sum_c p_mc log q_c over the
    # classes some model supports (q_c > 0 there since every w_m > 0; the other classes only
    # contribute 0 log 0 = 0 terms). The first sum is fixed: compute it once.
    p = p[:, np.any(p > 0.0, axis=0)]
    neg_entropy = np.array([np.sum(row[row > 0.0] * np.log(row[row > 0.0])) for row in p])
    w = np.full(n_models, 1.0 / n_models)
    lower = 0.0
    for _ in range(max_iter):
        q = w @ p
        d = neg_entropy - p @ np.log(q)
        growth = np.exp(d)
        lower = float(np.log(np.sum(w * growth)))
        upper = float(np.max(d))
        if upper - lower <= tol:
            break
        w = w * growth
        w = w / np.sum(w)
    return float(np.clip(np.exp(lower), 1.0, n_classes))


# ---------------------------------------------------------------------------------------------
# Public functions
# ---------------------------------------------------------------------------------------------


def disagreement_matrix(preds) -> np.ndarray:
    """Hard disagreement (churn) between every pair of models: a loop over pairs.

    Reference for :func:`mmkern.disagreement_matrix`.

    Parameters
    ----------
    preds : array_like
        ``(M, n)`` integer labels (any int/uint dtype, values >= 0), or ``(M, n, C)`` float
        probabilities or logits whose argmax over the last axis (ties: lowest index) gives the
        hard labels.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M, M)``: ``D[i, j]`` = fraction of the ``n`` samples on which the
        hard predictions of models i and j differ. Symmetric, zero diagonal.
    """
    y = _hard_predictions(preds)
    n_models = y.shape[0]
    out = np.zeros((n_models, n_models), dtype=np.float64)
    for i in range(n_models):
        for j in range(i + 1, n_models):
            out[i, j] = out[j, i] = np.mean(y[i] != y[j])
    return out


def soft_disagreement_matrix(probs, metric: str = "tv", *, from_logits: bool = False) -> np.ndarray:
    """Mean divergence between the output distributions of every pair of models.

    Reference for :func:`mmkern.soft_disagreement_matrix`. A Python loop over ordered pairs
    ``(i, j)``; each entry is the mean over samples of the per-sample divergence.

    Parameters
    ----------
    probs : array_like
        float, shape ``(M, n, C)``: probabilities (logits with ``from_logits=True``).
    metric : {"tv", "js", "hellinger", "kl"}
        Per sample, with ``p = p_i(x)`` and ``q = p_j(x)``:

        * ``"tv"``: total variation ``0.5 * sum_c |p_c - q_c|``, in [0, 1];
        * ``"js"``: Jensen-Shannon divergence in nats, ``0.5 KL(p||m) + 0.5 KL(q||m)`` with
          ``m = (p + q) / 2`` and ``0 log 0 = 0``, in [0, ln 2];
        * ``"hellinger"``: ``sqrt(0.5 * sum_c (sqrt(p_c) - sqrt(q_c))^2)``, in [0, 1];
        * ``"kl"``: ``KL(p || q) = sum_c p_c log(p_c / q_c)`` in nats, terms with ``p_c = 0``
          are 0, ``+inf`` when ``p_c > 0`` where ``q_c = 0``. Not symmetric.
    from_logits : bool
        Take a float64 softmax over the last axis first.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(M, M)``: entry ``[i, j]`` is the mean over samples of
        ``metric(p_i(x), p_j(x))``. Zero diagonal; symmetric except for ``"kl"``.
    """
    if metric not in SOFT_METRICS:
        raise ValueError(f"metric must be one of {SOFT_METRICS}, got {metric!r}")
    p = _probabilities(probs, from_logits)
    per_sample = _PER_SAMPLE[metric]
    n_models = p.shape[0]
    out = np.zeros((n_models, n_models), dtype=np.float64)
    for i in range(n_models):
        for j in range(n_models):
            if i != j:
                out[i, j] = np.mean(per_sample(p[i], p[j]))
    return out


def rashomon_capacity(probs, *, from_logits: bool = False, tol: float = 1e-6,
                      max_iter: int = 10000) -> np.ndarray:
    """Per-sample Rashomon capacity (Hsu & Calmon 2022) by Blahut-Arimoto, one sample at a time.

    Reference for :func:`mmkern.rashomon_capacity`.

    For each sample x, the ``M x C`` matrix whose rows are the model outputs ``p_m(x)`` is a
    channel from models to classes; its capacity (in nats) is computed by Blahut-Arimoto from
    uniform input weights ``w = 1/M``. Each iteration: ``q = w^T P``;
    ``D_m = sum_c P_mc log(P_mc / q_c)`` (``0 log 0 = 0``); ``lower = log(sum_m w_m exp(D_m))``;
    ``upper = max_m D_m``; stop when ``upper - lower <= tol`` or after ``max_iter`` iterations,
    else ``w_m <- w_m exp(D_m) / sum``.

    Parameters
    ----------
    probs : array_like
        float, shape ``(M, n, C)``: probabilities (logits with ``from_logits=True``).
    from_logits : bool
        Take a float64 softmax over the last axis first.
    tol : float
        Stop when the gap between the upper and lower capacity bounds (nats) is at most this.
    max_iter : int
        Maximum number of iterations (evaluations of the bounds) per sample; when reached, the
        last lower bound is reported.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n,)``: ``exp(capacity)`` (= 2**capacity in bits), clipped to
        ``[1, C]``. Identical models give 1; ``M >= C`` models that each put all their mass on
        a different class give C.
    """
    p = _probabilities(probs, from_logits)
    n_samples = p.shape[1]
    out = np.empty(n_samples, dtype=np.float64)
    for x in range(n_samples):
        out[x] = _blahut_arimoto(p[:, x, :], tol, max_iter)
    return out


def _majority_vote(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample most frequent hard prediction of ``(M, n)`` labels (ties: lowest class)."""
    votes = np.zeros((y.shape[1], n_classes), dtype=np.int64)
    for m in range(y.shape[0]):
        votes[np.arange(y.shape[1]), y[m]] += 1
    return np.argmax(votes, axis=1)


def _summarise(p: np.ndarray, labels: Optional[np.ndarray], reference: Optional[int],
               with_subsets: bool, tol: float, max_iter: int,
               sample_rc: Optional[np.ndarray] = None) -> PredictiveMultiplicity:
    """Every figure of :class:`PredictiveMultiplicity` from float64 probabilities ``p``.

    ``sample_rc`` passes the per-sample Rashomon capacities already computed for these samples
    (each sample's value depends on that sample alone), so subsets do not rerun Blahut-Arimoto.
    """
    n_models, n_samples, n_classes = p.shape
    y = np.argmax(p, axis=-1)  # (M, n) hard predictions
    disagreement = disagreement_matrix(y)

    off_diagonal = [disagreement[i, j] for i in range(n_models) for j in range(n_models)
                    if i != j]
    mean_disagreement = float(np.mean(off_diagonal))

    # ambiguity: samples on which some model differs from the reference model; without a
    # reference, samples on which not all models agree (the same set of samples).
    if reference is not None:
        ambiguous = np.any(y != y[reference], axis=0)
        discrepancy = max(float(np.mean(y[m] != y[reference])) for m in range(n_models))
    else:
        ambiguous = np.array([len(set(y[:, x].tolist())) > 1 for x in range(n_samples)])
        discrepancy = float(np.max(disagreement))
    ambiguity = float(np.mean(ambiguous))

    counts = np.zeros((n_samples, n_classes), dtype=np.int64)
    for m in range(n_models):
        counts[np.arange(n_samples), y[m]] += 1
    sample_disagreement = 1.0 - counts.max(axis=1) / n_models

    variance = np.var(p, axis=0)  # (n, C), ddof=0
    sample_variance = np.mean(variance, axis=1)
    prediction_variance = float(np.mean(variance))

    if sample_rc is None:
        sample_rc = rashomon_capacity(p, tol=tol, max_iter=max_iter)

    if labels is not None:
        target = labels
    elif reference is not None:
        target = y[reference]
    else:
        target = _majority_vote(y, n_classes)
    at_target = p[:, np.arange(n_samples), target]  # (M, n)
    viable_range = at_target.max(axis=0) - at_target.min(axis=0)

    accuracy = accuracy_mean = accuracy_spread = None
    correct = incorrect = None
    if labels is not None:
        accuracy = np.array([np.mean(y[m] == labels) for m in range(n_models)],
                            dtype=np.float64)
        accuracy_mean = float(np.mean(accuracy))
        accuracy_spread = float(np.max(accuracy) - np.min(accuracy))
        if with_subsets:
            decider = y[reference] if reference is not None else _majority_vote(y, n_classes)
            right = decider == labels
            if np.any(right):
                correct = _summarise(p[:, right], labels[right], reference, False, tol,
                                     max_iter, sample_rc[right])
            if np.any(~right):
                incorrect = _summarise(p[:, ~right], labels[~right], reference, False, tol,
                                       max_iter, sample_rc[~right])

    return PredictiveMultiplicity(
        mean_disagreement=mean_disagreement,
        ambiguity=ambiguity,
        discrepancy=discrepancy,
        prediction_variance=prediction_variance,
        rashomon_capacity=float(np.mean(sample_rc)),
        disagreement=disagreement,
        sample_disagreement=sample_disagreement,
        sample_variance=sample_variance,
        sample_rashomon_capacity=sample_rc,
        viable_prediction_range=viable_range,
        accuracy=accuracy,
        accuracy_mean=accuracy_mean,
        accuracy_spread=accuracy_spread,
        correct=correct,
        incorrect=incorrect,
    )


def predictive_multiplicity(probs, labels=None, reference=None, *, from_logits: bool = False,
                            tol: float = 1e-6, max_iter: int = 10000) -> PredictiveMultiplicity:
    """Every predictive-multiplicity figure of a population, per population and per sample.

    Reference for :func:`mmkern.predictive_multiplicity`.

    Parameters
    ----------
    probs : array_like
        float, shape ``(M, n, C)``: probabilities (logits with ``from_logits=True``). Hard
        predictions are the argmax of the probabilities (ties: lowest class).
    labels : array_like, optional
        int, shape ``(n,)``, values in ``[0, C)``: true labels. Adds the accuracy fields and the
        ``correct``/``incorrect`` subsets, and sets the class of the viable prediction range.
    reference : int, optional
        Index in ``[0, M)`` of the reference model of Marx et al. (2020) for ambiguity,
        discrepancy, the viable prediction range (without labels) and the subsets.
    from_logits : bool
        Take a float64 softmax over the last axis first.
    tol, max_iter
        Blahut-Arimoto settings of the per-sample Rashomon capacity (:func:`rashomon_capacity`).

    Returns
    -------
    PredictiveMultiplicity
        Population figures as floats, per-sample figures as float64 ``(n,)`` arrays, the
        ``(M, M)`` disagreement matrix; see :class:`PredictiveMultiplicity`. The ``correct`` and
        ``incorrect`` results are computed by this same function on the subset of samples (with
        the subset's labels and the same reference) and carry no subsets of their own.
    """
    p = _probabilities(probs, from_logits)
    n_models, n_samples, n_classes = p.shape
    target = None if labels is None else _labels(labels, n_samples, n_classes)
    return _summarise(p, target, _reference_index(reference, n_models), True, tol, max_iter)
