"""Permutation alignment of two models (Ainsworth et al. 2023, "Git Re-Basin"): weight matching
and activation matching, each step a linear assignment (``scipy.optimize.linear_sum_assignment``).

Weight matching maximises sum over parameters of <W_a, P(W_b)> (Frobenius inner product of model
a's parameters and model b's permuted ones) by coordinate descent over the groups: in a random
order (from ``seed``), each group's permutation is the assignment that maximises the objective
with every other group held fixed; sweeps stop when no group improves it. Each step solves an
assignment exactly, so the objective never decreases.

Activation matching runs both models (evaluation mode, no gradients) over ``data`` and, for each
group, accumulates in float64 the correlation between every unit of a and every unit of b over
samples (and positions, for feature maps) at the group's activation outputs; one assignment per
group maximises the summed correlation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import fx, nn

from mmkern.connectivity._data import running_on
from mmkern.connectivity._permutation import PermutationSpec, block_index, permute

_F64 = torch.float64


@dataclass(frozen=True)
class Alignment:
    """The result of :func:`mmkern.connectivity.align`.

    Attributes
    ----------
    model : torch.nn.Module
        A permuted copy of ``model_b``: the same function, its hidden units in ``model_a``'s order.
    perms : dict
        ``{group: int64 array (n,)}``: position ``i`` of the group holds ``model_b``'s unit
        ``perms[group][i]``.
    spec : PermutationSpec
        The groups used.
    objective : list of float
        Weight matching: the objective sum <W_a, P(W_b)> before the first sweep and after each
        sweep (never decreasing). Activation matching: the summed correlation of the matched
        units per group, one value.
    """

    model: nn.Module
    perms: dict
    spec: PermutationSpec
    objective: list


def _unit_rows(t: torch.Tensor, axis: int, block: int) -> torch.Tensor:
    """``t`` as (units, everything else) for the units of ``axis`` (in blocks of ``block``)."""
    t = t.movedim(axis, 0)
    n = t.shape[0] // block
    return t.reshape(n, -1)


def _permuted_except(t: torch.Tensor, entries, perms: dict, skip: int) -> torch.Tensor:
    for axis, entry in enumerate(entries):
        if entry is not None and axis != skip:
            t = t.index_select(axis, block_index(perms[entry[0]], entry[1]))
    return t


def _objective(spec: PermutationSpec, a: dict, b: dict, perms: dict) -> float:
    total = 0.0
    for name, entries in spec.axes.items():
        total += float((a[name] * _permuted_except(b[name], entries, perms, -1)).sum())
    return total


def weight_matching(spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, seed: int = 0,
                    max_sweeps: int = 100) -> tuple[dict, list]:
    """Permutations of model b's groups maximising sum <W_a, P(W_b)> (see the module docstring)."""
    a = {k: v.detach().to("cpu", _F64) for k, v in model_a.state_dict().items() if k in spec.axes}
    b = {k: v.detach().to("cpu", _F64) for k, v in model_b.state_dict().items() if k in spec.axes}
    perms = {g: torch.arange(n) for g, n in spec.groups.items()}
    where = {g: spec.params_of(g) for g in spec.groups}
    rng = np.random.default_rng(seed)
    history = [_objective(spec, a, b, perms)]
    names = list(spec.groups)
    for _ in range(max_sweeps):
        improved = False
        for g in rng.permutation(len(names)):
            group = names[g]
            n = spec.groups[group]
            cost = torch.zeros((n, n), dtype=_F64)
            for name, axis, block in where[group]:
                wa = _unit_rows(a[name], axis, block)
                wb = _unit_rows(_permuted_except(b[name], spec.axes[name], perms, axis), axis, block)
                cost += wa @ wb.T
            cost_np = cost.numpy()
            rows, cols = linear_sum_assignment(cost_np, maximize=True)
            old = float(cost_np[np.arange(n), perms[group].numpy()].sum())
            new = float(cost_np[rows, cols].sum())
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[group] = torch.as_tensor(cols, dtype=torch.long)
                improved = True
        history.append(_objective(spec, a, b, perms))
        if not improved:
            break
    return perms, history


class _Recorder(fx.Interpreter):
    """Runs a traced model and keeps the outputs of the named nodes."""

    def __init__(self, gm: fx.GraphModule, keep: set):
        super().__init__(gm)
        self.keep = keep
        self.values: dict = {}

    def run_node(self, n):
        out = super().run_node(n)
        if n.name in self.keep:
            self.values[n.name] = out
        return out


