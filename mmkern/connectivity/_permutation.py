"""Permutation specs: which parameters of a model share a permutation of hidden units.

Permuting the hidden units of a layer (the output channels of a Linear or convolution, with
their bias, the following normalisation's affine parameters and running statistics, and the
next layer's input channels) leaves the function a network computes unchanged. A *group* is one
such set of units; a residual stream is one group for every layer that writes into it (the skip
connections add their channels position by position), and a convolution flattened into a Linear
layer carries its group to the Linear's input in blocks of the spatial size.

:func:`permutation_spec` derives the groups from a ``torch.fx`` trace of the model's forward,
propagating a "channel space" through every operation: a Linear/convolution output opens a new
space, elementwise activations, pooling, dropout and normalisation keep it, ``+`` of two tensors
merges their spaces, flattening a feature map keeps it in blocks. The model's input and output
spaces are fixed (not permutable), and so is every space merged with them. Anything the rules do
not cover (attention, concatenation, grouped convolutions, custom modules) is a ``ValueError``
naming the module or operation; such models need a user-supplied :class:`PermutationSpec`.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn import functional as F

#: Modules and functions that map each channel to itself (elementwise, or over positions only).
_KEEP_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Softplus, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)
_KEEP_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, torch.relu, torch.tanh,
    torch.sigmoid, F.tanh, F.sigmoid, F.dropout, F.max_pool1d, F.max_pool2d, F.avg_pool1d,
    F.avg_pool2d, F.adaptive_avg_pool1d, F.adaptive_avg_pool2d,
}
_KEEP_METHODS = {"relu", "tanh", "sigmoid", "contiguous", "clone", "relu_", "float", "to"}
#: Activation outputs: where activation matching reads a group's units.
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
                nn.Sigmoid, nn.Softplus, nn.Hardtanh)
_ACTIVATION_FUNCTIONS = {F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, torch.relu,
                         torch.tanh, torch.sigmoid, F.tanh, F.sigmoid}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class PermutationSpec:
    """The permutation groups of a model's hidden units and where they act.

    Attributes
    ----------
    groups : dict
        ``{group name: number of units}``; a name is the path of the first layer writing into
        the group (e.g. ``"fc1.1"``, ``"layer1.0.conv1"``).
    axes : dict
        ``{parameter or buffer name: tuple over its axes}``, each entry ``None`` (not permuted)
        or ``(group, block)``: the axis holds the group's units in blocks of ``block``
        consecutive entries (``block > 1`` where a feature map was flattened channel-major).
        Entries not listed are not permuted.
    probes : dict
        ``{group name: [fx node names]}``: the activation outputs that carry the group, which
        activation matching reads (empty when the group has none; then its layer outputs).
    """

    groups: dict
    axes: dict
    probes: dict = field(default_factory=dict)

    def params_of(self, group: str) -> list[tuple[str, int, int]]:
        """``(entry name, axis, block)`` of every axis the group permutes."""
        return [(name, axis, entry[1]) for name, entries in self.axes.items()
                for axis, entry in enumerate(entries) if entry is not None and entry[0] == group]


class _Spaces:
    """Union-find over channel spaces; a space merged with a fixed one is fixed."""

    def __init__(self):
        self.parent: list[int] = []
        self.fixed: set[int] = set()
        self.size: dict[int, int] = {}
        self.owner: dict[int, str] = {}

    def new(self, size: int, owner: Optional[str] = None, fixed: bool = False) -> int:
        s = len(self.parent)
        self.parent.append(s)
        self.size[s] = size
        if owner is not None:
            self.owner[s] = owner
        if fixed:
            self.fixed.add(s)
        return s

    def find(self, s: int) -> int:
        while self.parent[s] != s:
            self.parent[s] = self.parent[self.parent[s]]
            s = self.parent[s]
        return s

    def union(self, a: int, b: int, where: str) -> int:
        a, b = self.find(a), self.find(b)
        if a == b:
            return a
        if self.size[a] != self.size[b]:
            raise ValueError(f"{where}: adds tensors of {self.size[a]} and {self.size[b]} channels")
        keep, drop = (a, b) if a < b else (b, a)
        self.parent[drop] = keep
        if drop in self.fixed or keep in self.fixed:
            self.fixed.add(keep)
        if keep not in self.owner and drop in self.owner:
            self.owner[keep] = self.owner[drop]
        return keep


def _shape(node: fx.Node) -> Optional[tuple]:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _example(model: nn.Module, example_input) -> torch.Tensor:
    if example_input is not None:
        if not isinstance(example_input, torch.Tensor) or example_input.ndim < 2:
            raise TypeError("example_input must be a tensor (n, *input_shape) with n >= 1")
        return example_input[:2]
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise ValueError(f"{type(model).__name__} has no input_shape: pass example_input, a batch of "
                         "inputs, to trace it")
    param = next(model.parameters(), None)
    return torch.zeros((2, *shape), dtype=param.dtype if param is not None else torch.float32)


def permutation_spec(model: nn.Module, example_input: Optional[torch.Tensor] = None) -> PermutationSpec:
    """Derive the permutation groups of a model's hidden units from its forward.

    Parameters
    ----------
    model : torch.nn.Module
        Built from Linear, Conv1d/Conv2d (``groups=1``), BatchNorm1d/2d, LayerNorm, GroupNorm,
        elementwise activations, dropout, pooling, flattening and residual ``+``; every bundled
        architecture is. Not modified (a copy is traced).
    example_input : torch.Tensor, optional
        A batch ``(n, *input_shape)`` to trace with; default zeros of ``model.input_shape``.

    Returns
    -------
    PermutationSpec

    Raises
    ------
    ValueError
        An operation the rules do not cover, naming the module or operation (supply a
        :class:`PermutationSpec` for such models).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    traced_model = copy.deepcopy(model).eval()
    try:
        gm = fx.symbolic_trace(traced_model)
    except Exception as e:  # torch.fx raises assorted errors for untraceable code
        raise ValueError(f"{type(model).__name__}'s forward cannot be traced by torch.fx ({type(e).__name__}: "
                         f"{e}); supply a PermutationSpec") from None
    example = _example(model, example_input)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as e:  # the model's own error on the example input, wrapped by torch.fx
        raise ValueError(f"{type(model).__name__} cannot run on the example input "
                         f"({type(e).__name__}: {str(e).splitlines()[0]}); pass example_input") from None
    modules = dict(gm.named_modules())
    spaces = _Spaces()
    space: dict[fx.Node, tuple[int, int]] = {}  # node -> (channel space, block)
    raw_axes: dict[str, list] = {}
    probes: dict[int, list[str]] = {}

    def of(arg, where: str) -> tuple[int, int]:
        if not isinstance(arg, fx.Node) or arg not in space:
            raise ValueError(f"{where}: its input carries no channels mmkern can follow")
        return space[arg]

    def record(name: str, entries: list) -> None:
        raw_axes[name] = entries

    for node in gm.graph.nodes:
        shape = _shape(node)
        where = f"operation {node.name!r} ({node.op} {node.target})"
        if node.op == "placeholder":
            space[node] = (spaces.new(shape[1] if shape and len(shape) > 1 else 0, fixed=True), 1)
        elif node.op == "call_module":
            module = modules[node.target]
            where = f"module {node.target!r} ({type(module).__name__})"
            _module_rule(node, module, spaces, space, of, record, probes, shape, where)
        elif node.op in ("call_function", "call_method"):
            _function_rule(node, spaces, space, of, probes, shape, where)
        elif node.op == "output":
            out = node.args[0]
            if isinstance(out, fx.Node) and out in space:
                spaces.fixed.add(spaces.find(space[out][0]))
            else:
                raise ValueError("the model must return one tensor of logits")
        elif node.op == "get_attr":
            raise ValueError(f"{where}: parameters used outside their module are not supported; supply "
                             "a PermutationSpec")
    return _spec(spaces, raw_axes, probes)


