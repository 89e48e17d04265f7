"""The result types of the connectivity functions and the barriers of a curve.

Shared by the fast path (:mod:`mmkern.connectivity`) and the plain reference
(:mod:`mmkern.reference.connectivity`), so both compute the barriers of a curve the same way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

BARRIER_FIELDS = ("loss_barrier", "loss_barrier_mean", "error_barrier", "error_barrier_mean")


@dataclass(frozen=True)
class InterpolationCurve:
    """Loss and accuracy along the straight line between two models' weights.

    Returned by :func:`mmkern.interpolation_curve` and :func:`mmkern.reference.interpolation_curve`
    for one evaluation set.

    Attributes
    ----------
    alphas : numpy.ndarray
        float64, shape ``(K,)``: the interpolation coefficients, in the order evaluated.
    loss : numpy.ndarray
        float64, shape ``(K,)``: per-sample mean loss of ``theta(alphas[k])``.
    accuracy : numpy.ndarray
        float64, shape ``(K,)``: fraction of samples classified correctly.
    loss_barrier : float or None
        Chord barrier ``max_k [L(a_k) - ((1 - a_k) L(0) + a_k L(1))]`` (Entezari et al.;
        Lubana et al. Def. 1). ``None`` when ``alphas`` does not contain both 0 and 1.
    loss_barrier_mean : float or None
        Mean-endpoint barrier ``max_k L(a_k) - (L(0) + L(1)) / 2`` (Frankle et al.;
        git-re-basin). ``None`` when ``alphas`` does not contain both 0 and 1.
    error_barrier : float or None
        :attr:`loss_barrier` with the error ``1 - accuracy`` in place of the loss.
    error_barrier_mean : float or None
        :attr:`loss_barrier_mean` with the error ``1 - accuracy`` in place of the loss.

    Notes
    -----
    ``L(0)`` and ``L(1)`` are the values at the first occurrences of exactly 0.0 and 1.0 in
    :attr:`alphas`; the maxima run over every alpha given, extrapolated ones included.
    """

    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    loss_barrier: Optional[float]
    loss_barrier_mean: Optional[float]
    error_barrier: Optional[float]
    error_barrier_mean: Optional[float]


@dataclass(frozen=True)
class PairwiseBarriers:
    """The four barriers for every pair of M models.

    Returned by :func:`mmkern.pairwise_barriers` and :func:`mmkern.reference.pairwise_barriers`
    for one evaluation set.

    Attributes
    ----------
    loss_barrier, loss_barrier_mean, error_barrier, error_barrier_mean : numpy.ndarray
        float64, shape ``(M, M)``: entry ``[i, j]`` (``i < j``) is the corresponding barrier of
        ``interpolation_curve(models[i], models[j], ...)``; the matrices are symmetric
        (``[j, i] = [i, j]``) with a zero diagonal.
    """

    loss_barrier: np.ndarray
    loss_barrier_mean: np.ndarray
    error_barrier: np.ndarray
    error_barrier_mean: np.ndarray


def barrier_pair(
    alphas: np.ndarray, values: np.ndarray
) -> tuple[Optional[float], Optional[float]]:
    """(chord barrier, mean-endpoint barrier) of ``values`` along ``alphas``; None without 0/1."""
    at_zero = np.flatnonzero(alphas == 0.0)
    at_one = np.flatnonzero(alphas == 1.0)
    if at_zero.size == 0 or at_one.size == 0:
        return None, None
    v0 = values[at_zero[0]]
    v1 = values[at_one[0]]
    chord = max(
        values[k] - ((1.0 - alphas[k]) * v0 + alphas[k] * v1) for k in range(alphas.size)
    )
    mean = max(values[k] for k in range(alphas.size)) - (v0 + v1) / 2.0
    return float(chord), float(mean)


def make_curve(alphas: np.ndarray, loss: np.ndarray, accuracy: np.ndarray,
               ends: tuple[str, str] = ("model_a", "model_b"), set_label: str = "data",
               warn: bool = True) -> InterpolationCurve:
    """The curve and its barriers. Samples on which an interpolated model's outputs are not
    finite count as loss ``inf`` and error 1 (see ``_data.batch_metrics``): such alphas get a
    ``RuntimeWarning`` (with ``warn``) and the loss barriers are ``inf``. At an endpoint (the
    given models themselves) that is a ``ValueError`` naming the model, since no barrier is
    defined then."""
    diverged = ~np.isfinite(loss)
    for value, end in zip((0.0, 1.0), ends):
        at = np.flatnonzero(alphas == value)
        if at.size and diverged[at[0]]:
            raise ValueError(f"{end} gives non-finite outputs or losses on {set_label}: its loss is "
                             "undefined, and so are the barriers")
    if warn and diverged.any():
        warnings.warn(non_finite_message(alphas[diverged], set_label), RuntimeWarning, stacklevel=3)
    loss_barrier, loss_barrier_mean = barrier_pair(alphas, loss)
    error_barrier, error_barrier_mean = barrier_pair(alphas, 1.0 - accuracy)
    return InterpolationCurve(
        alphas=alphas,
        loss=loss,
        accuracy=accuracy,
        loss_barrier=loss_barrier,
        loss_barrier_mean=loss_barrier_mean,
        error_barrier=error_barrier,
        error_barrier_mean=error_barrier_mean,
    )


def non_finite_message(alphas: np.ndarray, set_label: str) -> str:
    shown = ", ".join(f"{a:g}" for a in alphas[:8]) + (", ..." if alphas.size > 8 else "")
    return (f"the interpolated models give non-finite outputs on {set_label} at alpha = {shown}: "
            "those samples count as loss inf and error 1")


def per_set(results: dict, data):
    """The single result for a single set (key None), else the dict keyed like ``data``."""
    return dict(results) if isinstance(data, Mapping) else results[None]
