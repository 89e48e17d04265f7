"""Image corruptions at severities 1..5: out-of-distribution test sets for image data.

Every corruption takes a float array ``(n, C, H, W)`` with values in [0, 1] and returns a new
float32 array of the same shape, clipped to [0, 1]; the input is never modified. Randomness comes
from ``seed`` alone (never the global NumPy state), so equal arguments give identical outputs.

========================  =================================  =====  =====  =====  =====  =====
corruption                parameter                            1      2      3      4      5
========================  =================================  =====  =====  =====  =====  =====
``gaussian_noise``        noise standard deviation sigma      0.05   0.10   0.15   0.20   0.30
``gaussian_blur``         blur sigma in pixels                0.50   0.75   1.00   1.50   2.00
``contrast``              contrast factor c                   0.70   0.50   0.35   0.20   0.10
``pixel_shift``           shift as a fraction f of min(H, W)  1/16   2/16   3/16   4/16   5/16
========================  =================================  =====  =====  =====  =====  =====

- ``gaussian_noise``: ``x + sigma * z``, z i.i.d. standard normal per pixel and channel, then
  clipped (so the effective noise is smaller near 0 and 1).
- ``gaussian_blur``: Gaussian filter over H and W of each channel (``scipy.ndimage``, border mode
  ``"nearest"``, kernel truncated at 4 sigma). Deterministic.
- ``contrast``: ``m + c * (x - m)`` with m the mean of the image over all its pixels and channels.
  Deterministic; stays within [0, 1] without clipping.
- ``pixel_shift``: every image moves by exactly ``s = max(1, floor(f * min(H, W) + 1/2))`` pixels
  in the max-norm: its offset (dy, dx) is drawn uniformly from the ``8 s`` offsets with
  ``max(|dy|, |dx|) = s``; vacated pixels are 0. Shift in pixels at severities 1..5: 1, 1, 2, 2, 3
  for 8x8; 2, 4, 5, 7, 9 for 28x28; 2, 4, 6, 8, 10 for 32x32.

The severities of one corruption share their random draws (common random numbers): for a given
seed, ``gaussian_noise`` uses the same z at every severity and ``pixel_shift`` moves each image in
about the same direction, so a higher severity is the same perturbation, only stronger.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from mmkern.data._arrays import ArraySplit
from mmkern._validate import check_int
from mmkern.data._checks import check_names, check_seed, check_severities, derive_rng

__all__ = [
    "CORRUPTIONS",
    "SEVERITY_PARAMETERS",
    "DEFAULT_SEVERITIES",
    "corrupt",
    "corrupted_sets",
    "shift_pixels",
]

CORRUPTIONS: tuple[str, ...] = ("gaussian_noise", "gaussian_blur", "contrast", "pixel_shift")
"""Names of the corruptions, in the order OOD sets are attached."""

SEVERITY_PARAMETERS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.05, 0.10, 0.15, 0.20, 0.30),
    "gaussian_blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "contrast": (0.7, 0.5, 0.35, 0.2, 0.1),
    "pixel_shift": (1 / 16, 2 / 16, 3 / 16, 4 / 16, 5 / 16),
}
"""The parameter of each corruption at severities 1..5 (see the module docstring)."""

DEFAULT_SEVERITIES: tuple[int, ...] = (1, 3, 5)
"""Severities attached as OOD sets by the image loaders unless told otherwise."""


def _check_images(x: Any, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must have a floating dtype (values in [0, 1]), got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (n, C, H, W), got {x.shape}")
    if x.size:
        if not np.isfinite(x).all():
            raise ValueError(f"{name} must hold finite values in [0, 1], got NaN or inf")
        if x.min() < 0 or x.max() > 1:
            raise ValueError(f"{name} must hold finite values in [0, 1], got range "
                             f"[{x.min()}, {x.max()}]")
    return x


def shift_pixels(height: int, width: int, severity: int) -> int:
    """Shift in pixels of ``pixel_shift`` at ``severity`` for ``height`` x ``width`` images."""
    f = SEVERITY_PARAMETERS["pixel_shift"][severity - 1]
    return max(1, int(math.floor(f * min(height, width) + 0.5)))


def _ring_offsets(s: int) -> np.ndarray:
    """The ``8 s`` offsets (dy, dx) with max(|dy|, |dx|) = s, ordered by angle, shape (8s, 2)."""
    r = np.arange(-s, s + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    keep = np.maximum(np.abs(dy), np.abs(dx)) == s
    off = np.stack([dy[keep], dx[keep]], axis=1)
    return off[np.argsort(np.arctan2(off[:, 0], off[:, 1]), kind="stable")]


def _shift(x: np.ndarray, s: int, u: np.ndarray) -> np.ndarray:
    offsets = _ring_offsets(s)
    which = np.minimum((u * len(offsets)).astype(np.int64), len(offsets) - 1)
    out = np.zeros_like(x)
    h, w = x.shape[2:]
    for k in np.unique(which):
        dy, dx = (int(v) for v in offsets[k])
        idx = np.flatnonzero(which == k)
        if abs(dy) >= h or abs(dx) >= w:
            continue  # the image leaves the frame entirely
        src_y = slice(max(0, -dy), h - max(0, dy))
        dst_y = slice(max(0, dy), h - max(0, -dy))
        src_x = slice(max(0, -dx), w - max(0, dx))
        dst_x = slice(max(0, dx), w - max(0, -dx))
        out[idx, :, dst_y, dst_x] = x[idx, :, src_y, src_x]
    return out


def corrupt(x: Any, corruption: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """Apply one corruption at one severity to a batch of images.

    Parameters
    ----------
    x : array_like of floating dtype, shape (n, C, H, W)
        Images with values in [0, 1].
    corruption : str
        One of :data:`CORRUPTIONS`.
    severity : int
        1 (mildest) to 5 (strongest); parameters in the module docstring.
    seed : int, optional
        Seed of the random draws (noise, shift directions), in [0, 2**32).

    Returns
    -------
    numpy.ndarray of float32, shape (n, C, H, W)
        The corrupted images, clipped to [0, 1]; a new array.

    Raises
    ------
    TypeError
        If ``x`` is not floating or an argument has the wrong type.
    ValueError
        If ``x`` is not 4-D or outside [0, 1], ``corruption`` is unknown, or ``severity`` is
        not in 1..5.
    """
    x = _check_images(x)
    if not isinstance(corruption, str):
        raise TypeError(f"corruption must be a str, got {type(corruption).__name__}")
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption: unknown {corruption!r}; valid: {', '.join(CORRUPTIONS)}")
    severity = check_int(severity, "severity", low=1, high=5)
    seed = check_seed(seed)
    x = x.astype(np.float32, copy=False)
    param = SEVERITY_PARAMETERS[corruption][severity - 1]
    if corruption == "gaussian_noise":
        z = derive_rng(seed, "corruption", corruption).standard_normal(x.shape, dtype=np.float32)
        out = x + np.float32(param) * z
    elif corruption == "gaussian_blur":
        from scipy.ndimage import gaussian_filter

        out = gaussian_filter(x, sigma=(0, 0, param, param), mode="nearest", truncate=4.0)
    elif corruption == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
        out = mean + np.float32(param) * (x - mean)
    else:  # pixel_shift
        u = derive_rng(seed, "corruption", corruption).random(x.shape[0])
        out = _shift(x, shift_pixels(x.shape[2], x.shape[3], severity), u)
    return np.ascontiguousarray(np.clip(out, 0.0, 1.0, dtype=np.float32))


def corrupted_sets(test: ArraySplit, corruptions: Iterable[str] | str | None = CORRUPTIONS,
                   severities: Iterable[int] | int | None = DEFAULT_SEVERITIES, *,
                   seed: int = 0) -> tuple[dict[str, ArraySplit], dict[str, dict]]:
    """Corrupted copies of a test set, named ``"<corruption>-<severity>"``.

    Parameters
    ----------
    test : ArraySplit
        The images to corrupt, ``x`` of shape (n, C, H, W) in [0, 1].
    corruptions : sequence of str or None, optional
        Corruptions to apply (default: all of :data:`CORRUPTIONS`); None or empty for none.
    severities : sequence of int or None, optional
        Severities in 1..5 (default :data:`DEFAULT_SEVERITIES`).
    seed : int, optional
        Seed of the random draws.

    Returns
    -------
    sets : dict of str to ArraySplit
        E.g. ``"gaussian_noise-3"``; labels are those of ``test``; ordered by corruption, then
        severity as given.
    info : dict of str to dict
        Per set: corruption, severity, parameter name and value, seed (JSON-serialisable).
    """
    corruptions = check_names(corruptions, "ood", CORRUPTIONS)
    severities = check_severities(severities)
    seed = check_seed(seed)
    sets: dict[str, ArraySplit] = {}
    info: dict[str, dict] = {}
    parameter = {"gaussian_noise": "sigma", "gaussian_blur": "sigma_pixels",
                 "contrast": "factor", "pixel_shift": "fraction_of_size"}
    for c in corruptions:
        for s in severities:
            key = f"{c}-{s}"
            sets[key] = ArraySplit(corrupt(test.x, c, s, seed=seed), test.y.copy())
            entry = {"corruption": c, "severity": s, parameter[c]: SEVERITY_PARAMETERS[c][s - 1],
                     "seed": seed}
            if c == "pixel_shift" and test.x.ndim == 4:
                entry["shift_pixels"] = shift_pixels(test.x.shape[2], test.x.shape[3], s)
            info[key] = entry
    return sets, info