def _module_rule(node, module, spaces, space, of, record, probes, shape, where) -> None:
    prefix = node.target
    if isinstance(module, nn.Linear):
        s_in, block = of(node.args[0], where)
        out = spaces.new(module.out_features, owner=prefix)
        record(f"{prefix}.weight", [(out, 1), (s_in, block)])
        if module.bias is not None:
            record(f"{prefix}.bias", [(out, 1)])
        space[node] = (out, 1)
    elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.groups != 1:
            raise ValueError(f"{where}: grouped convolutions (groups={module.groups}) are not supported; "
                             "supply a PermutationSpec")
        s_in, block = of(node.args[0], where)
        if block != 1:
            raise ValueError(f"{where}: a convolution of flattened features is not supported")
        out = spaces.new(module.out_channels, owner=prefix)
        record(f"{prefix}.weight", [(out, 1), (s_in, 1)] + [None] * (module.weight.ndim - 2))
        if module.bias is not None:
            record(f"{prefix}.bias", [(out, 1)])
        space[node] = (out, 1)
    elif isinstance(module, _NORMS):
        s, block = of(node.args[0], where)
        for name in ("weight", "bias", "running_mean", "running_var"):
            if getattr(module, name, None) is not None:
                record(f"{prefix}.{name}", [(s, block)])
        space[node] = (s, block)
    elif isinstance(module, nn.LayerNorm):
        s, block = of(node.args[0], where)
        if len(shape) == 2 and len(module.normalized_shape) == 1:
            entries = [(s, block)]
        elif len(module.normalized_shape) == len(shape) - 1:  # over (C, *spatial)
            entries = [(s, 1)] + [None] * (len(shape) - 2)
        elif len(module.normalized_shape) < len(shape) - 1:  # over positions only
            entries = [None] * len(module.normalized_shape)
        else:
            raise ValueError(f"{where}: normalises over the batch axis")
        if module.elementwise_affine:
            record(f"{prefix}.weight", entries)
            if module.bias is not None:
                record(f"{prefix}.bias", entries)
        space[node] = (s, block)
    elif isinstance(module, nn.GroupNorm):
        s, block = of(node.args[0], where)
        if module.num_groups not in (1, module.num_channels):
            raise ValueError(f"{where}: GroupNorm with {module.num_groups} groups of channels changes "
                             "its function under a permutation across groups; supply a PermutationSpec")
        if module.affine:
            record(f"{prefix}.weight", [(s, block)])
            record(f"{prefix}.bias", [(s, block)])
        space[node] = (s, block)
    elif isinstance(module, nn.Flatten):
        space[node] = _flatten(node, of(node.args[0], where), shape, module.start_dim, where)
    elif isinstance(module, _KEEP_MODULES):
        space[node] = of(node.args[0], where)
        if isinstance(module, _ACTIVATIONS):
            probes.setdefault(space[node][0], []).append(node.name)
    else:
        raise ValueError(f"{where}: not a layer whose hidden units mmkern knows how to permute; supply a "
                         "PermutationSpec")


