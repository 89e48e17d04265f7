"""``TrainConfig``: everything that determines one training run, validated, with separate seeds.

This module does not import torch, so recipes can be parsed and listed without it.

Seeds
-----
Four independent seeds, so that each source of randomness can vary alone:

``data_seed``
    Passed as ``seed`` to :func:`mmkern.data.load_dataset`: it seeds the dataset itself
    (MNIST-1D generation, splits, spurious-cue placement). Recipes keep it fixed across a zoo by
    default, so every member sees the same data; vary it to study data sampling.
``init_seed``
    Initial weights. The model is built under :func:`torch.random.fork_rng` after
    ``torch.manual_seed(init_seed)``, so the global RNG is neither read nor changed and the same
    seed gives the same initial weights for the same architecture, whatever else changes.
``order_seed``
    The order of training samples: one :class:`torch.Generator` draws a permutation per epoch.
``aug_seed``
    Augmentation draws (shifts, flips, noise): its own :class:`torch.Generator`.

Augmentation
------------
``augmentation`` is ``"none"`` or components joined by ``+``, each ``name`` or ``name:param``:

``shift[:k]``
    Random translation by up to ``k`` positions along every spatial axis, independently per
    sample. 1-D inputs ``(C, L)`` shift circularly (MNIST-1D is padded and translation is one
    of its nuisances); images ``(C, H, W)`` shift with zero fill, which equals the usual
    "pad by k, random crop". Default ``k = max(1, round(size / 8))`` of the smallest spatial
    size (5 for length 40, 4 for 32x32, 1 for 8x8).
``flip``
    Horizontal flip with probability 1/2 (images only).
``noise[:s]``
    Additive Gaussian noise with standard deviation ``s`` times the standard deviation of the
    training inputs (default ``s = 0.1``).

Components are applied in the order shift, flip, noise, whatever order the string lists them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

__all__ = [
    "AUGMENTATIONS",
    "LR_SCHEDULES",
    "MODEL_NAMES",
    "OPTIMIZERS",
    "TrainConfig",
    "parse_augmentation",
]

#: Architectures of :mod:`mmkern.train.models` (kept here so configs validate without torch).
MODEL_NAMES = ("cnn1d", "cnn2d", "mlp", "resnet18", "vgg", "vgg13")
OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("none", "cosine")
#: Augmentation components, in the order they are applied.
AUGMENTATIONS = ("shift", "flip", "noise")

_SEED_MAX = 2**63 - 1
_STRING_FIELDS = ("dataset", "model", "optimizer", "lr_schedule", "augmentation", "device")
_FLOAT32_MAX = 3.4028234663852886e38

#: Integer fields and their inclusive bounds (``train_size`` may also be None).
_INT_FIELDS = {
    "data_seed": (0, 2**32 - 1),
    "init_seed": (0, _SEED_MAX),
    "order_seed": (0, _SEED_MAX),
    "aug_seed": (0, _SEED_MAX),
    "train_size": (1, _SEED_MAX),
    "batch_size": (1, _SEED_MAX),
    "epochs": (0, _SEED_MAX),
    "eval_batch_size": (1, _SEED_MAX),
    "replicate": (0, _SEED_MAX),
}
#: Real fields: (low, high, low bound excluded, high bound excluded).
_REAL_FIELDS = {
    "width": (0.0, math.inf, True, True),
    "lr": (0.0, _FLOAT32_MAX, True, True),  # torch's float32 optimizers cannot take more
    "momentum": (0.0, 1.0, False, True),
    "weight_decay": (0.0, _FLOAT32_MAX, False, True),
    "label_smoothing": (0.0, 1.0, False, True),
}


def parse_augmentation(spec: str) -> dict[str, Optional[float]]:
    """Parse an augmentation string into ``{component: parameter or None}`` in application order.

    Parameters
    ----------
    spec : str
        ``"none"`` or components joined by ``+``, e.g. ``"shift"``, ``"shift:4+flip"``,
        ``"noise:0.2"`` (see the module docstring).

    Returns
    -------
    dict
        Keys from :data:`AUGMENTATIONS` in application order; values the parameter (``int`` for
        ``shift``, ``float`` for ``noise``) or ``None`` for the default. Empty for ``"none"``.

    Raises
    ------
    ValueError
        Unknown or repeated component, a parameter where none is taken, a non-positive one.
    """
    if not isinstance(spec, str):
        raise TypeError(f"augmentation must be a string, got {type(spec).__name__} {spec!r}")
    if spec.strip() == "none":
        return {}
    parts: dict[str, Optional[float]] = {}
    for raw in spec.split("+"):
        name, sep, param = raw.strip().partition(":")
        if name not in AUGMENTATIONS:
            raise ValueError(f"augmentation {spec!r}: unknown component {name!r}; valid: "
                             f"'none' or {', '.join(AUGMENTATIONS)} joined by '+'")
        if name in parts:
            raise ValueError(f"augmentation {spec!r}: component {name!r} given twice")
        value: Optional[float] = None
        if sep:
            if name == "flip":
                raise ValueError(f"augmentation {spec!r}: 'flip' takes no parameter")
            try:
                value = int(param) if name == "shift" else float(param)
            except ValueError:
                kind = "a positive integer" if name == "shift" else "a positive number"
                raise ValueError(f"augmentation {spec!r}: {name} parameter must be {kind}, "
                                 f"got {param!r}") from None
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"augmentation {spec!r}: {name} parameter must be positive, "
                                 f"got {param!r}")
        parts[name] = value
    return {name: parts[name] for name in AUGMENTATIONS if name in parts}


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_options(value, name: str) -> dict:
    """A dict of str keys to JSON-like values (scalars, lists, nested dicts)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a table/dict, got {type(value).__name__} {value!r}")
    for key in value:
        if not isinstance(key, str) or not key:
            raise TypeError(f"{name} keys must be non-empty strings, got {key!r}")
    try:
        json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must hold JSON-like values (str, number, bool, list, table): "
                        f"{e}") from None
    return json.loads(json.dumps(dict(value)))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines one training run.

    A run is a function of its config: same config, same weights (on the same device and torch
    build; see :func:`mmkern.train.train_model`). Construct with keywords, from a dict with
    :meth:`from_dict`, or from another config with :meth:`replace`; every construction
    validates. ``to_dict`` / ``from_dict`` round-trip through JSON and TOML.

    Attributes
    ----------
    dataset : str, default "mnist1d"
        Name for :func:`mmkern.data.load_dataset` (``"mnist1d"``, ``"digits"``, ``"mnist"``,
        ``"fashion_mnist"``, ``"cifar10"``, ``"cifar100"``, ``"svhn"``).
    dataset_options : dict, default {}
        Keyword options of ``load_dataset`` (e.g. ``{"spurious": 0.9}``).
    data_seed : int, default 0
        Seed of the dataset itself (``load_dataset(..., seed=data_seed)``), in [0, 2**32).
    train_size : int or None, default None
        Train on the first ``train_size`` training samples only (``None``: all).
    model : str, default "cnn1d"
        Architecture, one of ``"mlp"``, ``"cnn1d"``, ``"cnn2d"``, ``"vgg"``, ``"resnet18"``.
    width : float, default 1.0
        Width multiplier of every hidden size of the architecture.
    model_options : dict, default {}
        Further architecture options (e.g. ``{"depth": 3}`` for ``mlp``).
    optimizer : {"sgd", "adam", "adamw"}, default "sgd"
        SGD with (heavy-ball) momentum; Adam; AdamW (decoupled weight decay). Adam's betas are
        torch's defaults (0.9, 0.999).
    lr : float, default 0.05
        Peak learning rate.
    momentum : float, default 0.9
        SGD momentum in [0, 1); ignored by Adam/AdamW.
    weight_decay : float, default 0.0
        Applied to every parameter (coupled L2 for SGD and Adam, decoupled for AdamW).
    lr_schedule : {"cosine", "none"}, default "cosine"
        ``"cosine"``: decay from ``lr`` to 0 over all steps, updated every step.
    batch_size : int, default 128
        Training batch size. Every epoch visits every training sample once; a final batch of a
        single sample is merged into the one before (BatchNorm needs two).
    epochs : int, default 10
        Passes over the training set (0 gives the untrained initialisation).
    label_smoothing : float, default 0.0
        Cross-entropy label smoothing in [0, 1) (training loss only; evaluation is plain CE).
    augmentation : str, default "none"
        See the module docstring: ``"none"`` or e.g. ``"shift"``, ``"shift+flip"``,
        ``"shift:2+noise:0.1"``.
    init_seed, order_seed, aug_seed : int, default 0
        Seeds of the initial weights, the data order, the augmentation draws.
    device : str, default "cpu"
        Torch device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"`` (CUDA when
        available). Not part of what a zoo member *is*: :func:`mmkern.train.train_zoo` can
        override it.
    eval_batch_size : int, default 1024
        Batch size of evaluation passes (does not change any result beyond float rounding).
    replicate : int, default 0
        Which run of an otherwise identical config this is. It changes nothing in training:
        distinct values only make distinct zoo members, so that retraining one config can be
        measured (the floor of representational multiplicity; zero where training is bitwise
        deterministic, as on the CPU with one thread).
    """

    dataset: str = "mnist1d"
    dataset_options: dict = field(default_factory=dict)
    data_seed: int = 0
    train_size: Optional[int] = None
    model: str = "cnn1d"
    width: float = 1.0
    model_options: dict = field(default_factory=dict)
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    batch_size: int = 128
    epochs: int = 10
    label_smoothing: float = 0.0
    augmentation: str = "none"
    init_seed: int = 0
    order_seed: int = 0
    aug_seed: int = 0
    device: str = "cpu"
    eval_batch_size: int = 1024
    replicate: int = 0

    def __post_init__(self):
        def set_(name, value):
            object.__setattr__(self, name, value)

        for name in _STRING_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"TrainConfig.{name} must be a string, got "
                                f"{type(value).__name__} {value!r}")
        if not self.dataset.strip():
            raise ValueError("TrainConfig.dataset must be a non-empty dataset name")
        for name in ("dataset_options", "model_options"):
            set_(name, _check_options(getattr(self, name), f"TrainConfig.{name}"))
        if "width" in self.model_options:
            raise ValueError("TrainConfig.model_options must not hold 'width': use the "
                             "TrainConfig.width field")
        for name, (low, high) in _INT_FIELDS.items():
            value = getattr(self, name)
            if value is None and name == "train_size":
                continue
            if not _is_int(value):
                raise TypeError(f"TrainConfig.{name} must be an integer, got "
                                f"{type(value).__name__} {value!r}")
            if not low <= value <= high:
                top = "2**32 - 1" if high == 2**32 - 1 else "2**63 - 1"
                bound = f"in [{low}, {top}]" if name.endswith("seed") else f">= {low}"
                raise ValueError(f"TrainConfig.{name} must be {bound}, got {value}")
            set_(name, int(value))
        for name, (low, high, low_open, high_open) in _REAL_FIELDS.items():
            value = getattr(self, name)
            if not _is_real(value):
                raise TypeError(f"TrainConfig.{name} must be a number, got "
                                f"{type(value).__name__} {value!r}")
            value = float(value)
            if not (math.isfinite(value) and (value > low if low_open else value >= low)
                    and (value < high if high_open else value <= high)):
                interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
                raise ValueError(f"TrainConfig.{name} must be in {interval}, got {value!r}")
            set_(name, value)
        for name, valid in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES)):
            if getattr(self, name) not in valid:
                raise ValueError(f"TrainConfig.{name} must be one of {', '.join(valid)}, got "
                                 f"{getattr(self, name)!r}")
        if self.model not in MODEL_NAMES:
            raise ValueError(f"TrainConfig.model: unknown model {self.model!r}; valid models: "
                             f"{', '.join(MODEL_NAMES)}")
        try:
            parse_augmentation(self.augmentation)
        except ValueError as e:
            raise ValueError(f"TrainConfig.augmentation: {e}") from None
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps|xpu(:\d+)?", self.device):
            raise ValueError(f"TrainConfig.device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' "
                             f"or 'xpu', got {self.device!r}")

    # ---------------------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        """Build a config from a mapping of field names to values; missing fields get defaults.

        Raises
        ------
        ValueError
            An unknown key (the message names it and suggests the closest field), or a bad value.
        TypeError
            ``data`` is not a mapping, or a value has the wrong type.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a TrainConfig must be given as a table/dict, got "
                            f"{type(data).__name__}")
        names = cls.field_names()
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown TrainConfig key {key!r}{hint}; valid keys: "
                                 f"{', '.join(names)}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-ready dict (``train_size`` may be ``None``)."""
        out = {}
        for name in self.field_names():
            value = getattr(self, name)
            out[name] = dict(value) if isinstance(value, dict) else value
        return json.loads(json.dumps(out))

    def replace(self, **changes) -> "TrainConfig":
        """A validated copy with some fields changed (unknown names raise ValueError)."""
        data = self.to_dict()
        data.update(changes)
        return type(self).from_dict(data)

    def get(self, path: str) -> Any:
        """Value of a field or a dotted option path (``"dataset_options.spurious"``; a missing
        option key gives ``None``)."""
        head, _, key = self._split_path(path)
        value = getattr(self, head)
        return value.get(key) if key else value

    def with_values(self, values: Mapping[str, Any]) -> "TrainConfig":
        """A validated copy with fields or dotted option paths set.

        Parameters
        ----------
        values : mapping
            ``{path: value}``, where a path is a field name (``"lr"``) or
            ``"dataset_options.<key>"`` / ``"model_options.<key>"``.
        """
        data = self.to_dict()
        for path, value in values.items():
            head, _, key = self._split_path(path)
            if key:
                data[head] = {**data[head], key: value}
            else:
                data[head] = value
        return type(self).from_dict(data)

    @classmethod
    def _split_path(cls, path: str) -> tuple[str, str, str]:
        if not isinstance(path, str):
            raise TypeError(f"a config field path must be a string, got {path!r}")
        head, dot, key = path.partition(".")
        if head not in cls.field_names():
            close = difflib.get_close_matches(head, cls.field_names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown TrainConfig field {head!r} in {path!r}{hint}")
        if dot and (head not in ("dataset_options", "model_options") or not key):
            raise ValueError(f"bad field path {path!r}: only dataset_options.<key> and "
                             f"model_options.<key> take a dotted key")
        return head, dot, key

    def key(self) -> str:
        """Canonical JSON of the config without ``device``: equal keys mean equal runs."""
        data = self.to_dict()
        del data["device"]
        return json.dumps(data, sort_keys=True)
