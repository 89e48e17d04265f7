"""The measurements of one dataset's zoo in the Heljakka et al. (2023) study.

From a zoo whose outputs were collected (:func:`mmkern.analysis.collect_outputs`: spatially
averaged activations of the first ``n`` i.i.d. test samples, probabilities on the i.i.d. test set
and every OOD set), :func:`analyse_zoo` computes

- the ``(M, M)`` matrices over all members: RM as 1 - SVCCA, 1 - CKA and 1 - PWCCA (the mean of
  its two directions, ``(P + P.T) / 2``: PWCCA weights by one model's directions) at each
  member's representation layer (the last before the logits, comparable across architectures),
  1 - SVCCA at every layer of the base architecture, and PM as disagreement and soft (total
  variation) disagreement on every test set and averaged over the OOD sets;
- the per-pair table (``pairs.csv``: one row per pair, its factor group or ``"across"``);
- claim (1): RM by factor (mean over the group's pairs, BCa bootstrap interval), Kruskal-Wallis
  across the training factors with pairwise Mann-Whitney tests (Benjamini-Hochberg), per metric and
  per layer, beside the controls and a Gaussian-noise baseline;
- claim (2): the correlation of RM and PM over the pairs within the factor groups on every test
  set (Spearman with its interval, Pearson, and two permutation tests over models: of all the
  trained models together, which tests the whole association, and within each group only, which
  tests the association within groups), per metric, per layer, and over all pairs of trained
  members;
- claim (3): :func:`mmkern.analysis.finite_sample.finite_sample` over the training factor groups,
  and the partial correlation of RM with OOD PM given i.i.d. PM (with a partial Mantel test);
- per group: prediction variance, ambiguity, Rashomon capacity, accuracy and its spread.

A layer is compared only where the samples are at least :data:`SAMPLES_PER_FEATURE` times its
width (google/svcca's advice): a base-architecture layer too wide in some member is left out of
the per-layer results, and a member whose representation layer is too wide is left out of
everything (``"excluded"`` and ``"dropped"`` list them).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from typing import Any, Optional

import numpy as np

import mmkern
from mmkern.analysis.finite_sample import finite_sample
from mmkern.analysis.metrics import rm_layer
from mmkern.analysis.outputs import ACTIVATIONS_FILE, IID, PREDICTIONS_FILE, evaluation_sets
from mmkern.analysis.pair_stats import (association, compare_groups, mantel, mean_ci, pair_values,
                                        partial_correlation, within_groups)

__all__ = ["OOD_MEAN", "RM_METRICS", "SAMPLES_PER_FEATURE", "analyse_zoo"]

#: A layer of width d is compared on at least this many samples per feature.
SAMPLES_PER_FEATURE = 5
#: The representational similarity measures (RM = 1 - similarity); SVCCA is the paper's.
RM_METRICS = ("svcca", "cka", "pwcca")
#: The name of "PM averaged over the OOD sets" among the test sets.
OOD_MEAN = "ood_mean"
#: Pairs of independent Gaussian matrices of each layer's shape: the noise baseline of RM.
NOISE_PAIRS = 10
#: Blahut-Arimoto tolerance of the Rashomon capacity (nats; the reported exp(capacity) is within
#: this relative error). Models that nearly agree converge like 1 / iterations, and the default
#: 1e-6 made the capacities most of the analysis' time; the report prints three decimals.
CAPACITY_TOL = 1e-4


def _similarity(metric: str, arrays: list) -> np.ndarray:
    if metric == "svcca":
        return mmkern.pairwise_svcca(arrays)
    if metric == "cka":
        return mmkern.pairwise_cka(arrays)
    pwcca = mmkern.pairwise_pwcca(arrays)  # weighted by the first model's directions: symmetrised
    return (pwcca + pwcca.T) / 2


def _load(zoo_dir: str, members: list) -> tuple[dict, dict, dict]:
    from mmkern.train import load_activations, load_record, member_dir

    acts = {m: load_activations(os.path.join(member_dir(zoo_dir, m), ACTIVATIONS_FILE)) for m in members}
    preds = {m: load_activations(os.path.join(member_dir(zoo_dir, m), PREDICTIONS_FILE)) for m in members}
    configs = {m: load_record(zoo_dir, m)["config"] for m in members}
    return acts, preds, configs


def _representation(acts: dict) -> np.ndarray:
    """The activations of the representation layer: the last before the logits (or the only one)."""
    return acts[rm_layer(acts)]


def _architecture(config: dict) -> tuple:
    return config["model"], tuple(sorted(config["model_options"].items()))


def _matrices(acts: dict, preds: dict, configs: dict, members: list, sets: list, limit: int
              ) -> tuple[dict, dict, dict, list, dict]:
    """RM matrices (representation layer, per metric), per-layer SVCCA, PM matrices, the excluded
    (member, layer) entries (wider than ``limit``) and the representation layer of every member."""
    excluded = [{"member": m, "layer": layer, "width": int(a.shape[1]), "max_width": limit}
                for m in members for layer, a in acts[m].items() if a.shape[1] > limit]
    representation = {m: rm_layer(acts[m]) for m in members}
    rep = [acts[m][representation[m]] for m in members]
    rm = {metric: 1.0 - _similarity(metric, rep) for metric in RM_METRICS}
    base_arch = _architecture(configs["base"])
    same = [i for i, m in enumerate(members) if _architecture(configs[m]) == base_arch]
    layers = {}
    for layer in acts["base"]:
        chosen = [i for i in same if layer in acts[members[i]] and acts[members[i]][layer].shape[1] <= limit]
        if len(chosen) == len(same):
            layers[layer] = {"members": chosen,
                             "rm": 1.0 - mmkern.pairwise_svcca([acts[members[i]][layer] for i in chosen])}
    pm = {"disagreement": {}, "tv": {}}
    for name in sets:
        probs = np.stack([preds[m][name] for m in members])
        pm["disagreement"][name] = mmkern.disagreement_matrix(probs)
        pm["tv"][name] = mmkern.soft_disagreement_matrix(probs, "tv")
    ood = [s for s in sets if s != IID]
    for kind in pm:
        pm[kind][OOD_MEAN] = np.mean([pm[kind][s] for s in ood], axis=0)
    return rm, layers, pm, excluded, representation


def _pair_table(members: list, group_of: dict, rm: dict, layers: dict, pm: dict) -> str:
    """``pairs.csv``: one row per pair of members (its group, or ``across``), every metric."""
    position = {layer: {i: k for k, i in enumerate(v["members"])} for layer, v in layers.items()}
    columns = ["a", "b", "group", *(f"rm_{m}" for m in RM_METRICS), *(f"rm_svcca@{layer}" for layer in layers),
               *(f"pm_{kind}@{name}" for kind in pm for name in pm[kind])]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for i, j in itertools.combinations(range(len(members)), 2):
        row = [members[i], members[j], group_of.get((i, j), "across"), *(repr(float(rm[m][i, j])) for m in RM_METRICS)]
        for layer, v in layers.items():
            p = position[layer]
            row.append(repr(float(v["rm"][p[i], p[j]])) if i in p and j in p else "")
        row += [repr(float(pm[kind][name][i, j])) for kind in pm for name in pm[kind]]
        writer.writerow(row)
    return out.getvalue()


def _noise_baseline(n: int, widths: dict, seed: int) -> dict:
    """``{layer: mean_ci of 1 - SVCCA}`` between independent standard Gaussian ``(n, d)``
    matrices, :data:`NOISE_PAIRS` pairs per layer width d."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer, d in widths.items():
        values = [1.0 - mmkern.svcca(rng.standard_normal((n, d)), rng.standard_normal((n, d)))
                  for _ in range(NOISE_PAIRS)]
        out[layer] = {**mean_ci(values, n_resamples=999), "width": int(d)}
    return out


