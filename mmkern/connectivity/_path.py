"""Curved low-loss paths between two models (Garipov et al. 2018): a quadratic Bezier curve or a
two-segment polygonal chain through a trained bend point.

For a path parameter ``t`` in [0, 1] every floating entry is ``c_a(t) theta_a + c_bend(t)
theta_bend + c_b(t) theta_b`` (float64, rounded once to the entry's dtype) with

* ``bezier``: ``c = ((1 - t)^2, 2 t (1 - t), t^2)``;
* ``polychain``: ``c = (1 - 2t, 2t, 0)`` for ``t <= 1/2`` and ``(0, 2 - 2t, 2t - 1)`` after.

:func:`fit_path` trains the bend as Garipov et al. do: it starts at the midpoint of the two
models; each step draws one ``t`` uniformly, builds the model at ``t`` functionally
(``torch.func.functional_call``: gradients reach the bend alone, the endpoints stay fixed), runs
it in training mode (BatchNorm with batch statistics) on a batch of the training data and takes
an SGD step on its cross-entropy. Evaluation (``interpolation_curve(..., path=...)``) re-estimates
BatchNorm statistics at every ``t``, like any other point.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from mmkern.connectivity._models import entries

KINDS = ("bezier", "polychain")


def coefficients(kind: str, t: float) -> tuple[float, float, float]:
    """``(c_a, c_bend, c_b)`` of the path point at ``t`` (see the module docstring)."""
    if kind == "bezier":
        return (1.0 - t) ** 2, 2.0 * t * (1.0 - t), t * t
    if t <= 0.5:
        return 1.0 - 2.0 * t, 2.0 * t, 0.0
    return 0.0, 2.0 - 2.0 * t, 2.0 * t - 1.0


def fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's floating entries (names, shapes, bytes): which endpoints a path joins."""
    digest = hashlib.sha256()
    for name, t in entries(model).items():
        if t.is_floating_point():
            digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
            digest.update(t.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Path:
    """A trained curve between two models.

    Attributes
    ----------
    kind : str
        ``"bezier"`` or ``"polychain"``.
    bend : torch.nn.Module
        A model of the endpoints' architecture holding the bend point's weights (buffers: the
        midpoint of the endpoints').
    endpoints : tuple of str
        Fingerprints of ``model_a`` and ``model_b`` (:func:`fingerprint`): evaluating the path
        between other models is refused.
    history : list of dict
        Per epoch: the mean training loss at the drawn points and the seconds taken.
    """

    kind: str
    bend: nn.Module
    endpoints: tuple
    history: list = field(default_factory=list)


def path_entries(model_a: nn.Module, bend: nn.Module, model_b: nn.Module) -> list[dict]:
    """The three models' floating entries as float64 CPU tensors (a, bend, b)."""
    return [{k: t.detach().to("cpu", torch.float64) for k, t in entries(m).items() if t.is_floating_point()}
            for m in (model_a, bend, model_b)]


def fit_path(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str,
             epochs: int, lr: float, momentum: float, weight_decay: float, batch_size: int,
             seed: int) -> Path:
    """Train the bend point (see the module docstring); arguments validated by the caller."""
    device = next(model_a.parameters()).device
    bend = copy.deepcopy(model_a).train()
    with torch.no_grad():
        for (name, target), a, b in zip(entries(bend).items(), entries(model_a).values(),
                                        entries(model_b).values()):
            if target.is_floating_point():
                target.copy_((a.double() + b.double()).div(2).to(target.dtype))
    params_a = {k: p.detach() for k, p in model_a.named_parameters()}
    params_b = {k: p.detach() for k, p in model_b.named_parameters()}
    bend_params = dict(bend.named_parameters())
    buffers = {k: v for k, v in bend.named_buffers()}
    optimizer = torch.optim.SGD(bend.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = epochs * steps_per_epoch
    history, step = [], 0
    for epoch in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        loss_sum = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if idx.numel() < 2:
                continue  # BatchNorm needs two samples
            t = float(torch.rand((), generator=generator))
            ca, cm, cb = coefficients(kind, t)
            params = {k: ca * params_a[k] + cm * bend_params[k] + cb * params_b[k] for k in bend_params}
            for group in optimizer.param_groups:  # a cosine schedule, as the fine-tuning methods
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            logits = functional_call(bend, {**params, **buffers}, (x[idx].to(device),))
            loss = F.cross_entropy(logits, y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach())
        history.append({"epoch": epoch + 1, "loss": loss_sum / steps_per_epoch,
                        "seconds": time.perf_counter() - started})
        if not math.isfinite(history[-1]["loss"]):
            from mmkern.train._errors import TrainingDiverged

            raise TrainingDiverged(f"fitting the {kind} path diverged in epoch {epoch + 1} (lr={lr}); lower "
                                   "the learning rate")
    return Path(kind=kind, bend=bend.eval(), endpoints=(fingerprint(model_a), fingerprint(model_b)),
                history=history)
