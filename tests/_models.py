"""Small deterministic torch models and synthetic classification sets for the connectivity tests.

Every builder takes a ``seed`` and draws its weights under :func:`torch.random.fork_rng`, so it
neither depends on nor disturbs the global torch RNG. Models are tiny (a few hundred weights) so
that a whole interpolation curve runs in milliseconds on one core.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Input shapes of the builders below (without the batch axis) and the number of classes.
MLP_IN = 8
IMAGE_SHAPE = (3, 6, 6)
N_CLASSES = 3


def _seeded(build, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def mlp(seed: int, bias: bool = True, hidden: int = 16) -> nn.Module:
    """Linear -> ReLU -> Linear on ``(n, 8)`` inputs, with or without biases."""
    return _seeded(lambda: nn.Sequential(
        nn.Linear(MLP_IN, hidden, bias=bias),
        nn.ReLU(),
        nn.Linear(hidden, N_CLASSES, bias=bias),
    ), seed)


def mlp_dropout(seed: int) -> nn.Module:
    """An MLP with Dropout(0.5) between the layers."""
    return _seeded(lambda: nn.Sequential(
        nn.Linear(MLP_IN, 16),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(16, N_CLASSES),
    ), seed)


def mlp_batchnorm_dropout(seed: int) -> nn.Module:
    """Linear -> Dropout -> BatchNorm1d -> ReLU -> Linear (BN statistics see Dropout's output)."""
    def build():
        model = nn.Sequential(
            nn.Linear(MLP_IN, 16),
            nn.Dropout(0.5),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Linear(16, N_CLASSES),
        )
        _randomise_batchnorm(model)
        return model
    return _seeded(build, seed)


def cnn_batchnorm(seed: int, channels: int = 4) -> nn.Module:
    """Conv2d -> BatchNorm2d -> ReLU -> Flatten -> Linear on ``(n, 3, 6, 6)`` images.

    The BatchNorm affine weights and running statistics are random (not the defaults), so a
    missed re-estimation or a wrong interpolation of buffers shows in the numbers.
    """
    def build():
        model = nn.Sequential(
            nn.Conv2d(IMAGE_SHAPE[0], channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(channels * IMAGE_SHAPE[1] * IMAGE_SHAPE[2], N_CLASSES),
        )
        _randomise_batchnorm(model)
        return model
    return _seeded(build, seed)


def cnn_layer_group_norm(seed: int) -> nn.Module:
    """Conv2d -> GroupNorm(2, 4) -> ReLU -> Flatten -> LayerNorm -> Linear (no running stats)."""
    def build():
        model = nn.Sequential(
            nn.Conv2d(IMAGE_SHAPE[0], 4, 3, padding=1),
            nn.GroupNorm(2, 4),
            nn.ReLU(),
            nn.Flatten(),
            nn.LayerNorm(4 * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]),
            nn.Linear(4 * IMAGE_SHAPE[1] * IMAGE_SHAPE[2], N_CLASSES),
        )
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_(0.0, 0.2)
        return model
    return _seeded(build, seed)


def _randomise_batchnorm(model: nn.Module) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 1.0)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)


def classification_data(n: int, seed: int, shape=(MLP_IN,)) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: float32 inputs of shape ``(n, *shape)`` and int64 labels in ``[0, 3)``.

    The labels depend on the inputs (the class of the largest of three fixed projections, with
    some label noise) so that random models are neither all right nor all wrong.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=generator)
    d = math.prod(shape)
    projections = torch.randn((d, N_CLASSES), generator=torch.Generator().manual_seed(0))
    y = (x.reshape(n, d) @ projections).argmax(dim=1)
    noisy = torch.rand(n, generator=generator) < 0.2
    y[noisy] = torch.randint(0, N_CLASSES, (int(noisy.sum()),), generator=generator)
    return x, y


def image_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` with images of shape ``(n, 3, 6, 6)``."""
    return classification_data(n, seed, IMAGE_SHAPE)


def snapshot(model: nn.Module) -> dict:
    """Everything the connectivity functions must leave unchanged in an input model."""
    return {
        "entries": {name: t.detach().clone() for name, t in
                    list(model.named_parameters()) + list(model.named_buffers())},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "training": {name: m.training for name, m in model.named_modules()},
        "momentum": {name: getattr(m, "momentum", None) for name, m in model.named_modules()},
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    """Assert that ``model`` still matches ``snapshot(model)`` taken earlier."""
    after = snapshot(model)
    assert after["entries"].keys() == before["entries"].keys()
    for name, tensor in before["entries"].items():
        assert torch.equal(after["entries"][name], tensor), name
    assert after["requires_grad"] == before["requires_grad"]
    assert after["training"] == before["training"]
    assert after["momentum"] == before["momentum"]
