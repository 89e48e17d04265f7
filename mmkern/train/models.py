"""Model architectures of the reference training module, with stable names for measurable layers.

Every model here is a :class:`ZooModel`: it maps a batch ``x`` of shape ``(n, *input_shape)``
(float32) to logits of shape ``(n, num_classes)``, and lists the submodules whose outputs are
worth measuring in :attr:`ZooModel.layer_names`, in forward order. Each name is a submodule path
(``model.get_submodule(name)``) whose *output* is the representation: a block ends with its
nonlinearity (and pooling, where the block downsamples), so a hook on ``"conv2"`` sees post-ReLU
activations. The last measurable layer is always ``"logits"``.

Architectures (``width`` multiplies every hidden size; sizes are rounded and at least 1), with
their input shapes and measurable layers:

- ``mlp``, any input shape (flattened): ``fc1`` ... ``fc{depth}``, ``logits``.
- ``cnn1d``, ``(C, L)``: ``conv1``, ``conv2``, ``conv3``, ``fc1``, ``logits``.
- ``cnn2d``, ``(C, H, W)``: ``conv1``, ``conv2``, ``fc1``, ``logits``.
- ``vgg`` (BatchNorm), ``(C, L)`` or ``(C, H, W)``: ``conv1`` ... ``conv6``, ``pool``,
  ``logits``.
- ``resnet18`` (BatchNorm, CIFAR-style), ``(C, L)`` or ``(C, H, W)``: ``stem``, ``layer1.0``,
  ``layer1.1``, ..., ``layer4.1``, ``pool``, ``logits``.

:func:`build_model` builds any of them by name; :func:`measurable_layers` lists a model's layers.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, Sequence

import torch
from torch import nn

from mmkern._validate import check_positive, check_positive_int

__all__ = [
    "MODELS",
    "ZooModel",
    "MLP",
    "CNN1d",
    "CNN2d",
    "VGG",
    "ResNet18",
    "build_model",
    "list_models",
    "measurable_layers",
]


def _scaled(base: int, width: float) -> int:
    """``base * width`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(base * width)))


def _check_shape(input_shape, name: str, ndims: Sequence[int]) -> tuple[int, ...]:
    """Validate an input shape (without the batch axis) whose length is one of ``ndims``."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape must be a tuple of ints, got {input_shape!r}")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in input_shape):
        raise TypeError(f"input_shape must be a tuple of ints, got {input_shape!r}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in ndims or any(s < 1 for s in shape):
        layouts = {2: "(channels, length)", 3: "(channels, height, width)"}
        wanted = " or ".join(layouts[d] for d in ndims) if set(ndims) <= set(layouts) \
            else "a non-empty tuple of positive ints"
        raise ValueError(f"model {name!r} takes input_shape {wanted}, got {shape}")
    return shape


class ZooModel(nn.Module):
    """Base class: a classifier with named, measurable layers.

    Attributes
    ----------
    layer_names : tuple of str
        Submodule paths whose outputs are measured, in forward order; the last is ``"logits"``.
    input_shape : tuple of int
        Shape of one input sample (without the batch axis).
    num_classes : int
        Number of output logits.
    spec : dict
        ``{"name", "input_shape", "num_classes", "options"}``, enough to rebuild the architecture
        with :func:`build_model`; set by :func:`build_model`.
    """

    layer_names: tuple[str, ...] = ()

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.spec: dict = {}

    def _check_input(self, x: torch.Tensor) -> None:
        if isinstance(x, torch.fx.Proxy):  # traced (mmkern.connectivity.permutation_spec)
            return
        if tuple(x.shape[1:]) != self.input_shape:
            expected = ", ".join(map(str, self.input_shape))
            raise ValueError(f"{type(self).__name__} expects inputs of shape (n, {expected}), got "
                             f"{tuple(x.shape)}")


class MLP(ZooModel):
    """Multi-layer perceptron on flattened inputs.

    ``Flatten -> [Linear(h) -> ReLU] x depth -> Linear(num_classes)`` with ``h = round(256 *
    width)``. Blocks ``fc1`` ... ``fc{depth}`` output post-ReLU features ``(n, h)``; ``logits``
    outputs ``(n, num_classes)``.

    Parameters
    ----------
    input_shape : tuple of int
        Any sample shape; it is flattened.
    num_classes : int
    width : float, default 1.0
        Multiplier of the hidden size 256.
    depth : int, default 2
        Number of hidden layers.
    """

    def __init__(self, input_shape, num_classes, width: float = 1.0, depth: int = 2):
        shape = _check_shape(input_shape, "mlp", range(1, 16))
        super().__init__(shape, num_classes)
        width = check_positive(width, "width")
        depth = check_positive_int(depth, "depth")
        hidden = _scaled(256, width)
        features = math.prod(shape)
        names = []
        for i in range(1, depth + 1):
            layers = [nn.Flatten()] if i == 1 else []
            layers += [nn.Linear(features, hidden), nn.ReLU()]
            self.add_module(f"fc{i}", nn.Sequential(*layers))
            names.append(f"fc{i}")
            features = hidden
        self.logits = nn.Linear(features, self.num_classes)
        self.layer_names = tuple(names) + ("logits",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, *input_shape)`` float -> logits ``(n, num_classes)``."""
        self._check_input(x)
        for name in self.layer_names[:-1]:
            x = getattr(self, name)(x)
        return self.logits(x)


class CNN1d(ZooModel):
    """1-D convolutional network for sequences such as MNIST-1D ``(1, 40)``.

    Three blocks ``Conv1d(k=5, padding=2) -> ReLU -> MaxPool1d(2)`` with ``c = round(32 *
    width)`` channels (``conv1``, ``conv2``, ``conv3``; outputs ``(n, c, L/2)``, ``(n, c, L/4)``,
    ``(n, c, L/8)``; pooling stops once the length is 1), then ``fc1`` (flatten, Linear to
    ``round(128 * width)``, ReLU) and ``logits``. Flattening rather than global pooling keeps the
    position information MNIST-1D needs.

    Parameters
    ----------
    input_shape : (channels, length)
    num_classes : int
    width : float, default 1.0
    """

    layer_names = ("conv1", "conv2", "conv3", "fc1", "logits")

    def __init__(self, input_shape, num_classes, width: float = 1.0):
        shape = _check_shape(input_shape, "cnn1d", (2,))
        super().__init__(shape, num_classes)
        width = check_positive(width, "width")
        channels, length = shape
        c = _scaled(32, width)
        for i in (1, 2, 3):
            block = [nn.Conv1d(channels, c, kernel_size=5, padding=2), nn.ReLU()]
            if length >= 2:
                block.append(nn.MaxPool1d(2))
                length //= 2
            self.add_module(f"conv{i}", nn.Sequential(*block))
            channels = c
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(c * length, _scaled(128, width)),
                                 nn.ReLU())
        self.logits = nn.Linear(_scaled(128, width), self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, C, L)`` float -> logits ``(n, num_classes)``."""
        self._check_input(x)
        return self.logits(self.fc1(self.conv3(self.conv2(self.conv1(x)))))


class CNN2d(ZooModel):
    """Small 2-D convolutional network (LeNet-like) for small images.

    ``conv1``: ``Conv2d(3x3, padding=1) -> ReLU -> MaxPool2d(2)`` with ``round(32 * width)``
    channels; ``conv2``: the same with ``round(64 * width)`` channels; ``fc1``: flatten, Linear to
    ``round(128 * width)``, ReLU; ``logits``. A pooling step is skipped where the image is already
    1 pixel high or wide.

    Parameters
    ----------
    input_shape : (channels, height, width)
    num_classes : int
    width : float, default 1.0
    """

    layer_names = ("conv1", "conv2", "fc1", "logits")

    def __init__(self, input_shape, num_classes, width: float = 1.0):
        shape = _check_shape(input_shape, "cnn2d", (3,))
        super().__init__(shape, num_classes)
        width = check_positive(width, "width")
        channels, h, w = shape
        for i, base in ((1, 32), (2, 64)):
            c = _scaled(base, width)
            block = [nn.Conv2d(channels, c, kernel_size=3, padding=1), nn.ReLU()]
            if min(h, w) >= 2:
                block.append(nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            self.add_module(f"conv{i}", nn.Sequential(*block))
            channels = c
        hidden = _scaled(128, width)
        self.fc1 = nn.Sequential(nn.Flatten(), nn.Linear(channels * h * w, hidden), nn.ReLU())
        self.logits = nn.Linear(hidden, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, C, H, W)`` float -> logits ``(n, num_classes)``."""
        self._check_input(x)
        return self.logits(self.fc1(self.conv2(self.conv1(x))))


def _conv_parts(ndim: int):
    """(Conv, BatchNorm, MaxPool) classes for 1 or 2 spatial dimensions."""
    if ndim == 1:
        return nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d
    return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d


class VGG(ZooModel):
    """VGG-style network with BatchNorm, for 1-D ``(C, L)`` or 2-D ``(C, H, W)`` inputs.

    Three stages of two ``Conv(3, padding=1, bias=False) -> BatchNorm -> ReLU`` blocks with
    ``round(32 * width)``, ``round(64 * width)``, ``round(128 * width)`` channels; the second
    block of each stage ends with ``MaxPool(2)`` (skipped once a spatial size is 1). Blocks are
    ``conv1`` ... ``conv6``; ``pool`` is global average pooling to ``(n, c)``; ``logits`` a Linear
    layer.

    Parameters
    ----------
    input_shape : (channels, length) or (channels, height, width)
    num_classes : int
    width : float, default 1.0
    """

    #: (base channels, convolutions) of each stage.
    STAGES: tuple[tuple[int, int], ...] = ((32, 2), (64, 2), (128, 2))
    layer_names = ("conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "pool", "logits")

    def __init__(self, input_shape, num_classes, width: float = 1.0):
        name = "vgg13" if type(self).STAGES != VGG.STAGES else "vgg"
        shape = _check_shape(input_shape, name, (2, 3))
        super().__init__(shape, num_classes)
        width = check_positive(width, "width")
        conv, norm, maxpool = _conv_parts(len(shape) - 1)
        channels, spatial = shape[0], list(shape[1:])
        i = 0
        for base, convs in self.STAGES:
            c = _scaled(base, width)
            for last in [False] * (convs - 1) + [True]:
                i += 1
                block = [conv(channels, c, kernel_size=3, padding=1, bias=False), norm(c),
                         nn.ReLU()]
                if last and min(spatial) >= 2:
                    block.append(maxpool(2))
                    spatial = [s // 2 for s in spatial]
                self.add_module(f"conv{i}", nn.Sequential(*block))
                channels = c
        pool = nn.AdaptiveAvgPool1d(1) if len(shape) == 2 else nn.AdaptiveAvgPool2d(1)
        self.pool = nn.Sequential(pool, nn.Flatten())
        self.logits = nn.Linear(channels, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, C, *spatial)`` float -> logits ``(n, num_classes)``."""
        self._check_input(x)
        for name in self.layer_names[:-1]:
            x = getattr(self, name)(x)
        return self.logits(x)


class VGG13(VGG):
    """VGG-13 (Simonyan & Zisserman's configuration B) with BatchNorm, in its usual CIFAR form.

    Five stages of two ``Conv(3, padding=1, bias=False) -> BatchNorm -> ReLU`` blocks with
    ``round(c * width)`` channels, c = 64, 128, 256, 512, 512, each stage ending in ``MaxPool(2)``
    (skipped once a spatial size is 1); then global average pooling (``pool``, ``(n, 512 width)``;
    on 32 x 32 inputs the map is 1 x 1 by then) and one Linear classifier (``logits``). Blocks are
    ``conv1`` ... ``conv10``. The architecture of Lubana et al.'s CIFAR-10 experiments.
    """

    STAGES = ((64, 2), (128, 2), (256, 2), (512, 2), (512, 2))
    layer_names = tuple(f"conv{i}" for i in range(1, 11)) + ("pool", "logits")


class BasicBlock(nn.Module):
    """ResNet basic block: two 3-wide convolutions with BatchNorm and an identity or 1x1 shortcut.

    The output is ``ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))``.
    """

    def __init__(self, ndim: int, in_channels: int, channels: int, stride: int):
        super().__init__()
        conv, norm, _ = _conv_parts(ndim)
        self.conv1 = conv(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(channels)
        self.conv2 = conv(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(channels)
        self.relu = nn.ReLU()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                conv(in_channels, channels, 1, stride=stride, bias=False), norm(channels))
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(ZooModel):
    """CIFAR-style ResNet-18 for 1-D ``(C, L)`` or 2-D ``(C, H, W)`` inputs.

    ``stem``: ``Conv(3, stride 1, padding 1) -> BatchNorm -> ReLU`` with ``round(64 * width)``
    channels and no max-pooling; four stages ``layer1`` ... ``layer4`` of two :class:`BasicBlock`
    each, with ``64, 128, 256, 512`` times ``width`` channels and stride 1, 2, 2, 2 (measurable
    per block: ``layer1.0``, ``layer1.1``, ..., ``layer4.1``); ``pool``: global average pooling
    to ``(n, c)``; ``logits``: Linear.

    Parameters
    ----------
    input_shape : (channels, length) or (channels, height, width)
    num_classes : int
    width : float, default 1.0
    """

    layer_names = ("stem",) + tuple(f"layer{s}.{b}" for s in (1, 2, 3, 4) for b in (0, 1)) + (
        "pool", "logits")

    def __init__(self, input_shape, num_classes, width: float = 1.0):
        shape = _check_shape(input_shape, "resnet18", (2, 3))
        super().__init__(shape, num_classes)
        width = check_positive(width, "width")
        ndim = len(shape) - 1
        conv, norm, _ = _conv_parts(ndim)
        c = _scaled(64, width)
        self.stem = nn.Sequential(conv(shape[0], c, 3, stride=1, padding=1, bias=False), norm(c),
                                  nn.ReLU())
        channels = c
        for stage, (base, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
            c = _scaled(base, width)
            blocks = [BasicBlock(ndim, channels, c, stride), BasicBlock(ndim, c, c, 1)]
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            channels = c
        pool = nn.AdaptiveAvgPool1d(1) if ndim == 1 else nn.AdaptiveAvgPool2d(1)
        self.pool = nn.Sequential(pool, nn.Flatten())
        self.logits = nn.Linear(channels, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, C, *spatial)`` float -> logits ``(n, num_classes)``."""
        self._check_input(x)
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.logits(self.pool(x))


#: Registry of architectures by name: name -> class taking ``(input_shape, num_classes,
#: width=..., **options)``.
MODELS: dict[str, Callable[..., ZooModel]] = {
    "mlp": MLP,
    "cnn1d": CNN1d,
    "cnn2d": CNN2d,
    "vgg": VGG,
    "vgg13": VGG13,
    "resnet18": ResNet18,
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(MODELS)


def build_model(name: str, input_shape, num_classes: int, **options) -> ZooModel:
    """Build an architecture by name, with freshly initialised weights from the global torch RNG.

    For reproducible weights use :func:`mmkern.train.train_model` (which seeds the
    initialisation from ``init_seed`` without touching the global RNG), or build under
    :func:`torch.random.fork_rng` after :func:`torch.manual_seed`.

    Parameters
    ----------
    name : str
        One of :func:`list_models`: ``"mlp"``, ``"cnn1d"``, ``"cnn2d"``, ``"vgg"``, ``"vgg13"``,
        ``"resnet18"``.
    input_shape : tuple of int
        Shape of one sample without the batch axis, e.g. ``(1, 40)`` or ``(3, 32, 32)``.
    num_classes : int
        Number of output logits.
    **options
        Architecture options: ``width`` (all models), ``depth`` (``mlp``).

    Returns
    -------
    ZooModel
        On the CPU, in training mode, float32; the 4-D weights of models of images in
        channels-last memory format. ``model.spec`` records the arguments.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones), bad shape or option value.
    TypeError
        An option the architecture does not take.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    cls = MODELS[name]
    try:
        model = cls(input_shape, num_classes, **options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            import inspect

            allowed = [p for p in inspect.signature(cls.__init__).parameters
                       if p not in ("self", "input_shape", "num_classes")]
            bad = sorted(set(options) - set(allowed))
            raise TypeError(f"model {name!r} does not take option(s) {', '.join(map(repr, bad))}; "
                            f"it takes: {', '.join(allowed)}") from None
        raise
    if len(model.input_shape) == 3:
        # 2-D convolutions run 1.3-1.6x faster with channels-last weights (oneDNN on the CPU);
        # the values are those of the usual layout, and checkpoints are written contiguous
        model = model.to(memory_format=torch.channels_last)
    model.spec = {"name": name, "input_shape": list(model.input_shape),
                  "num_classes": model.num_classes, "options": dict(options)}
    return model


def measurable_layers(model: nn.Module) -> list[str]:
    """Names of a model's measurable layers, in forward order.

    Parameters
    ----------
    model : torch.nn.Module
        A :class:`ZooModel`, or any module with a ``layer_names`` attribute listing submodule
        paths.

    Returns
    -------
    list of str
        Submodule paths, e.g. ``["conv1", "conv2", "conv3", "fc1", "logits"]``.

    Raises
    ------
    TypeError
        If ``model`` is not a module or declares no ``layer_names``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    names = getattr(model, "layer_names", None)
    if not names:
        raise TypeError(f"{type(model).__name__} declares no layer_names; pass the layer names "
                        f"(submodule paths, see model.named_modules()) explicitly")
    return list(names)
