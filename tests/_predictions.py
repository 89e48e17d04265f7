"""Prediction populations for tests (and benchmarks): realistic, seeded, and hand-made ones.

Realistic populations mimic models trained to similar accuracy on the same data: every model's
logits are a shared per-sample signal (the true class boosted, plus a per-sample "difficulty"
that every model sees) plus noise. Models come in families: the models of a family share a
family perturbation and differ only by a small individual one (near-identical models, e.g. the
same run with a different data order), while different families differ more (e.g. different
architectures). Each model has its own temperature (some confident, some hedging).

Hand-made populations are small enough to work out on paper; their known answers are written
next to them as plain numbers (never recomputed here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

LAYOUTS = ("C", "F", "sliced", "models-sliced")
LABEL_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """float64 softmax over the last axis (after subtracting the row maximum)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Population:
    """A prediction population: ``logits`` and ``probs`` ``(M, n, C)``, true ``labels`` ``(n,)``."""

    logits: np.ndarray
    probs: np.ndarray
    labels: np.ndarray


def prediction_population(rng: np.random.Generator, n_models: int, n_samples: int,
                          n_classes: int, *, families: Optional[int] = None,
                          signal: float = 2.5, family_noise: float = 1.0,
                          model_noise: float = 0.05, temperatures=(0.5, 2.0),
                          dtype=np.float64) -> Population:
    """A realistic population of ``n_models`` classifiers.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n_models, n_samples, n_classes : int
        ``M``, ``n``, ``C``.
    families : int, optional
        Number of families of near-identical models (default ``max(1, M // 3)``); models are
        assigned to families round-robin, so every family with two or more members holds
        near-identical models.
    signal : float
        Logit boost of the true class, shared by every model (sets the accuracy, ~70-90% here).
    family_noise, model_noise : float
        Standard deviations of the per-family and per-model logit perturbations.
    temperatures : (float, float)
        Range of the per-family temperatures (log-uniform); each model's temperature jitters
        around its family's by a factor ``exp(model_noise * N(0, 1))``.
    dtype : numpy dtype
        dtype of ``logits`` and ``probs``. ``probs`` is the float64 softmax rounded to ``dtype``
        (float32 rows then sum to 1 within ~1e-7).

    Returns
    -------
    Population
        C-ordered arrays; ``labels`` is int64.
    """
    families = families if families is not None else max(1, n_models // 3)
    labels = rng.integers(0, n_classes, size=n_samples)
    shared = rng.standard_normal((n_samples, n_classes))
    shared[np.arange(n_samples), labels] += signal
    family_offsets = family_noise * rng.standard_normal((families, n_samples, n_classes))
    log_t = rng.uniform(np.log(temperatures[0]), np.log(temperatures[1]), size=families)
    logits = np.empty((n_models, n_samples, n_classes))
    for m in range(n_models):
        own = model_noise * rng.standard_normal((n_samples, n_classes))
        temperature = np.exp(log_t[m % families] + model_noise * rng.standard_normal())
        logits[m] = (shared + family_offsets[m % families] + own) / temperature
    logits = logits.astype(dtype)
    return Population(logits=logits, probs=softmax(logits).astype(dtype), labels=labels)


def hard_population(rng: np.random.Generator, n_models: int, n_samples: int, n_classes: int,
                    *, flip: float = 0.2, dtype=np.int64) -> tuple[np.ndarray, np.ndarray]:
    """``(M, n)`` hard predictions: each model copies the true label except on a random fraction
    ``flip`` of the samples, where it predicts a uniformly random class. Returns
    ``(preds, labels)`` with ``preds`` of ``dtype`` and int64 ``labels``."""
    labels = rng.integers(0, n_classes, size=n_samples)
    preds = np.tile(labels, (n_models, 1))
    flipped = rng.random((n_models, n_samples)) < flip
    preds[flipped] = rng.integers(0, n_classes, size=int(flipped.sum()))
    return preds.astype(dtype), labels


def sparse_probs(rng: np.random.Generator, probs: np.ndarray, threshold: float) -> np.ndarray:
    """``probs`` with every entry below ``threshold`` set to exactly 0 and the rows renormalised
    (each row keeps its largest entry): exact zeros for ``0 log 0`` and KL's ``+inf``."""
    p = np.array(probs, dtype=np.float64)
    keep = p >= threshold
    keep[np.arange(p.shape[0])[:, None], np.arange(p.shape[1])[None, :],
         np.argmax(p, axis=-1)] = True
    p = np.where(keep, p, 0.0)
    p /= p.sum(axis=-1, keepdims=True)
    return p.astype(probs.dtype)


def one_hot(labels: np.ndarray, n_classes: int, dtype=np.float64) -> np.ndarray:
    """One-hot probabilities ``(..., C)`` of integer labels ``(...)``."""
    return np.eye(n_classes, dtype=dtype)[np.asarray(labels)]


def dyadic_probs(rng: np.random.Generator, n_models: int, n_samples: int, n_classes: int,
                 denominator: int = 16) -> np.ndarray:
    """float64 probabilities that are multiples of ``1 / denominator`` (exact in float16 for
    denominators up to 2**10), rows summing to exactly 1, with frequent exact ties."""
    counts = rng.multinomial(denominator, np.full(n_classes, 1.0 / n_classes),
                             size=(n_models, n_samples))
    return counts.astype(np.float64) / denominator


def with_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values as ``a`` (2-D labels or 3-D scores, any dtype) in a memory layout.

    ``"C"``: C-contiguous; ``"F"``: Fortran-contiguous; ``"sliced"``: a view ``big[..., ::2]``
    along every axis of a larger array whose other entries are poison (NaN for floats, -1 for
    signed and the maximum for unsigned integers), so every stride differs from the item size;
    ``"models-sliced"``: models taken as every third row of a larger population.
    """
    if layout == "C":
        return np.ascontiguousarray(a)
    if layout == "F":
        return np.asfortranarray(a)
    if np.issubdtype(a.dtype, np.floating):
        poison = np.nan
    elif np.issubdtype(a.dtype, np.signedinteger):
        poison = -1
    else:
        poison = np.iinfo(a.dtype).max
    if layout == "sliced":
        big = np.full(tuple(2 * s + 1 for s in a.shape), poison, dtype=a.dtype)
        view = (slice(1, None, 2),) * a.ndim
        big[view] = a
        return big[view]
    if layout == "models-sliced":
        big = np.full((3 * a.shape[0], *a.shape[1:]), poison, dtype=a.dtype)
        big[::3] = a
        return big[::3]
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


# ---------------------------------------------------------------------------------------------
# Hand-made populations with known answers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownHard:
    """Hard predictions ``(M, n)`` with their disagreement figures worked out by hand."""

    preds: np.ndarray
    disagreement: np.ndarray
    mean_disagreement: float
    ambiguity: float
    discrepancy: float
    discrepancy_by_reference: tuple
    sample_disagreement: np.ndarray


#: Three models, four samples, three classes.
#:   sample   0  1  2  3
#:   model 0  0  1  2  0
#:   model 1  0  1  1  0
#:   model 2  1  1  2  2
#: pairs: (0, 1) differ on {2}; (0, 2) on {0, 3}; (1, 2) on {0, 2, 3}. Samples where not all
#: agree: {0, 2, 3}. Discrepancy w.r.t. model 0: max(1/4, 2/4); model 1: max(1/4, 3/4);
#: model 2: max(2/4, 3/4). Votes per sample: (2, 1), (3), (2, 1), (2, 1) -> 1 - max/3.
HAND_HARD = KnownHard(
    preds=np.array([[0, 1, 2, 0], [0, 1, 1, 0], [1, 1, 2, 2]]),
    disagreement=np.array([[0.0, 0.25, 0.5], [0.25, 0.0, 0.75], [0.5, 0.75, 0.0]]),
    mean_disagreement=0.5,
    ambiguity=0.75,
    discrepancy=0.75,
    discrepancy_by_reference=(0.5, 0.75, 0.75),
    sample_disagreement=np.array([1 / 3, 0.0, 1 / 3, 1 / 3]),
)


@dataclass(frozen=True)
class KnownSoft:
    """Probabilities ``(M, n, C)`` with every figure worked out by hand."""

    probs: np.ndarray
    labels: np.ndarray
    hard: np.ndarray
    disagreement: np.ndarray
    tv: np.ndarray
    hellinger_01_sample1: float
    sample_variance: np.ndarray
    prediction_variance: float
    range_labels: np.ndarray
    range_majority: np.ndarray
    range_reference: dict = field(default_factory=dict)
    accuracy: np.ndarray = None


#: Three models, two samples, three classes.
#:   model 0: (0.7, 0.2, 0.1)  (0.1, 0.1, 0.8)   -> hard 0, 2
#:   model 1: (0.5, 0.4, 0.1)  (0.3, 0.3, 0.4)   -> hard 0, 2
#:   model 2: (0.2, 0.6, 0.2)  (0.1, 0.1, 0.8)   -> hard 1, 2
#: labels (1, 2); majority vote (0, 2).
#: TV per sample: (0,1): 0.2, 0.4; (0,2): 0.5, 0.0; (1,2): 0.3, 0.4.
#: Variances (ddof 0), sample 0: classes (.7,.5,.2) -> 19/450, (.2,.4,.6) -> 4/150 = 12/450,
#: (.1,.1,.2) -> 1/450 (= 2/900); mean 32/1350. Sample 1: (.1,.3,.1) -> 8/900, same for class 1,
#: (.8,.4,.8) -> 32/900; mean 48/2700 = 16/900.
#: Hellinger (0, 1) on sample 1: 0.5 * [2 (sqrt(.1) - sqrt(.3))^2 + (sqrt(.8) - sqrt(.4))^2].
HAND_SOFT = KnownSoft(
    probs=np.array([
        [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]],
        [[0.5, 0.4, 0.1], [0.3, 0.3, 0.4]],
        [[0.2, 0.6, 0.2], [0.1, 0.1, 0.8]],
    ]),
    labels=np.array([1, 2]),
    hard=np.array([[0, 2], [0, 2], [1, 2]]),
    disagreement=np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.5, 0.5, 0.0]]),
    tv=np.array([[0.0, 0.3, 0.25], [0.3, 0.0, 0.35], [0.25, 0.35, 0.0]]),
    hellinger_01_sample1=float(np.sqrt(0.5 * (2 * (np.sqrt(0.1) - np.sqrt(0.3)) ** 2
                                              + (np.sqrt(0.8) - np.sqrt(0.4)) ** 2))),
    sample_variance=np.array([32 / 1350, 16 / 900]),
    prediction_variance=(32 / 1350 + 16 / 900) / 2,
    range_labels=np.array([0.4, 0.4]),        # class 1: .6 - .2; class 2: .8 - .4
    range_majority=np.array([0.5, 0.4]),      # class 0: .7 - .2; class 2
    range_reference={0: np.array([0.5, 0.4]), 1: np.array([0.5, 0.4]),
                     2: np.array([0.4, 0.4])},
    accuracy=np.array([0.5, 0.5, 1.0]),
)


def binary_symmetric_channel(eps: float) -> np.ndarray:
    """Rows ``(1 - eps, eps)``, ``(eps, 1 - eps)``: capacity ``ln 2 - H(eps)`` nats, so the
    Rashomon capacity is ``2 exp(-H(eps))`` (H in nats)."""
    return np.array([[1.0 - eps, eps], [eps, 1.0 - eps]])


def z_channel(p: float) -> np.ndarray:
    """Rows ``(1, 0)``, ``(p, 1 - p)``: capacity ``log2(1 + (1 - p) p^(p / (1 - p)))`` bits, so
    the Rashomon capacity is ``1 + (1 - p) p^(p / (1 - p))``."""
    return np.array([[1.0, 0.0], [p, 1.0 - p]])


def erasure_channel(eps: float) -> np.ndarray:
    """Rows ``(1 - eps, eps, 0)``, ``(0, eps, 1 - eps)``: capacity ``(1 - eps) ln 2`` nats, so
    the Rashomon capacity is ``2 ** (1 - eps)``."""
    return np.array([[1.0 - eps, eps, 0.0], [0.0, eps, 1.0 - eps]])


def entropy_nats(p) -> float:
    """Shannon entropy in nats of a probability vector (0 log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))
