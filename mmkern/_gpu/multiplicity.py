"""Predictive multiplicity on the GPU: mmkern.multiplicity's functions in torch ops on the device.

The same definitions, validation (same checks, same messages) and algorithms as the host path
(``csrc/multiplicity.h``), on the inputs' device, accumulating in float64:

- **hard disagreement**: class codes (argmax of scores, lowest class on ties, or the labels) as
  uint8 / uint16, counted by ``_C_cuda.disagreement_counts`` (packed byte compares in shared
  memory); otherwise by direct comparisons, ``(codes[i] != codes[j]).sum()`` for blocks of rows i
  against all rows j and chunks of samples, in integers (exact, and its cost does not grow with
  the number of classes as a one-hot product's would);
- **soft disagreement**: ``_C_cuda.soft_disagreement`` (``soft_term`` per sample and pair);
  otherwise the per-sample terms of ``soft_term`` in float64 for blocks of model pairs and chunks
  of samples, summed over samples, divided by n (symmetric metrics computed for j >= i and
  mirrored);
- **Rashomon capacity**: ``_C_cuda.rashomon_capacity`` (``blahut_arimoto`` per sample, one
  thread each); otherwise Blahut-Arimoto vectorised over samples with the iteration and stopping
  rule of ``blahut_arimoto`` (``csrc/common/multiplicity_math.h``) applied per sample: every
  sample starts from uniform weights at iteration 0, stops at the first iteration where its
  bounds are within ``tol`` (or at ``max_iter``), and keeps that iteration's lower bound and gap;
  stopped samples are frozen by a mask and dropped from the working set as they accumulate;
- **per-sample statistics** (votes, majority, variance, viable prediction range, accuracy): torch
  reductions, as ``sample_statistics`` computes them.

``mmkern._C_cuda`` serves CUDA tensors when it was built; CPU tensors (how the tests exercise this
module on a machine without a GPU) and builds without it use the torch expressions. CuPy arrays
are viewed as torch tensors without a copy (DLPack) and results are returned as CuPy arrays.

Entry points, called by :mod:`mmkern.multiplicity` for device inputs: :func:`disagreement_matrix`,
:func:`soft_disagreement_matrix`, :func:`rashomon_capacity`, :func:`predictive_multiplicity`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from mmkern._gpu import require_torch

torch = require_torch()

from mmkern import multiplicity as host
from mmkern._gpu import cuda_launch as _cuda_launch
from mmkern._gpu import kernels_for as _kernels_for

__all__ = ["disagreement_matrix", "soft_disagreement_matrix", "rashomon_capacity", "predictive_multiplicity"]

_F64 = torch.float64
_DTYPE_CODE = {torch.float32: 0, torch.float64: 1}  # the dtype codes of mmkern._C_cuda
_UPCAST_TO_FLOAT32 = (torch.float16, torch.bfloat16)
#: Bytes of scratch per step of the torch expressions (comparison blocks, per-sample terms,
#: Blahut-Arimoto working sets) and of the Rashomon kernel's workspace.
_CHUNK_BYTES = 256 * 2**20
#: The vectorised Blahut-Arimoto looks at its stop mask on the host every this many iterations
#: (one synchronisation); the mask itself is applied on the device at every iteration.
_SYNC_EVERY = 16


# ---------------------------------------------------------------------------------------------
# array kinds and kernels
# ---------------------------------------------------------------------------------------------


def _library(a: Any) -> str:
    return type(a).__module__.split(".", 1)[0]


def _as_tensor(a: Any, name: str) -> "torch.Tensor":
    """A torch view of a torch tensor or CuPy array (no copy)."""
    lib = _library(a)
    if lib == "torch":
        return a.detach()
    if lib == "cupy":
        return torch.from_dlpack(a)
    raise TypeError(f"{name} must be a torch tensor or a CuPy array on the GPU path, got {type(a).__name__}")


def _from_tensor(t: Any, library: str) -> Any:
    """A result tensor as the inputs' array kind (CuPy results share memory through DLPack)."""
    if library == "cupy" and isinstance(t, torch.Tensor):
        import cupy

        return cupy.from_dlpack(t)
    return t


def _dtype_name(t: "torch.Tensor") -> str:
    return str(t.dtype).replace("torch.", "")


