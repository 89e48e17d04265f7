"""Input plumbing shared by training, evaluation, prediction and activation capture."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import numpy as np
import torch
from torch import nn

from mmkern._validate import check_positive_int
from mmkern.train.config import TrainConfig


def resolve_device(device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; an unavailable CUDA device is an error."""
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        if device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(device)
        except RuntimeError as e:
            raise ValueError(f"device: {e}") from None
    else:
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(dev)!r} requested but torch.cuda.is_available() is False "
                         f"(use device='cpu' or 'auto')")
    return dev


def as_config(config) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    raise TypeError(f"config must be a TrainConfig or a dict, got {type(config).__name__}")


def as_inputs(data, name: str = "data") -> torch.Tensor:
    """Inputs ``x`` of an ArraySplit-like object, an ``(x, y)`` pair, or an array/tensor."""
    x = data
    if hasattr(data, "x") and hasattr(data, "y"):
        x = data.x
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x = data[0]
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{name}: inputs must be floating point, got dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if isinstance(x, torch.Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name}: inputs must be floating point, got dtype {x.dtype}")
        return x
    raise TypeError(f"{name} must be an ArraySplit, an (x, y) pair, a numpy array or a torch "
                    f"tensor, got {type(data).__name__}")


def as_labelled(data, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` tensors of an ArraySplit-like object or an ``(x, y)`` pair; y int64 ``(n,)``."""
    if hasattr(data, "x") and hasattr(data, "y"):
        y = data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        y = data[1]
    else:
        raise TypeError(f"{name} must be an ArraySplit or an (x, y) pair, got "
                        f"{type(data).__name__}")
    x = as_inputs(data, name)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
        raise TypeError(f"{name}: labels must be integers of shape (n,), got dtype {y.dtype} "
                        f"shape {tuple(y.shape)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
    return x, y.to(torch.int64)


def device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def batches(x: torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Consecutive slices of ``x`` moved to ``device`` as float32."""
    for start in range(0, x.shape[0], batch_size):
        yield x[start:start + batch_size].to(device=device, dtype=torch.float32)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, no autograd; restore each module's own mode after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic torch algorithms (and cuDNN) inside the block; previous settings after.

    ``warn_only=True``: an operation without a deterministic implementation warns rather than
    fails. On CUDA, cuBLAS also needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use; it is
    set here if absent, which only helps when CUDA was not used earlier in the process.
    """
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = torch.backends.cudnn
    previous_cudnn = (cudnn.deterministic, cudnn.benchmark)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        cudnn.deterministic, cudnn.benchmark = previous_cudnn


@contextlib.contextmanager
def torch_threads(threads: Optional[int]) -> Iterator[None]:
    """Run the block with ``threads`` torch intra-op threads (``None``: leave as is)."""
    if threads is None:
        yield
        return
    threads = check_positive_int(threads, "threads")
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def finite_or_none(value: float) -> Optional[float]:
    """JSON has no NaN/Inf: non-finite floats become ``None``."""
    value = float(value)
    return value if np.isfinite(value) else None
