"""The input checks of the connectivity functions and their constants.

Used by the fast path (:mod:`mmkern.connectivity`) and the plain reference
(:mod:`mmkern.reference.connectivity`), so that both accept and reject exactly the same inputs.
The conventions (data sources, labels, loss, accuracy) are documented in
:mod:`mmkern.reference.connectivity`.
"""

from __future__ import annotations

import math
import re
import numbers
from typing import Callable, Mapping, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mmkern.connectivity._models import entries, tracking_batchnorms

#: Default number of samples per batch when an ``(x, y)`` pair of tensors is iterated (for both
#: evaluation and BatchNorm re-estimation). The BatchNorm estimate depends on it: the cumulative
#: average gives every batch the same weight.
BN_BATCH_SIZE = 256

DataSource = Union[DataLoader, Sequence[torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_model(model, name: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")


def _structure(model: nn.Module) -> dict[str, str]:
    """Each submodule's class and settings (``extra_repr`` without ``inplace``, which changes no
    result), by name: what decides the forward besides the weights."""
    out = {}
    for name, module in model.named_modules():
        settings = ", ".join(part for part in module.extra_repr().split(", ") if not part.startswith("inplace="))
        out[name or "(the model)"] = f"{type(module).__module__}.{type(module).__qualname__}({settings})"
    return out


def check_finite_weights(model: nn.Module, name: str) -> None:
    """``ValueError`` naming the model and the entry when a floating parameter or buffer holds a
    NaN or infinity (0 * NaN is NaN: it would spoil every interpolated model)."""
    for entry, t in entries(model).items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name}: {entry!r} contains NaN or infinity; the weights of the models "
                             "must be finite")


def check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise ValueError naming the first difference of module structure (submodule classes and
    their settings, e.g. ReLU vs Tanh or a different stride), parameter and buffer names, shapes
    or dtypes, or a non-finite weight (which would make every interpolated model non-finite).
    The interpolated models run ``model_a``'s forward, so the two must share it."""
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
    check_finite_weights(model_a, "model_a")
    check_finite_weights(model_b, "model_b")
    structure_a, structure_b = _structure(model_a), _structure(model_b)
    if structure_a != structure_b:
        for name in [*structure_a, *structure_b]:
            a, b = structure_a.get(name, "absent"), structure_b.get(name, "absent")
            if a != b:
                short = lambda s: re.sub(r"^torch\.nn\.modules\.\w+\.", "", s)  # noqa: E731
                raise ValueError(f"module {name!r} is {short(a)} in model_a but {short(b)} in model_b "
                                 "(the models' architectures differ)")


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
        check_finite_weights(model, f"models[{i}]")
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


def describe(value) -> str:
    """Shape of a tensor, else the type name (for error messages)."""
    if isinstance(value, torch.Tensor):
        return f"shape {tuple(value.shape)}"
    return type(value).__name__
