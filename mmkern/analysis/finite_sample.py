"""Multiplicity measured on a finite sample of models: how good an estimate are k of them?

A researcher trains a few models, not a population. Given groups of ``K`` models (one group per
training factor), :func:`finite_sample` asks, for every sample size ``k = 2 .. K``:

- **error**: how far a figure measured on ``k`` of a group's models (RM, i.i.d. PM, OOD PM, the
  spread of OOD accuracy) is from the same figure on all ``K`` of them. The mean relative error
  ``|f(S) - f(G)| / f(G)`` over every ``k``-subset ``S`` of every group (enumerated: exact);
- **rank correlation**: whether a predictor measured on ``k`` models per group (RM, or PM on the
  i.i.d. test set) ranks the groups by a target measured on all ``K`` (PM on the OOD sets, the
  spread of OOD accuracy). The Spearman correlation over groups, for ``draws`` random draws of
  one ``k``-subset per group: its mean and the 2.5 and 97.5 percentiles over the draws (how much
  the answer depends on which ``k`` models were trained).

Figures of a subset: RM and PM are the means over its pairs of the ``(K, K)`` matrices (RM: 1 -
SVCCA; PM: disagreement); the accuracy spread is, per OOD set, the largest minus the smallest
accuracy of its models, averaged over the sets.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping

import numpy as np

from mmkern._validate import check_int
from mmkern.analysis.pair_stats import stacked_correlation

__all__ = ["PREDICTORS", "TARGETS", "finite_sample"]

#: Figures measured on ``k`` models (i.i.d. test set) and the group figures they are meant to predict.
PREDICTORS = ("rm", "pm_iid")
TARGETS = ("pm_ood", "ood_accuracy_spread")


def _pair_mean(matrix: np.ndarray, subset) -> float:
    sub = matrix[np.ix_(subset, subset)]
    k = len(subset)
    return float((sub.sum() - np.trace(sub)) / (k * (k - 1)))


def _figures(group: Mapping[str, np.ndarray], subset) -> dict[str, float]:
    accuracy = group["ood_accuracy"][list(subset)]
    return {"rm": _pair_mean(group["rm"], subset), "pm_iid": _pair_mean(group["pm_iid"], subset),
            "pm_ood": _pair_mean(group["pm_ood"], subset),
            "ood_accuracy_spread": float((accuracy.max(0) - accuracy.min(0)).mean())}


def _check(groups) -> tuple[dict, int]:
    if not isinstance(groups, Mapping) or len(groups) < 3:
        raise ValueError("groups must be a mapping of at least 3 groups (a rank correlation over groups)")
    checked = {}
    for name, group in groups.items():
        arrays = {}
        for key in ("rm", "pm_iid", "pm_ood"):
            a = np.asarray(group[key], dtype=np.float64)
            if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.isfinite(a).all():
                raise ValueError(f"groups[{name!r}][{key!r}] must be a finite square (K, K) matrix")
            arrays[key] = a
        acc = np.asarray(group["ood_accuracy"], dtype=np.float64)
        if acc.ndim != 2 or acc.shape[0] != arrays["rm"].shape[0] or not np.isfinite(acc).all():
            raise ValueError(f"groups[{name!r}]['ood_accuracy'] must be finite, shape (K, n_sets)")
        if len({a.shape for a in arrays.values()}) != 1:
            raise ValueError(f"groups[{name!r}]: rm, pm_iid and pm_ood must be over the same K models")
        checked[str(name)] = {**arrays, "ood_accuracy": acc}
    size = min(g["rm"].shape[0] for g in checked.values())
    if size < 2:
        raise ValueError("every group needs at least 2 models")
    return checked, size


def finite_sample(groups: Mapping[str, Mapping[str, Any]], *, draws: int = 500, seed: int = 0) -> dict[str, Any]:
    """Error and rank correlation of multiplicity figures measured on k of each group's models.

    Parameters
    ----------
    groups : mapping of str to mapping
        At least 3 groups; each ``{"rm", "pm_iid", "pm_ood"}``: ``(K, K)`` float matrices over
        its models (RM, i.i.d. PM, PM averaged over the OOD sets), and ``"ood_accuracy"``:
        ``(K, n_sets)`` each model's accuracy on each OOD set. Groups may differ in size; ``k``
        runs up to the smallest ``K``, and a subset is drawn from all of a group's models.
    draws : int, default 500
        Random draws (one ``k``-subset per group each) of the rank correlations.
    seed : int, default 0

    Returns
    -------
    dict
        ``{"k": [2, ..., K], "n_groups", "draws", "error": {figure: [mean relative error per
        k]}, "rank_correlation": {"<predictor>-><target>": {"mean", "low", "high"}: lists per
        k}, "full": {group: its figures on all its models}}``; a rank correlation is None at a
        ``k`` where every draw has a constant figure.
    """
    spearman = stacked_correlation("spearman")
    draws = check_int(draws, "draws", low=1)
    checked, size = _check(groups)
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    full = {name: _figures(g, range(g["rm"].shape[0])) for name, g in checked.items()}
    ks = list(range(2, size + 1))
    error = {f: [] for f in ("rm", "pm_iid", "pm_ood", "ood_accuracy_spread")}
    ranks = {f"{p}->{t}": {"mean": [], "low": [], "high": []} for p in PREDICTORS for t in TARGETS}
    names = list(checked)
    for k in ks:
        per_group = {name: [_figures(g, s) for s in itertools.combinations(range(g["rm"].shape[0]), k)]
                     for name, g in checked.items()}
        for figure in error:
            rel = [abs(f[figure] - full[name][figure]) / full[name][figure]
                   for name, subsets in per_group.items() if full[name][figure] > 0 for f in subsets]
            error[figure].append(float(np.mean(rel)) if rel else None)
        picks = {name: rng.integers(len(per_group[name]), size=draws) for name in names}
        for p in PREDICTORS:
            # (draws, groups): the predictor of the subset drawn from every group in every draw
            x = np.column_stack([np.array([f[p] for f in per_group[name]])[picks[name]] for name in names])
            for t in TARGETS:
                target = np.array([full[name][t] for name in names])
                values = spearman(x, np.broadcast_to(target, x.shape))
                values = values[np.isfinite(values)]  # a draw with a constant predictor ranks nothing
                row = ranks[f"{p}->{t}"]
                row["mean"].append(float(np.mean(values)) if values.size else None)
                row["low"].append(float(np.percentile(values, 2.5)) if values.size else None)
                row["high"].append(float(np.percentile(values, 97.5)) if values.size else None)
    return {"k": ks, "n_groups": len(names), "draws": draws, "error": error, "rank_correlation": ranks,
            "full": full}
