"""Plain PyTorch reference implementations of the linear-mode-connectivity evaluation.

These functions are the ground truth of the test suite and the baseline of the benchmarks for
:mod:`mmkern.connectivity`. They are written literally from the definitions in
``docs/definitions.md`` ("Connectivity") and the API contract, for clarity and not for speed: for every
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
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from mmkern._validate import check_batch_size
from mmkern.connectivity._checks import (
    alpha_grid,
    BN_BATCH_SIZE,
    check_alpha,
    check_barrier_grid,
    check_bn_data,
    check_model,
    check_models,
    check_same_architecture,
    check_sets,
    check_source,
    DataSource,
    LossFn,
    set_name,
)
from mmkern.connectivity._data import batch_metrics, batches, running_on
from mmkern.connectivity._models import (
    batchnorm_estimation,
    device_of,
    entries,
    tracking_batchnorms,
)
from mmkern.connectivity._results import (
    BARRIER_FIELDS,
    InterpolationCurve,
    make_curve,
    PairwiseBarriers,
    per_set,
)

__all__ = [
    "BN_BATCH_SIZE",
    "InterpolationCurve",
    "PairwiseBarriers",
    "interpolate",
    "interpolation_curve",
    "loss_plane",
    "pairwise_barriers",
    "reset_and_estimate_batchnorm",
]

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
    check_same_architecture(model_a, model_b)
    alpha = check_alpha(alpha)
    model = copy.deepcopy(model_a)
    entries_b = entries(model_b)
    with torch.no_grad():
        for name, target in entries(model).items():
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
    check_model(model, "model")
    batch_size = check_batch_size(batch_size)
    check_source(bn_data, "bn_data")
    if not tracking_batchnorms(model):
        return model.eval()
    device = device_of(model)
    n_samples = 0
    with batchnorm_estimation([model]), torch.no_grad():
        for x, _, _ in batches(bn_data, batch_size, "bn_data", labels=False):
            if x.shape[0] == 0:
                continue
            with running_on("bn_data", x):
                model(x.to(device))
            n_samples += x.shape[0]
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
    device = device_of(model)
    loss_sum = 0.0
    n_correct = 0
    n_samples = 0
    with torch.no_grad():
        for x, y, top in batches(data, batch_size, name):
            if x.shape[0] == 0:
                continue
            y = y.to(device=device, dtype=torch.long)
            with running_on(name, x):
                logits = model(x.to(device))
            batch_loss, batch_correct = batch_metrics(logits, y, loss_fn, top, name)
            loss_sum += float(batch_loss)
            n_correct += int(batch_correct)
            n_samples += y.shape[0]
    if n_samples == 0:
        raise ValueError(f"{name} is empty (0 samples)")
    return loss_sum / n_samples, n_correct / n_samples


def interpolation_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    data,
    alphas=11,
    bn_data: Optional[DataSource] = None,
    loss_fn: Optional[LossFn] = None,
    batch_size: int = BN_BATCH_SIZE,
    repair: bool = False,
    path=None,
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
    check_same_architecture(model_a, model_b)
    grid = alpha_grid(alphas)
    sets = check_sets(data)
    batch_size = check_batch_size(batch_size)
    from mmkern.connectivity import check_path, check_repair
    from mmkern.connectivity._path import coefficients, path_entries
    from mmkern.connectivity._repair import repaired

    repair = check_repair(repair, bn_data)
    if path is not None:
        check_path(path, model_a, model_b, grid, repair)
        states = path_entries(model_a, path.bend, model_b)
    if repair:  # the corrected endpoints (mmkern.connectivity._repair)
        model_a, model_b = repaired(model_a, bn_data, batch_size), repaired(model_b, bn_data, batch_size)
    has_batchnorm = check_bn_data(model_a, bn_data)

    loss = {key: np.empty(grid.size, dtype=np.float64) for key in sets}
    accuracy = {key: np.empty(grid.size, dtype=np.float64) for key in sets}
    for k, alpha in enumerate(grid):
        if path is None:
            model = interpolate(model_a, model_b, float(alpha))
        else:  # the path's point: c_a theta_a + c_bend theta_bend + c_b theta_b, rounded once
            c = coefficients(path.kind, float(alpha))
            model = copy.deepcopy(model_a)
            with torch.no_grad():
                for name, tensor in entries(model).items():
                    if name in states[0]:
                        tensor.copy_((c[0] * states[0][name] + c[1] * states[1][name]
                                      + c[2] * states[2][name]).to(tensor.dtype))
        if has_batchnorm:
            reset_and_estimate_batchnorm(model, bn_data, batch_size)
        model.eval()
        for key, source in sets.items():
            loss[key][k], accuracy[key][k] = _evaluate(
                model, source, loss_fn, batch_size, set_name(key)
            )
    curves = {key: make_curve(grid.copy(), loss[key], accuracy[key], set_label=set_name(key)) for key in sets}
    return per_set(curves, data)


def pairwise_barriers(
    models: Sequence[nn.Module],
    data,
    alphas=11,
    bn_data: Optional[DataSource] = None,
    loss_fn: Optional[LossFn] = None,
    batch_size: int = BN_BATCH_SIZE,
    align: Optional[str] = None,
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
    align : {None, "weights", "activations"}, optional
        Permute ``models[j]`` to match ``models[i]`` first (:func:`mmkern.connectivity.align`,
        activation matching on ``bn_data`` if given, else on ``data``), then evaluate the line.

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
    models = check_models(models)
    grid = check_barrier_grid(alphas)
    sets = check_sets(data)

    m = len(models)
    matrices = {
        key: {f: np.zeros((m, m), dtype=np.float64) for f in BARRIER_FIELDS} for key in sets
    }
    for i in range(m):
        for j in range(i + 1, m):
            partner = models[j]
            if align is not None:
                from mmkern.connectivity import align as align_models
                from mmkern.connectivity._align import first_inputs

                source = bn_data if bn_data is not None else next(iter(sets.values()))
                partner = align_models(models[i], models[j], align,
                                       source if align == "activations" else None,
                                       batch_size=batch_size,
                                       example_input=next(first_inputs(source, batch_size))).model
            try:
                curves = interpolation_curve(
                    models[i], partner, sets, grid, bn_data=bn_data, loss_fn=loss_fn,
                    batch_size=batch_size,
                )
            except ValueError as exc:  # name the pair's models as the fast path does
                raise ValueError(str(exc).replace("model_a", f"models[{i}]")
                                 .replace("model_b", f"models[{j}]")) from None
            for key, curve in curves.items():
                for f in BARRIER_FIELDS:
                    matrices[key][f][i, j] = matrices[key][f][j, i] = getattr(curve, f)
    return per_set({key: PairwiseBarriers(**matrices[key]) for key in sets}, data)


def loss_plane(models, data, grid=11, directions: str = "models", bn_data: Optional[DataSource] = None,
               loss_fn: Optional[LossFn] = None, batch_size: int = BN_BATCH_SIZE, *, margin: float = 0.2,
               extent: float = 1.0, seed: int = 0):
    """Loss and accuracy on a plane of weights, one model per grid point.

    Reference for :func:`mmkern.loss_plane`: the same plane (the definitions of
    :mod:`mmkern.connectivity._plane`), then for every grid point ``(x, y)`` (rows of ``y``,
    columns of ``x``) a deep copy of the first model whose floating entries are ``base + x D1 +
    y D2`` computed in float64 and rounded once to each entry's dtype, its BatchNorm statistics
    re-estimated on ``bn_data`` (:func:`reset_and_estimate_batchnorm`), evaluated on every set;
    then the same at the models' own points.

    Returns
    -------
    LossPlane or dict
        As :func:`mmkern.loss_plane`.
    """
    from mmkern.connectivity import check_plane_args, plane_of, plane_result
    from mmkern.connectivity._plane import coordinates, grid_axes, point_state

    models, directions, n, margin, extent, seed = check_plane_args(models, directions, grid, margin, extent,
                                                                   seed)
    sets = check_sets(data)
    batch_size = check_batch_size(batch_size)
    has_batchnorm = check_bn_data(models[0], bn_data)
    base, d1, d2, points = plane_of(models, directions, seed)
    xs, ys = grid_axes(points, n, margin, extent, directions)
    cx, cy = coordinates(xs, ys, points)  # the grid row by row, then the models' own points
    loss = {key: np.empty(cx.size) for key in sets}
    accuracy = {key: np.empty(cx.size) for key in sets}
    for k, (x, y) in enumerate(zip(cx.tolist(), cy.tolist())):
        model = copy.deepcopy(models[0])
        state = point_state(base, d1, d2, x, y)
        with torch.no_grad():
            for name, tensor in entries(model).items():
                if name in state:
                    tensor.copy_(state[name].to(tensor.dtype))
        if has_batchnorm:
            reset_and_estimate_batchnorm(model, bn_data, batch_size)
        model.eval()
        for key, source in sets.items():
            loss[key][k], accuracy[key][k] = _evaluate(model, source, loss_fn, batch_size, set_name(key))
    return per_set({key: plane_result(xs, ys, loss[key], accuracy[key], points, directions, set_name(key))
                    for key in sets}, data)
