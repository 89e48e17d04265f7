"""Activation capture and prediction: models -> the arrays the metric functions take.

:func:`capture_activations` returns ``{layer: (n, d) float32}``, the layout of
:func:`mmkern.pairwise_svcca` and friends (samples first). :func:`save_activations` writes them
to one ``.npz`` file (one array per layer, uncompressed, atomically) and
:func:`load_activations` reads them back as plain arrays, so for a population::

    acts = [load_activations(p)["conv2"] for p in paths]     # M arrays (n, d_m)
    sim = mmkern.pairwise_svcca(acts)                          # (M, M)

:func:`predict` returns ``(n, C)`` float32 probabilities; stacked over models that is the
``(M, n, C)`` input of :func:`mmkern.predictive_multiplicity`.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from mmkern._io import atomic_write, read_npz
from mmkern._validate import check_batch_size
from mmkern.train._inputs import as_inputs, batches, device_of, eval_mode
from mmkern.train.models import measurable_layers

__all__ = ["REDUCTIONS", "capture_activations", "load_activations", "predict",
           "save_activations"]

#: How a layer output with spatial axes ``(n, c, *spatial)`` becomes ``(n, d)``.
REDUCTIONS = ("flatten", "mean")


def _reduce(out, name: str, reduce: str) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"layer {name!r} returns {type(out).__name__}, not a tensor; it cannot "
                        f"be captured")
    if out.ndim == 0:
        raise ValueError(f"layer {name!r} returns a scalar, not per-sample outputs")
    if out.ndim == 1:
        return out[:, None]
    if reduce == "mean" and out.ndim > 2:
        return out.flatten(2).mean(2)
    return out.flatten(1)


def capture_activations(
    model: nn.Module,
    data,
    layers: Optional[Sequence[str]] = None,
    *,
    reduce: str = "flatten",
    batch_size: int = 512,
) -> dict[str, np.ndarray]:
    """Outputs of named layers on a data set, one ``(n, d)`` float32 array per layer.

    The model runs in eval mode without gradients on the device of its parameters; every
    module's train/eval mode is restored afterwards, the inputs are not modified, and the forward
    hooks are removed even on error.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(b, *input_shape)`` float32 to logits.
    data : ArraySplit, (x, y) pair, numpy.ndarray or torch.Tensor
        Inputs ``x`` of shape ``(n, *input_shape)`` (floating; cast to float32 per batch).
    layers : sequence of str, optional
        Submodule paths (see ``model.named_modules()``); default
        :func:`~mmkern.train.measurable_layers` of the model.
    reduce : {"flatten", "mean"}, default "flatten"
        For outputs with spatial axes ``(n, c, *spatial)``: ``"flatten"`` keeps every unit,
        ``d = c * prod(spatial)`` (channel-major, as ``tensor.flatten(1)``); ``"mean"`` averages
        over the spatial axes, ``d = c``. Outputs ``(n, d)`` are returned as they are.
    batch_size : int, default 512
        Samples per forward pass (changes nothing but memory use and float rounding).

    Returns
    -------
    dict of str to numpy.ndarray
        ``{layer: (n, d_layer) float32}``, C-contiguous, in the order of ``layers``.

    Raises
    ------
    ValueError
        Unknown layer name (the message lists the model's measurable layers), bad ``reduce``,
        or empty ``layers``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(map(repr, REDUCTIONS))}, got "
                         f"{reduce!r}")
    batch_size = check_batch_size(batch_size)
    if layers is None:
        layers = measurable_layers(model)
    elif isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one layer")
    if len(set(layers)) != len(layers):
        raise ValueError(f"layers has duplicates: {layers}")
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules or not name:
            known = getattr(model, "layer_names", None) or [n for n in modules if n]
            raise ValueError(f"model has no layer {name!r}; measurable layers: "
                             f"{', '.join(known)}")
    x = as_inputs(data, "data")
    n = int(x.shape[0])
    device = device_of(model)
    outputs: dict[str, Optional[np.ndarray]] = {name: None for name in layers}
    offset = [0]
    current: dict[str, torch.Tensor] = {}

    def hook_for(name):
        def hook(module, args, out):
            current[name] = _reduce(out, name, reduce).detach()
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in layers]
    try:
        with eval_mode(model):
            for xb in batches(x, batch_size, device):
                current.clear()
                model(xb)
                b = xb.shape[0]
                for name in layers:
                    if name not in current:
                        raise ValueError(f"layer {name!r} was not called in the forward pass")
                    value = current[name].to("cpu", torch.float32).numpy()
                    if value.shape[0] != b:
                        raise ValueError(f"layer {name!r} output has {value.shape[0]} rows for a "
                                         f"batch of {b} samples; it is not per-sample")
                    if outputs[name] is None:
                        outputs[name] = np.empty((n,) + value.shape[1:], dtype=np.float32)
                    outputs[name][offset[0]:offset[0] + b] = value
                offset[0] += b
    finally:
        for handle in handles:
            handle.remove()
    if n == 0:
        return {name: np.empty((0, 0), dtype=np.float32) for name in layers}
    return {name: outputs[name] for name in layers}


