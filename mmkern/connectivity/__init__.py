"""Linear mode connectivity: models along the straight line between two trained models' weights.

``theta(alpha) = (1 - alpha) theta_A + alpha theta_B`` on every floating parameter and buffer
(integer buffers from A); BatchNorm statistics re-estimated at every alpha; per-sample mean
cross-entropy and accuracy along the line; the four barriers of ``docs/definitions.md``
("Connectivity").
Conventions (data sources, batches, labels, loss) are those of
:mod:`mmkern.reference.connectivity`, the plain loop these functions are tested against.

How it is fast (see :mod:`mmkern.connectivity._engine`):

* the K interpolated weight sets are produced by one fused C++/OpenMP kernel call per flat
  weight vector (``mmkern._C.lerp_many``; CUDA twin for GPU models), not one small torch
  operation per tensor and alpha, and loaded into reused working models (no deep copy per
  alpha);
* several alphas share each pass over the data: one pass over ``bn_data`` re-estimates the
  BatchNorm statistics of a whole chunk of alphas, one pass over each evaluation set evaluates
  them, so a DataLoader is iterated twice per chunk instead of twice per alpha. The chunk size
  comes from ``memory_budget``;
* evaluation folds conv -> BatchNorm pairs, runs 4-D inputs in channels-last layout and in
  cache-sized micro-batches;
* :func:`pairwise_barriers` evaluates each model's own endpoint once, not once per pair;
* models on a CUDA device keep their loss sums and correct counts on the device, read back once
  per evaluation pass, and run float32 products and convolutions without TF32 unless
  ``allow_tf32=True``, so their curves match the CPU's to float32 rounding.

Requires PyTorch.
"""

from __future__ import annotations

import copy
import warnings
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from mmkern._validate import (
    check_batch_size,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_positive,
    check_positive_int,
)
from mmkern.connectivity._checks import (
    alpha_grid,
    BN_BATCH_SIZE,
    check_alpha,
    check_barrier_grid,
    check_bn_data,
    check_finite_weights,
    check_model,
    check_models,
    check_same_architecture,
    check_sets,
    check_source,
    DataSource,
    set_name,
    LossFn,
)
from mmkern.connectivity._models import entries
from mmkern.connectivity._results import (
    BARRIER_FIELDS,
    InterpolationCurve,
    make_curve,
    non_finite_message,
    PairwiseBarriers,
    per_set,
)
from mmkern.connectivity._align import Alignment, align_models, check_spec, first_inputs
from mmkern.connectivity._engine import CurveEngine, float32_precision
from mmkern.connectivity._permutation import PermutationSpec, permutation_spec
from mmkern.connectivity._plane import LossPlane, coordinates, grid_axes, model_plane, random_plane
from mmkern.connectivity._repair import repaired
from mmkern.connectivity._path import KINDS as PATH_KINDS, Path, coefficients, fingerprint, fit_path
from mmkern.connectivity._lerp import lerp_many
from mmkern.connectivity._weight_layout import WeightLayout

__all__ = [
    "EVAL_BATCH_SIZE",
    "MEMORY_BUDGET",
    "Alignment",
    "InterpolationCurve",
    "PairwiseBarriers",
    "LossPlane",
    "Path",
    "PermutationSpec",
    "align",
    "fit_curve",
    "loss_plane",
    "interpolate",
    "interpolation_curve",
    "pairwise_barriers",
    "permutation_spec",
]

ALIGN_METHODS = ("weights", "activations")

#: Default micro-batch of the evaluation passes: activations of a few MiB stay in cache
#: (benchmarks/NOTES.md).
EVAL_BATCH_SIZE = 128

#: Default bound, in bytes, on the memory of the weight sets evaluated together (their flat
#: interpolated rows, working models and folded copies).
MEMORY_BUDGET = 1 << 30


def _lerp_rows(flat_a: list[torch.Tensor], flat_b: list[torch.Tensor], alphas) -> list:
    return [lerp_many(a, b, alphas) for a, b in zip(flat_a, flat_b)]


def _check_options(eval_batch_size, memory_budget) -> tuple[int, int]:
    return (check_positive_int(eval_batch_size, "eval_batch_size"),
            check_positive_int(memory_budget, "memory_budget"))