def _by_factor(matrix: np.ndarray, groups: dict, resamples: int) -> dict:
    return {name: mean_ci(pair_values(matrix[np.ix_(idx, idx)]), n_resamples=resamples)
            for name, idx in groups.items() if len(idx) >= 2}


def _factor_test(matrix: np.ndarray, groups: dict) -> Optional[dict]:
    values = {name: pair_values(matrix[np.ix_(idx, idx)]) for name, idx in groups.items() if len(idx) >= 3}
    if len(values) < 2:
        return None
    result = compare_groups(values)
    kruskal = result["kruskal"] or {"statistic": None, "p_value": None}
    return {**kruskal, "pairwise": result["pairwise"], "ranking": result["ranking"]}


def _group_stats(preds: dict, labels: dict, members: list, groups: dict, sets: list) -> dict:
    out = {}
    for name, idx in groups.items():
        per_set = {}
        for s in sets:
            result = mmkern.predictive_multiplicity(np.stack([preds[members[i]][s] for i in idx]), labels[s],
                                                    tol=CAPACITY_TOL)
            per_set[s] = {"mean_disagreement": result.mean_disagreement, "ambiguity": result.ambiguity,
                          "prediction_variance": result.prediction_variance,
                          "rashomon_capacity": result.rashomon_capacity, "accuracy_mean": result.accuracy_mean,
                          "accuracy_spread": result.accuracy_spread}
        ood = [v for s, v in per_set.items() if s != IID]
        per_set[OOD_MEAN] = {key: float(np.mean([v[key] for v in ood])) for key in per_set[IID]}
        out[name] = per_set
    return out


