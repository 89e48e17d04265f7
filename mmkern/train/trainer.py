"""Training one model from a :class:`~mmkern.train.config.TrainConfig`, and evaluating it.

Reproducibility: a run is a function of its config. The initial weights come from
``init_seed`` (the model is built under :func:`torch.random.fork_rng`, so the global RNG is
neither read nor changed), the data order from a :class:`torch.Generator` seeded with
``order_seed``, the augmentation draws from one seeded with ``aug_seed``; all three generators
live on the CPU, whatever the device. Training runs with deterministic algorithms
(:func:`torch.use_deterministic_algorithms`; cuDNN deterministic, no benchmarking), restored
afterwards. On the CPU the same config gives bit-identical weights on the same machine, torch
build and number of intra-op threads (a different thread count can change float rounding in
reductions); across devices, only up to floating-point rounding.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import time
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mmkern._validate import check_batch_size
from mmkern._version import __version__
from mmkern.train._inputs import (
    as_config,
    as_labelled,
    batches,
    deterministic,
    device_of,
    eval_mode,
    finite_or_none,
    resolve_device,
    torch_threads,
)
from mmkern.train._errors import TrainingDiverged
from mmkern.train.augment import Augmenter
from mmkern.train.config import TrainConfig
from mmkern.train.models import ZooModel, build_model

__all__ = ["TrainingDiverged", "evaluate", "init_model", "load_config_dataset", "train_model"]

#: Format tag of the records :func:`train_model` returns.
RECORD_FORMAT = "mmkern-train-record/1"


def load_config_dataset(config: TrainConfig, data_dir=None):
    """The dataset a config names: ``load_dataset(config.dataset, data_dir=data_dir,
    seed=config.data_seed, **config.dataset_options)``.

    Returns
    -------
    mmkern.data.Dataset
    """
    from mmkern.data import load_dataset

    config = as_config(config)
    return load_dataset(config.dataset, data_dir=data_dir, seed=config.data_seed,
                        **config.dataset_options)


class DatasetCache:
    """The datasets of the last ``size`` distinct data settings of configs, loaded on demand.

    Zoo members usually share their data (only the seeds of the model differ), so loading each
    dataset once per run instead of once per member saves time; a bounded size keeps memory in
    check when they do not.

    Parameters
    ----------
    load : callable(TrainConfig) -> Dataset
        Loads a config's dataset (e.g. ``lambda c: load_config_dataset(c, data_dir)``).
    size : int, default 2
    """

    def __init__(self, load, size: int = 2):
        self.load = load
        self.size = size
        self._items: dict[str, Any] = {}

    @staticmethod
    def key(config: TrainConfig) -> str:
        """What decides a config's dataset: its ``dataset``, ``dataset_options`` and ``data_seed``."""
        return json.dumps([config.dataset, config.dataset_options, config.data_seed], sort_keys=True)

    def get(self, config: TrainConfig):
        """The dataset of ``config`` (its ``dataset``, ``dataset_options`` and ``data_seed``)."""
        key = self.key(config)
        if key not in self._items:
            while len(self._items) >= self.size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = self.load(config)
        return self._items[key]


def init_model(config: TrainConfig, input_shape, num_classes: int) -> ZooModel:
    """The initial model of a config: its architecture with weights drawn from ``init_seed``.

    The global torch RNG is neither used nor changed (:func:`torch.random.fork_rng`).

    Returns
    -------
    ZooModel
        On the CPU, float32, in training mode.
    """
    config = as_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.init_seed)
        return build_model(config.model, tuple(input_shape), int(num_classes),
                           width=config.width, **config.model_options)


