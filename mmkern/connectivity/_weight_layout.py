"""Flat views of a model's weights: where every floating parameter and buffer sits in a few vectors.

The connectivity fast path interpolates whole models with one fused kernel call
(:func:`mmkern.connectivity._lerp.lerp_many`) per vector instead of one small operation per tensor. A
:class:`WeightLayout` records, for one architecture, which flat vector ("group") and which
offset each floating entry occupies, so that a model's weights can be gathered into the vectors
and any row of interpolated weights scattered back into a model.

Groups are keyed by ``(device, dtype)`` with the dtype the one the lerp runs in: float32
entries (and complex64, as real/imaginary pairs) in float32; float64, complex128, float16 and
bfloat16 entries in float64, so that a half-precision weight is rounded only once, from the
float64 result, exactly as :func:`mmkern.reference.interpolate` does. Integer and boolean
buffers are not part of any group: they keep the values of the model they are loaded into.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mmkern.connectivity._models import entries


@dataclass(frozen=True)
class _Slot:
    name: str
    group: int
    offset: int
    numel: int  # in the group's dtype (twice the entry's numel for complex entries)
    shape: tuple[int, ...]
    is_complex: bool


def _lerp_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float32, torch.complex64) else torch.float64


def _as_real_flat(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach()
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor.resolve_conj())
    return tensor.reshape(-1)


class WeightLayout:
    """The flat-vector layout of one architecture's floating weights.

    Parameters
    ----------
    model : torch.nn.Module
        Any model of the architecture (its parameters then buffers, in registration order).
    """

    def __init__(self, model: nn.Module):
        keys: dict[tuple[torch.device, torch.dtype], int] = {}
        sizes: list[int] = []
        slots = []
        for name, tensor in entries(model).items():
            if not (tensor.is_floating_point() or tensor.is_complex()):
                continue
            key = (tensor.device, _lerp_dtype(tensor.dtype))
            group = keys.setdefault(key, len(keys))
            if group == len(sizes):
                sizes.append(0)
            numel = tensor.numel() * (2 if tensor.is_complex() else 1)
            slots.append(_Slot(name, group, sizes[group], numel, tuple(tensor.shape),
                               tensor.is_complex()))
            sizes[group] += numel
        self.groups = list(keys)  # (device, dtype) of each flat vector
        self.sizes = sizes
        self.slots = slots

    @property
    def nbytes(self) -> int:
        """Bytes of one set of flat vectors (one model's floating weights)."""
        return sum(size * dtype.itemsize for size, (_, dtype) in zip(self.sizes, self.groups))

    def flatten(self, model: nn.Module) -> list[torch.Tensor]:
        """The model's floating weights as one contiguous 1-D vector per group.

        Returns
        -------
        list of torch.Tensor
            ``len(self.groups)`` vectors; vector ``g`` has shape ``(self.sizes[g],)`` and the
            device and dtype of ``self.groups[g]``.
        """
        current = entries(model)
        parts: list[list[torch.Tensor]] = [[] for _ in self.groups]
        for slot in self.slots:
            device, dtype = self.groups[slot.group]
            parts[slot.group].append(_as_real_flat(current[slot.name]).to(device, dtype))
        return [torch.cat(p) if p else torch.empty(0, dtype=g[1], device=g[0])
                for p, g in zip(parts, self.groups)]

    def flatten_values(self, values: dict) -> list[torch.Tensor]:
        """Real float64 tensors by entry name (e.g. a direction in weight space) as one float64
        vector per group, on the group's device (entries not given are 0)."""
        parts: list[list[torch.Tensor]] = [[] for _ in self.groups]
        for slot in self.slots:
            device, _ = self.groups[slot.group]
            value = values.get(slot.name)
            parts[slot.group].append(torch.zeros(slot.numel, dtype=torch.float64, device=device) if value is None
                                     else value.reshape(-1).to(device, torch.float64))
        return [torch.cat(p) if p else torch.empty(0, dtype=torch.float64, device=g[0])
                for p, g in zip(parts, self.groups)]

    def load(self, model: nn.Module, rows: list[torch.Tensor]) -> None:
        """Copy one flat vector per group into the floating entries of ``model``, in place.

        Each value is rounded once to its entry's dtype; the entries keep their memory format.
        """
        current = entries(model)
        with torch.no_grad():
            for slot in self.slots:
                source = rows[slot.group][slot.offset:slot.offset + slot.numel]
                target = current[slot.name]
                if slot.is_complex:
                    source = torch.view_as_complex(source.view(-1, 2))
                target.copy_(source.view(slot.shape))
