"""The device route of the predictive-multiplicity metrics: torch on the inputs' device.

Torch CUDA tensors and CuPy arrays (viewed as torch tensors through DLPack) come here; so do torch
CPU tensors under :func:`mmkern._backend.torch_route` (how the tests exercise this module without
a GPU). The same definitions and algorithms as the host route (``csrc/multiplicity.h``), the same
checks and messages (:mod:`mmkern.multiplicity._checks`, :mod:`mmkern._dtypes`), accumulating in
float64:

- **hard disagreement**: class codes (argmax of scores, lowest class on ties, or the labels)
  counted by ``_C_cuda.disagreement_counts`` (packed byte compares in shared memory); otherwise
  by direct comparisons, ``(codes[i] != codes[j]).sum()`` for blocks of rows i against all rows j
  and chunks of samples, in integers (exact, and its cost does not grow with the number of
  classes as a one-hot product's would);
- **soft disagreement**: ``_C_cuda.soft_disagreement`` (``soft_term`` per sample and pair);
  otherwise the per-sample terms in float64 for blocks of model pairs and chunks of samples,
  summed over samples, divided by n (symmetric metrics computed for j >= i and mirrored);
- **Rashomon capacity**: ``_C_cuda.rashomon_capacity`` (``blahut_arimoto`` per sample, one
  thread each, interleaved scratch); otherwise Blahut-Arimoto vectorised over samples with the
  iteration and stopping rule of ``blahut_arimoto`` (``csrc/common/multiplicity_math.h``)
  applied per sample: every sample starts from uniform weights at iteration 0, stops at the first
  iteration where its bounds are within ``tol`` (or at ``max_iter``), and keeps that iteration's
  lower bound and gap; stopped samples are frozen by a mask and dropped from the working set as
  they accumulate. The reported value and the warning are formed for every route by
  :func:`mmkern.multiplicity._checks.capacity_values`;
- **per-sample statistics** (votes, majority, variance, viable prediction range): torch
  reductions, as ``sample_statistics`` computes them.

Entry points: the same names as :mod:`mmkern.multiplicity._host`.
"""

from __future__ import annotations

from typing import Any


from mmkern._cuda import require_torch

torch = require_torch()

from mmkern._backend import as_torch, device_result  # noqa: E402
from mmkern._cuda import CHUNK_BYTES, cuda_launch, dtype_code, items_per_step, kernels_for  # noqa: E402
from mmkern._dtypes import dtype_name, float_tensor, integer_tensor  # noqa: E402
from mmkern.multiplicity._checks import (  # noqa: E402
    check_labels_shape,
    check_probability_shape,
    check_probability_stats,
    class_range,
    code_bits,
)

_F64 = torch.float64
#: Bytes of scratch per step of the torch expressions (comparison blocks, per-sample terms,
#: Blahut-Arimoto working sets; a module attribute, so tests can shrink it).
_CHUNK_BYTES = CHUNK_BYTES
#: The vectorised Blahut-Arimoto looks at its stop mask on the host every this many iterations
#: (one synchronisation); the mask itself is applied on the device at every iteration.
_SYNC_EVERY = 16


def _chunk(total: int, bytes_per_item: int) -> int:
    return items_per_step(total, bytes_per_item, _CHUNK_BYTES)


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------


as_array = as_torch  # a torch view of a torch tensor or CuPy array (no copy)


def probabilities(probs: Any, name: str = "probs", from_logits: bool = False) -> "torch.Tensor":
    """A validated C-contiguous float32/float64 (M, n, C) tensor of probabilities (float64 from
    logits); the device twin of :func:`mmkern.multiplicity._host.probabilities`."""
    t = as_array(probs, name)
    check_probability_shape(t.shape, name)
    source = dtype_name(t.dtype)
    t = float_tensor(t, name)
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
    check_probability_stats(int(nonfinite), int(negative), lo, hi, source, name)
    return t


def scores(preds: "torch.Tensor", name: str = "preds") -> tuple["torch.Tensor", int]:
    """Hard class codes (M, n) int64 of validated-shape (M, n, C) float scores (argmax, lowest
    class on ties) and their largest possible value."""
    if not preds.is_floating_point():
        raise TypeError(f"3-D {name} must be float scores (M, n, C), got dtype {dtype_name(preds.dtype)}")
    t = float_tensor(preds, name)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinity")
    return hard_codes(t), int(t.shape[2]) - 1


def hard_codes(p: "torch.Tensor") -> "torch.Tensor":
    """int64 argmax codes (M, n), the lowest class on ties."""
    return torch.argmax(p, dim=-1)


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


