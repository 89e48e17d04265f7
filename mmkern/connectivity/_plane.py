"""Two-dimensional loss planes: the plane through three models (Garipov et al. 2018) or around one
model along two filter-normalised random directions (Li et al. 2018).

Every point of a plane is ``theta(x, y) = base + x D1 + y D2`` entry by entry (float64, rounded
once to each entry's dtype), so the fast path (:func:`mmkern.connectivity.loss_plane`, many
points per data pass on the curve engine) and the reference (one model per point) share these
definitions:

* **through three models** ``theta_0, theta_1, theta_2``: ``u = theta_1 - theta_0``, ``v =
  theta_2 - theta_0``; ``D1 = u / |u|`` and ``D2 = (v - (v . u_hat) u_hat) / |...|`` are the
  orthonormal basis of Gram-Schmidt over the models' *parameters* (inner products over
  parameters only). Buffers (BatchNorm running statistics) take the same affine combination of
  the three models' buffers, so each model's own point reproduces it exactly. The models sit at
  ``(0, 0)``, ``(|u|, 0)`` and ``(v . u_hat, |v - (v . u_hat) u_hat|)``; the grid covers them with
  a margin of ``margin`` times each extent on every side.
* **random directions** around ``theta``: two Gaussian directions drawn from ``seed`` (CPU
  generator, float64, parameters in registration order), each filter-normalised: every filter (the
  slice of a parameter of 2 or more axes along its first axis, an output unit or channel) is
  rescaled to the norm of the same filter of ``theta``; parameters of one axis (biases,
  normalisation weights) and buffers get direction 0 (Li et al.'s "ignore biasbn"). The grid
  spans ``[-extent, extent]`` on both axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from torch import nn

from mmkern.connectivity._models import entries

_F64 = torch.float64


@dataclass(frozen=True)
class LossPlane:
    """Loss and accuracy on a grid of a two-dimensional plane of weights.

    Attributes
    ----------
    x, y : numpy.ndarray
        float64 ``(nx,)`` and ``(ny,)``: the plane coordinates of the grid's columns and rows.
    loss, accuracy : numpy.ndarray
        float64 ``(ny, nx)``: per-sample mean loss and accuracy at ``(x[i], y[j])`` in ``[j, i]``.
    points : dict
        ``{label: (x, y)}``: the given models' coordinates (``"models[0]"`` ...), or
        ``{"center": (0.0, 0.0)}`` for random directions.
    point_loss, point_accuracy : dict
        ``{label: float}``: loss and accuracy at each of ``points`` (evaluated with the grid:
        the given models' own values).
    directions : str
        ``"models"`` or ``"random"``.
    """

    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    points: dict
    point_loss: dict
    point_accuracy: dict
    directions: str


def floating_entries(model: nn.Module) -> dict:
    """The model's floating parameters and buffers as float64 CPU tensors, by name."""
    return {name: t.detach().to("cpu", _F64) for name, t in entries(model).items()
            if t.is_floating_point()}


def model_plane(models: list, names: tuple[str, ...]) -> tuple[dict, dict, dict, dict]:
    """(base, D1, D2, points) of the plane through three models (see the module docstring)."""
    states = [floating_entries(m) for m in models]
    params = {name for name, _ in models[0].named_parameters()}
    u = {k: states[1][k] - states[0][k] for k in states[0]}
    v = {k: states[2][k] - states[0][k] for k in states[0]}
    uu = math.fsum(float((u[k] * u[k]).sum()) for k in u if k in params)
    uv = math.fsum(float((u[k] * v[k]).sum()) for k in u if k in params)
    vv = math.fsum(float((v[k] * v[k]).sum()) for k in u if k in params)
    residual = vv - uv * uv / uu if uu > 0 else 0.0
    if not (uu > 0 and residual > 1e-12 * vv):
        raise ValueError(f"{names[0]}, {names[1]} and {names[2]} are (nearly) on one line: they span "
                         "no plane")
    a1, b2 = 1.0 / math.sqrt(uu), 1.0 / math.sqrt(residual)
    a2 = -uv / uu * b2
    d1 = {k: a1 * u[k] for k in u}
    d2 = {k: a2 * u[k] + b2 * v[k] for k in u}
    points = {names[0]: (0.0, 0.0), names[1]: (math.sqrt(uu), 0.0),
              names[2]: (uv / math.sqrt(uu), math.sqrt(residual))}
    return states[0], d1, d2, points


def random_plane(model: nn.Module, seed: int) -> tuple[dict, dict, dict, dict]:
    """(base, D1, D2, points) of two filter-normalised random directions around ``model``."""
    base = floating_entries(model)
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    directions = []
    for _ in range(2):
        d = {k: torch.zeros_like(t) for k, t in base.items()}
        for name in params:
            if name not in base:
                continue
            theta = base[name]
            draw = torch.randn(theta.shape, generator=generator, dtype=_F64)
            if theta.ndim >= 2:
                filters = draw.reshape(theta.shape[0], -1)
                target = theta.reshape(theta.shape[0], -1).norm(dim=1, keepdim=True)
                norm = filters.norm(dim=1, keepdim=True)
                d[name] = (filters * torch.where(norm > 0, target / norm, torch.zeros_like(norm))
                           ).reshape(theta.shape)
        directions.append(d)
    return base, directions[0], directions[1], {"center": (0.0, 0.0)}


def grid_axes(points: Mapping, n: tuple[int, int], margin: float, extent: float, directions: str):
    """The grid's x and y coordinates (float64)."""
    if directions == "random":
        return np.linspace(-extent, extent, n[0]), np.linspace(-extent, extent, n[1])
    xs, ys = zip(*points.values())
    axes = []
    for values, count in ((xs, n[0]), (ys, n[1])):
        low, high = min(values), max(values)
        pad = margin * (high - low)
        axes.append(np.linspace(low - pad, high + pad, count))
    return axes[0], axes[1]


def coordinates(xs: np.ndarray, ys: np.ndarray, points: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated (x, y) of a plane, in order: the grid row by row, then the points."""
    px, py = (np.array([p[k] for p in points.values()], dtype=np.float64) for k in (0, 1))
    return (np.concatenate([np.tile(xs, len(ys)), px]), np.concatenate([np.repeat(ys, len(xs)), py]))


def point_state(base: dict, d1: dict, d2: dict, x: float, y: float) -> dict:
    """``base + x D1 + y D2`` for every floating entry (float64)."""
    return {k: base[k] + x * d1[k] + y * d2[k] for k in base}