def evaluate(model: nn.Module, data, *, batch_size: int = 1024) -> dict[str, Any]:
    """Accuracy and mean cross-entropy of a classifier on a labelled set, in eval mode.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(b, *input_shape)`` float32 to logits ``(b, C)``. Evaluated in eval mode without
        gradients on the device of its parameters; its modes are restored afterwards.
    data : ArraySplit or (x, y)
        ``x`` float ``(n, *input_shape)`` (NumPy or torch), ``y`` integer labels ``(n,)``.
    batch_size : int, default 1024

    Returns
    -------
    dict
        ``{"accuracy": float, "loss": float or None, "n": int}``: fraction of samples whose
        argmax logit is the label, and the per-sample mean cross-entropy (accumulated in
        float64; ``None`` if not finite). An empty set gives ``None`` for both.
    """
    x, y = as_labelled(data, "data")
    batch_size = check_batch_size(batch_size)
    n = int(x.shape[0])
    if n == 0:
        return {"accuracy": None, "loss": None, "n": 0}
    device = device_of(model)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with eval_mode(model):
        for start, xb in zip(range(0, n, batch_size), batches(x, batch_size, device)):
            yb = y[start:start + batch_size].to(device)
            logits = model(xb)
            loss_sum += F.cross_entropy(logits.double(), yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
    return {"accuracy": correct.item() / n, "loss": finite_or_none(loss_sum.item() / n), "n": n}


def _check_dataset(dataset) -> None:
    for attr in ("name", "train", "test", "num_classes", "input_shape", "ood"):
        if not hasattr(dataset, attr):
            raise TypeError(f"dataset must be an mmkern.data.Dataset (missing .{attr}), got "
                            f"{type(dataset).__name__}")
    for split_name in ("train", "test"):
        split = getattr(dataset, split_name)
        x, y = np.asarray(split.x), np.asarray(split.y)
        if x.shape[1:] != tuple(dataset.input_shape) or y.shape != x.shape[:1]:
            raise ValueError(f"dataset.{split_name}: x {x.shape} and y {y.shape} do not match "
                             f"input_shape {tuple(dataset.input_shape)}")
    if len(dataset.train) == 0:
        raise ValueError("dataset.train is empty")


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` of batches covering ``n``; a last batch of one sample is
    merged into the previous one (BatchNorm cannot train on a single sample)."""
    bounds = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def cosine_lr(lr: float, step: int, total: int) -> float:
    """The learning rate at ``step`` of ``total`` on a cosine schedule from ``lr`` to 0."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / total))


def _lr_at(config: TrainConfig, step: int, total: int) -> float:
    if config.lr_schedule == "cosine" and total > 0:
        return cosine_lr(config.lr, step, total)
    return config.lr


def train_model(
    config,
    dataset=None,
    *,
    data_dir=None,
    device=None,
    progress: bool = False,
    callback: Optional[Callable[[dict], None]] = None,
    threads: Optional[int] = None,
) -> tuple[ZooModel, dict]:
    """Train one model as its config says, then evaluate it on train, test and every OOD set.

    Parameters
    ----------
    config : TrainConfig or dict
    dataset : mmkern.data.Dataset, optional
        The data to use; by default :func:`load_config_dataset` (``config.dataset``,
        ``config.dataset_options``, ``seed=config.data_seed``). ``train.x`` float32
        ``(n, *input_shape)``, ``train.y`` int64 ``(n,)``; likewise ``test`` and each ``ood``
        split. The training inputs are copied to the device once, as a whole.
    data_dir : str or os.PathLike, optional
        Passed to ``load_dataset`` for datasets read from local files.
    device : str or torch.device, optional
        Overrides ``config.device`` (``"cpu"``, ``"cuda"``, ``"auto"``, ...).
    progress : bool, default False
        Show a tqdm bar over epochs.
    callback : callable(dict) -> None, optional
        Called after every epoch with ``{"epoch", "epochs", "loss", "accuracy", "lr",
        "seconds"}``; an exception it raises (e.g. KeyboardInterrupt) stops training.
    threads : int, optional
        Torch intra-op threads for this run (restored afterwards); default: leave the current
        setting. Bit-identical repeats need the same number of threads.

    Returns
    -------
    model : ZooModel
        The trained model, on ``device``, in eval mode.
    record : dict
        JSON-ready: ``format``, ``config`` (:meth:`TrainConfig.to_dict`), ``seeds``, ``model``
        (spec, parameter count, layer names), ``dataset`` (name, input shape, classes, sizes,
        OOD set names), ``metrics`` (``train``, ``test``: ``{"accuracy", "loss", "n"}``, and
        ``ood``: one such dict per OOD set), ``history`` (per epoch: mean training loss and
        accuracy over the augmented batches, learning rate at the epoch's end, seconds), ``device``,
        ``train_seconds``, ``eval_seconds``, ``finished_at`` (UTC, ISO 8601), and versions.
    """
    with torch_threads(threads):
        return _train_model(as_config(config), dataset, data_dir, device, progress, callback)


def _check_finite_weights(model: nn.Module, config: TrainConfig) -> None:
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise TrainingDiverged(f"training left non-finite values in {name!r} (lr={config.lr}); "
                                   "lower the learning rate")


def _train_model(config: TrainConfig, dataset, data_dir, device, progress: bool,
                 callback) -> tuple[ZooModel, dict]:
    dev = resolve_device(device if device is not None else config.device)
    source = "given" if dataset is not None else "load_dataset"
    if dataset is None:
        dataset = load_config_dataset(config, data_dir)
    _check_dataset(dataset)
    input_shape = tuple(int(s) for s in dataset.input_shape)

    x_all, y_all = as_labelled(dataset.train, "dataset.train")
    if config.train_size is not None:
        if config.train_size > x_all.shape[0]:
            raise ValueError(f"config.train_size={config.train_size} exceeds the "
                             f"{x_all.shape[0]} training samples of {dataset.name!r}")
        x_all, y_all = x_all[:config.train_size], y_all[:config.train_size]
    n = int(x_all.shape[0])
    augment = Augmenter(config.augmentation, input_shape, float(x_all.float().std()))
    bounds = batch_bounds(n, config.batch_size)
    total_steps = config.epochs * len(bounds)

    model = init_model(config, input_shape, dataset.num_classes).to(dev)
    optimizer = _optimizer(config, model)
    order_gen = torch.Generator().manual_seed(config.order_seed)
    aug_gen = torch.Generator().manual_seed(config.aug_seed)

    history = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, desc=f"{config.model} on {dataset.name}", unit="epoch",
                   leave=False, disable=None)
    started = time.perf_counter()
    try:
        with deterministic(dev):
            x_train, y_train = x_all.to(dev, torch.float32), y_all.to(dev)
            step = 0
            for epoch in range(config.epochs):
                epoch_start = time.perf_counter()
                model.train()
                perm = torch.randperm(n, generator=order_gen).to(dev)
                loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
                correct = torch.zeros((), dtype=torch.int64, device=dev)
                for start, stop in bounds:
                    idx = perm[start:stop]
                    xb, yb = augment(x_train[idx], aug_gen), y_train[idx]
                    lr = _lr_at(config, step, total_steps)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    logits = model(xb)
                    loss = F.cross_entropy(logits, yb, label_smoothing=config.label_smoothing)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    loss_sum += loss.detach().double() * (stop - start)
                    correct += (logits.detach().argmax(1) == yb).sum()
                mean_loss = loss_sum.item() / n
                entry = {"epoch": epoch + 1, "loss": finite_or_none(mean_loss),
                         "accuracy": correct.item() / n,
                         "lr": _lr_at(config, step, total_steps),
                         "seconds": time.perf_counter() - epoch_start}
                history.append(entry)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{entry['accuracy']:.3f}")
                if callback is not None:
                    callback({**entry, "epochs": config.epochs})
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(
                        f"training diverged in epoch {epoch + 1} of {config.epochs}: the mean training "
                        f"loss became {mean_loss} (lr={config.lr}, optimizer={config.optimizer}); "
                        "lower the learning rate")
    finally:
        if bar is not None:
            bar.close()
    _check_finite_weights(model, config)
    train_seconds = time.perf_counter() - started

    eval_start = time.perf_counter()
    bs = config.eval_batch_size
    metrics = {
        "train": evaluate(model, (x_all, y_all), batch_size=bs),
        "test": evaluate(model, dataset.test, batch_size=bs),
        "ood": {name: evaluate(model, split, batch_size=bs)
                for name, split in dataset.ood.items()},
    }
    model.eval()
    record = {
        "format": RECORD_FORMAT,
        "config": config.to_dict(),
        "seeds": {"data_seed": config.data_seed, "init_seed": config.init_seed,
                  "order_seed": config.order_seed, "aug_seed": config.aug_seed},
        "model": {**model.spec, "num_parameters": sum(p.numel() for p in model.parameters()),
                  "layers": list(model.layer_names)},
        "dataset": {"name": dataset.name, "source": source, "input_shape": list(input_shape),
                    "num_classes": int(dataset.num_classes), "n_train": n,
                    "n_test": len(dataset.test), "ood": list(dataset.ood),
                    "info": getattr(dataset, "info", {})},
        "metrics": metrics,
        "history": history,
        "device": str(dev),
        "train_seconds": train_seconds,
        "eval_seconds": time.perf_counter() - eval_start,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mmkern_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }
    return model, record
