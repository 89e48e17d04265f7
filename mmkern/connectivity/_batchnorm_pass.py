"""The BatchNorm re-estimation pass of a working model, rewritten for speed.

During re-estimation (BatchNorm layers in training mode, no autograd) only the BatchNorm
statistics are wanted. :func:`batchnorm_pass_module` turns a private working model into a
module for that pass, from its :func:`torch.fx.symbolic_trace` graph:

* a BatchNorm whose input is a fresh tensor that nothing else reads (a convolution output, say)
  normalises it **in place** with ``mmkern._C.batchnorm_train_``, fused with a following ReLU
  when the BatchNorm output feeds only that ReLU: two reads and one write of the activations
  instead of torch's separate statistics, normalisation into a new tensor and ReLU, and no new
  activation-sized tensor per layer to allocate (and page-fault in);
* the graph stops at the last BatchNorm: layers after it do not change any statistic.

The kernel computes the batch statistics in float64 (two passes) and normalises with them;
the running statistics are then updated exactly as :class:`torch.nn.BatchNorm2d` does with
``momentum=None`` (cumulative average; unbiased variance). Inputs the kernel does not take (not
on the CPU, not float32/float64, an unsupported memory layout) go through the BatchNorm module
itself. Models that cannot be traced, or that carry hooks, are used as they are.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from mmkern import _C
from mmkern.connectivity._inference_graph import fresh_tensor, trace


def _kernel_view(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``x`` as a contiguous ``(outer, C, inner)`` view sharing its memory, or None."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or x.ndim < 2:
        return None
    if x.is_contiguous():
        return x.view(x.shape[0], x.shape[1], -1)
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1], 1)  # a view: no copy
    return None


class FusedBatchNormTrain(nn.Module):
    """``relu(bn(x))`` (or ``bn(x)``) for a BatchNorm in training mode, in place when possible.

    Parameters
    ----------
    bn : torch.nn.modules.batchnorm._BatchNorm
        The BatchNorm whose running statistics are updated (shared, not copied).
    relu : bool
        Apply ReLU after the normalisation.
    """

    def __init__(self, bn: _BatchNorm, relu: bool):
        super().__init__()
        self.bn = bn
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        view = _kernel_view(x) if bn.training and bn.track_running_stats else None
        if view is None or view.shape[0] * view.shape[2] < 2:
            y = bn(x)
            return F.relu(y) if self.relu else y
        params = [None if p is None else p.detach().numpy() for p in (bn.weight, bn.bias)]
        mean, var = _C.batchnorm_train_(view.numpy(), params[0], params[1], bn.eps, self.relu)
        count = view.shape[0] * view.shape[2]
        bn.num_batches_tracked.add_(1)
        factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None
                  else bn.momentum)
        batch_mean = torch.from_numpy(mean).to(bn.running_mean.dtype)
        batch_var = torch.from_numpy(var * (count / (count - 1))).to(bn.running_var.dtype)
        bn.running_mean.mul_(1.0 - factor).add_(batch_mean, alpha=factor)
        bn.running_var.mul_(1.0 - factor).add_(batch_var, alpha=factor)
        return x


def batchnorm_pass_module(model: nn.Module) -> nn.Module:
    """A module whose forward re-estimates ``model``'s BatchNorm statistics like ``model(x)``.

    Returns ``model`` itself when it cannot be traced or has no tracking BatchNorm.
    """
    graph_module = trace(model)
    if graph_module is None:
        return model
    graph = graph_module.graph
    modules = dict(graph_module.named_modules())
    batchnorm_nodes = []
    for node in list(graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], _BatchNorm):
            continue
        bn = modules[node.target]
        if not bn.track_running_stats:
            continue
        batchnorm_nodes.append(node)
        src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        if not (fresh_tensor(src, modules) and len(src.users) == 1):
            continue  # normalising in place would overwrite a tensor something else reads
        users = list(node.users)
        relu = (len(users) == 1 and users[0].op == "call_module"
                and isinstance(modules.get(users[0].target), nn.ReLU))
        name = f"_mmkern_bn_pass_{len(batchnorm_nodes)}"
        graph_module.add_submodule(name, FusedBatchNormTrain(bn, relu))
        with graph.inserting_after(node):
            fused = graph.call_module(name, (src,))
        if relu:
            users[0].replace_all_uses_with(fused)
            graph.erase_node(users[0])
        node.replace_all_uses_with(fused)
        graph.erase_node(node)
        batchnorm_nodes[-1] = fused
    if not batchnorm_nodes:
        return model
    # Stop after the last BatchNorm; every BatchNorm output stays live, so none is dropped.
    output = next(n for n in graph.nodes if n.op == "output")
    with graph.inserting_before(output):
        graph.output(tuple(batchnorm_nodes))
    graph.erase_node(output)
    graph.eliminate_dead_code()
    graph.lint()
    graph_module.recompile()
    graph_module.delete_all_unused_submodules()
    return graph_module