def _samples(t: torch.Tensor) -> torch.Tensor:
    """(samples, units) float64 of an activation (n, C) or feature map (n, C, *positions)."""
    if t.ndim > 2:
        t = t.movedim(1, -1).reshape(-1, t.shape[1])
    return t.to(_F64)


def activation_matching(spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, batches
                        ) -> tuple[dict, list]:
    """Permutations of model b's groups maximising the correlation of matched units' activations
    over ``batches`` (an iterable of input tensors)."""
    import copy

    missing = [g for g in spec.groups if not spec.probes.get(g)]
    if missing:
        raise ValueError(f"groups {missing} have no activation output to read; use method='weights'")
    keep = {node for nodes in spec.probes.values() for node in nodes}
    gms = [fx.symbolic_trace(copy.deepcopy(m).eval()) for m in (model_a, model_b)]
    device = next(model_a.parameters()).device
    stats: dict = {}
    n_seen = 0
    with torch.no_grad():
        for x in batches:
            recorders = [_Recorder(gm, keep) for gm in gms]
            with running_on("data", x):
                for rec in recorders:
                    rec.run(x.to(device))
            for node in keep:
                za, zb = (_samples(r.values[node]).cpu() for r in recorders)
                s = stats.setdefault(node, [0, 0.0, 0.0, 0.0, 0.0, 0.0])
                s[0] += za.shape[0]
                s[1] = s[1] + za.sum(0)
                s[2] = s[2] + zb.sum(0)
                s[3] = s[3] + (za * za).sum(0)
                s[4] = s[4] + (zb * zb).sum(0)
                s[5] = s[5] + za.T @ zb
            n_seen += int(x.shape[0])
    if n_seen == 0:
        raise ValueError("data is empty (0 samples)")
    perms, total = {}, 0.0
    for group, nodes in spec.probes.items():
        corr = 0.0
        for node in nodes:
            count, sa, sb, saa, sbb, sab = stats[node]
            ma, mb = sa / count, sb / count
            cov = sab / count - torch.outer(ma, mb)
            sd_a = (saa / count - ma * ma).clamp_min(0).sqrt()
            sd_b = (sbb / count - mb * mb).clamp_min(0).sqrt()
            corr = corr + cov / (torch.outer(sd_a, sd_b) + 1e-12)  # dead units correlate 0
        corr_np = corr.numpy()
        rows, cols = linear_sum_assignment(corr_np, maximize=True)
        perms[group] = torch.as_tensor(cols, dtype=torch.long)
        total += float(corr_np[rows, cols].sum())
    return perms, [total]


def align_models(model_a, model_b, spec: PermutationSpec, method: str, batches, seed: int,
                 max_sweeps: int) -> Alignment:
    if method == "weights":
        perms, objective = weight_matching(spec, model_a, model_b, seed, max_sweeps)
    else:
        perms, objective = activation_matching(spec, model_a, model_b, batches)
    return Alignment(model=permute(model_b, spec, perms), perms={g: p.numpy() for g, p in perms.items()},
                     spec=spec, objective=objective)


def check_spec(spec: PermutationSpec, model: nn.Module) -> PermutationSpec:
    """``ValueError`` naming the entry when a user-supplied spec does not fit the model."""
    if not isinstance(spec, PermutationSpec):
        raise TypeError(f"spec must be a PermutationSpec, got {type(spec).__name__}")
    state = model.state_dict()
    for name, entries in spec.axes.items():
        if name not in state:
            raise ValueError(f"spec: the model has no entry {name!r}")
        t = state[name]
        if len(entries) != t.ndim:
            raise ValueError(f"spec: {name!r} has {t.ndim} axes but the spec gives {len(entries)}")
        for axis, entry in enumerate(entries):
            if entry is None:
                continue
            group, block = entry
            if group not in spec.groups:
                raise ValueError(f"spec: {name!r} axis {axis} names the unknown group {group!r}")
            if spec.groups[group] * block != t.shape[axis]:
                raise ValueError(f"spec: {name!r} axis {axis} has {t.shape[axis]} entries, not "
                                 f"{spec.groups[group]} units x {block}")
    return spec


def first_inputs(data, batch_size: int, name: str = "data", limit: Optional[int] = None):
    """The input tensors of a data source's batches (validated as the curves validate them)."""
    from mmkern.connectivity._data import batches

    seen = 0
    for x, _, _ in batches(data, batch_size, name, labels=False):
        if x.shape[0]:
            yield x
            seen += x.shape[0]
            if limit is not None and seen >= limit:
                return
