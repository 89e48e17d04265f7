"""What the connectivity code needs to know of a torch model: its entries, device and BatchNorms,
and the set-up of BatchNorm re-estimation (shared by the fast path and the reference)."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def entries(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters then buffers of ``model`` by qualified name, in registration order."""
    entries = {name: p for name, p in model.named_parameters()}
    entries.update({name: b for name, b in model.named_buffers()})
    return entries


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