def _chunk_size(layout: WeightLayout, memory_budget: int, k: int) -> int:
    """Weight sets per chunk: each costs about three copies of the weights (row, model, fold)."""
    per_set = 3 * max(layout.nbytes, 1)
    return int(max(1, min(k, memory_budget // per_set)))


def _evaluate_in_chunks(engine: CurveEngine, total: int, rows_for, chunk: int, keys, bar):
    """Loss and accuracy of ``total`` weight sets, ``chunk`` at a time.

    ``rows_for(part)`` gives the flat rows of the weight sets in slice ``part``. Returns two dicts
    by set key of float64 arrays ``(total,)``: the per-sample mean losses and the accuracies.
    """
    loss = {key: np.empty(total) for key in keys}
    accuracy = {key: np.empty(total) for key in keys}
    for start in range(0, total, chunk):
        part = slice(start, min(start + chunk, total))
        chunk_loss, chunk_accuracy = engine.run(rows_for(part))
        for key in keys:
            loss[key][part], accuracy[key][part] = chunk_loss[key], chunk_accuracy[key]
        bar.update(part.stop - part.start)
    return loss, accuracy


def _progress(total: int, enabled: bool, desc: str):
    """A tqdm bar when asked for and tqdm is installed, else a no-op with the same calls."""
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=desc, unit="alpha", disable=None)

    class _Silent:
        def update(self, n=1):
            pass

        def close(self):
            pass

    return _Silent()


def align(model_a: nn.Module, model_b: nn.Module, method: str = "weights", data=None, *,
          spec: Optional[PermutationSpec] = None, seed: int = 0, batch_size: int = BN_BATCH_SIZE,
          max_sweeps: int = 100, example_input: Optional[torch.Tensor] = None) -> Alignment:
    """Permute ``model_b``'s hidden units to match ``model_a``'s (Ainsworth et al. 2023).

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        Two models of the same architecture. Neither is modified.
    method : {"weights", "activations"}, default "weights"
        Weight matching (coordinate descent over the permutation groups, each step one linear
        assignment, groups in a random order from ``seed``, until no group improves) or
        activation matching (correlations of the units' activations on ``data``, accumulated in
        float64 over batches; one assignment per group). See :mod:`mmkern.connectivity._align`.
    data : DataLoader or (x, y) pair of tensors, optional
        The inputs of activation matching (labels unused); required for ``"activations"``.
    spec : PermutationSpec, optional
        The permutation groups; default :func:`permutation_spec` of ``model_a``.
    seed : int, default 0
        The order of the groups in weight matching's sweeps (results are deterministic).
    batch_size : int, default 256
        Batches of an ``(x, y)`` pair.
    max_sweeps : int, default 100
        Bound on weight matching's sweeps (it usually stops far earlier).
    example_input : torch.Tensor, optional
        A batch to trace the model with, for models without ``input_shape``.

    Returns
    -------
    Alignment
        ``model`` (the permuted copy of ``model_b``: the same function, buffers permuted too),
        ``perms`` (``{group: (n,) int64}``), ``spec`` and ``objective``.

    Raises
    ------
    TypeError, ValueError
        Models of different architectures, an unknown method, activation matching without data,
        a layer the permutation rules do not cover (naming it), a spec that does not fit.
    """
    check_same_architecture(model_a, model_b)
    method = check_choice(method, "method", ALIGN_METHODS)
    seed = check_int(seed, "seed")
    max_sweeps = check_positive_int(max_sweeps, "max_sweeps")
    batch_size = check_batch_size(batch_size)
    if method == "activations":
        if data is None:
            raise ValueError("method='activations' needs data: inputs to compare the activations on")
        check_source(data, "data")
    elif data is not None:
        raise ValueError("data is only used by method='activations'")
    if spec is None:
        if example_input is None and data is not None and not hasattr(model_a, "input_shape"):
            example_input = next(first_inputs(data, batch_size), None)
        spec = permutation_spec(model_a, example_input)
    else:
        spec = check_spec(spec, model_a)
    batches = first_inputs(data, batch_size) if method == "activations" else None
    return align_models(model_a, model_b, spec, method, batches, seed, max_sweeps)


def check_path(path, model_a, model_b, grid, repair: bool) -> None:
    """A fitted :class:`Path` between exactly these two models, evaluated on t in [0, 1]."""
    if not isinstance(path, Path):
        raise TypeError(f"path must be a Path from fit_curve, got {type(path).__name__}")
    if repair:
        raise ValueError("repair applies to straight lines; a path is evaluated as fitted")
    if path.endpoints != (fingerprint(model_a), fingerprint(model_b)):
        raise ValueError("path was fitted between other models than model_a and model_b (their weights "
                         "differ from its endpoints')")
    if grid.min() < 0.0 or grid.max() > 1.0:
        raise ValueError(f"a path is defined for t in [0, 1], got alphas from {grid.min()} to {grid.max()}")


def _path_rows(layout: WeightLayout, path: Path, flat_a, flat_b, grid):
    """Rows of the path's points: c_a theta_a + c_bend theta_bend + c_b theta_b, in float64."""
    flat_bend = [f.double() for f in layout.flatten(path.bend)]
    coeffs = torch.tensor([coefficients(path.kind, float(t)) for t in grid], dtype=torch.float64)

    def rows_for(part: slice) -> list:
        c = coeffs[part]
        return [(c[:, :1].to(a.device) * a + c[:, 1:2].to(a.device) * m + c[:, 2:].to(a.device) * b).to(dtype)
                for a, m, b, (_, dtype) in zip(flat_a, flat_bend, flat_b, layout.groups)]

    return rows_for


def fit_curve(model_a: nn.Module, model_b: nn.Module, train_data, kind: str = "bezier", *, epochs: int = 10,
              lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0, batch_size: int = 128,
              seed: int = 0) -> Path:
    """Train a low-loss curved path between two models (Garipov et al. 2018).

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        The endpoints, of one architecture. Neither is modified.
    train_data : (x, y) pair of tensors
        The data the bend is trained on (usually the models' training set).
    kind : {"bezier", "polychain"}, default "bezier"
        A quadratic Bezier curve, or two line segments through the bend.
    epochs, lr, momentum, weight_decay, batch_size, seed
        SGD on the bend (cosine schedule from ``lr``); ``seed`` draws the batch order and one
        path point t per batch.

    Returns
    -------
    Path
        The bend and the endpoints' fingerprints: evaluate it with
        ``interpolation_curve(model_a, model_b, data, alphas, path=path)``. See
        :mod:`mmkern.connectivity._path` for the exact definitions.

    Raises
    ------
    TypeError, ValueError
        Models of different architectures or with non-finite weights, bad options, data that
        is not an (x, y) pair or whose labels fall outside the models' outputs.
    mmkern.train.TrainingDiverged
        The training loss became non-finite.
    """
    from mmkern.connectivity._data import batches

    check_same_architecture(model_a, model_b)
    kind = check_choice(kind, "kind", PATH_KINDS)
    epochs = check_positive_int(epochs, "epochs")
    lr = check_positive(lr, "lr")
    momentum = check_float(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    weight_decay = check_float(weight_decay, "weight_decay", low=0.0)
    batch_size = check_batch_size(batch_size)
    seed = check_int(seed, "seed")
    check_source(train_data, "train_data")
    if not isinstance(train_data, (tuple, list)):
        raise TypeError("train_data must be an (x, y) pair of tensors")
    x, y = train_data
    top = next(batches(train_data, x.shape[0], "train_data"))[2]
    with torch.no_grad():
        outputs = copy.deepcopy(model_a).eval()(x[:2].to(next(model_a.parameters()).device)).shape[1]
    if top >= outputs:
        raise ValueError(f"train_data: y holds the label {top}, but the model has {outputs} outputs")
    return fit_path(model_a, model_b, x, y.long(), kind, epochs, lr, momentum, weight_decay, batch_size, seed)


def check_repair(repair, bn_data) -> bool:
    """``repair`` as a bool; REPAIR needs ``bn_data`` to measure and correct the channels on."""
    repair = check_bool(repair, "repair")
    if repair and bn_data is None:
        raise ValueError("repair=True measures and corrects the channels' statistics on bn_data: give "
                         "bn_data (usually the training data)")
    return repair


def check_plane_args(models, directions, grid, margin, extent, seed):
    """The validated (models, directions, (nx, ny), margin, extent, seed) of a loss plane (shared
    with the reference)."""
    directions = check_choice(directions, "directions", ("models", "random"))
    if directions == "models":
        models = check_models(models)
        if len(models) != 3:
            raise ValueError(f"directions='models' spans the plane through exactly 3 models, got {len(models)}")
    else:
        models = [models] if isinstance(models, nn.Module) else list(check_models_or_one(models))
        check_model(models[0], "model")
        check_finite_weights(models[0], "model")
    if isinstance(grid, (tuple, list)) and len(grid) == 2:
        n = (check_int(grid[0], "grid[0]", low=2), check_int(grid[1], "grid[1]", low=2))
    else:
        size = check_int(grid, "grid", low=2)
        n = (size, size)
    return (models, directions, n, check_float(margin, "margin", low=0.0), check_positive(extent, "extent"),
            check_int(seed, "seed"))


def check_models_or_one(models):
    if isinstance(models, (list, tuple)) and len(models) == 1:
        return models
    raise ValueError("directions='random' takes one model (the plane's center)")


def plane_of(models, directions, seed):
    """(base, D1, D2, points) of the plane (see :mod:`mmkern.connectivity._plane`)."""
    if directions == "models":
        return model_plane(models, tuple(f"models[{i}]" for i in range(3)))
    return random_plane(models[0], seed)


def loss_plane(models, data, grid=11, directions: str = "models", bn_data: Optional[DataSource] = None,
               loss_fn: Optional[LossFn] = None, batch_size: int = BN_BATCH_SIZE, *, margin: float = 0.2,
               extent: float = 1.0, seed: int = 0, eval_batch_size: int = EVAL_BATCH_SIZE,
               memory_budget: int = MEMORY_BUDGET, progress: bool = False, allow_tf32: bool = False):
    """Loss and accuracy on a grid of a two-dimensional plane of weights.

    Parameters
    ----------
    models : sequence of torch.nn.Module, or one module
        ``directions="models"``: three models of one architecture, the plane through them
        (Garipov et al. 2018). ``directions="random"``: one model, the plane's center. None is
        modified.
    data, bn_data, loss_fn, batch_size, eval_batch_size, memory_budget, allow_tf32
        As in :func:`interpolation_curve`: BatchNorm statistics are re-estimated on ``bn_data``
        at every grid point.
    grid : int or (int, int), default 11
        Grid points along x and y (at least 2 each).
    directions : {"models", "random"}, default "models"
        The plane's basis: Gram-Schmidt of the three models' differences, or two
        filter-normalised random directions (Li et al. 2018); see
        :mod:`mmkern.connectivity._plane` for the exact definitions.
    margin : float, default 0.2
        ``"models"``: the grid extends this fraction of the models' extent beyond them.
    extent : float, default 1.0
        ``"random"``: the grid spans ``[-extent, extent]`` in both directions.
    seed : int, default 0
        ``"random"``: the directions' seed.
    progress : bool, default False
        A progress bar over the grid points (needs tqdm).

    Returns
    -------
    LossPlane or dict
        ``x``, ``y``, ``loss`` and ``accuracy`` ``(ny, nx)``, the models' ``points``; a dict of
        them by set name for a dict of evaluation sets. Points where the model's outputs are not
        finite have loss ``inf`` and accuracy 0 (with a ``RuntimeWarning``).

    Raises
    ------
    TypeError, ValueError
        Bad models (not three of one architecture, non-finite weights), grids below 2 points,
        three models on one line, or the data errors of :func:`interpolation_curve`.
    """
    models, directions, n, margin, extent, seed = check_plane_args(models, directions, grid, margin, extent,
                                                                   seed)
    sets = check_sets(data)
    batch_size = check_batch_size(batch_size)
    eval_batch_size, memory_budget = _check_options(eval_batch_size, memory_budget)
    allow_tf32 = check_bool(allow_tf32, "allow_tf32")
    has_batchnorm = check_bn_data(models[0], bn_data)

    base, d1, d2, points = plane_of(models, directions, seed)
    xs, ys = grid_axes(points, n, margin, extent, directions)
    layout = WeightLayout(models[0])
    flat = [layout.flatten_values(part) for part in (base, d1, d2)]
    cx, cy = (torch.as_tensor(c) for c in coordinates(xs, ys, points))

    def rows_for(part: slice) -> list:
        out = []
        for g, (device, dtype) in enumerate(layout.groups):
            x, y = cx[part, None].to(device), cy[part, None].to(device)
            out.append((flat[0][g] + x * flat[1][g] + y * flat[2][g]).to(dtype))
        return out

    total = int(cx.shape[0])
    chunk = max(1, _chunk_size(layout, memory_budget, total) // 2)  # the float64 rows double a set
    bar = _progress(total, progress, "loss plane")
    try:
        with float32_precision(allow_tf32):
            engine = CurveEngine(models[0], layout, sets, bn_data if has_batchnorm else None, loss_fn,
                                 batch_size, eval_batch_size)
            loss, accuracy = _evaluate_in_chunks(engine, total, rows_for, chunk, sets, bar)
    finally:
        bar.close()
    return per_set({key: plane_result(xs, ys, loss[key], accuracy[key], points, directions, set_name(key))
                    for key in sets}, data)


def plane_result(xs, ys, loss, accuracy, points, directions, set_label) -> LossPlane:
    """The :class:`LossPlane` of the values at :func:`~mmkern.connectivity._plane.coordinates`
    (the grid row by row, then the points), with the warning for diverged points."""
    loss, accuracy = np.asarray(loss, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    if not np.isfinite(loss).all():
        warnings.warn(f"the model's outputs are not finite at {int((~np.isfinite(loss)).sum())} points of the "
                      f"plane on {set_label}: loss inf and accuracy 0 there", RuntimeWarning, stacklevel=3)
    k = len(xs) * len(ys)
    return LossPlane(x=np.asarray(xs, dtype=np.float64), y=np.asarray(ys, dtype=np.float64),
                     loss=loss[:k].reshape(len(ys), len(xs)), accuracy=accuracy[:k].reshape(len(ys), len(xs)),
                     points=dict(points), point_loss=dict(zip(points, loss[k:].tolist())),
                     point_accuracy=dict(zip(points, accuracy[k:].tolist())), directions=directions)


def interpolate(model_a: nn.Module, model_b: nn.Module, alpha: float) -> nn.Module:
    """The model with weights ``(1 - alpha) * theta_A + alpha * theta_B``.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        Two models of the same architecture: the same parameter and buffer names, shapes and
        dtypes. Neither is modified.
    alpha : float
        Finite real number (Python or NumPy scalar, or 0-d tensor). 0 gives ``model_a``'s
        weights, 1 ``model_b``'s; values outside ``[0, 1]`` extrapolate.

    Returns
    -------
    torch.nn.Module
        A deep copy of ``model_a`` (same train/eval mode and devices) whose every floating or
        complex parameter and buffer is ``(1 - alpha) * A + alpha * B``, computed in float64
        and rounded once to the entry's dtype (bit for bit
        :func:`mmkern.reference.interpolate`); integer and boolean buffers are ``model_a``'s.

    Raises
    ------
    TypeError
        A model is not an ``nn.Module``, or ``alpha`` is not a real number.
    ValueError
        ``alpha`` is not finite, or the architectures differ (the message names the first
        mismatch, e.g. ``'conv.weight' has shape (8, 3, 3, 3) in model_a but (16, 3, 3, 3) in
        model_b``).
    """
    check_same_architecture(model_a, model_b)
    alpha = check_alpha(alpha)
    layout = WeightLayout(model_a)
    rows = _lerp_rows(layout.flatten(model_a), layout.flatten(model_b), [alpha])
    model = copy.deepcopy(model_a)
    layout.load(model, [r[0] for r in rows])
    return model


def interpolation_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    data,
    alphas=11,
    bn_data: Optional[DataSource] = None,
    loss_fn: Optional[LossFn] = None,
    batch_size: int = BN_BATCH_SIZE,
    *,
    eval_batch_size: int = EVAL_BATCH_SIZE,
    memory_budget: int = MEMORY_BUDGET,
    progress: bool = False,
    allow_tf32: bool = False,
    repair: bool = False,
    path: Optional[Path] = None,
):
    """Loss, accuracy and barriers along the straight line from ``model_a`` to ``model_b``.

    Parameters
    ----------
    model_a, model_b : torch.nn.Module
        Two classifiers of the same architecture returning logits ``(batch, C)``. Neither is
        modified (weights, buffers, train/eval mode).
    data : DataLoader, (x, y) pair of tensors, or dict
        The evaluation set: a DataLoader yielding ``(x, y)`` batches, an ``(x, y)`` pair of
        tensors (``x`` with a leading sample axis, ``y`` integer labels of shape ``(n,)``)
        iterated in batches of ``batch_size``, or a dict name -> either to evaluate several
        sets with the same interpolated models (e.g. ``{"test": ..., "ood": ...}``).
    alphas : int or 1-D sequence of float, default 11
        An int ``K >= 2``: K evenly spaced points from 0 to 1 inclusive. Otherwise the finite
        alphas to evaluate, in that order (extrapolation allowed).
    bn_data : DataLoader or (x, y) pair of tensors, optional
        Data for re-estimating BatchNorm statistics at every alpha (usually the training data),
        once per alpha and reused for every evaluation set. Required when the model has a
        BatchNorm layer that tracks running statistics; ignored otherwise.
    loss_fn : callable, optional
        ``loss_fn(logits, y)`` returning per-sample losses ``(batch,)``. Default: cross-entropy
        computed in float64.
    batch_size : int, default 256
        Batch size of ``(x, y)`` pairs; the BatchNorm estimate depends on it (DataLoaders keep
        their own batching).
    eval_batch_size : int, default :data:`EVAL_BATCH_SIZE` (128)
        Evaluation batches are split into micro-batches of at most this many samples (this
        changes only float rounding: evaluation mode treats samples independently).
    memory_budget : int, default :data:`MEMORY_BUDGET` (1 GiB)
        Bytes for the weight sets evaluated together in one pass over the data; the alphas are
        processed in chunks that fit (at least one alpha per chunk).
    progress : bool, default False
        Show a progress bar over the alphas (needs tqdm).
    allow_tf32 : bool, default False
        Let float32 models on CUDA use TF32 tensor cores for their products and convolutions
        (faster, with ~1e-3 relative error). Off by default, so curves on a GPU match the CPU's
        to float32 rounding; torch's own settings are restored after the call.
    repair : bool, default False
        REPAIR (Jordan et al. 2023): at every alpha, each hidden channel's mean and standard
        deviation on ``bn_data`` are set to the interpolation of the endpoints' (required:
        ``bn_data``). BatchNorm networks are corrected at their BatchNorms (the re-estimation),
        others after each hidden Linear or convolution; see :mod:`mmkern.connectivity._repair`.
        The endpoints are then the corrected models, equal to the given ones up to the
        difference between batch-averaged and exact channel statistics.
    path : Path, optional
        Evaluate a curved path fitted between these two models (:func:`fit_curve`) instead of
        the line: ``alphas`` are then the path parameter t in [0, 1]. Not with ``repair``.

    Returns
    -------
    InterpolationCurve or dict
        For a single set, an :class:`InterpolationCurve`: ``alphas``, ``loss``, ``accuracy``
        (float64, ``(K,)``) and ``loss_barrier``, ``loss_barrier_mean``, ``error_barrier``,
        ``error_barrier_mean`` (``None`` unless ``alphas`` contains both 0 and 1). For a dict
        of sets, a dict with the same keys mapping each name to its curve.

    Raises
    ------
    TypeError
        Models that are not modules; data, alphas or batch sizes of the wrong type; float labels.
    ValueError
        Different architectures; alphas not finite, empty, not 1-D, or an int below 2; an empty
        evaluation set or ``bn_data``; a BatchNorm model without ``bn_data``; outputs or losses
        of the wrong shape.

    See Also
    --------
    mmkern.reference.interpolation_curve : the plain per-alpha loop, same results to rounding.
    """
    check_same_architecture(model_a, model_b)
    grid = alpha_grid(alphas)
    sets = check_sets(data)
    batch_size = check_batch_size(batch_size)
    eval_batch_size, memory_budget = _check_options(eval_batch_size, memory_budget)
    allow_tf32 = check_bool(allow_tf32, "allow_tf32")
    repair = check_repair(repair, bn_data)
    if path is not None:
        check_path(path, model_a, model_b, grid, repair)
    if repair:
        model_a, model_b = repaired(model_a, bn_data, batch_size), repaired(model_b, bn_data, batch_size)
    has_batchnorm = check_bn_data(model_a, bn_data)

    layout = WeightLayout(model_a)
    flat_a, flat_b = layout.flatten(model_a), layout.flatten(model_b)
    rows_for = lambda part: _lerp_rows(flat_a, flat_b, grid[part])  # noqa: E731
    if path is not None:
        rows_for = _path_rows(layout, path, [f.double() for f in flat_a], [f.double() for f in flat_b], grid)
    chunk = _chunk_size(layout, memory_budget, grid.size)
    bar = _progress(grid.size, progress, "interpolation curve")
    try:
        with float32_precision(allow_tf32):
            engine = CurveEngine(model_a, layout, sets, bn_data if has_batchnorm else None, loss_fn,
                                 batch_size, eval_batch_size)
            loss, accuracy = _evaluate_in_chunks(engine, grid.size, rows_for, chunk, sets, bar)
    finally:
        bar.close()
    curves = {key: make_curve(grid.copy(), loss[key], accuracy[key], set_label=set_name(key)) for key in sets}
    return per_set(curves, data)


def _same_integer_buffers(models: list[nn.Module]) -> bool:
    """Whether every model has model 0's integer/bool buffers (so endpoints can be shared)."""
    first = {n: t for n, t in entries(models[0]).items()
             if not (t.is_floating_point() or t.is_complex())}
    return all(
        torch.equal(t.cpu(), entries(model)[n].cpu())
        for model in models[1:] for n, t in first.items()
    )


def pairwise_barriers(
    models: Sequence[nn.Module],
    data,
    alphas=11,
    bn_data: Optional[DataSource] = None,
    loss_fn: Optional[LossFn] = None,
    batch_size: int = BN_BATCH_SIZE,
    *,
    eval_batch_size: int = EVAL_BATCH_SIZE,
    memory_budget: int = MEMORY_BUDGET,
    progress: bool = False,
    allow_tf32: bool = False,
    align: Optional[str] = None,
    repair: bool = False,
):
    """The four barriers between every pair of ``M`` models.

    Entry ``[i, j]`` is the barrier of ``interpolation_curve(models[i], models[j], ...)``.
    Each model's own metrics (the curves' endpoints) are evaluated once and shared by its
    ``M - 1`` pairs when the models' integer buffers agree (they are the interpolated models'
    integer buffers, taken from the first model of a pair); otherwise per pair.

    Parameters
    ----------
    models : sequence of torch.nn.Module
        ``M >= 2`` models of one architecture. None is modified.
    data, alphas, bn_data, loss_fn, batch_size, eval_batch_size, memory_budget, allow_tf32
        As in :func:`interpolation_curve`; ``alphas`` must contain both 0 and 1.
    progress : bool, default False
        Show a progress bar over all evaluated weight sets (needs tqdm).
    align : {None, "weights", "activations"}, default None
        Align each pair first: for ``i < j``, ``models[j]`` is permuted to match ``models[i]``
        (:func:`align`, once per pair; activation matching reads ``bn_data`` if given, else the
        evaluation data) and the barrier is that of the line from ``models[i]`` to the aligned
        model. Its endpoints are the models' own metrics (alignment does not change the function).
    repair : bool, default False
        REPAIR every line (:func:`interpolation_curve`'s ``repair``; needs ``bn_data``): each
        model is corrected once, an aligned one after its alignment.

    Returns
    -------
    PairwiseBarriers or dict
        For a single evaluation set, a :class:`PairwiseBarriers` of four float64 ``(M, M)``
        matrices (symmetric, zero diagonal); for a dict of sets, a dict of them by set name.

    Raises
    ------
    TypeError, ValueError
        As :func:`interpolation_curve`; also fewer than two models, models of different
        architectures, or ``alphas`` without 0 or 1.
    """
    models = check_models(models)
    grid = check_barrier_grid(alphas)
    sets = check_sets(data)
    batch_size = check_batch_size(batch_size)
    eval_batch_size, memory_budget = _check_options(eval_batch_size, memory_budget)
    allow_tf32 = check_bool(allow_tf32, "allow_tf32")
    repair = check_repair(repair, bn_data)
    originals = models
    if repair:
        models = [repaired(model, bn_data, batch_size) for model in models]
    has_batchnorm = check_bn_data(models[0], bn_data)
    if align is not None:
        align = check_choice(align, "align", ALIGN_METHODS)
        align_data = bn_data if bn_data is not None else next(iter(sets.values()))
        spec = permutation_spec(originals[0], next(first_inputs(align_data, batch_size), None))

    def partner(i: int, j: int) -> list:
        """The flat weights of models[j], aligned to models[i] when asked."""
        if align is None:
            return flats[j]
        matched = align_models(originals[i], originals[j], spec, align,
                               first_inputs(align_data, batch_size) if align == "activations" else None,
                               0, 100).model
        return layout.flatten(repaired(matched, bn_data, batch_size) if repair else matched)

    m = len(models)
    layout = WeightLayout(models[0])
    flats = [layout.flatten(model) for model in models]
    chunk = _chunk_size(layout, memory_budget, grid.size)
    share = _same_integer_buffers(models)
    inner = (grid != 0.0) & (grid != 1.0)
    interior = grid[inner] if share else grid
    n_sets = (m if share else 0) + m * (m - 1) // 2 * interior.size
    bar = _progress(n_sets, progress, "pairwise barriers")
    engines: dict[int, CurveEngine] = {}

    def engine_for(i: int) -> CurveEngine:
        """An engine whose integer buffers are model i's (one engine for all when they agree)."""
        i = 0 if share else i
        if i not in engines:
            engines.clear()  # pairs come ordered by i: keep one engine's working models alive
            engines[i] = CurveEngine(models[i], layout, sets, bn_data if has_batchnorm else None,
                                     loss_fn, batch_size, eval_batch_size)
        return engines[i]

    try:
        with float32_precision(allow_tf32):
            own = None
            if share:  # every model evaluated once, as alpha = 0 of its pairs (and 1 of the others)
                own = _evaluate_in_chunks(engine_for(0), m, lambda part: [
                    torch.stack([flats[i][g] for i in range(m)[part]]) for g in range(len(flats[0]))
                ], chunk, sets, bar)
            matrices = {key: {f: np.zeros((m, m)) for f in BARRIER_FIELDS} for key in sets}
            diverged = {key: np.zeros(grid.size, dtype=bool) for key in sets}  # alphas, any pair
            for i in range(m):
                for j in range(i + 1, m):
                    flat_j = partner(i, j)
                    loss, acc = _evaluate_in_chunks(
                        engine_for(i), interior.size,
                        lambda part: _lerp_rows(flats[i], flat_j, interior[part]), chunk, sets,
                        bar)
                    for key in sets:
                        curve_loss, curve_acc = loss[key], acc[key]
                        if share:
                            curve_loss, curve_acc = np.empty(grid.size), np.empty(grid.size)
                            curve_loss[inner], curve_acc[inner] = loss[key], acc[key]
                            for value, model in ((0.0, i), (1.0, j)):
                                curve_loss[grid == value] = own[0][key][model]
                                curve_acc[grid == value] = own[1][key][model]
                        curve = make_curve(grid, curve_loss, curve_acc, (f"models[{i}]", f"models[{j}]"),
                                           set_name(key), warn=False)
                        diverged[key] |= ~np.isfinite(curve_loss)
                        for f in BARRIER_FIELDS:
                            matrices[key][f][i, j] = matrices[key][f][j, i] = getattr(curve, f)
    finally:
        bar.close()
    for key in sets:
        if diverged[key].any():
            warnings.warn(non_finite_message(grid[diverged[key]], set_name(key)) + " (for some pairs)",
                          RuntimeWarning, stacklevel=2)
    return per_set({key: PairwiseBarriers(**matrices[key]) for key in sets}, data)