def _by_layer(layers: dict, pm: dict, groups: dict, factors: list, resamples: int) -> dict:
    """Claims (1) and (2) at every layer of the base architecture (the groups of its members)."""
    out = {}
    for layer, v in layers.items():
        local = {i: k for k, i in enumerate(v["members"])}
        sub = {f: [local[i] for i in idx] for f, idx in groups.items()
               if f != "architecture" and all(i in local for i in idx)}
        training = {f: idx for f, idx in sub.items() if f in factors}
        out[layer] = {
            "rm_by_factor": _by_factor(v["rm"], sub, resamples), "factor_test": _factor_test(v["rm"], training),
            "rm_pm_correlation": {s: association(v["rm"], pm["disagreement"][s][np.ix_(v["members"], v["members"])],
                                                 list(training.values()), n_resamples=resamples)
                                  for s in (IID, OOD_MEAN)}}
    return out


def _correlations(rm: dict, pm: dict, training: dict, m: int, resamples: int) -> dict:
    """Claim (2): RM vs PM over the pairs within the training groups, per test set; the
    robustness rows (every RM and PM metric); and over all pairs of trained members."""
    within = list(training.values())
    trained, _ = within_groups(within, m)
    return {
        "rm_pm_correlation": {s: association(rm["svcca"], pm["disagreement"][s], within, n_resamples=resamples)
                              for s in pm["disagreement"]},
        "robustness": {metric: {kind: {s: association(rm[metric], pm[kind][s], within, n_resamples=resamples)
                                       for s in (IID, OOD_MEAN)} for kind in pm} for metric in RM_METRICS},
        "all_pairs": {s: association(rm["svcca"], pm["disagreement"][s], [trained], n_resamples=resamples)
                      for s in (IID, OOD_MEAN)}}


def _finite_samples(rm: dict, pm: dict, training: dict, accuracy: np.ndarray, m: int, resamples: int, draws: int,
                    seed: int) -> dict:
    """Claim (3): :func:`finite_sample` over the training groups, and whether a pair's RM says more
    about its OOD PM than its i.i.d. PM does (partial correlation, partial Mantel test)."""
    iid, ood = pm["disagreement"][IID], pm["disagreement"][OOD_MEAN]
    finite = None
    if len(training) >= 3:
        finite = finite_sample({f: {"rm": rm["svcca"][np.ix_(idx, idx)], "pm_iid": iid[np.ix_(idx, idx)],
                                    "pm_ood": ood[np.ix_(idx, idx)], "ood_accuracy": accuracy[idx]}
                                for f, idx in training.items()}, draws=draws, seed=seed)
    trained, mask = within_groups(list(training.values()), m)
    rm_t, ood_t, iid_t = (mat[np.ix_(trained, trained)] for mat in (rm["svcca"], ood, iid))
    upper = np.triu_indices(len(trained), k=1)
    x, y, z = (pair_values(mat)[mask[upper]] for mat in (rm_t, ood_t, iid_t))
    partial = partial_correlation(x, y, z, n_resamples=resamples, seed=seed) if x.size >= 4 else None
    if partial is not None:
        partial["p_value"] = mantel(rm_t, ood_t, given=iid_t, pairs=mask, n_resamples=resamples, seed=seed)["p_value"]
    return {"finite_sample": finite, "rm_adds_to_pm": partial}


