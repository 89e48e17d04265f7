"""Plain PyTorch reference implementations of the linear-mode-connectivity evaluation.

These functions are the ground truth of the test suite and the baseline of the benchmarks for
:mod:`mmkern.connectivity`. They are written literally from the definitions in ``DESIGN.md``
("Connectivity") and the API contract of issue #4, for clarity and not for speed: for every
alpha, :func:`interpolation_curve` builds a fresh interpolated copy of the first model,
re-estimates its BatchNorm statistics with one pass over ``bn_data``, and walks every evaluation
set once, in a plain Python loop.

Conventions shared by every function:

* Models are :class:`torch.nn.Module` instances with the same architecture: the same names,
  shapes and dtypes of parameters and buffers (``named_parameters()`` then ``named_buffers()``,
  non-persistent buffers included). The interpolated model is a deep copy of ``model_a``, so its
  module structure, forward code, hooks and ``requires_grad`` flags are those of ``model_a``.
* Interpolation: every floating (or complex) parameter and buffer becomes
  ``(1 - alpha) * A + alpha * B``, computed in float64 (complex128) and rounded once to the
  entry's dtype, so ``alpha = 0`` and ``alpha = 1`` reproduce ``A`` and ``B`` bit for bit (for
  finite weights) and the midpoint is the correctly rounded average. Integer and boolean buffers
  (e.g. BatchNorm's ``num_batches_tracked``) are taken from ``A``.
* Data: an evaluation or BatchNorm set is either a :class:`torch.utils.data.DataLoader` whose
  batches are ``(x, y)`` pairs, iterated as it yields them, or a pair ``(x, y)`` of tensors with
  the same first dimension ``n``, iterated in order in consecutive batches of ``batch_size``
  samples (default 256; the last batch may be smaller). ``x`` is whatever the model takes with a
  leading batch axis; ``y`` holds integer class labels, shape ``(n,)``. Batches are moved to the
  device of the model's first parameter (or buffer). The model output must be logits of shape
  ``(batch, C)``.
* Loss: per-sample mean cross-entropy, the sum of the per-sample losses over the whole set
  divided by its number of samples, accumulated in float64 (the cross-entropy itself is computed
  on the logits converted to float64). Accuracy: the fraction of samples whose
  ``argmax`` logit (ties to the lowest class) equals the label. Error is ``1 - accuracy``.
* BatchNorm (any :class:`torch.nn.modules.batchnorm._BatchNorm` that tracks running statistics)
  is re-estimated by :func:`reset_and_estimate_batchnorm` once per alpha and reused for every
  evaluation set. During that pass only the BatchNorm modules are in training mode; every other
  module (Dropout in particular) is in evaluation mode, so the statistics are deterministic and
  are those of the activations BatchNorm sees at evaluation time.
* The models passed in are never modified: not their parameters, buffers, gradients-flags nor
  train/eval mode.
"""

from __future__ import annotations

import copy
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader

__all__ = [
    "BN_BATCH_SIZE",
    "InterpolationCurve",
    "PairwiseBarriers",
    "interpolate",
    "interpolation_curve",
    "pairwise_barriers",
    "reset_and_estimate_batchnorm",
]

#: Default number of samples per batch when an ``(x, y)`` pair of tensors is iterated (for both
#: evaluation and BatchNorm re-estimation). The BatchNorm estimate depends on it: the cumulative
#: average gives every batch the same weight.
BN_BATCH_SIZE = 256