def _chunk(total: int, bytes_per_item: int) -> int:
    """Items per step so that a step's scratch fits in _CHUNK_BYTES (at least 1)."""
    return max(1, min(total, _CHUNK_BYTES // max(1, bytes_per_item)))


# ---------------------------------------------------------------------------------------------
# validation: the checks and messages of mmkern.multiplicity, on the device
# ---------------------------------------------------------------------------------------------


def _float_tensor(t: "torch.Tensor", name: str) -> "torch.Tensor":
    """The dtype policy of mmkern._dtypes.float_array: float32/float64 as they are, float16 and
    bfloat16 upcast to float32, anything else a TypeError naming ``name``."""
    if t.dtype in _DTYPE_CODE:
        return t
    if t.dtype in _UPCAST_TO_FLOAT32:
        return t.float()
    raise TypeError(
        f"{name} must be a floating-point array (float32 or float64), got dtype {_dtype_name(t)}; "
        f"cast it explicitly if the values really are activations"
    )


def _probabilities(t: "torch.Tensor", name: str = "probs", from_logits: bool = False) -> "torch.Tensor":
    """A validated C-contiguous float32/float64 (M, n, C) tensor of probabilities (float64 from
    logits); the device twin of mmkern.multiplicity._probabilities."""
    if t.ndim != 3:
        raise ValueError(f"{name} must be 3-D (models, samples, classes), got shape {tuple(t.shape)}")
    m, n, c = t.shape
    host._check_models(m, name)
    if n == 0 or c == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); it needs samples and classes")
    t = _float_tensor(t, name)
    if from_logits:
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinity")
        z = t.to(_F64) - t.amax(dim=-1, keepdim=True).to(_F64)
        e = torch.exp(z)
        return (e / e.sum(dim=-1, keepdim=True)).contiguous()
    t = t.contiguous()
    sums = t.sum(dim=-1, dtype=_F64)
    nonfinite, negative, lo, hi = torch.stack([
        (~torch.isfinite(t)).sum().to(_F64), (t < 0).sum().to(_F64), sums.min(), sums.max(),
    ]).tolist()  # one synchronisation
    if nonfinite:
        raise ValueError(f"{name} contains NaN or infinity ({int(nonfinite)} entries)")
    if negative:
        raise ValueError(f"{name} has {int(negative)} negative entries; probabilities must be >= 0 "
                         "(pass from_logits=True for logits)")
    atol = host.PROB_ATOL[np.dtype(_dtype_name(t))]
    if lo < 1 - atol or hi > 1 + atol:
        raise ValueError(
            f"rows of {name} must sum to 1 within {atol:g} (found sums from {lo:.6g} to "
            f"{hi:.6g}); pass from_logits=True for logits"
        )
    return t


def _integer_tensor(t: "torch.Tensor", name: str) -> "torch.Tensor":
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integer class labels, got dtype {_dtype_name(t)}")
    return t


def _label_range(t: "torch.Tensor") -> tuple[int, int]:
    """Exact (min, max) of a non-empty integer tensor as Python ints (uint64 included)."""
    if t.dtype == getattr(torch, "uint64", None):
        v = t.view(torch.int64)  # values >= 2**63 appear negative
        big = v < 0
        has_big, has_small = torch.stack([big.any(), (~big).any()]).tolist()
        hi = int(v[big].max()) + 2**64 if has_big else int(v.max())
        lo = int(v[~big].min()) if has_small else int(v.min()) + 2**64
        return lo, hi
    v = t.to(torch.int64)  # exact for every other integer dtype
    lo, hi = torch.stack([v.min(), v.max()]).tolist()
    return int(lo), int(hi)


def _class_range(t: "torch.Tensor", name: str, n_classes: int | None) -> int:
    """mmkern.multiplicity._class_range on the device's (min, max); returns the max label."""
    lo, hi = _label_range(t)
    host._class_range(np.array([lo, hi], dtype=object), name, n_classes)
    return hi


# ---------------------------------------------------------------------------------------------
# kernels (mmkern._C_cuda) or their torch expressions
# ---------------------------------------------------------------------------------------------


def _code_bits(max_label: int) -> int:
    """uint8 codes when every label is below 256, else uint16 (as mmkern.multiplicity._codes)."""
    return 8 if max_label < 256 else 16


def _codes(labels: "torch.Tensor", max_label: int) -> tuple["torch.Tensor", int]:
    """Class codes for equality tests and their width in bits, as mmkern.multiplicity._codes: the
    labels themselves when below 2**16, else their ranks among the distinct labels (16 or 32
    bits)."""
    if max_label < 2**16:
        return labels, _code_bits(max_label)
    if labels.dtype == getattr(torch, "uint64", None):
        labels = labels.view(torch.int64)  # a bijection: equality is all that matters
    distinct, ranks = torch.unique(labels, return_inverse=True)
    return ranks.reshape(labels.shape), 16 if len(distinct) < 2**16 else 32


def _disagreement_counts(codes: "torch.Tensor", bits: int) -> "torch.Tensor":
    """(M, M) int64 numbers of samples on which each pair of rows of ``codes`` (M, n) differ;
    every value of ``codes`` is below 2**bits (bits = 8, 16 or 32)."""
    m, n = codes.shape
    kernels = _kernels_for(codes.device)
    if kernels is not None:
        # 16- and 32-bit codes travel as int16 / int32: the kernel compares bit patterns, and
        # values up to 2**bits - 1 wrap to the bits of uint16 / uint32 (which torch < 2.3 lacks).
        packed = codes.to({8: torch.uint8, 16: torch.int16, 32: torch.int32}[bits]).contiguous()
        counts = torch.empty((m, m), dtype=torch.int64, device=codes.device)
        with _cuda_launch(codes.device) as stream:
            kernels.disagreement_counts(packed.data_ptr(), bits, m, n, counts.data_ptr(), stream)
        return counts
    if codes.dtype not in (torch.uint8, torch.int16, torch.int32, torch.int64):
        codes = codes.to(torch.int32)  # plain integer compares on every torch version
    counts = torch.zeros((m, m), dtype=torch.int64, device=codes.device)
    step = _chunk(n, m)                 # samples per step: (rows, M, step) booleans
    rows = _chunk(m, m * step)
    for x0 in range(0, n, step):
        c = codes[:, x0 : x0 + step]
        for i0 in range(0, m, rows):
            counts[i0 : i0 + rows] += (c[i0 : i0 + rows, None, :] != c[None, :, :]).sum(dim=-1)
    return counts


def _soft_terms(p: "torch.Tensor", q: "torch.Tensor", metric: int) -> "torch.Tensor":
    """soft_term (csrc/common/multiplicity_math.h) over the last axis of broadcast float64 p, q."""
    if metric == 0:  # total variation
        return 0.5 * (p - q).abs().sum(dim=-1)
    if metric == 1:  # Jensen-Shannon; xlogy(x, x) = x log x with 0 log 0 = 0
        xlogx = torch.special.xlogy
        acc = (xlogx(p, p) + xlogx(q, q) - 2.0 * xlogx(0.5 * (p + q), 0.5 * (p + q))).sum(dim=-1)
        return torch.where(acc > 0, 0.5 * acc, 0.0)  # rounding can dip below 0
    if metric == 2:  # Hellinger
        return torch.sqrt(0.5 * ((torch.sqrt(p) - torch.sqrt(q)) ** 2).sum(dim=-1))
    # Kullback-Leibler: p log(p / q) where p > 0 (+inf where q = 0 < p), 0 where p = 0
    return torch.where(p > 0, p * (torch.log(p) - torch.log(q)), 0.0).sum(dim=-1)


def _soft_disagreement(p: "torch.Tensor", metric: int) -> "torch.Tensor":
    """(M, M) float64 mean over samples of the per-sample metric between models i and j."""
    m, n, c = p.shape
    kernels = _kernels_for(p.device)
    if kernels is not None:
        out = torch.empty((m, m), dtype=_F64, device=p.device)
        with _cuda_launch(p.device) as stream:
            kernels.soft_disagreement(p.data_ptr(), _DTYPE_CODE[p.dtype], m, n, c, metric, out.data_ptr(), stream)
        return out
    symmetric = metric != 3
    out = torch.zeros((m, m), dtype=_F64, device=p.device)
    step = _chunk(n, 4 * 8 * m * c)    # samples per step: 4 float64 temporaries of (1, M, step, C)
    rows = _chunk(m, 4 * 8 * m * step * c)
    for x0 in range(0, n, step):
        chunk = p[:, x0 : x0 + step].to(_F64)
        for i0 in range(0, m, rows):
            j0 = i0 if symmetric else 0  # symmetric metrics: pairs j >= i only
            terms = _soft_terms(chunk[i0 : i0 + rows, None], chunk[None, j0:], metric)
            out[i0 : i0 + rows, j0:] += terms.sum(dim=-1)
    out /= n
    out.fill_diagonal_(0.0)
    if symmetric:
        upper = torch.triu(out, diagonal=1)
        out = upper + upper.T
    return out


def _blahut_arimoto(P: "torch.Tensor", tol: float, max_iter: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Blahut-Arimoto for a batch of channels ``P`` (a, M, C) float64 with the per-sample rule of
    csrc/common/multiplicity_math.h. Returns each sample's lower bound clipped at 0 (nats) and
    its final gap upper - lower, both (a,)."""
    a, m, _ = P.shape
    device = P.device
    lower_out = torch.zeros(a, dtype=_F64, device=device)
    gap_out = torch.zeros(a, dtype=_F64, device=device)
    idx = torch.arange(a, device=device)                   # positions of the working set in P
    neg_entropy = torch.special.xlogy(P, P).sum(dim=-1)    # row_neg_entropy, (a, M)
    positive = P > 0
    w = torch.full((a, m), 1.0 / m, dtype=_F64, device=device)
    lower_now = torch.zeros(a, dtype=_F64, device=device)  # the bound each sample stopped with
    gap_now = torch.zeros(a, dtype=_F64, device=device)
    stopped = torch.zeros(a, dtype=torch.bool, device=device)
    it = 0
    while True:
        logq = torch.log(torch.einsum("am,amc->ac", w, P))  # -inf only where every row is 0
        cross = torch.where(positive, P * logq[:, None, :], 0.0).sum(dim=-1)  # skip P = 0
        d = neg_entropy - cross                              # D_m = KL(P_m || q)
        dmax = d.amax(dim=-1)
        e = torch.exp(d - dmax[:, None])                     # relative to dmax: no overflow
        s = (w * e).sum(dim=-1)
        lower = dmax + torch.log(s)
        gap = dmax - lower
        it += 1
        stop = gap <= tol if it < max_iter else torch.ones_like(stopped)
        new = stop & ~stopped
        lower_now = torch.where(new, lower, lower_now)
        gap_now = torch.where(new, gap, gap_now)
        stopped |= stop
        if it >= max_iter:
            break
        w = torch.where(stopped[:, None], w, w * e / s[:, None])
        if it % _SYNC_EVERY == 0:
            running = int((~stopped).sum())
            if running == 0:
                break
            if running <= stopped.numel() // 2:  # drop the stopped samples from the working set
                lower_out[idx[stopped]] = lower_now[stopped]
                gap_out[idx[stopped]] = gap_now[stopped]
                keep = ~stopped
                P, positive, neg_entropy, w = P[keep], positive[keep], neg_entropy[keep], w[keep]
                idx, lower_now, gap_now = idx[keep], lower_now[keep], gap_now[keep]
                stopped = torch.zeros(running, dtype=torch.bool, device=device)
    lower_out[idx] = lower_now
    gap_out[idx] = gap_now
    return torch.where(lower_out > 0, lower_out, 0.0), gap_out


def _capacities(p: "torch.Tensor", tol: float, max_iter: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Per-sample Rashomon capacity (n,) and the final gap between its bounds (n,) in nats, with
    mmkern.multiplicity's warning for samples stopped by max_iter with a loose gap."""
    m, n, c = p.shape
    kernels = _kernels_for(p.device)
    if kernels is not None:
        values = torch.empty(n, dtype=_F64, device=p.device)
        gaps = torch.empty(n, dtype=_F64, device=p.device)
        per_sample = kernels.rashomon_workspace_per_sample(m, c)
        workspace = torch.empty(_chunk(n, 8 * per_sample) * per_sample, dtype=_F64, device=p.device)
        with _cuda_launch(p.device) as stream:
            kernels.rashomon_capacity(p.data_ptr(), _DTYPE_CODE[p.dtype], m, n, c, tol, max_iter,
                                      values.data_ptr(), gaps.data_ptr(), workspace.data_ptr(),
                                      workspace.numel(), stream)
    else:
        values = torch.empty(n, dtype=_F64, device=p.device)
        gaps = torch.empty(n, dtype=_F64, device=p.device)
        step = _chunk(n, 5 * 8 * m * c)  # P and its temporaries, (step, M, C) float64
        for x0 in range(0, n, step):
            channels = p[:, x0 : x0 + step].to(_F64).permute(1, 0, 2).contiguous()
            capacity, gap = _blahut_arimoto(channels, tol, max_iter)
            v = torch.exp(capacity)
            values[x0 : x0 + step] = torch.where(v < c, v, float(c))  # min(C, v), as the kernels
            gaps[x0 : x0 + step] = gap
    loose = gaps > max(tol, host.CAPACITY_WARN_GAP)
    n_loose, worst = torch.stack([loose.sum().to(_F64), gaps.max()]).tolist()
    if n_loose:
        warnings.warn(
            f"Rashomon capacity: {int(n_loose)} of {len(gaps)} samples reached max_iter={max_iter} "
            f"with capacity bounds up to {worst:.2g} nats apart; their values are lower bounds. "
            "Raise max_iter for tighter values.",
            RuntimeWarning,
            stacklevel=4,
        )
    return values, gaps


def _sample_statistics(p: "torch.Tensor", codes: "torch.Tensor", target: "torch.Tensor | None") -> dict:
    """The per-sample statistics of csrc/multiplicity.h's sample_statistics: vote_disagreement,
    majority, variance, range (of ``target``, else the majority class) and all_agree."""
    m, n, c = p.shape
    votes = torch.zeros((n, c), dtype=torch.int64, device=p.device)
    votes.scatter_add_(1, codes.T, torch.ones((n, m), dtype=torch.int64, device=p.device))
    majority = torch.argmax(votes, dim=1)  # the lowest class on ties
    top = votes.gather(1, majority[:, None])[:, 0]
    target = majority if target is None else target
    variance = torch.empty(n, dtype=_F64, device=p.device)
    spread = torch.empty(n, dtype=_F64, device=p.device)
    step = _chunk(n, 3 * 8 * m * c)
    for x0 in range(0, n, step):
        chunk = p[:, x0 : x0 + step].to(_F64)
        mean = chunk.sum(dim=0) / m  # two passes per class: mean, then squared deviations
        variance[x0 : x0 + step] = (((chunk - mean) ** 2).sum(dim=0) / m).sum(dim=-1) / c
        t = target[x0 : x0 + step]
        at_target = chunk.gather(2, t.reshape(1, -1, 1).expand(m, -1, 1))[..., 0]
        spread[x0 : x0 + step] = at_target.amax(dim=0) - at_target.amin(dim=0)
    return {
        "vote_disagreement": 1.0 - top.to(_F64) / m,
        "majority": majority,
        "variance": variance,
        "range": spread,
        "all_agree": top == m,
    }


# ---------------------------------------------------------------------------------------------
# entry points
# ---------------------------------------------------------------------------------------------


def disagreement_matrix(preds):
    """GPU twin of :func:`mmkern.disagreement_matrix` (same arguments, checks and result).

    Parameters
    ----------
    preds : torch tensor or CuPy array, shape (M, n) of integer labels or (M, n, C) of scores

    Returns
    -------
    (M, M) float64 tensor / CuPy array on the input's device.
    """
    library = _library(preds)
    t = _as_tensor(preds, "preds")
    if t.ndim == 3:
        if not t.is_floating_point():
            raise TypeError(f"3-D preds must be float scores (M, n, C), got dtype {_dtype_name(t)}")
        t = _float_tensor(t, "preds")
        host._check_models(t.shape[0], "preds")
        if t.shape[1] == 0 or t.shape[2] == 0:
            raise ValueError(f"preds is empty (shape {tuple(t.shape)})")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("preds contains NaN or infinity")
        codes, bits = torch.argmax(t, dim=-1), _code_bits(t.shape[2] - 1)
    elif t.ndim == 2:
        codes = _integer_tensor(t, "preds")
        host._check_models(codes.shape[0], "preds")
        if codes.shape[1] == 0:
            raise ValueError(f"preds is empty (shape {tuple(codes.shape)}); it needs samples")
        codes, bits = _codes(codes, _class_range(codes, "preds", None))
    else:
        raise ValueError(f"preds must be (M, n) labels or (M, n, C) scores, got shape {tuple(t.shape)}")
    out = _disagreement_counts(codes, bits).to(_F64) / codes.shape[1]
    return _from_tensor(out, library)


def soft_disagreement_matrix(probs, metric: str = "tv", *, from_logits: bool = False):
    """GPU twin of :func:`mmkern.soft_disagreement_matrix` (same arguments, checks and result).

    Returns
    -------
    (M, M) float64 tensor / CuPy array on the input's device.
    """
    if metric not in host._SOFT_METRICS:
        raise ValueError(f"metric must be one of {', '.join(map(repr, host._SOFT_METRICS))}, got {metric!r}")
    library = _library(probs)
    p = _probabilities(_as_tensor(probs, "probs"), from_logits=from_logits)
    return _from_tensor(_soft_disagreement(p, host._SOFT_METRICS[metric]), library)


def rashomon_capacity(probs, *, from_logits: bool = False, tol: float = 1e-6, max_iter: int = 10_000,
                      return_gap: bool = False):
    """GPU twin of :func:`mmkern.rashomon_capacity` (same arguments, checks, warning and result).

    Returns
    -------
    (n,) float64 tensor / CuPy array on the input's device (and the (n,) gaps with
    ``return_gap``).
    """
    tol, max_iter = host._capacity_args(tol, max_iter)
    library = _library(probs)
    p = _probabilities(_as_tensor(probs, "probs"), from_logits=from_logits)
    values, gaps = _capacities(p, tol, max_iter)
    if return_gap:
        return _from_tensor(values, library), _from_tensor(gaps, library)
    return _from_tensor(values, library)


def _summary(codes, bits, per_sample, labels, reference, n_classes, library, subsets):
    """The population figures from int64 codes (M, n) and per-sample tensors (the composition of
    mmkern.multiplicity._summary)."""
    m, n = codes.shape
    d = _disagreement_counts(codes, bits).to(_F64) / n
    off_diagonal = d[~torch.eye(m, dtype=torch.bool, device=d.device)]
    accuracy = correct = incorrect = None
    if labels is not None:
        accuracy = (codes == labels).to(_F64).mean(dim=1)
        if subsets:
            decider = codes[reference] if reference is not None else per_sample["majority"]
            right = decider == labels
            correct, incorrect = (
                _summary(codes[:, mask], bits, {k: v[mask] for k, v in per_sample.items()}, labels[mask],
                         reference, n_classes, library, subsets=False) if bool(mask.any()) else None
                for mask in (right, ~right)
            )
    figures = [
        off_diagonal.mean(),
        1.0 - per_sample["all_agree"].to(_F64).mean(),
        d[:, reference].max() if reference is not None else d.max(),
        per_sample["variance"].mean(),
        per_sample["capacity"].mean(),
    ]
    if accuracy is not None:
        figures += [accuracy.mean(), accuracy.max() - accuracy.min()]
    figures = torch.stack(figures).tolist()  # one synchronisation
    out = lambda t: _from_tensor(t, library)  # noqa: E731
    return host.PredictiveMultiplicity(
        n_models=m,
        n_samples=n,
        n_classes=n_classes,
        disagreement=out(d),
        mean_disagreement=figures[0],
        ambiguity=figures[1],
        discrepancy=figures[2],
        prediction_variance=figures[3],
        rashomon_capacity=figures[4],
        sample_disagreement=out(per_sample["vote_disagreement"]),
        sample_variance=out(per_sample["variance"]),
        sample_rashomon_capacity=out(per_sample["capacity"]),
        viable_prediction_range=out(per_sample["range"]),
        reference=reference,
        accuracy=None if accuracy is None else out(accuracy),
        accuracy_mean=None if accuracy is None else figures[5],
        accuracy_spread=None if accuracy is None else figures[6],
        correct=correct,
        incorrect=incorrect,
    )


def predictive_multiplicity(probs, labels=None, reference=None, *, from_logits: bool = False,
                            tol: float = 1e-6, max_iter: int = 10_000):
    """GPU twin of :func:`mmkern.predictive_multiplicity` (same arguments, checks and result).

    Returns
    -------
    mmkern.PredictiveMultiplicity
        Per-sample arrays and matrices as float64 tensors / CuPy arrays on the input's device.
    """
    tol, max_iter = host._capacity_args(tol, max_iter)
    if labels is not None:
        host._result_kind(probs, labels)  # both on one device
    library = _library(probs)
    p = _probabilities(_as_tensor(probs, "probs"), from_logits=from_logits)
    m, n, c = p.shape
    reference = host._check_reference(reference, m)
    if labels is not None:
        labels = _integer_tensor(_as_tensor(labels, "labels"), "labels")
        if tuple(labels.shape) != (n,):
            raise ValueError(f"labels must have shape ({n},) to match probs {tuple(p.shape)}, "
                             f"got {tuple(labels.shape)}")
        _class_range(labels, "labels", c)
        labels = labels.to(torch.int64)
    codes = torch.argmax(p, dim=-1)  # (M, n) int64, the lowest class on ties
    target = labels if labels is not None else (codes[reference] if reference is not None else None)
    per_sample = _sample_statistics(p, codes, target)
    per_sample["capacity"], _ = _capacities(p, tol, max_iter)
    return _summary(codes, _code_bits(c - 1), per_sample, labels, reference, c, library, subsets=True)