def label_codes(labels: "torch.Tensor", name: str = "preds") -> tuple["torch.Tensor", int]:
    """Validated (labels >= 0) class codes of 2-D integer labels and their largest value: the
    labels themselves when below 2**16, else their ranks among the distinct labels."""
    labels = integer_tensor(labels, name)
    lo, hi = _label_range(labels)
    class_range(lo, hi, name, None)
    if hi < 2**16:
        return labels, hi
    if labels.dtype == getattr(torch, "uint64", None):
        labels = labels.view(torch.int64)  # a bijection: equality is all that matters
    distinct, ranks = torch.unique(labels, return_inverse=True)
    return ranks.reshape(labels.shape), len(distinct) - 1


def true_labels(labels: Any, probs: "torch.Tensor") -> "torch.Tensor":
    """Validated int64 labels (n,) for probabilities (M, n, C)."""
    t = integer_tensor(as_array(labels, "labels"), "labels")
    check_labels_shape(t.shape, probs.shape[1], probs.shape)
    if t.numel():
        class_range(*_label_range(t), "labels", int(probs.shape[2]))
    return t.to(torch.int64)


# ---------------------------------------------------------------------------------------------
# kernels (mmkern._C_cuda) or their torch expressions
# ---------------------------------------------------------------------------------------------


def _disagreement_counts(codes: "torch.Tensor", max_code: int) -> "torch.Tensor":
    """(M, M) int64 numbers of samples on which each pair of rows of ``codes`` (M, n) differ;
    every value of ``codes`` is at most ``max_code``."""
    m, n = codes.shape
    bits = code_bits(max_code)
    kernels = kernels_for(codes.device)
    if kernels is not None:
        # 16- and 32-bit codes travel as int16 / int32: the kernel compares bit patterns, and
        # values up to 2**bits - 1 wrap to the bits of uint16 / uint32 (which torch < 2.3 lacks).
        packed = codes.to({8: torch.uint8, 16: torch.int16, 32: torch.int32}[bits]).contiguous()
        counts = torch.empty((m, m), dtype=torch.int64, device=codes.device)
        with cuda_launch(codes.device) as stream:
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
    kernels = kernels_for(p.device)
    if kernels is not None:
        out = torch.empty((m, m), dtype=_F64, device=p.device)
        with cuda_launch(p.device) as stream:
            kernels.soft_disagreement(p.data_ptr(), dtype_code(p.dtype), m, n, c, metric, out.data_ptr(), stream)
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


def capacities(p: "torch.Tensor", tol: float, max_iter: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Per-sample Blahut-Arimoto capacity in nats (its lower bound) and the final gap of its
    bounds, (n,) each: the ``rashomon_capacity`` kernel with a workspace sized from the device's
    free memory, else Blahut-Arimoto vectorised over samples."""
    m, n, c = p.shape
    capacity = torch.empty(n, dtype=_F64, device=p.device)
    gaps = torch.empty(n, dtype=_F64, device=p.device)
    kernels = kernels_for(p.device)
    if kernels is not None:
        per_sample = kernels.rashomon_workspace_per_sample(m, c)
        free, _ = torch.cuda.mem_get_info(p.device)
        samples = max(1, min(n, free // 4 // (8 * per_sample)))  # a quarter of what is free
        workspace = torch.empty(samples * per_sample, dtype=_F64, device=p.device)
        with cuda_launch(p.device) as stream:
            kernels.rashomon_capacity(p.data_ptr(), dtype_code(p.dtype), m, n, c, tol, max_iter,
                                      capacity.data_ptr(), gaps.data_ptr(), workspace.data_ptr(),
                                      workspace.numel(), stream)
        return capacity, gaps
    step = _chunk(n, 5 * 8 * m * c)  # P and its temporaries, (step, M, C) float64
    for x0 in range(0, n, step):
        channels = p[:, x0 : x0 + step].to(_F64).permute(1, 0, 2).contiguous()
        capacity[x0 : x0 + step], gaps[x0 : x0 + step] = _blahut_arimoto(channels, tol, max_iter)
    return capacity, gaps
def sample_statistics(p: "torch.Tensor", codes: "torch.Tensor", target: "torch.Tensor | None") -> dict:
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


def disagreement_rates(codes: "torch.Tensor", max_code: int) -> "torch.Tensor":
    """(M, M) float64 fraction of samples on which each pair of code rows differs."""
    return _disagreement_counts(codes, max_code).to(_F64) / codes.shape[1]


def soft_disagreement(p: "torch.Tensor", metric: int) -> "torch.Tensor":
    return _soft_disagreement(p, metric)


def float64(a: "torch.Tensor") -> "torch.Tensor":
    return a.to(_F64)


result = device_result  # the inputs' array kind (CuPy results share memory through DLPack)
