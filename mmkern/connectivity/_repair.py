"""REPAIR (Jordan et al. 2023): interpolated networks whose channels keep the endpoints' statistics.

Interpolating two networks shrinks the variance of their hidden units (the "variance collapse"),
which raises the barrier. REPAIR corrects every hidden channel of the interpolated network so that
its mean and standard deviation over the data are the interpolation of the endpoints': mean
``(1 - alpha) mu_a + alpha mu_b``, standard deviation ``(1 - alpha) sigma_a + alpha sigma_b``.

As in the paper's code, the correction is a BatchNorm placed after each hidden Linear or
convolution (its output channels), whose affine parameters are the *goal* statistics and whose
running statistics are re-estimated on the interpolated model. Here each endpoint gets such a
BatchNorm with weight ``sigma`` and bias ``mu`` (its own statistics, measured on ``bn_data`` the
way the re-estimation measures them: the average over batches of per-batch means and unbiased
variances); the line between the two corrected endpoints then carries the interpolated goal
statistics in those parameters, and the engine's BatchNorm re-estimation at every alpha is the
REPAIR pass. Layers followed only by a BatchNorm are not corrected again: re-estimating that
BatchNorm at every alpha is REPAIR's "RESET" for BatchNorm networks. The last layer (the logits)
is not corrected.

The corrected model is a :class:`torch.fx.GraphModule` of the original with the BatchNorms
inserted (``repair_<i>``); it computes the original function up to the difference between the
batch-averaged and exact statistics.
"""

from __future__ import annotations

import copy

import torch
from torch import fx, nn
from torch.nn.modules.batchnorm import _BatchNorm

_LAYERS = {nn.Linear: (nn.BatchNorm1d, "out_features"), nn.Conv1d: (nn.BatchNorm1d, "out_channels"),
           nn.Conv2d: (nn.BatchNorm2d, "out_channels")}


def _points(gm: fx.GraphModule) -> list[fx.Node]:
    """The hidden Linear/convolution nodes to correct (not the output's, not those feeding only a
    BatchNorm)."""
    modules = dict(gm.named_modules())
    output = next(n for n in gm.graph.nodes if n.op == "output")
    points = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or type(modules[node.target]) not in _LAYERS:
            continue
        if node in output.all_input_nodes:
            continue
        users = list(node.users)
        if users and all(u.op == "call_module" and isinstance(modules[u.target], _BatchNorm) for u in users):
            continue
        points.append(node)
    return points


def _inserted(model: nn.Module) -> tuple[fx.GraphModule, list[nn.Module]]:
    """A traced copy of ``model`` with an identity-initialised BatchNorm after each point."""
    try:
        gm = fx.symbolic_trace(copy.deepcopy(model))
    except Exception as e:  # torch.fx raises assorted errors for untraceable code
        raise ValueError(f"repair needs a model torch.fx can trace: {type(e).__name__}: {e}") from None
    modules = dict(gm.named_modules())
    inserted = []
    for i, node in enumerate(_points(gm)):
        layer = modules[node.target]
        norm_class, size = _LAYERS[type(layer)]
        norm = norm_class(getattr(layer, size), momentum=None).to(layer.weight.device, layer.weight.dtype)
        name = f"repair_{i}"
        gm.add_submodule(name, norm)
        with gm.graph.inserting_after(node):
            corrected = gm.graph.call_module(name, (node,))
        node.replace_all_uses_with(corrected, delete_user_cb=lambda user: user is not corrected)
        inserted.append(norm)
    gm.graph.lint()
    gm.recompile()
    return gm, inserted


def repaired(model: nn.Module, bn_data, batch_size: int) -> nn.Module:
    """``model`` with a REPAIR BatchNorm after each hidden layer, holding the layer's own channel
    statistics on ``bn_data`` as its affine parameters (see the module docstring)."""
    gm, norms = _inserted(model)
    _measure(gm, norms, bn_data, batch_size)
    with torch.no_grad():
        for norm in norms:
            norm.weight.copy_(torch.sqrt(norm.running_var + norm.eps))
            norm.bias.copy_(norm.running_mean)
    return gm.train(model.training)


def _measure(gm: fx.GraphModule, norms: list[nn.Module], bn_data, batch_size: int) -> None:
    """Each inserted BatchNorm's running statistics on ``bn_data`` (the model's own BatchNorms
    re-estimated too, as at every alpha), every inserted one passing its input through
    unchanged while it measures."""
    from mmkern.connectivity._data import batches
    from mmkern.connectivity._models import batchnorm_estimation, device_of

    hooks = [norm.register_forward_hook(lambda module, inputs, output: inputs[0]) for norm in norms]
    try:
        device = device_of(gm)
        with batchnorm_estimation([gm]), torch.no_grad():
            for x, _, _ in batches(bn_data, batch_size, "bn_data", labels=False):
                if x.shape[0]:
                    gm(x.to(device))
    finally:
        for hook in hooks:
            hook.remove()
