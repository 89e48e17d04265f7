"""Iterating the data sources of the connectivity functions, and one batch's loss and accuracy
(shared by the fast path and the reference)."""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch.nn import functional as F

from mmkern.connectivity._checks import LossFn, check_labels, describe, is_pair


def _check_finite(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() or x.is_complex():
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name}: x contains NaN or infinity ({bad} entries); the inputs must be finite")


def _label_bounds(y: torch.Tensor, name: str) -> int:
    """The largest label of ``y`` after checking the labels' type and that none is negative."""
    check_labels(y, name)
    if y.numel() == 0:
        return -1
    low, high = torch.stack([y.min(), y.max()]).tolist()  # one synchronisation
    if low < 0:
        hint = " (-100 is torch's ignore_index; mmkern counts every sample, so drop those samples)" \
            if (y == -100).any() else ""
        raise ValueError(f"{name}: y holds the label {int(low)}; labels must be class indices >= 0{hint}")
    return int(high)


def batches(data, batch_size: int, name: str, labels: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
    """Yield the validated ``(x, y, largest label)`` batches of one data source, in order.

    ``x`` must be finite and (with ``labels``) ``y`` integer class indices >= 0; a ``ValueError``
    names the source otherwise. An (x, y) pair is checked once, a DataLoader batch by batch.
    :func:`batch_metrics` checks the largest label against the model's output width.
    """
    if is_pair(data):
        x, y = data
        _check_finite(x, name)
        top = _label_bounds(y, name) if labels else -1
        for start in range(0, x.shape[0], batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size], top
        return
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                and all(isinstance(t, torch.Tensor) for t in batch)):
            raise TypeError(f"{name}: every DataLoader batch must be an (x, y) pair of tensors")
        x, y = batch
        _check_finite(x, name)
        yield x, y, _label_bounds(y, name) if labels else -1


@contextlib.contextmanager
def running_on(name: str, x: torch.Tensor) -> Iterator[None]:
    """A model's own error on a batch (wrong input shape or dtype) as a ``ValueError`` naming the
    data source; out-of-memory errors pass unchanged."""
    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{name}: the model cannot run on inputs of shape {tuple(x.shape)} and dtype "
                         f"{x.dtype} ({first})") from None


def batch_metrics(
    logits, y: torch.Tensor, loss_fn: Optional[LossFn], top: int, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the per-sample losses, number correct) of one batch, as 0-d float64 and int64
    tensors on the logits' device (nothing is read back to the host here); ``y`` long, on the
    device, ``top`` the largest label of the batch's source (:func:`batches`).

    A sample whose logits or loss are not finite (a diverged interpolated model) counts as loss
    ``inf`` and as wrong: a curve then shows ``inf``, never NaN.
    """
    if not (isinstance(logits, torch.Tensor) and logits.ndim == 2
            and logits.shape[0] == y.shape[0]):
        raise ValueError(
            f"the model must return logits of shape ({y.shape[0]}, C), got {describe(logits)}"
        )
    if top >= logits.shape[1]:
        raise ValueError(f"{name}: y holds the label {top}, but the model has {logits.shape[1]} outputs "
                         f"(classes 0 to {logits.shape[1] - 1})")
    if loss_fn is None:
        losses = F.cross_entropy(logits.to(torch.float64), y, reduction="none")
    else:
        losses = loss_fn(logits, y)
        if not (isinstance(losses, torch.Tensor) and tuple(losses.shape) == (y.shape[0],)):
            raise ValueError(
                f"loss_fn must return per-sample losses of shape ({y.shape[0]},), "
                f"got {describe(losses)}"
            )
    losses = losses.to(torch.float64)
    ok = torch.isfinite(logits).all(dim=1) & torch.isfinite(losses)
    losses = torch.where(ok, losses, torch.full_like(losses, float("inf")))
    return losses.sum(), ((logits.argmax(dim=1) == y) & ok).sum()