DataSource = Union[DataLoader, Sequence[torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterpolationCurve:
    """Loss and accuracy along the straight line between two models' weights (reference version).

    Reference for :class:`mmkern.InterpolationCurve`, as returned by :func:`interpolation_curve`
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
    """The four barriers for every pair of M models (reference version).

    Reference for :class:`mmkern.PairwiseBarriers`, as returned by :func:`pairwise_barriers`
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


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_model(model, name: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def _entries(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters then buffers of ``model`` by qualified name, in registration order."""
    entries = {name: p for name, p in model.named_parameters()}
    entries.update({name: b for name, b in model.named_buffers()})
    return entries


def _check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise ValueError naming the first difference of names, shapes or dtypes."""
    _check_model(model_a, "model_a")
    _check_model(model_b, "model_b")
    entries_a = _entries(model_a)
    entries_b = _entries(model_b)
    for name, a in entries_a.items():
        if name not in entries_b:
            raise ValueError(f"model_b has no entry {name!r} (the models' architectures differ)")
        b = entries_b[name]
        if a.shape != b.shape:
            raise ValueError(
                f"{name!r} has shape {tuple(a.shape)} in model_a but {tuple(b.shape)} in model_b"
            )
        if a.dtype != b.dtype:
            raise ValueError(f"{name!r} has dtype {a.dtype} in model_a but {b.dtype} in model_b")
    for name in entries_b:
        if name not in entries_a:
            raise ValueError(f"model_a has no entry {name!r} (the models' architectures differ)")


def _check_alpha(alpha) -> float:
    if isinstance(alpha, (torch.Tensor, np.ndarray)) and alpha.ndim == 0:
        alpha = alpha.item()
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number, got {type(alpha).__name__}")
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    return alpha


def _alpha_grid(alphas) -> np.ndarray:
    """An int K >= 2 -> K evenly spaced points in [0, 1]; else a 1-D array of finite floats."""
    if isinstance(alphas, bool):
        raise TypeError("alphas must be an int K >= 2 or a 1-D sequence of floats, got a bool")
    if isinstance(alphas, numbers.Integral):
        if alphas < 2:
            raise ValueError(f"alphas as an int is a number of points K >= 2, got {alphas}")
        return np.linspace(0.0, 1.0, int(alphas))
    if isinstance(alphas, torch.Tensor):
        alphas = alphas.detach().cpu().numpy()
    try:
        grid = np.asarray(alphas, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            "alphas must be an int K >= 2 or a 1-D sequence of floats, "
            f"got {type(alphas).__name__}"
        ) from exc
    if grid.ndim != 1:
        raise ValueError(f"alphas must be 1-D, got shape {grid.shape}")
    if grid.size == 0:
        raise ValueError("alphas is empty")
    if not np.all(np.isfinite(grid)):
        raise ValueError(f"alphas must be finite, got {grid.tolist()}")
    return grid.copy()


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


def _is_pair(data) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    )


def _check_source(data, name: str) -> None:
    """Type and (for tensor pairs) shape and emptiness checks of one data source."""
    if isinstance(data, DataLoader):
        return  # emptiness is detected while iterating
    if not _is_pair(data):
        raise TypeError(
            f"{name} must be a torch DataLoader or an (x, y) pair of tensors, "
            f"got {type(data).__name__}"
        )
    x, y = data
    if x.ndim < 1:
        raise ValueError(f"{name}: x must have a leading sample axis, got shape {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name}: y must have shape ({x.shape[0]},) to match x of shape {tuple(x.shape)}, "
            f"got {tuple(y.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 samples)")


def _batches(data, batch_size: int, name: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield the ``(x, y)`` batches of one data source, in order."""
    if _is_pair(data):
        x, y = data
        for start in range(0, x.shape[0], batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"{name}: every DataLoader batch must be an (x, y) pair")
        yield batch[0], batch[1]


def _device_of(model: nn.Module) -> torch.device:
    for tensor in _entries(model).values():
        return tensor.device
    return torch.device("cpu")


def _tracking_batchnorms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def _check_sets(data) -> dict:
    """A dict name -> source of the evaluation sets (one entry ``None`` for a single set)."""
    if isinstance(data, Mapping):
        if len(data) == 0:
            raise ValueError("data is an empty dict: give at least one evaluation set")
        for key, source in data.items():
            _check_source(source, f"data[{key!r}]")
        return dict(data)
    _check_source(data, "data")
    return {None: data}


# --------------------------------------------------------------------------------------------
# Interpolation and BatchNorm re-estimation
# --------------------------------------------------------------------------------------------


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """The model with weights ``(1 - alpha) * theta_A + alpha * theta_B``.

    Reference for :func:`mmkern.interpolate`.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        Two models of the same architecture: the same parameter and buffer names, shapes and
        dtypes (``named_parameters()`` and ``named_buffers()``). Neither is modified.
    alpha : float
        Finite real number (a Python or NumPy scalar, or a 0-d tensor). 0 gives ``model_a``'s
        weights, 1 gives ``model_b``'s; values outside ``[0, 1]`` extrapolate.

    Returns
    -------
    torch.nn.Module
        A deep copy of ``model_a`` (same train/eval mode, on ``model_a``'s devices) whose every
        floating or complex parameter and buffer is ``(1 - alpha) * A + alpha * B``, computed in
        float64 (complex128) and rounded once to the entry's dtype. Integer and boolean buffers
        (e.g. BatchNorm ``num_batches_tracked``) are ``model_a``'s.

    Raises
    ------
    TypeError
        If a model is not an ``nn.Module`` or ``alpha`` is not a real number.
    ValueError
        If ``alpha`` is not finite, or the architectures differ; the message names the first
        mismatch in ``model_a``'s order, e.g. ``model_b has no entry 'fc.bias'`` or
        ``'conv.weight' has shape (8, 3, 3, 3) in model_a but (16, 3, 3, 3) in model_b``.
    """
    _check_same_architecture(model_a, model_b)
    alpha = _check_alpha(alpha)
    model = copy.deepcopy(model_a)
    entries_b = _entries(model_b)
    with torch.no_grad():
        for name, target in _entries(model).items():
            if not (target.is_floating_point() or target.is_complex()):
                continue  # integer/bool buffers stay model_a's
            wide = torch.complex128 if target.is_complex() else torch.float64
            a = target.detach().to(wide)
            b = entries_b[name].detach().to(device=target.device, dtype=wide)
            target.copy_((1.0 - alpha) * a + alpha * b)
    return model


def reset_and_estimate_batchnorm(
    model: nn.Module, bn_data: DataSource, batch_size: int = BN_BATCH_SIZE
) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them on ``bn_data``, in place.

    Reference for the BatchNorm re-estimation that :func:`mmkern.interpolation_curve` performs
    at every alpha. Unlike the other functions of this module it **modifies** ``model`` (it is
    applied to the fresh copies made by :func:`interpolate`).

    For every :class:`torch.nn.modules.batchnorm._BatchNorm` module that tracks running
    statistics: ``reset_running_stats()`` (mean 0, variance 1, ``num_batches_tracked`` 0) and
    ``momentum = None``, so that PyTorch keeps a cumulative moving average: after the pass,
    ``running_mean`` is the mean over batches of the per-batch means and ``running_var`` the
    mean over batches of the per-batch unbiased variances (every batch weighs the same, whatever
    its size). One forward pass per batch of ``bn_data`` runs under :func:`torch.no_grad` with
    the BatchNorm modules in training mode and every other module in evaluation mode (Dropout
    off, so the estimate is deterministic). Then the original ``momentum`` values are restored
    and the whole model is put in evaluation mode.

    Parameters
    ----------
    model : torch.nn.Module
        The model to update in place. Without tracking BatchNorm modules no pass is made.
    bn_data : torch.utils.data.DataLoader or (torch.Tensor, torch.Tensor)
        A DataLoader yielding ``(x, y)`` batches, or an ``(x, y)`` pair of tensors iterated in
        order in batches of ``batch_size`` samples. The labels are not used.
    batch_size : int, default :data:`BN_BATCH_SIZE` (256)
        Batch size used for an ``(x, y)`` pair (ignored for a DataLoader).

    Returns
    -------
    torch.nn.Module
        ``model`` itself, in evaluation mode.

    Raises
    ------
    TypeError, ValueError
        If ``bn_data`` is not a DataLoader or a valid ``(x, y)`` pair, or holds no samples.
    """
    _check_model(model, "model")
    batch_size = _check_batch_size(batch_size)
    _check_source(bn_data, "bn_data")
    batchnorms = _tracking_batchnorms(model)
    if not batchnorms:
        return model.eval()
    momenta = [bn.momentum for bn in batchnorms]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None
    model.eval()
    for bn in batchnorms:
        bn.train()
    device = _device_of(model)
    n_samples = 0
    try:
        with torch.no_grad():
            for x, _ in _batches(bn_data, batch_size, "bn_data"):
                if x.shape[0] == 0:
                    continue
                model(x.to(device))
                n_samples += x.shape[0]
    finally:
        for bn, momentum in zip(batchnorms, momenta):
            bn.momentum = momentum
        model.eval()
    if n_samples == 0:
        raise ValueError("bn_data is empty (0 samples)")
    return model


# --------------------------------------------------------------------------------------------
# Evaluation, curves and barriers
# --------------------------------------------------------------------------------------------


def _evaluate(
    model: nn.Module, data: DataSource, loss_fn: Optional[LossFn], batch_size: int, name: str
) -> tuple[float, float]:
    """(per-sample mean loss, accuracy) of ``model`` (already in eval mode) on one set."""
    device = _device_of(model)
    loss_sum = 0.0
    n_correct = 0
    n_samples = 0
    with torch.no_grad():
        for x, y in _batches(data, batch_size, name):
            if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
                raise TypeError(f"{name}: labels y must be integer class indices, got {y.dtype}")
            if x.shape[0] == 0:
                continue
            x = x.to(device)
            y = y.to(device=device, dtype=torch.long)
            logits = model(x)
            if not (isinstance(logits, torch.Tensor) and logits.ndim == 2
                    and logits.shape[0] == y.shape[0]):
                raise ValueError(
                    f"the model must return logits of shape ({y.shape[0]}, C), "
                    f"got {_describe(logits)}"
                )
            if loss_fn is None:
                losses = F.cross_entropy(logits.to(torch.float64), y, reduction="none")
            else:
                losses = loss_fn(logits, y)
                if not (isinstance(losses, torch.Tensor)
                        and tuple(losses.shape) == (y.shape[0],)):
                    raise ValueError(
                        f"loss_fn must return per-sample losses of shape ({y.shape[0]},), "
                        f"got {_describe(losses)}"
                    )
            loss_sum += float(losses.to(torch.float64).sum())
            n_correct += int((logits.argmax(dim=1) == y).sum())
            n_samples += y.shape[0]
    if n_samples == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    return loss_sum / n_samples, n_correct / n_samples


def _describe(value) -> str:
    """Shape of a tensor, else the type name (for error messages)."""
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}"
    return type(value).__name__


def _barrier_pair(
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


def _make_curve(alphas: np.ndarray, loss: np.ndarray, accuracy: np.ndarray) -> InterpolationCurve:
    loss_barrier, loss_barrier_mean = _barrier_pair(alphas, loss)
    error_barrier, error_barrier_mean = _barrier_pair(alphas, 1.0 - accuracy)
    return InterpolationCurve(
        alphas=alphas,
        loss=loss,
        accuracy=accuracy,
        loss_barrier=loss_barrier,
        loss_barrier_mean=loss_barrier_mean,
        error_barrier=error_barrier,
        error_barrier_mean=error_barrier_mean,
    )


def interpolation_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    data,
    alphas=11,
    bn_data: Optional[DataSource] = None,
    loss_fn: Optional[LossFn] = None,
    batch_size: int = BN_BATCH_SIZE,
):
    """Loss, accuracy and barriers along the straight line from ``model_a`` to ``model_b``.

    Reference for :func:`mmkern.interpolation_curve`. For each alpha, in order: build
    ``interpolate(model_a, model_b, alpha)``; if it has BatchNorm, re-estimate the statistics
    once with :func:`reset_and_estimate_batchnorm` on ``bn_data``; put it in evaluation mode;
    evaluate every set of ``data``.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        Two classifiers of the same architecture (see :func:`interpolate`), returning logits of
        shape ``(batch, C)``. Neither is modified.
    data : DataLoader, (x, y) pair of tensors, or dict
        The evaluation set: a DataLoader yielding ``(x, y)`` batches, or an ``(x, y)`` pair of
        tensors (``y`` integer labels, shape ``(n,)``) iterated in batches of ``batch_size``;
        or a dict name -> either, to evaluate several sets with the same interpolated models.
    alphas : int or 1-D sequence of float, default 11
        An int ``K >= 2``: ``numpy.linspace(0, 1, K)``. Otherwise a non-empty 1-D sequence,
        array or tensor of finite floats, used in the given order (extrapolation allowed).
    bn_data : DataLoader or (x, y) pair of tensors, optional
        Data for the BatchNorm re-estimation (usually the training data). Required when the
        models have a BatchNorm module that tracks running statistics; ignored otherwise.
    loss_fn : callable, optional
        ``loss_fn(logits, y)`` returning per-sample losses, shape ``(batch,)``. Default:
        cross-entropy computed in float64.
    batch_size : int, default 256
        Batch size of the ``(x, y)`` pairs (evaluation and BatchNorm data; DataLoaders keep
        their own batching). The BatchNorm estimate depends on it.

    Returns
    -------
    InterpolationCurve or dict
        For a single set, an :class:`InterpolationCurve` with ``alphas``, ``loss``, ``accuracy``
        (float64, shape ``(K,)``) and the four barriers (``None`` unless ``alphas`` contains
        both 0 and 1). For a dict of sets, a dict with the same keys, in the same order, mapping
        each name to its :class:`InterpolationCurve`.

    Raises
    ------
    TypeError
        Models that are not modules; data, alphas or batch_size of the wrong type; float labels.
    ValueError
        Different architectures; alphas not finite, empty, not 1-D, or an int below 2; an empty
        evaluation set or ``bn_data``; a BatchNorm model without ``bn_data``; model outputs or
        ``loss_fn`` results of the wrong shape.
    """
    _check_same_architecture(model_a, model_b)
    grid = _alpha_grid(alphas)
    sets = _check_sets(data)
    batch_size = _check_batch_size(batch_size)
    has_batchnorm = bool(_tracking_batchnorms(model_a))
    if has_batchnorm:
        if bn_data is None:
            raise ValueError(
                "the models have BatchNorm layers: give bn_data (usually the training data) to "
                "re-estimate their statistics at every alpha"
            )
        _check_source(bn_data, "bn_data")

    loss = {key: np.empty(grid.size, dtype=np.float64) for key in sets}
    accuracy = {key: np.empty(grid.size, dtype=np.float64) for key in sets}
    for k, alpha in enumerate(grid):
        model = interpolate(model_a, model_b, float(alpha))
        if has_batchnorm:
            reset_and_estimate_batchnorm(model, bn_data, batch_size)
        model.eval()
        for key, source in sets.items():
            name = "data" if key is None else f"data[{key!r}]"
            loss[key][k], accuracy[key][k] = _evaluate(model, source, loss_fn, batch_size, name)

    curves = {key: _make_curve(grid.copy(), loss[key], accuracy[key]) for key in sets}
    if not isinstance(data, Mapping):
        return curves[None]
    return curves


def pairwise_barriers(
    models: Sequence[nn.Module],
    data,
    alphas=11,
    bn_data: Optional[DataSource] = None,
    loss_fn: Optional[LossFn] = None,
    batch_size: int = BN_BATCH_SIZE,
):
    """The four barriers between every pair of models.

    Reference for :func:`mmkern.pairwise_barriers`: for every pair ``i < j``, the barriers of
    ``interpolation_curve(models[i], models[j], data, alphas, bn_data, loss_fn, batch_size)``.

    Parameters
    ----------
    models : sequence of torch.nn.Module
        ``M >= 2`` models of the same architecture. None is modified.
    data, alphas, bn_data, loss_fn, batch_size
        As in :func:`interpolation_curve`; ``alphas`` must contain both 0 and 1 (the barriers
        need both endpoints).

    Returns
    -------
    PairwiseBarriers or dict
        For a single evaluation set, a :class:`PairwiseBarriers` holding four float64 ``(M, M)``
        matrices (symmetric, zero diagonal). For a dict of sets, a dict with the same keys
        mapping each name to its :class:`PairwiseBarriers`.

    Raises
    ------
    TypeError, ValueError
        As :func:`interpolation_curve`; also fewer than two models, or ``alphas`` without 0 or 1.
    """
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise TypeError(f"models must be a sequence of nn.Module, got {type(models).__name__}")
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"models must hold at least 2 models, got {len(models)}")
    for i, model in enumerate(models):
        _check_model(model, f"models[{i}]")
    for j in range(1, len(models)):
        try:
            _check_same_architecture(models[0], models[j])
        except ValueError as exc:
            raise ValueError(
                f"models[0] and models[{j}] differ: "
                + str(exc).replace("model_a", "models[0]").replace("model_b", f"models[{j}]")
            ) from None
    grid = _alpha_grid(alphas)
    if not (np.any(grid == 0.0) and np.any(grid == 1.0)):
        raise ValueError(f"alphas must contain both 0 and 1 for barriers, got {grid.tolist()}")
    sets = _check_sets(data)

    fields = ("loss_barrier", "loss_barrier_mean", "error_barrier", "error_barrier_mean")
    m = len(models)
    matrices = {key: {f: np.zeros((m, m), dtype=np.float64) for f in fields} for key in sets}
    for i in range(m):
        for j in range(i + 1, m):
            curves = interpolation_curve(
                models[i], models[j], data, grid, bn_data=bn_data, loss_fn=loss_fn,
                batch_size=batch_size,
            )
            if not isinstance(curves, dict):
                curves = {None: curves}
            for key, curve in curves.items():
                for f in fields:
                    matrices[key][f][i, j] = matrices[key][f][j, i] = getattr(curve, f)

    results = {key: PairwiseBarriers(**matrices[key]) for key in sets}
    if not isinstance(data, Mapping):
        return results[None]
    return results
