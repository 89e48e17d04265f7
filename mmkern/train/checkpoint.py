"""Model checkpoints in safetensors: weights plus the architecture spec needed to rebuild them.

A checkpoint is a ``.safetensors`` file holding the model's ``state_dict`` (parameters and
buffers, e.g. BatchNorm running statistics) and one string metadata entry, ``"mmkern"``: the JSON
of ``{"format": "mmkern-model/1", "spec": model.spec, "mmkern_version": ...}`` (``spec``: the
architecture name, input shape, number of classes and options). A single entry keeps the file
bytes reproducible: safetensors writes several metadata entries in an unspecified order, so equal
models would not give equal files (or SHA-256 sums). Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Union

import torch
from torch import nn

from mmkern._io import atomic_write
from mmkern._version import __version__
from mmkern.train._inputs import resolve_device
from mmkern.train.models import ZooModel, build_model

__all__ = ["CHECKPOINT_FORMAT", "file_sha256", "load_model", "save_model"]

CHECKPOINT_FORMAT = "mmkern-model/1"


def save_model(path: Union[str, os.PathLike], model: ZooModel) -> None:
    """Write a model's weights and architecture spec to a safetensors file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination, conventionally ``model.safetensors``.
    model : ZooModel
        A model from :func:`mmkern.train.build_model` (it needs ``model.spec``). Not modified.
    """
    from safetensors.torch import save

    if not isinstance(model, nn.Module) or not getattr(model, "spec", None):
        raise TypeError("model must be built by mmkern.train.build_model (it needs .spec)")
    tensors = {name: t.detach().to("cpu").clone().contiguous()
               for name, t in model.state_dict().items()}
    header = {"format": CHECKPOINT_FORMAT, "spec": model.spec, "mmkern_version": __version__}
    payload = save(tensors, metadata={"mmkern": json.dumps(header, sort_keys=True)})
    atomic_write(path, lambda f: f.write(payload))


def load_model(path: Union[str, os.PathLike], *, device="cpu") -> ZooModel:
    """Rebuild a model from a checkpoint written by :func:`save_model`.

    The architecture is rebuilt from the stored spec without touching the global torch RNG,
    and every parameter and buffer is loaded (strictly: names and shapes must match).

    Parameters
    ----------
    path : str or os.PathLike
    device : str or torch.device, default "cpu"

    Returns
    -------
    ZooModel
        In eval mode, on ``device``.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not an mmkern checkpoint, or its tensors do not fit the stored architecture.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(path)
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path}: not a readable safetensors file: {e}") from None
    try:
        header = json.loads(metadata["mmkern"])
        spec = header["spec"]
        if header["format"] != CHECKPOINT_FORMAT:
            raise ValueError(header["format"])
    except (KeyError, TypeError, ValueError, RecursionError):
        raise ValueError(f"{path}: not an mmkern model checkpoint (no 'mmkern' metadata of "
                         f"format {CHECKPOINT_FORMAT!r})") from None
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)
            and isinstance(spec.get("input_shape"), list) and isinstance(spec.get("options"), dict)
            and all(isinstance(d, int) for d in spec["input_shape"])):
        raise ValueError(f"{path}: the checkpoint's architecture spec is not a table of 'name', "
                         f"'input_shape', 'num_classes' and 'options': {spec!r:.200}")
    try:
        with torch.random.fork_rng(devices=[]):
            model = build_model(spec["name"], tuple(spec["input_shape"]), spec.get("num_classes"),
                                **spec["options"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: the checkpoint's architecture spec does not build: {e}") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: tensors do not match the architecture {spec}: {e}") from None
    return model.to(resolve_device(device)).eval()


def file_sha256(path: Union[str, os.PathLike]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
