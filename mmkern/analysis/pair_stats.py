"""Statistics over the pairs of a population of models, all computed by :mod:`scipy.stats`.

A metric between models (RM: 1 - SVCCA of two models' activations; PM: their disagreement) is an
``(M, M)`` symmetric matrix; its values over the ``M (M - 1) / 2`` pairs ``i < j`` are what these
functions summarise. Pairs that share a model are not independent, which matters in two places:

- :func:`mean_ci` and the intervals of :func:`correlation` resample *pairs* (the BCa bootstrap
  of :func:`scipy.stats.bootstrap`): intervals of the pairs at hand, narrower than those of the
  population of models they come from would be.
- :func:`mantel` tests a correlation between two matrices by permuting the *models* of one of
  them (rows and columns together; Mantel 1967), so its null keeps every dependence between
  pairs that share a model. A test over pairs would reject far too often. With groups of
  models it permutes within each group (stratified), which :func:`scipy.stats.permutation_test`
  cannot do for groups of unequal sizes; the loop is written here, with scipy's p-value
  conventions (tested against it on one group).

Groups of pairs (one per factor that was varied) are compared by Kruskal-Wallis and then pairwise
by Mann-Whitney U with the Benjamini-Hochberg correction (:func:`compare_groups`).

Every input is checked: a value that is not finite, a matrix that is not square and symmetric,
fewer pairs than a statistic needs, give a ``ValueError`` naming the argument. A statistic that
is undefined on the data (the correlation of a constant) is ``None``, never NaN.
"""

from __future__ import annotations

import itertools
import math
import warnings
from typing import Any, Callable, Mapping, Optional

import numpy as np

from mmkern._validate import check_choice, check_float, check_int

__all__ = ["association", "compare_groups", "correlation", "mantel", "mean_ci", "pair_values",
           "partial_correlation", "stacked_correlation", "within_groups"]

#: Resamples of the bootstraps and of the permutation test, unless given.
N_RESAMPLES = 9999


def _stats():
    from scipy import stats

    return stats


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(check_int(seed, "seed", low=0))


def _finite(values, name: str, *, ndim: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers, got {type(values).__name__}") from None
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(array)).sum())} values that are not finite")
    return array


def pair_values(matrix, name: str = "matrix") -> np.ndarray:
    """The values of the pairs ``i < j`` of a symmetric ``(M, M)`` matrix, row by row.

    Parameters
    ----------
    matrix : array_like, shape (M, M)
        Finite and symmetric (to 1e-9 of its largest magnitude); the diagonal is ignored.
    name : str
        The argument's name in error messages.

    Returns
    -------
    numpy.ndarray, float64, shape (M (M - 1) / 2,)
    """
    m = _finite(matrix, name, ndim=2)
    if m.shape[0] != m.shape[1]:
        raise ValueError(f"{name} must be square (M, M), got shape {m.shape}")
    scale = max(float(np.abs(m).max(initial=0.0)), 1e-300)
    if np.abs(m - m.T).max(initial=0.0) > 1e-9 * scale:
        raise ValueError(f"{name} must be symmetric (a metric between models)")
    return m[np.triu_indices(m.shape[0], k=1)]


def _interval(data: tuple, statistic: Callable, confidence: float, n_resamples: int, seed: int,
              paired: bool) -> tuple[Optional[float], Optional[float]]:
    """The BCa interval of a vectorized ``statistic(*data, axis=-1)``, or (None, None) where it is
    undefined: a resample of few pairs can be constant (its correlation undefined), which scipy
    warns about; the None says it here."""
    stats = _stats()
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # and its ConstantInputWarning
        result = stats.bootstrap(data, statistic, n_resamples=n_resamples, confidence_level=confidence,
                                 paired=paired, vectorized=True, method="BCa", rng=_rng(seed))
    low, high = (float(v) for v in (result.confidence_interval.low, result.confidence_interval.high))
    if not (np.isfinite(low) and np.isfinite(high)):  # a degenerate resampling distribution
        return None, None
    return low, high