def predict(model: nn.Module, data, *, batch_size: int = 1024) -> np.ndarray:
    """Softmax probabilities of a classifier, in eval mode without gradients.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(b, *input_shape)`` float32 to logits ``(b, C)``; its modes are restored after.
    data : ArraySplit, (x, y) pair, numpy.ndarray or torch.Tensor
        Inputs ``(n, *input_shape)``.
    batch_size : int, default 1024

    Returns
    -------
    numpy.ndarray
        ``(n, C)`` float32; each row sums to 1 (softmax computed in float64, then rounded).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    batch_size = check_batch_size(batch_size)
    x = as_inputs(data, "data")
    device = device_of(model)
    parts = []
    with eval_mode(model):
        for xb in batches(x, batch_size, device):
            logits = model(xb)
            if logits.ndim != 2 or logits.shape[0] != xb.shape[0]:
                raise ValueError(f"model output must be logits (b, C), got {tuple(logits.shape)}")
            parts.append(torch.softmax(logits.double(), dim=1).to("cpu", torch.float32).numpy())
    if not parts:
        return np.empty((0, 0), dtype=np.float32)
    return np.ascontiguousarray(np.concatenate(parts))


def save_activations(path: Union[str, os.PathLike], activations: dict[str, np.ndarray]) -> None:
    """Write ``{layer: (n, d) array}`` to one uncompressed ``.npz`` file, atomically.

    Each layer becomes the entry ``<layer>.npy``; ``numpy.load(path)[layer]`` gives the array
    back, and :func:`load_activations` the whole dict.

    Raises
    ------
    ValueError
        Empty dict, a layer name with ``/`` or ``\\``, or an array that is not 2-D.
    """
    if not isinstance(activations, dict) or not activations:
        raise ValueError("activations must be a non-empty dict {layer: (n, d) array}")
    arrays = {}
    for name, value in activations.items():
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            raise ValueError(f"activation names must be non-empty strings without '/' or '\\', "
                             f"got {name!r}")
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) \
            else np.asarray(value)
        if array.ndim != 2:
            raise ValueError(f"activations[{name!r}] must be (n, d), got shape {array.shape}")
        arrays[name] = array

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                # a fixed timestamp: the same activations give the same bytes (np.savez stamps the time)
                entry = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                archive.writestr(entry, buffer.getvalue(), compress_type=zipfile.ZIP_STORED)

    atomic_write(path, write)


def load_activations(path: Union[str, os.PathLike]) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_activations`: ``{layer: (n, d) array}`` in file order.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not a readable ``.npz`` file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"activation file {path!r} does not exist")
    return read_npz(path, "activation file")