def analyse_zoo(zoo_dir: str, dataset, factors: list, controls: list, *, resamples: int, draws: int,
                seed: int = 0) -> tuple[dict[str, Any], str]:
    """Everything the study reports about one dataset's zoo.

    Parameters
    ----------
    zoo_dir : str
        The trained zoo, its outputs collected (the same i.i.d. test samples for every member).
    dataset : mmkern.data.Dataset
        Its dataset (the labels of the test sets).
    factors, controls : list of str
        The training factors (compared by claim (1), pooled by claims (2) and (3)) and the control
        groups (shown beside them).
    resamples : int
        Bootstrap resamples and permutations of every interval and test.
    draws : int
        Random draws of the finite-sample rank correlations.
    seed : int, default 0
        Seeds every resampling and the noise baseline.

    Returns
    -------
    summary : dict
        JSON-ready: ``members``, ``n_samples``, ``sets``, ``excluded``, ``dropped``, ``groups``,
        ``rm_by_factor`` (SVCCA), ``factor_test``, ``by_metric``, ``by_layer``, ``baselines``,
        ``rm_pm_correlation``, ``robustness``, ``all_pairs``, ``group_stats``, ``finite_sample``,
        ``rm_adds_to_pm``.
    pairs_csv : str
        The per-pair table.
    """
    from mmkern.train import list_members, load_zoo

    members = list_members(zoo_dir)
    acts, preds, configs = _load(zoo_dir, members)
    n = int(next(iter(acts["base"].values())).shape[0])
    limit = n // SAMPLES_PER_FEATURE
    if _representation(acts["base"]).shape[1] > limit:
        raise ValueError(f"{zoo_dir}: the base member's representation layer is wider than n / "
                         f"{SAMPLES_PER_FEATURE} = {limit} (n = {n} samples); collect more samples")
    # members not comparable on these samples are left out of every measurement, and listed
    dropped = [m for m in members if _representation(acts[m]).shape[1] > limit]
    members = [m for m in members if m not in dropped]
    zoo_groups = {g["factor"]: g["members"] for g in load_zoo(zoo_dir)["groups"]}
    index = {m: i for i, m in enumerate(members)}
    groups = {f: [index[m] for m in zoo_groups[f] if m in index] for f in [*factors, *controls] if f in zoo_groups}
    training = {f: groups[f] for f in factors if f in groups and len(groups[f]) >= 2}
    sets = list(evaluation_sets(dataset))
    labels = {name: split.y for name, split in evaluation_sets(dataset).items()}
    rm, layers, pm, excluded, representation = _matrices(acts, preds, configs, members, sets, limit)
    group_of = {}
    for name, idx in groups.items():
        for i, j in itertools.combinations(sorted(idx), 2):
            group_of.setdefault((i, j), name)
    by_metric = {metric: {"rm_by_factor": _by_factor(rm[metric], groups, resamples),
                          "factor_test": _factor_test(rm[metric], training)} for metric in RM_METRICS}
    ood_sets = [s for s in sets if s != IID]
    accuracy = np.array([[np.mean(preds[m][s].argmax(1) == labels[s]) for s in ood_sets] for m in members])
    summary = {
        "members": [{"id": m, "group": [f for f, idx in groups.items() if i in idx],
                     "test_accuracy": float(np.mean(preds[m][IID].argmax(1) == labels[IID])),
                     "ood_accuracy_mean": float(accuracy[i].mean()) if ood_sets else None,
                     "representation_layer": representation[m]} for i, m in enumerate(members)],
        "n_samples": n, "sets": sets, "excluded": excluded, "dropped": dropped,
        "groups": {f: [members[i] for i in idx] for f, idx in groups.items()},
        "rm_by_factor": by_metric["svcca"]["rm_by_factor"], "factor_test": by_metric["svcca"]["factor_test"],
        "by_metric": by_metric, "by_layer": _by_layer(layers, pm, groups, factors, resamples),
        "baselines": {"gaussian": _noise_baseline(n, {layer: a.shape[1] for layer, a in acts["base"].items()}, seed)},
        **_correlations(rm, pm, training, len(members), resamples),
        "group_stats": _group_stats(preds, labels, members, groups, sets),
        **_finite_samples(rm, pm, training, accuracy, len(members), resamples, draws, seed),
    }
    return summary, _pair_table(members, group_of, rm, layers, pm)
