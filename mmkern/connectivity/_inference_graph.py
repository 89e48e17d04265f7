"""Graph rewrites of the connectivity engine's private working models, for no-grad passes.

* :class:`FoldedBatchNorm`: an evaluation view with each convolution -> BatchNorm pair folded
  into one convolution.
* :func:`make_relus_inplace`: ReLU modules whose input feeds nothing else run in place, which
  saves one activation-sized allocation (and its page faults) per ReLU.

Folding. After the BatchNorm statistics of an interpolated model are re-estimated, evaluation runs the
model in evaluation mode, where a BatchNorm that follows a convolution is a fixed per-channel
affine map: ``gamma * (z - mean) / sqrt(var + eps) + beta``. Folding it into the convolution's
weights and bias removes one full read and write of the activations per BatchNorm. The result
equals the unfolded model up to float rounding. (What each rewrite saves on the benchmark's CNN:
benchmarks/NOTES.md.)

Both read the model's graph from :func:`torch.fx.symbolic_trace`. A pair is folded only when
the convolution (``Conv1d/2d/3d``) feeds nothing but a BatchNorm that tracks running statistics.
Models that cannot be traced, or that carry forward hooks (which a traced graph would bypass),
are used as they are.
"""

from __future__ import annotations

import copy
import operator

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _has_hooks(model: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def trace(model: nn.Module):
    """The eval-mode fx graph module of ``model``, or None (hooks, or untraceable forward)."""
    if _has_hooks(model):
        return None
    was_training = model.training
    try:
        return fx.symbolic_trace(model.eval())
    except Exception:  # untraceable forward: leave the model as it is
        return None
    finally:
        model.train(was_training)


#: Modules whose output is a new tensor (never a view of, or the same tensor as, their input).
_FRESH_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, _BatchNorm, nn.GroupNorm,
                  nn.LayerNorm)
_FRESH_FUNCTIONS = (operator.add, torch.add)


def fresh_tensor(node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` certainly produces a new tensor that aliases nothing else."""
    if not isinstance(node, fx.Node):
        return False
    if node.op == "call_module":
        return isinstance(modules[node.target], _FRESH_MODULES)
    return node.op == "call_function" and node.target in _FRESH_FUNCTIONS


def make_relus_inplace(model: nn.Module) -> int:
    """Set ``inplace=True`` on every ReLU module whose every call gets a tensor used only by it.

    That tensor must come from a layer that creates it (convolution, linear, normalisation, an
    addition), never a view or an identity such as ``Flatten`` or eval-mode ``Dropout``. Only
    valid for passes without autograd (the engine runs under ``torch.no_grad``). The
    input of a model (a placeholder) is never overwritten.

    Returns
    -------
    int
        The number of ReLU modules switched to in-place.
    """
    graph_module = trace(model)
    if graph_module is None:
        return 0
    modules = dict(graph_module.named_modules())
    safe: dict[str, bool] = {}
    for node in graph_module.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.ReLU):
            src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
            ok = fresh_tensor(src, modules) and len(src.users) == 1
            safe[node.target] = safe.get(node.target, True) and ok
    targets = [name for name, ok in safe.items() if ok]
    for name in targets:
        model.get_submodule(name).inplace = True
    return len(targets)


def _foldable(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """``node`` is a tracking BatchNorm whose only input is a convolution used nowhere else."""
    if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return False
    bn = modules[node.target]
    src = node.args[0]
    return (
        isinstance(bn, _BatchNorm) and bn.track_running_stats
        and isinstance(src, fx.Node) and src.op == "call_module"
        and isinstance(modules[src.target], _CONVS) and len(src.users) == 1
    )


class FoldedBatchNorm:
    """An evaluation-mode view of ``model`` whose conv -> BatchNorm pairs are folded.

    The view shares every module but the folded convolutions with ``model``; call
    :meth:`refresh` after ``model``'s weights or BatchNorm statistics change.

    Parameters
    ----------
    model : torch.nn.Module
        The model to evaluate (typically a private working copy).
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.module: nn.Module = model
        self.pairs: list[tuple[nn.Module, nn.Module, _BatchNorm]] = []
        graph_module = trace(model)
        if graph_module is None:
            return
        modules = dict(graph_module.named_modules())
        for node in list(graph_module.graph.nodes):
            if not _foldable(node, modules):
                continue
            conv_node = node.args[0]
            conv, bn = modules[conv_node.target], modules[node.target]
            fused = copy.deepcopy(conv)
            if fused.bias is None:
                fused.bias = nn.Parameter(torch.zeros(
                    conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device))
            name = f"_mmkern_folded_{len(self.pairs)}"
            graph_module.add_submodule(name, fused)
            conv_node.target = name
            node.replace_all_uses_with(conv_node)
            graph_module.graph.erase_node(node)
            self.pairs.append((fused, conv, bn))
        if self.pairs:
            graph_module.graph.lint()
            graph_module.recompile()
            self.module = graph_module.eval()

    def refresh(self) -> nn.Module:
        """Recompute the folded weights from ``model`` (in float64, rounded once).

        Returns
        -------
        torch.nn.Module
            The module to evaluate in place of ``model`` (``model`` itself if nothing folded).
        """
        with torch.no_grad():
            for fused, conv, bn in self.pairs:
                scale = torch.rsqrt(bn.running_var.double() + bn.eps)
                shift = -bn.running_mean.double() * scale
                if bn.affine:
                    scale = scale * bn.weight.double()
                    shift = shift * bn.weight.double() + bn.bias.double()
                weight = conv.weight.double() * scale.view(-1, *([1] * (conv.weight.ndim - 1)))
                bias = shift if conv.bias is None else conv.bias.double() * scale + shift
                fused.weight.copy_(weight)
                fused.bias.copy_(bias)
        return self.module