def _flatten(node, source: tuple[int, int], shape, start_dim, where: str) -> tuple[int, int]:
    s, block = source
    input_shape = _shape(node.args[0])
    if start_dim not in (1, -len(input_shape) + 1):
        raise ValueError(f"{where}: only flattening everything after the batch axis is supported")
    return s, block * math.prod(input_shape[2:])


def _function_rule(node, spaces, space, of, probes, shape, where) -> None:
    target = node.target
    tensor_args = [a for a in node.args if isinstance(a, fx.Node) and a in space]
    if node.op == "call_method" and target in ("size", "dim") or shape is None and not tensor_args:
        return  # a shape or a Python value, not a tensor
    if target in (operator.add, torch.add, operator.iadd, "add", "add_"):
        if len(tensor_args) == 2:
            a, b = space[tensor_args[0]], space[tensor_args[1]]
            if a[1] != b[1]:
                raise ValueError(f"{where}: adds tensors of different layouts")
            space[node] = (spaces.union(a[0], b[0], where), a[1])
        else:
            space[node] = of(tensor_args[0] if tensor_args else None, where)
        return
    if target in (operator.mul, operator.truediv, torch.mul, "mul", "div") and len(tensor_args) == 1:
        space[node] = of(tensor_args[0], where)  # scaling by a number
        return
    if target in (torch.flatten, "flatten"):
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        space[node] = _flatten(node, of(node.args[0], where), shape, start, where)
        return
    if target in ("view", "reshape") and shape is not None and len(shape) == 2:
        space[node] = _flatten(node, of(node.args[0], where), shape, 1, where)
        return
    if target in ("mean", "amax", torch.mean) and shape is not None and len(shape) == 2:
        space[node] = of(node.args[0], where)  # pooling over positions
        return
    if target in _KEEP_FUNCTIONS or (node.op == "call_method" and target in _KEEP_METHODS):
        space[node] = of(node.args[0], where)
        if target in _ACTIVATION_FUNCTIONS or target in ("relu", "tanh", "sigmoid", "relu_"):
            probes.setdefault(space[node][0], []).append(node.name)
        return
    raise ValueError(f"{where}: not an operation whose channels mmkern can follow; supply a "
                     "PermutationSpec")


def _spec(spaces: _Spaces, raw_axes: dict, probes: dict) -> PermutationSpec:
    names: dict[int, str] = {}
    for s in range(len(spaces.parent)):
        root = spaces.find(s)
        if root not in spaces.fixed and root not in names:
            names[root] = spaces.owner.get(root, f"group{len(names)}")
    axes = {}
    for entry, raw in raw_axes.items():
        resolved = []
        for item in raw:
            root = None if item is None else spaces.find(item[0])
            resolved.append(None if root is None or root in spaces.fixed else (names[root], item[1]))
        if any(r is not None for r in resolved):
            axes[entry] = tuple(resolved)
    groups = {names[r]: spaces.size[r] for r in names}
    found = {names[spaces.find(s)]: [] for s in probes if spaces.find(s) in names}
    for s, nodes in probes.items():
        root = spaces.find(s)
        if root in names:
            found[names[root]] += nodes
    return PermutationSpec(groups=groups, axes=axes, probes=found)


def permute(model: nn.Module, spec: PermutationSpec, perms: dict) -> nn.Module:
    """A copy of ``model`` whose hidden units are permuted: position ``i`` of group ``g`` holds
    the model's unit ``perms[g][i]`` (parameters and buffers alike). It computes the same
    function as ``model``."""
    out = copy.deepcopy(model)
    state = out.state_dict()
    with torch.no_grad():
        for name, entries in spec.axes.items():
            t = state[name]
            for axis, entry in enumerate(entries):
                if entry is not None:
                    t = t.index_select(axis, block_index(perms[entry[0]], entry[1]).to(t.device))
            state[name].copy_(t)
    return out


def block_index(perm, block: int) -> torch.Tensor:
    """The index along an axis holding a group's units in blocks of ``block`` entries."""
    perm = torch.as_tensor(perm, dtype=torch.long)
    if block == 1:
        return perm
    return (perm[:, None] * block + torch.arange(block)).reshape(-1)
