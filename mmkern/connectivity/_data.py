"""Iterating the data sources of the connectivity functions, and one batch's loss and accuracy
(shared by the fast path and the reference)."""

from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch.nn import functional as F

from mmkern.connectivity._checks import LossFn, describe, is_pair


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


def batch_metrics(
    logits, y: torch.Tensor, loss_fn: Optional[LossFn]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the per-sample losses, number correct) of one batch, as 0-d float64 and int64
    tensors on the logits' device (nothing is read back to the host here); ``y`` long, on the
    device."""
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
    return losses.to(torch.float64).sum(), (logits.argmax(dim=1) == y).sum()