def mean_ci(values, *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """The mean of a metric over pairs of models and its bootstrap confidence interval (over pairs).

    Parameters
    ----------
    values : array_like, shape (n_pairs,)
        The pairs' values (e.g. :func:`pair_values` of a matrix); at least one.
    confidence : float, default 0.95
    n_resamples : int, default 9999
    seed : int, default 0
        Seeds the resampling: the interval is reproducible.

    Returns
    -------
    dict
        ``{"mean", "ci_low", "ci_high", "n_pairs"}``; the interval is the mean itself when every
        value is equal, and None for a single pair.
    """
    confidence = check_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    n_resamples = check_int(n_resamples, "n_resamples", low=1)
    pairs = _finite(values, "values", ndim=1)
    if pairs.size == 0:
        raise ValueError("values holds no pair")
    out = {"mean": float(pairs.mean()), "ci_low": None, "ci_high": None, "n_pairs": int(pairs.size)}
    if pairs.size >= 2 and np.ptp(pairs) == 0:
        out["ci_low"] = out["ci_high"] = out["mean"]
    elif pairs.size >= 2:
        # on values scaled to magnitude 1: BCa's acceleration cubes deviations, which overflows
        # for extreme magnitudes; the interval of the mean scales with the values
        scale = float(np.abs(pairs).max())
        low, high = _interval((pairs / scale,), _mean, confidence, n_resamples, seed, False)
        if low is not None:
            out["ci_low"], out["ci_high"] = low * scale, high * scale
    return out


def compare_groups(groups: Mapping[str, Any]) -> dict[str, Any]:
    """Do the pairs of several groups (e.g. one per varied factor) differ in a metric?

    Parameters
    ----------
    groups : mapping of str to array_like
        Each group's pair values, shape ``(n_pairs,)``; at least 2 groups, each of at least 2
        pairs.

    Returns
    -------
    dict
        ``kruskal``: ``{"statistic", "p_value"}`` of :func:`scipy.stats.kruskal` (None when every
        value is equal); ``pairwise``: per pair of groups, ``{"a", "b", "statistic", "p_value",
        "p_adjusted"}`` of a two-sided :func:`scipy.stats.mannwhitneyu`, the p-values adjusted by
        :func:`scipy.stats.false_discovery_control` (Benjamini-Hochberg); ``ranking``: the groups
        by decreasing median (ties: by mean, then name), each with its ``median``, ``mean`` and
        ``n_pairs``.
    """
    if not isinstance(groups, Mapping):
        raise TypeError(f"groups must be a mapping of group name to pair values, got {type(groups).__name__}")
    if len(groups) < 2:
        raise ValueError(f"groups must hold at least 2 groups, got {len(groups)}")
    values = {}
    for name, vals in groups.items():
        v = _finite(vals, f"groups[{name!r}]", ndim=1)
        if v.size < 2:
            raise ValueError(f"groups[{name!r}] must hold at least 2 pairs, got {v.size}")
        values[str(name)] = v
    stats = _stats()
    everything = np.concatenate(list(values.values()))
    kruskal = None
    if np.ptp(everything) > 0:
        result = stats.kruskal(*values.values())
        kruskal = {"statistic": float(result.statistic), "p_value": float(result.pvalue)}
    pairwise = []
    for a, b in itertools.combinations(values, 2):
        if np.ptp(np.concatenate([values[a], values[b]])) == 0:
            statistic, p = float(values[a].size * values[b].size / 2), 1.0
        else:
            result = stats.mannwhitneyu(values[a], values[b], alternative="two-sided")
            statistic, p = float(result.statistic), float(result.pvalue)
        pairwise.append({"a": a, "b": b, "statistic": statistic, "p_value": p})
    adjusted = stats.false_discovery_control([row["p_value"] for row in pairwise], method="bh")
    for row, p in zip(pairwise, np.atleast_1d(adjusted)):
        row["p_adjusted"] = float(p)
    ranking = sorted(({"group": name, "median": float(np.median(v)), "mean": float(v.mean()), "n_pairs": int(v.size)}
                      for name, v in values.items()), key=lambda r: (-r["median"], -r["mean"], r["group"]))
    return {"kruskal": kruskal, "pairwise": pairwise, "ranking": ranking}


def _mean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(values, axis=axis)


def _corr(method: str) -> Callable[[np.ndarray, np.ndarray], float]:
    stats = _stats()
    if method == "spearman":
        return lambda x, y: float(stats.spearmanr(x, y).statistic)
    return lambda x, y: float(stats.pearsonr(x, y).statistic)


def stacked_correlation(method: str) -> Callable[..., np.ndarray]:
    """``corr(x, y, axis=-1)``: the correlation along an axis of stacked samples (the resamples of
    a bootstrap, the draws of a simulation) in one call.

    Pearson's r of the values, or of their ranks (Spearman's rho, ties averaged as scipy does);
    NaN where a sample is constant. Equal to :func:`scipy.stats.pearsonr` /
    :func:`scipy.stats.spearmanr` of each sample to rounding.
    """
    check_choice(method, "method", ("spearman", "pearson"))
    stats = _stats()

    def corr(x, y, axis=-1):
        if method == "spearman":
            x, y = stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis)
        x = x - x.mean(axis, keepdims=True)
        y = y - y.mean(axis, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (x * y).sum(axis) / np.sqrt((x * x).sum(axis) * (y * y).sum(axis))

    return corr


def correlation(x, y, *, confidence: float = 0.95, n_resamples: int = N_RESAMPLES, seed: int = 0
                ) -> dict[str, Any]:
    """Spearman and Pearson correlation of two metrics over the same pairs, with bootstrap
    intervals over pairs and scipy's p-values (which treat the pairs as independent: see
    :func:`mantel` for the test that does not).

    Parameters
    ----------
    x, y : array_like, shape (n_pairs,)
        The two metrics' values on the same pairs, in the same order; at least 3 pairs.
    confidence, n_resamples, seed
        As in :func:`mean_ci`.

    Returns
    -------
    dict
        ``{"spearman": {...}, "pearson": {...}, "n_pairs"}``, each ``{"r", "ci_low", "ci_high",
        "p_value"}``; all None where the correlation is undefined (a constant input).
    """
    x, y = _finite(x, "x", ndim=1), _finite(y, "y", ndim=1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must hold the same pairs, got {x.size} and {y.size} values")
    if x.size < 3:
        raise ValueError(f"x and y must hold at least 3 pairs, got {x.size}")
    confidence = check_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    n_resamples = check_int(n_resamples, "n_resamples", low=1)
    stats = _stats()
    out: dict[str, Any] = {"n_pairs": int(x.size)}
    for method, test in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            out[method] = {"r": None, "ci_low": None, "ci_high": None, "p_value": None}
            continue
        result = test(x, y)
        low, high = _interval((x, y), stacked_correlation(method), confidence, n_resamples, seed, True)
        out[method] = {"r": float(result.statistic), "ci_low": low, "ci_high": high, "p_value": float(result.pvalue)}
    return out


def _partial(r_xy, r_xz, r_yz):
    """The partial correlation of x and y given z from the three correlations (arrays of them
    alike; NaN where z determines x or y)."""
    denominator = (1.0 - np.square(r_xz)) * (1.0 - np.square(r_yz))
    with np.errstate(invalid="ignore", divide="ignore"):
        # |r| = 1 up to rounding: what is left of x or y is rounding noise
        return np.where(denominator < 1e-12, np.nan, (r_xy - r_xz * r_yz) / np.sqrt(denominator))


def partial_correlation(x, y, z, *, method: str = "spearman", confidence: float = 0.95,
                        n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """The correlation of x and y over pairs once z is accounted for, with a bootstrap interval.

    The partial correlation ``(r_xy - r_xz r_yz) / sqrt((1 - r_xz^2) (1 - r_yz^2))`` of the three
    Spearman (rank) or Pearson correlations: whether x says something about y that z does not
    (e.g. RM about OOD PM beyond i.i.d. PM).

    Parameters
    ----------
    x, y, z : array_like, shape (n_pairs,)
        Three metrics on the same pairs, in the same order; at least 4 pairs.
    method : {"spearman", "pearson"}
    confidence, n_resamples, seed
        As in :func:`mean_ci` (a paired BCa bootstrap over pairs).

    Returns
    -------
    dict
        ``{"r", "ci_low", "ci_high", "n_pairs", "method"}``; ``r`` (and the interval) None where
        it is undefined (a constant metric, or z determining x or y).
    """
    check_choice(method, "method", ("spearman", "pearson"))
    x, y, z = (_finite(v, name, ndim=1) for v, name in ((x, "x"), (y, "y"), (z, "z")))
    if not x.shape == y.shape == z.shape:
        raise ValueError(f"x, y and z must hold the same pairs, got {x.size}, {y.size} and {z.size} values")
    if x.size < 4:
        raise ValueError(f"x, y and z must hold at least 4 pairs, got {x.size}")
    confidence = check_float(confidence, "confidence", low=0.0, high=1.0, low_open=True, high_open=True)
    n_resamples = check_int(n_resamples, "n_resamples", low=1)
    corr, vcorr = _corr(method), stacked_correlation(method)

    def statistic(a, b, c, axis=-1):
        return _partial(vcorr(a, b, axis), vcorr(a, c, axis), vcorr(b, c, axis))

    out = {"r": None, "ci_low": None, "ci_high": None, "n_pairs": int(x.size), "method": method}
    r = np.nan if min(np.ptp(x), np.ptp(y), np.ptp(z)) == 0 else float(_partial(corr(x, y), corr(x, z), corr(y, z)))
    if np.isfinite(r):
        out["r"] = r
        out["ci_low"], out["ci_high"] = _interval((x, y, z), statistic, confidence, n_resamples, seed, True)
    return out


def _matrices(value, name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """One symmetric matrix, or a non-empty sequence of them (groups): the checked arrays, and
    the pair values of all of them, group after group."""
    if isinstance(value, (list, tuple)) and value and np.ndim(value[0]) == 2:
        labelled = [(v, f"{name}[{g}]") for g, v in enumerate(value)]
    else:
        labelled = [(value, name)]
    groups = [_finite(v, label, ndim=2) for v, label in labelled]
    pairs = [pair_values(m, label) for m, (_, label) in zip(groups, labelled)]  # square and symmetric
    return groups, np.concatenate(pairs)


def mantel(a, b, *, given=None, pairs=None, method: str = "spearman", n_resamples: int = N_RESAMPLES,
           alternative: str = "two-sided", seed: int = 0) -> dict[str, Any]:
    """Correlation of two metrics between the same models, tested by permuting the models.

    Parameters
    ----------
    a, b : array_like, shape (M, M), or sequences of such matrices
        Symmetric matrices of the two metrics over the same models. Given as sequences (one
        matrix per group of models, e.g. per factor group, ``a[g]`` and ``b[g]`` over the same
        ``M_g`` models), the correlation is over the pairs within every group, pooled, and the
        models are permuted within each group (a stratified Mantel test): pairs across groups,
        which no matrix holds, are never formed.
    given : array_like or sequence, optional
        A third metric over the same models (and groups): the statistic is then the partial
        correlation of ``a`` and ``b`` given it (:func:`partial_correlation`), ``a`` permuted
        (the partial Mantel test of Smouse, Long and Sokal 1986).
    pairs : array_like of bool, shape (M, M), optional
        With single matrices: the pairs whose values are correlated (a symmetric mask, e.g. the
        pairs within factor groups); all M models are still permuted together, so a permuted
        matrix brings other pairs' values into those places. Default: every pair.
    method : {"spearman", "pearson"}
        The correlation of their pair values (:func:`pair_values`).
    n_resamples : int, default 9999
        Random permutations; when the number of distinct ones (``M!``, or the product of the
        groups' ``M_g!``) is at most this, all are used (an exact test, as
        :func:`scipy.stats.permutation_test` does).
    alternative : {"two-sided", "greater", "less"}
    seed : int, default 0

    Returns
    -------
    dict
        ``{"r", "p_value", "n_models", "n_groups", "n_pairs", "n_permutations", "method"}``;
        ``r`` and ``p_value`` None when either metric is constant over the pairs.
    """
    check_choice(method, "method", ("spearman", "pearson"))
    check_choice(alternative, "alternative", ("two-sided", "greater", "less"))
    n_resamples = check_int(n_resamples, "n_resamples", low=1)
    (first, x), (second, y) = _matrices(a, "a"), _matrices(b, "b")
    if [m.shape for m in first] != [m.shape for m in second]:
        raise ValueError(f"a and b must be matrices over the same models, got shapes "
                         f"{[m.shape for m in first]} and {[m.shape for m in second]}")
    z = None
    if given is not None:
        third, z = _matrices(given, "given")
        if [m.shape for m in third] != [m.shape for m in first]:
            raise ValueError(f"given must be over the same models as a and b, got shapes "
                             f"{[m.shape for m in third]} and {[m.shape for m in first]}")
    sizes = [m.shape[0] for m in first]
    uppers = [np.triu_indices(n, k=1) for n in sizes]
    chosen = None
    if pairs is not None:
        if len(sizes) != 1:
            raise ValueError("pairs selects pairs of one matrix: give single matrices a and b with it, not groups")
        mask = np.asarray(pairs)
        if mask.dtype != bool or mask.shape != first[0].shape or (mask != mask.T).any():
            raise ValueError(f"pairs must be a symmetric boolean (M, M) mask, M = {sizes[0]}")
        chosen = np.flatnonzero(mask[uppers[0]])  # positions among all pairs
        x, y = x[chosen], y[chosen]
        z = None if z is None else z[chosen]
    if y.size < 3:
        raise ValueError(f"a and b must be over at least 3 models (3 pairs), got {y.size} pair(s)")
    exact = math.prod(math.factorial(n) for n in sizes)  # distinct permutations (an int, never overflows)
    out = {"r": None, "p_value": None, "n_models": int(sum(sizes)), "n_groups": len(sizes), "n_pairs": int(y.size),
           "method": method, "n_permutations": int(min(exact, n_resamples))}
    if np.ptp(x) == 0 or np.ptp(y) == 0 or (z is not None and np.ptp(z) == 0):
        return out
    if chosen is not None:  # the permuted pairs' values, from the full matrix, ranked anew
        return _masked_mantel(first[0], y, z, chosen, sizes[0], exact, method, n_resamples, alternative, seed, out)
    # Every permutation keeps each group's multiset of pair values, so the ranks of the permuted
    # pairs are the permuted ranks, and their mean and norm do not change: each permuted
    # correlation is one gather and one dot product of the centered (ranked) values.
    stats = _stats()

    def centered(v):
        v = stats.rankdata(v) if method == "spearman" else v
        v = v - v.mean()
        return v / np.sqrt(v @ v)

    cx, cy = centered(x), centered(y)
    cz = None if z is None else centered(z)
    starts = np.cumsum([0] + [u[0].size for u in uppers])
    positions = []  # per group: the (M_g, M_g) matrix of its pairs' positions in the pooled vector
    for n, u, start in zip(sizes, uppers, starts):
        where = np.zeros((n, n), dtype=np.intp)
        where[u] = where.T[u] = start + np.arange(u[0].size)
        positions.append(where)

    def statistics(orders: list) -> np.ndarray:
        """The statistic under each permutation: ``orders[g]`` is (n_permutations, M_g)."""
        index = np.concatenate([where[o[:, :, None], o[:, None, :]][:, u[0], u[1]]
                                for where, o, u in zip(positions, orders, uppers)], axis=1)
        r_xy = cx[index] @ cy
        if cz is None:
            return r_xy
        return _partial(r_xy, cx[index] @ cz, cy @ cz)

    observed = float(statistics([np.arange(n)[None] for n in sizes])[0])
    if not np.isfinite(observed):  # given determines a or b
        return out
    out["r"] = observed
    orders, extra = _orders(sizes, exact, n_resamples, seed)
    null = statistics(orders)
    out["p_value"] = _p_value(observed, null, extra, alternative)
    return out


def _orders(sizes: list, exact: int, n_resamples: int, seed: int) -> tuple[list, int]:
    """The permutations of a Mantel test, ``[(n_permutations, M_g) per group]``, and whether the
    observed ordering is to be added (1: random draws) or is among them (0: all of them)."""
    if exact <= n_resamples:  # every permutation of every group, the identity among them
        combos = list(itertools.product(*(itertools.permutations(range(n)) for n in sizes)))
        return [np.array([c[g] for c in combos], dtype=np.intp) for g in range(len(sizes))], 0
    rng = _rng(seed)
    draws = [np.empty((n_resamples, n), dtype=np.intp) for n in sizes]
    for k in range(n_resamples):  # the draws of a loop of rng.permutation, group after group
        for g, n in enumerate(sizes):
            draws[g][k] = rng.permutation(n)
    return draws, 1


def _masked_mantel(a: np.ndarray, y: np.ndarray, z, chosen: np.ndarray, m: int, exact: int, method: str,
                   n_resamples: int, alternative: str, seed: int, out: dict) -> dict:
    """:func:`mantel` with ``pairs``: the chosen pairs of ``a`` permuted as a whole matrix."""
    corr = stacked_correlation(method)
    upper = np.triu_indices(m, k=1)
    rows, cols = upper[0][chosen], upper[1][chosen]

    def statistics(orders: np.ndarray) -> np.ndarray:
        xs = a[orders[:, rows], orders[:, cols]]  # (n_permutations, n_pairs)
        r_xy = corr(xs, np.broadcast_to(y, xs.shape))
        if z is None:
            return r_xy
        zs = np.broadcast_to(z, xs.shape)
        return _partial(r_xy, corr(xs, zs), corr(y[None], z[None])[0])

    observed = float(statistics(np.arange(m)[None])[0])
    if not np.isfinite(observed):
        return out
    out["r"] = observed
    (orders,), extra = _orders([m], exact, n_resamples, seed)
    out["p_value"] = _p_value(observed, statistics(orders), extra, alternative)
    return out


def _p_value(observed: float, null: np.ndarray, extra: int, alternative: str) -> float:
    """scipy.stats.permutation_test's p-value of ``observed`` against the permutation
    distribution ``null`` (``extra = 1``: randomized, the observed value added; with its
    relative tolerance for ties)."""
    tolerance = abs(100 * np.finfo(np.float64).eps * observed)
    greater = (np.count_nonzero(null >= observed - tolerance) + extra) / (null.size + extra)
    less = (np.count_nonzero(null <= observed + tolerance) + extra) / (null.size + extra)
    if alternative == "greater":
        return float(greater)
    if alternative == "less":
        return float(less)
    return float(min(1.0, 2 * min(greater, less)))


def within_groups(groups, m: int) -> tuple[list[int], np.ndarray]:
    """The models of some groups and the mask of the pairs within them.

    Parameters
    ----------
    groups : sequence of sequences of int
        Indices of models among ``m`` (a model may be in several groups).
    m : int

    Returns
    -------
    models : list of int
        The models of the groups, sorted.
    mask : numpy.ndarray of bool, shape (len(models), len(models))
        Symmetric, False on the diagonal: which pairs of ``models`` share a group (for
        :func:`mantel`'s ``pairs``).
    """
    models = sorted({int(i) for g in groups for i in g})
    if models and (models[0] < 0 or models[-1] >= m):
        raise ValueError(f"groups must hold indices of the {m} models")
    local = {i: k for k, i in enumerate(models)}
    mask = np.zeros((len(models), len(models)), dtype=bool)
    for g in groups:
        idx = [local[int(i)] for i in g]
        mask[np.ix_(idx, idx)] = True
    np.fill_diagonal(mask, False)
    return models, mask


def association(a, b, groups=None, *, n_resamples: int = N_RESAMPLES, seed: int = 0) -> Optional[dict[str, Any]]:
    """How two metrics between models move together over the pairs within groups of models: the
    summary of :func:`correlation` and :func:`mantel` in one row.

    Parameters
    ----------
    a, b : array_like, shape (M, M)
        Symmetric matrices of the two metrics over the same M models.
    groups : sequence of sequences of int, optional
        Groups of models (indices; a model may be in several): the pairs within each group are
        pooled, each pair once. Default: one group of all M models.
    n_resamples, seed
        Of the bootstrap intervals and of the permutations.

    Returns
    -------
    dict or None
        ``{"spearman", "ci_low", "ci_high", "pearson", "p_value", "p_within", "n_pairs",
        "n_groups", "n_models"}``: the Spearman correlation of the pooled pairs with its BCa
        interval over pairs, Pearson's r; ``p_value``, the two-sided p-value of that Spearman
        correlation when the models of the groups are permuted all together (a Mantel test on
        the pooled pairs: it tests the whole association, between groups as within them);
        ``p_within``, the p-value when the models are permuted within each group only (a
        stratified Mantel test: the association within groups alone; None for one group). None
        with fewer than 3 pairs or a constant metric.
    """
    a, b = _finite(a, "a", ndim=2), _finite(b, "b", ndim=2)
    if a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ValueError(f"a and b must be square matrices over the same models, got shapes {a.shape} and {b.shape}")
    groups = [list(range(a.shape[0]))] if groups is None else [[int(i) for i in g] for g in groups]
    models, mask = within_groups(groups, a.shape[0])
    local = {m: k for k, m in enumerate(models)}
    a, b = a[np.ix_(models, models)], b[np.ix_(models, models)]
    upper = np.triu_indices(len(models), k=1)
    x, y = pair_values(a, "a")[mask[upper]], pair_values(b, "b")[mask[upper]]
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    corr = correlation(x, y, n_resamples=n_resamples, seed=seed)
    p_within = None
    if len(groups) > 1:
        within = [[local[i] for i in g] for g in groups if len(g) >= 2]
        p_within = mantel([a[np.ix_(g, g)] for g in within], [b[np.ix_(g, g)] for g in within],
                          n_resamples=n_resamples, seed=seed)["p_value"]
    test = mantel(a, b, pairs=mask, n_resamples=n_resamples, seed=seed)
    return {"spearman": corr["spearman"]["r"], "ci_low": corr["spearman"]["ci_low"],
            "ci_high": corr["spearman"]["ci_high"], "pearson": corr["pearson"]["r"],
            "p_value": test["p_value"], "p_within": p_within, "n_pairs": corr["n_pairs"],
            "n_groups": len(groups), "n_models": len(models)}
