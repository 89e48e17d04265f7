"""MNIST-1D (Greydanus 2020), generated offline, with nuisance-shifted OOD test sets.

The data come from the ``mnist1d`` package's own generator: its templates
(``mnist1d.data.get_templates``), default arguments (``get_dataset_args``) and per-sample
transform (``mnist1d.transform.transform``: pad, dilate, scale, translate, correlated background
noise, i.i.d. noise, shear, subsample), drawn in exactly the order ``mnist1d.data.make_dataset``
draws them. With the same arguments and seed the i.i.d. data are bit-identical to
``make_dataset``'s (a test checks this); ``seed=42`` with default options is the package default.
The download path (``get_dataset``) is never used.

Shapes and values: ``x`` is float32 ``(n, 1, L)`` with ``L = final_seq_length`` (40), standardised
as the package does it: minus the mean and divided by the standard deviation of all generated
i.i.d. samples (train and test together). Labels are the digits 0..9. ``num_samples // 10``
samples per class are generated, shuffled, and the first ``int(n * train_split)`` form the
training set.

Nuisance parameters (options, package defaults):

=====================  ===========  ========================================================
option                 default      meaning (per sample, in the generator)
=====================  ===========  ========================================================
``padding``            (36, 60)     zeros appended before dilation: uniform int in [lo, hi]
``scale_coeff``        0.4          amplitude times ``1 + scale_coeff * (U - 1/2)``
``max_translation``    48           circular shift by a uniform int in [0, max_translation)
``corr_noise_scale``   0.25         std of Gaussian-smoothed (sigma 2) noise in the padding
``iid_noise_scale``    0.02         std of i.i.d. Gaussian noise added everywhere
``shear_scale``        0.75         subtract ``shear_scale * (U - 1/2)`` times a ramp -1/2..1/2
``shuffle_seq``        False        one fixed random permutation of the L positions
``final_seq_length``   40           length L after the final linear interpolation
=====================  ===========  ========================================================

OOD test sets: the same templates and generator with one nuisance family shifted, at severities
1..5, named ``"<family>-<severity>"``. Each set is standardised with the i.i.d. mean and standard
deviation (so extra noise shows as extra variance, not renormalised away). A family's parameters
at severity k, as functions of the i.i.d. values (right column: the values with default options):

===============  ==========================================  ==================================
family           parameter(s) at severity k = 1..5            with default options
===============  ==========================================  ==================================
``noise``        corr_noise_scale and iid_noise_scale times   corr 0.3125, 0.375, 0.4375, 0.5,
                 1.25, 1.5, 1.75, 2.0, 2.5                    0.625; iid 0.025 ... 0.05
``shear``        shear_scale times 1.5, 2, 3, 4, 5            1.125, 1.5, 2.25, 3.0, 3.75
``translation``  max_translation + k/5 (T - max_translation)  53, 58, 62, 67, 72
                 rounded half up, T = 12 + padding[1]
``scale``        scale_coeff + k/5 (1.9 - scale_coeff)        0.7, 1.0, 1.3, 1.6, 1.9
===============  ==========================================  ==================================

Every other parameter keeps its i.i.d. value. All severities of one family use the same generator
seed; for ``noise``, ``shear`` and ``scale`` that means the same random draws, so a higher
severity shows the same signals with a larger nuisance (``translation`` draws its shift by
rejection sampling, whose consumption of the stream depends on the range, so its sets diverge
after the first draw). OOD
sets hold :data:`DEFAULT_OOD_SAMPLES` (500) samples unless ``ood_samples`` says otherwise. For
orientation only: a small 1-D CNN at 96% i.i.d. test accuracy scored about 0.90 / 0.69 / 0.43
at severities 1 / 3 / 5 of ``noise``, 0.92 / 0.76 / 0.53 of ``shear``, 0.92 / 0.82 / 0.72 of
``translation`` and 0.94 / 0.78 / 0.70 of ``scale``.

Randomness: the i.i.d. data use generator seed ``seed``; each OOD family uses a seed derived from
``seed`` and the family name. The generator draws from NumPy's global legacy RNG; its state is
saved before and restored after generation (under a lock), so callers' global RNG state is left
unchanged. Generated datasets are cached per process (by all arguments); every call returns fresh
copies of the arrays.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
from collections import OrderedDict
from types import SimpleNamespace
from typing import Any, Iterable, Iterator

import numpy as np

from mmkern.data._arrays import ArraySplit, Dataset
from mmkern._validate import check_bool, check_float, check_int
from mmkern.data._checks import check_names, check_seed, check_severities, derive_seed

__all__ = [
    "OOD_FAMILIES",
    "DEFAULT_SEVERITIES",
    "DEFAULT_OOD_SAMPLES",
    "NOISE_FACTORS",
    "SHEAR_FACTORS",
    "MAX_SCALE_COEFF",
    "load_mnist1d",
    "generator_args",
    "ood_generator_args",
]

OOD_FAMILIES: tuple[str, ...] = ("noise", "shear", "translation", "scale")
"""The nuisance families of the OOD test sets, in the order they are attached."""

DEFAULT_SEVERITIES: tuple[int, ...] = (1, 3, 5)
"""Severities attached by default (the scale is 1..5)."""

DEFAULT_OOD_SAMPLES: int = 500
"""Samples per OOD set by default (50 per class). The generator costs about 0.2 ms per sample,
so the default dataset (5000 i.i.d. + 12 x 500 OOD samples) takes about 2.5 s on one core."""

NOISE_FACTORS: tuple[float, ...] = (1.25, 1.5, 1.75, 2.0, 2.5)
"""Factor on both noise scales at severities 1..5."""

SHEAR_FACTORS: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0)
"""Factor on ``shear_scale`` at severities 1..5."""

MAX_SCALE_COEFF: float = 1.9
"""``scale_coeff`` at severity 5 of the ``scale`` family (amplitude factors in [0.05, 1.95])."""

_NUISANCE_DEFAULTS: dict[str, Any] = {
    "padding": (36, 60),
    "scale_coeff": 0.4,
    "max_translation": 48,
    "corr_noise_scale": 0.25,
    "iid_noise_scale": 0.02,
    "shear_scale": 0.75,
    "shuffle_seq": False,
    "final_seq_length": 40,
}

_GLOBAL_RNG_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple, Dataset] = OrderedDict()
_CACHE_SIZE = 8


def _package() -> SimpleNamespace:
    """The generator pieces of the ``mnist1d`` package (imported on first use)."""
    try:
        import mnist1d
        from mnist1d.data import get_dataset_args, get_templates
        from mnist1d.transform import transform  # the package also binds mnist1d.transform
        from mnist1d.utils import ObjectView
    except ImportError as exc:  # pragma: no cover - the [train] extra installs it
        raise ImportError("MNIST-1D needs the 'mnist1d' package: pip install 'mmkern[train]'") \
            from exc
    return SimpleNamespace(get_templates=get_templates, get_dataset_args=get_dataset_args,
                           transform=transform, ObjectView=ObjectView,
                           version=getattr(mnist1d, "__version__", None))


def _template_len() -> int:
    return len(_package().get_templates()["t"])


def generator_args(**nuisance: Any) -> dict[str, Any]:
    """The generator arguments: the package defaults with validated nuisance overrides.

    Parameters
    ----------
    **nuisance
        Any of ``padding``, ``scale_coeff``, ``max_translation``, ``corr_noise_scale``,
        ``iid_noise_scale``, ``shear_scale``, ``shuffle_seq``, ``final_seq_length``.

    Returns
    -------
    dict
        JSON-serialisable: the nuisance parameters and ``template_len``.

    Raises
    ------
    TypeError
        For an unknown name or a value of the wrong type.
    ValueError
        For a value out of range (e.g. ``max_translation`` larger than the dilated length).
    """
    unknown = set(nuisance) - set(_NUISANCE_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown MNIST-1D nuisance parameter(s) {sorted(unknown)}; "
                        f"valid: {', '.join(_NUISANCE_DEFAULTS)}")
    p = {**_NUISANCE_DEFAULTS, **nuisance}
    padding = p["padding"]
    if isinstance(padding, (str, bytes)) or not hasattr(padding, "__len__") or len(padding) != 2:
        raise TypeError(f"padding must be a pair (low, high) of ints, got {padding!r}")
    lo = check_int(padding[0], "padding[0]", low=0)
    hi = check_int(padding[1], "padding[1]", low=lo)
    template_len = _template_len()
    length = template_len + hi
    return {
        "template_len": template_len,
        "padding": [lo, hi],
        "scale_coeff": check_float(p["scale_coeff"], "scale_coeff", low=0.0, high=2.0,
                                   high_open=True),
        "max_translation": check_int(p["max_translation"], "max_translation", low=1, high=length),
        "corr_noise_scale": check_float(p["corr_noise_scale"], "corr_noise_scale", low=0.0),
        "iid_noise_scale": check_float(p["iid_noise_scale"], "iid_noise_scale", low=0.0),
        "shear_scale": check_float(p["shear_scale"], "shear_scale", low=0.0),
        "shuffle_seq": check_bool(p["shuffle_seq"], "shuffle_seq"),
        "final_seq_length": check_int(p["final_seq_length"], "final_seq_length", low=2),
    }


def ood_generator_args(args: dict[str, Any], family: str, severity: int) -> dict[str, Any]:
    """The generator arguments of one OOD set (see the table in the module docstring).

    Parameters
    ----------
    args : dict
        I.i.d. arguments from :func:`generator_args`.
    family : str
        One of :data:`OOD_FAMILIES`.
    severity : int
        1..5.

    Returns
    -------
    dict
        A copy of ``args`` with the family's parameter(s) shifted.

    Raises
    ------
    ValueError
        If ``family`` is unknown, ``severity`` is not in 1..5, or the i.i.d. value leaves the
        family no room to shift (zero noise, zero shear, ``max_translation`` at its maximum,
        ``scale_coeff`` >= :data:`MAX_SCALE_COEFF`).
    """
    if family not in OOD_FAMILIES:
        raise ValueError(f"family: unknown {family!r}; valid: {', '.join(OOD_FAMILIES)}")
    k = check_int(severity, "severity", low=1, high=5)
    out = dict(args)
    if family == "noise":
        if args["corr_noise_scale"] == 0 and args["iid_noise_scale"] == 0:
            raise ValueError("the 'noise' OOD family needs corr_noise_scale or iid_noise_scale "
                             "> 0; drop 'noise' from ood")
        out["corr_noise_scale"] = args["corr_noise_scale"] * NOISE_FACTORS[k - 1]
        out["iid_noise_scale"] = args["iid_noise_scale"] * NOISE_FACTORS[k - 1]
    elif family == "shear":
        if args["shear_scale"] == 0:
            raise ValueError("the 'shear' OOD family needs shear_scale > 0; drop 'shear' from ood")
        out["shear_scale"] = args["shear_scale"] * SHEAR_FACTORS[k - 1]
    elif family == "translation":
        top = args["template_len"] + args["padding"][1]
        base = args["max_translation"]
        if base >= top:
            raise ValueError(f"the 'translation' OOD family needs max_translation < {top} "
                             f"(template_len + padding[1]), got {base}; drop 'translation' "
                             "from ood")
        out["max_translation"] = int(math.floor(base + k / 5 * (top - base) + 0.5))
    else:
        base = args["scale_coeff"]
        if base >= MAX_SCALE_COEFF:
            raise ValueError(f"the 'scale' OOD family needs scale_coeff < {MAX_SCALE_COEFF}, "
                             f"got {base}; drop 'scale' from ood")
        out["scale_coeff"] = base + k / 5 * (MAX_SCALE_COEFF - base)
    return out


@contextlib.contextmanager
def _global_numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global legacy RNG for the generator, then restore the caller's state."""
    with _GLOBAL_RNG_LOCK:
        state = np.random.get_state()
        try:
            np.random.seed(seed)
            yield
        finally:
            np.random.set_state(state)


