"""Seeded, batched data augmentation for 1-D ``(n, C, L)`` and image ``(n, C, H, W)`` batches.

The augmentation string is described in :mod:`mmkern.train.config`. Every random draw comes from
a CPU :class:`torch.Generator` given by the caller (seeded from ``aug_seed``) and is then moved
to the batch's device, so the draws, and hence training, do not depend on the device's RNG.
"""

from __future__ import annotations

from typing import Optional

import torch

from mmkern.train.config import parse_augmentation

__all__ = ["Augmenter"]


class Augmenter:
    """Apply a parsed augmentation spec to batches.

    Parameters
    ----------
    spec : str
        Augmentation string, e.g. ``"shift+flip"``; ``"none"`` makes :meth:`__call__` the
        identity.
    input_shape : tuple of int
        Sample shape without the batch axis: ``(C, L)``, ``(C, H, W)`` (or ``(d,)``, which takes
        only ``noise``).
    input_std : float
        Standard deviation of the training inputs; ``noise:s`` adds noise of std ``s *
        input_std``.

    Raises
    ------
    ValueError
        A component that does not apply to ``input_shape`` (``flip`` needs images; ``shift``
        needs a spatial axis).
    """

    def __init__(self, spec: str, input_shape: tuple[int, ...], input_std: float = 1.0):
        self.parts = parse_augmentation(spec)
        self.input_shape = tuple(input_shape)
        spatial = self.input_shape[1:]
        if "flip" in self.parts and len(self.input_shape) != 3:
            raise ValueError(f"augmentation 'flip' needs image inputs (C, H, W), got input "
                             f"shape {self.input_shape}")
        if "shift" in self.parts and len(self.input_shape) not in (2, 3):
            raise ValueError(f"augmentation 'shift' needs inputs (C, L) or (C, H, W), got input "
                             f"shape {self.input_shape}")
        self.shift: Optional[int] = None
        if "shift" in self.parts:
            default = max(1, round(min(spatial) / 8))
            self.shift = int(self.parts["shift"] or default)
        self.noise_std = float(self.parts.get("noise") or 0.1) * float(input_std)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch ``x`` of shape ``(n, *input_shape)``; returns a new tensor.

        Draws, in this order and only for the components present: shifts ``(n, ndim)`` integers,
        flips ``(n,)`` booleans, noise ``(n, *input_shape)`` standard normals (float32).
        """
        if not self.parts:
            return x
        n = x.shape[0]
        if self.shift is not None:
            k = self.shift
            ndim = len(self.input_shape) - 1
            shifts = torch.randint(-k, k + 1, (n, ndim), generator=generator).to(x.device)
            x = _circular_shift(x, shifts[:, 0]) if ndim == 1 else _zero_fill_shift(x, shifts, k)
        if "flip" in self.parts:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if "noise" in self.parts:
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
            x = x + self.noise_std * noise.to(device=x.device, dtype=x.dtype)
        return x


def _circular_shift(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each sample of ``(n, C, L)`` by its own ``shifts[i]`` positions along L."""
    n, c, length = x.shape
    positions = torch.arange(length, device=x.device)
    index = (positions[None, :] - shifts[:, None]) % length
    return x.gather(2, index[:, None, :].expand(n, c, length))


def _zero_fill_shift(x: torch.Tensor, shifts: torch.Tensor, k: int) -> torch.Tensor:
    """Translate each image of ``(n, C, H, W)`` by ``shifts[i] = (dy, dx)``, filling with zeros.

    Equivalent to zero-padding by ``k`` and cropping the ``H x W`` window at offset ``k - d``.
    """
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (k, k, k, k))
    rows = (k - shifts[:, 0])[:, None] + torch.arange(h, device=x.device)[None, :]
    cols = (k - shifts[:, 1])[:, None] + torch.arange(w, device=x.device)[None, :]
    x = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * k))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))
