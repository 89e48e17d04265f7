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
computed on their device by the device route (:mod:`mmkern.multiplicity._device`), and the
results stay there; everything else by the host route (:mod:`mmkern.multiplicity._host`). Both
apply the rules of :mod:`mmkern.multiplicity._checks`.
"""

from __future__ import annotations

from mmkern._backend import common_kind, host_floats
from mmkern.multiplicity import _host
from mmkern.multiplicity._checks import (
    CAPACITY_WARN_GAP,
    PROB_ATOL,
    PredictiveMultiplicity,
    capacity_args,
    capacity_values,
    check_preds_shape,
    check_reference,
    check_soft_metric,
)

__all__ = [
    "CAPACITY_WARN_GAP",
    "PROB_ATOL",
    "PredictiveMultiplicity",
    "disagreement_matrix",
    "soft_disagreement_matrix",
    "rashomon_capacity",
    "predictive_multiplicity",
]


def _route(**inputs):
    """(route module, kind) of the inputs (by argument name): the host route, or the device route
    (which needs torch, so it is imported on first use)."""
    kind = common_kind(list(inputs.values()), list(inputs))
    if kind.device_route:
        from mmkern.multiplicity import _device

        return _device, kind
    return _host, kind


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
    route, kind = _route(preds=preds)
    arr = route.as_array(preds, "preds")
    ndim = check_preds_shape(arr.shape)
    codes, max_code = route.scores(arr) if ndim == 3 else route.label_codes(arr)
    return route.result(route.disagreement_rates(codes, max_code), kind)


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
    code = check_soft_metric(metric)
    route, kind = _route(probs=probs)
    p = route.probabilities(probs, from_logits=from_logits)
    return route.result(route.soft_disagreement(p, code), kind)


# ---------------------------------------------------------------------------------------------
# per-sample figures and the population summary
# ---------------------------------------------------------------------------------------------


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
    tol, max_iter = capacity_args(tol, max_iter)
    route, kind = _route(probs=probs)
    p = route.probabilities(probs, from_logits=from_logits)
    capacity, gaps = route.capacities(p, tol, max_iter)
    values = capacity_values(capacity, gaps, p.shape[2], tol, max_iter)
    if return_gap:
        return route.result(values, kind), route.result(gaps, kind)
    return route.result(values, kind)


def _summary(route, codes, max_code, per_sample, labels, reference, n_classes, kind, subsets) -> PredictiveMultiplicity:
    """The population figures from hard codes (M, n) and per-sample arrays: a documented
    composition of the disagreement and sample-statistics kernels, written once for both routes
    (it uses only operations NumPy arrays and torch tensors share)."""
    m, n = codes.shape
    d = route.disagreement_rates(codes, max_code)
    accuracy = correct = incorrect = None
    figures = [
        d.sum() / (m * (m - 1)),  # the mean off-diagonal disagreement (the diagonal is 0)
        1.0 - route.float64(per_sample["all_agree"]).sum() / n,
        d[:, reference].max() if reference is not None else d.max(),
        per_sample["variance"].mean(),
        per_sample["capacity"].mean(),
    ]
    if labels is not None:
        accuracy = route.float64((codes == labels).sum(1)) / n
        figures += [accuracy.mean(), accuracy.max() - accuracy.min()]
        if subsets:
            decider = codes[reference] if reference is not None else per_sample["majority"]
            right = decider == labels
            n_right = int(host_floats([right.sum()])[0])
            correct, incorrect = (
                _summary(route, codes[:, mask], max_code, {k: v[mask] for k, v in per_sample.items()},
                         labels[mask], reference, n_classes, kind, subsets=False) if count else None
                for mask, count in ((right, n_right), (~right, n - n_right))
            )
    figures = host_floats(figures)  # one synchronisation on the device route
    out = lambda a: route.result(a, kind)  # noqa: E731
    return PredictiveMultiplicity(
        n_models=m,
        n_samples=n,
        n_classes=n_classes,
        disagreement=out(d),
        mean_disagreement=figures[0],
        ambiguity=figures[1],
        discrepancy=figures[2],
        prediction_variance=figures[3],
        rashomon_capacity=figures[4],
        sample_disagreement=out(per_sample["vote_disagreement"]),
        sample_variance=out(per_sample["variance"]),
        sample_rashomon_capacity=out(per_sample["capacity"]),
        viable_prediction_range=out(per_sample["range"]),
        reference=reference,
        accuracy=None if accuracy is None else out(accuracy),
        accuracy_mean=None if accuracy is None else figures[5],
        accuracy_spread=None if accuracy is None else figures[6],
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
    tol, max_iter = capacity_args(tol, max_iter)
    route, kind = _route(probs=probs) if labels is None else _route(probs=probs, labels=labels)
    p = route.probabilities(probs, from_logits=from_logits)
    m, n, c = p.shape
    reference = check_reference(reference, m)
    if labels is not None:
        labels = route.true_labels(labels, p)
    codes = route.hard_codes(p)
    target = labels if labels is not None else (codes[reference] if reference is not None else None)
    per_sample = route.sample_statistics(p, codes, target)
    per_sample["capacity"] = capacity_values(*route.capacities(p, tol, max_iter), c, tol, max_iter)
    return _summary(route, codes, c - 1, per_sample, labels, reference, c, kind, subsets=True)