def _generate_raw(args: dict[str, Any], per_class: int, seed: int,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Unstandardised signals ``(10 per_class, L)`` float64, labels, and the sequence permutation.

    Draws exactly as ``mnist1d.data.make_dataset``: classes in order, ``per_class`` transforms
    each, one batch permutation, then (if ``shuffle_seq``) one sequence permutation.
    """
    pkg = _package()
    templates = pkg.get_templates()
    view = pkg.ObjectView(dict(args, padding=list(args["padding"])))
    transform = pkg.transform
    num_classes = len(templates["y"])
    xs, ys = [], []
    with _global_numpy_seed(seed):
        for label in range(num_classes):
            template, t = templates["x"][label], templates["t"]
            for _ in range(per_class):
                x, _new_t = transform(template, t, view)
                xs.append(x)
                ys.append(templates["y"][label])
        order = np.random.permutation(len(ys))
        seq_perm = np.random.permutation(args["final_seq_length"]) if args["shuffle_seq"] else None
    x = np.stack(xs)[order]
    y = np.asarray(ys, dtype=np.int64)[order]
    return x, y, seq_perm


def _validate_options(num_samples: Any, train_split: Any, ood: Any, ood_severities: Any,
                      ood_samples: Any) -> tuple[int, float, tuple, tuple, int]:
    num_samples = check_int(num_samples, "num_samples", low=20)
    train_split = check_float(train_split, "train_split", low=0.0, high=1.0, low_open=True,
                              high_open=True)
    total = 10 * (num_samples // 10)
    n_train = int(total * train_split)
    if n_train < 1 or n_train >= total:
        raise ValueError(f"train_split={train_split} leaves an empty split of {total} samples")
    families = check_names(ood, "ood", OOD_FAMILIES)
    severities = check_severities(ood_severities)
    ood_samples = check_int(ood_samples, "ood_samples", low=10)
    return num_samples, train_split, families, severities, ood_samples


def load_mnist1d(*, seed: int = 0, num_samples: int = 5000, train_split: float = 0.8,
                 ood: Iterable[str] | str | None = OOD_FAMILIES,
                 ood_severities: Iterable[int] | int | None = DEFAULT_SEVERITIES,
                 ood_samples: int = DEFAULT_OOD_SAMPLES, **nuisance: Any) -> Dataset:
    """MNIST-1D generated offline, with nuisance-shifted OOD test sets.

    Parameters
    ----------
    seed : int, optional
        Generator seed of the i.i.d. data, in [0, 2**32); OOD seeds derive from it.
    num_samples : int, optional
        Total i.i.d. samples (train + test); ``num_samples // 10`` per class.
    train_split : float, optional
        Fraction in (0, 1) of the shuffled samples that form the training set.
    ood : sequence of str or None, optional
        OOD families from :data:`OOD_FAMILIES` (default: all); None or () for none.
    ood_severities : sequence of int or None, optional
        Severities in 1..5 (default :data:`DEFAULT_SEVERITIES`).
    ood_samples : int, optional
        Samples per OOD set, rounded down to a multiple of 10 (default
        :data:`DEFAULT_OOD_SAMPLES`, 500).
    **nuisance
        Generator overrides: ``padding``, ``scale_coeff``, ``max_translation``,
        ``corr_noise_scale``, ``iid_noise_scale``, ``shear_scale``, ``shuffle_seq``,
        ``final_seq_length`` (see the module docstring).

    Returns
    -------
    Dataset
        ``name="mnist1d"``, 10 classes, ``input_shape=(1, final_seq_length)``; ``ood`` keys
        ``"<family>-<severity>"`` (families in :data:`OOD_FAMILIES` order, then severities as
        given). Default keys: noise-1, noise-3, noise-5, shear-1, shear-3, shear-5,
        translation-1, translation-3, translation-5, scale-1, scale-3, scale-5.

    Raises
    ------
    TypeError, ValueError
        For invalid options (the message names the option).
    """
    seed = check_seed(seed)
    num_samples, train_split, families, severities, ood_samples = _validate_options(
        num_samples, train_split, ood, ood_severities, ood_samples)
    args = generator_args(**nuisance)
    ood_args = {f"{fam}-{k}": ood_generator_args(args, fam, k) for fam in families
                for k in severities}  # validated before any generation
    key = (seed, num_samples, train_split, families, severities, ood_samples,
           tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(args.items())))
    if key not in _CACHE:
        _CACHE[key] = _build(seed, num_samples, train_split, families, severities, ood_samples,
                             args, ood_args)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return _copy(_CACHE[key])


def _copy(d: Dataset) -> Dataset:
    def cp(s: ArraySplit) -> ArraySplit:
        return ArraySplit(s.x.copy(), s.y.copy())

    return Dataset(name=d.name, train=cp(d.train), test=cp(d.test), num_classes=d.num_classes,
                   input_shape=d.input_shape, ood={k: cp(v) for k, v in d.ood.items()},
                   info=copy.deepcopy(d.info))


def _build(seed: int, num_samples: int, train_split: float, families: tuple,
           severities: tuple, ood_samples: int, args: dict, ood_args: dict) -> Dataset:
    x, y, seq_perm = _generate_raw(args, num_samples // 10, seed)
    if seq_perm is not None:
        x = x[:, seq_perm]
    mean, std = float(x.mean()), float(x.std())
    n_train = int(len(y) * train_split)
    length = args["final_seq_length"]

    def split(xs: np.ndarray, ys: np.ndarray) -> ArraySplit:
        return ArraySplit(((xs - mean) / std).reshape(len(ys), 1, length), ys)

    train = split(x[:n_train], y[:n_train])
    test = split(x[n_train:], y[n_train:])
    n_ood = ood_samples
    ood_sets: dict[str, ArraySplit] = {}
    ood_info: dict[str, dict] = {}
    for fam in families:
        fam_seed = derive_seed(seed, "mnist1d-ood", fam)
        for k in severities:
            name = f"{fam}-{k}"
            xo, yo, _ = _generate_raw(ood_args[name], n_ood // 10, fam_seed)
            if seq_perm is not None:
                xo = xo[:, seq_perm]  # the i.i.d. permutation: same positions as training
            ood_sets[name] = split(xo, yo)
            changed = {p: v for p, v in ood_args[name].items() if v != args[p]}
            ood_info[name] = {"family": fam, "severity": k, "generator_seed": fam_seed,
                              "num_samples": len(yo), "changed": changed}
    info = {
        "name": "mnist1d",
        "source": "generated offline by the mnist1d package's generator "
                  "(templates, transform and draw order of mnist1d.data.make_dataset)",
        "mnist1d_version": _package().version or _dist_version("mnist1d"),
        "seed": seed,
        "generator_seed": seed,
        "num_samples": int(len(y)),
        "train_split": train_split,
        "generator_args": args,
        "standardisation": {"mean": mean, "std": std,
                            "over": "all generated i.i.d. samples (train and test)"},
        "sequence_permutation": None if seq_perm is None else [int(i) for i in seq_perm],
        "ood": ood_info,
    }
    return Dataset(name="mnist1d", train=train, test=test, num_classes=10,
                   input_shape=(1, length), ood=ood_sets, info=info)


def _dist_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # pragma: no cover
        return None

