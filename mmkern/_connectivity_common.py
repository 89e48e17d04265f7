"""Shared pieces of the connectivity evaluation: result types, input checks, data batches, barriers.

Used by the fast path (:mod:`mmkern.connectivity`) and the plain reference
(:mod:`mmkern.reference.connectivity`), so that both accept and reject exactly the same inputs
and compute the barriers of a curve the same way. The conventions (data sources, labels, loss,
accuracy) are documented in :mod:`mmkern.reference.connectivity`.
"""

from __future__ import annotations

import contextlib
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

#: Default number of samples per batch when an ``(x, y)`` pair of tensors is iterated (for both
#: evaluation and BatchNorm re-estimation). The BatchNorm estimate depends on it: the cumulative
#: average gives every batch the same weight.
BN_BATCH_SIZE = 256

DataSource = Union[DataLoader, Sequence[torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BARRIER_FIELDS = ("loss_barrier", "loss_barrier_mean", "error_barrier", "error_barrier_mean")


# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def check_model(model, name: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def entries(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters then buffers of ``model`` by qualified name, in registration order."""
    entries = {name: p for name, p in model.named_parameters()}
    entries.update({name: b for name, b in model.named_buffers()})
    return entries


def check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise ValueError naming the first difference of names, shapes or dtypes."""
    check_model(model_a, "model_a")
    check_model(model_b, "model_b")
    entries_a = entries(model_a)
    entries_b = entries(model_b)
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


def check_alpha(alpha) -> float:
    if isinstance(alpha, (torch.Tensor, np.ndarray)) and alpha.ndim == 0:
        alpha = alpha.item()
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number, got {type(alpha).__name__}")
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}")
    return alpha


def alpha_grid(alphas) -> np.ndarray:
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


def check_positive_int(value, name: str) -> int:
    """``value`` as an int >= 1, or TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def check_batch_size(batch_size) -> int:
    return check_positive_int(batch_size, "batch_size")


def is_pair(data) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(isinstance(t, torch.Tensor) for t in data)
    )


def check_source(data, name: str) -> None:
    """Type and (for tensor pairs) shape and emptiness checks of one data source."""
    if isinstance(data, DataLoader):
        return  # emptiness is detected while iterating
    if not is_pair(data):
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


def batches(data, batch_size: int, name: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield the ``(x, y)`` batches of one data source, in order."""
    if is_pair(data):
        x, y = data
        for start in range(0, x.shape[0], batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise TypeError(f"{name}: every DataLoader batch must be an (x, y) pair")
        yield batch[0], batch[1]


def device_of(model: nn.Module) -> torch.device:
    for tensor in entries(model).values():
        return tensor.device
    return torch.device("cpu")


def tracking_batchnorms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@contextlib.contextmanager
def batchnorm_estimation(models: Sequence[nn.Module]) -> Iterator[None]:
    """Set ``models`` up for re-estimating their BatchNorm statistics, and restore them after.

    Every tracking BatchNorm is reset (mean 0, variance 1, no batches) with ``momentum=None``,
    so forward passes accumulate a cumulative average, and is the only module in training mode
    (Dropout stays off). Afterwards the momenta are restored and each model is in eval mode.
    """
    layers = [tracking_batchnorms(model) for model in models]
    momenta = [[bn.momentum for bn in bns] for bns in layers]
    for model, bns in zip(models, layers):
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
    try:
        yield
    finally:
        for model, bns, moms in zip(models, layers, momenta):
            for bn, momentum in zip(bns, moms):
                bn.momentum = momentum
            model.eval()


def check_sets(data) -> dict:
    """A dict name -> source of the evaluation sets (one entry ``None`` for a single set)."""
    if isinstance(data, Mapping):
        if len(data) == 0:
            raise ValueError("data is an empty dict: give at least one evaluation set")
        for key, source in data.items():
            check_source(source, f"data[{key!r}]")
        return dict(data)
    check_source(data, "data")
    return {None: data}


def check_models(models) -> list:
    """``models`` as a list of at least two modules of one architecture (pairwise functions)."""
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise TypeError(f"models must be a sequence of nn.Module, got {type(models).__name__}")
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"models must hold at least 2 models, got {len(models)}")
    for i, model in enumerate(models):
        check_model(model, f"models[{i}]")
    for j in range(1, len(models)):
        try:
            check_same_architecture(models[0], models[j])
        except ValueError as exc:
            raise ValueError(
                f"models[0] and models[{j}] differ: "
                + str(exc).replace("model_a", "models[0]").replace("model_b", f"models[{j}]")
            ) from None
    return models


def check_barrier_grid(alphas) -> np.ndarray:
    grid = alpha_grid(alphas)
    if not (np.any(grid == 0.0) and np.any(grid == 1.0)):
        raise ValueError(f"alphas must contain both 0 and 1 for barriers, got {grid.tolist()}")
    return grid


def check_bn_data(model: nn.Module, bn_data) -> bool:
    """Whether ``model`` has tracking BatchNorm layers; then ``bn_data`` must be a valid source."""
    if not tracking_batchnorms(model):
        return False
    if bn_data is None:
        raise ValueError(
            "the models have BatchNorm layers: give bn_data (usually the training data) to "
            "re-estimate their statistics at every alpha"
        )
    check_source(bn_data, "bn_data")
    return True


def set_name(key) -> str:
    return "data" if key is None else f"data[{key!r}]"


def check_labels(y: torch.Tensor, name: str) -> None:
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"{name}: labels y must be integer class indices, got {y.dtype}")


def batch_metrics(
    logits, y: torch.Tensor, loss_fn: Optional[LossFn]
) -> tuple[float, int]:
    """(sum of the per-sample losses, number correct) of one batch; ``y`` long, on the device."""
    if not (isinstance(logits, torch.Tensor) and logits.ndim == 2
            and logits.shape[0] == y.shape[0]):
        raise ValueError(
            f"the model must return logits of shape ({y.shape[0]}, C), got {describe(logits)}"
        )
    if loss_fn is None:
        losses = F.cross_entropy(logits.to(torch.float64), y, reduction="none")
    else:
        losses = loss_fn(logits, y)
        if not (isinstance(losses, torch.Tensor) and tuple(losses.shape) == (y.shape[0],)):
            raise ValueError(
                f"loss_fn must return per-sample losses of shape ({y.shape[0]},), "
                f"got {describe(losses)}"
            )
    return float(losses.to(torch.float64).sum()), int((logits.argmax(dim=1) == y).sum())


def per_set(results: dict, data):
    """The single result for a single set (key None), else the dict keyed like ``data``."""
    return dict(results) if isinstance(data, Mapping) else results[None]


# --------------------------------------------------------------------------------------------
# Barriers
# --------------------------------------------------------------------------------------------


def describe(value) -> str:
    """Shape of a tensor, else the type name (for error messages)."""
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}"
    return type(value).__name__


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


def make_curve(alphas: np.ndarray, loss: np.ndarray, accuracy: np.ndarray) -> InterpolationCurve:
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


