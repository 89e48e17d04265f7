"""The measurements of a zoo, per group of members that differ in one training factor.

For each factor group (:class:`mmkern.train.FactorGroup`; e.g. the models that differ only in
their initialisation seed), following Heljakka et al. (arXiv 2206.08890):

* **representational multiplicity (RM)**, per measured layer: the pairwise SVCCA matrix of the
  members' activations on the same i.i.d. test samples (:func:`mmkern.pairwise_svcca`), and
  ``rm = 1 - mean off-diagonal SVCCA``;
* **predictive multiplicity (PM)**, per evaluation set (i.i.d. and every OOD set): the pairwise
  disagreement matrix and the population figures of :func:`mmkern.predictive_multiplicity`
  (mean disagreement, ambiguity, prediction variance, Rashomon capacity, accuracies);
* **linear mode connectivity**, on the i.i.d. test set: the interpolation curve of every pair
  (:func:`mmkern.interpolation_curve`, BatchNorm re-estimated on training samples) and the
  four barrier matrices built from those curves.

Over the pairs within every group, the correlation of RM (1 - SVCCA of the pair at the
penultimate measured layer) with PM (the pair's disagreement) on each set says how the two kinds
of multiplicity move together (:func:`rm_vs_pm`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Iterator, Optional, Sequence, Union

import numpy as np

import mmkern
from mmkern.connectivity._results import BARRIER_FIELDS
from mmkern.analysis.outputs import IID, load_outputs

#: Samples of the i.i.d. test set used for the interpolation curves, and training samples used
#: to re-estimate BatchNorm statistics at every alpha.
BARRIER_SAMPLES = 2000
BN_SAMPLES = 2000


def _off_diagonal_mean(matrix: np.ndarray) -> float:
    m = matrix.shape[0]
    return float((matrix.sum() - np.trace(matrix)) / (m * (m - 1)))


@contextlib.contextmanager
def _about(what: str, members: Sequence[str], argument: str) -> Iterator[None]:
    """Errors of a metric over the members' arrays say which members and what they measure:
    ``acts[1]`` becomes ``member 'init_seed=1'``, prefixed by ``what``."""
    try:
        yield
    except ValueError as e:
        def member(match):
            i = int(match.group(1))
            return f"member {members[i]!r}" if i < len(members) else match.group(0)

        message = re.sub(re.escape(argument) + r"\[(\d+)\]", member, str(e))
        raise ValueError(f"{what} of members {', '.join(members)}: {message}") from None


def representational(acts: dict, members: Optional[Sequence[str]] = None) -> dict:
    """``{layer: {"svcca": (M, M) list, "mean_svcca": float, "rm": float}}``; ``members`` (the
    ids, for error messages) default to the indices."""
    out = {}
    for layer, arrays in acts.items():
        names = list(members) if members is not None else [str(i) for i in range(len(arrays))]
        with _about(f"SVCCA of layer {layer!r}", names, "acts"):
            matrix = mmkern.pairwise_svcca(arrays)
        mean = _off_diagonal_mean(matrix)
        out[layer] = {"svcca": matrix.tolist(), "mean_svcca": mean, "rm": 1.0 - mean}
    return out


def predictive(preds: dict, labels: dict, members: Optional[Sequence[str]] = None) -> dict:
    """``{set: population figures and the (M, M) disagreement matrix}``."""
    out = {}
    for name, probs in preds.items():
        names = list(members) if members is not None else [str(i) for i in range(len(probs))]
        with _about(f"predictive multiplicity on {name!r}", names, "probs"):
            pm = mmkern.predictive_multiplicity(probs, labels[name])
        out[name] = {
            "disagreement": np.asarray(pm.disagreement).tolist(),
            "mean_disagreement": pm.mean_disagreement,
            "ambiguity": pm.ambiguity,
            "prediction_variance": pm.prediction_variance,
            "rashomon_capacity": pm.rashomon_capacity,
            "accuracy": np.asarray(pm.accuracy).tolist(),
            "accuracy_mean": pm.accuracy_mean,
            "accuracy_spread": pm.accuracy_spread,
        }
    return out


def connectivity(models: list, data, bn_data, alphas: int, progress: bool = False,
                 align: Optional[str] = None, remote=None) -> dict:
    """Curves of every pair ``i < j`` and the four ``(M, M)`` barrier matrices built from them;
    with ``align`` ("weights" or "activations", :func:`mmkern.align`), also ``"aligned"``: the
    same after permuting ``models[j]`` to match ``models[i]`` (activation matching on
    ``bn_data``). With ``remote = (client, zoo_dir, member ids)``, every pair is a task on that
    Dask cluster, which loads the two members from the (shared) zoo directory."""
    m = len(models) if remote is None else len(remote[2])
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    if remote is None:
        curves = {pair: pair_curves(models[pair[0]], models[pair[1]], data, bn_data, alphas, align, progress)
                  for pair in pairs}
    else:
        from mmkern._dask import check_client
        from mmkern.train._cluster import run_tasks
        from mmkern.train._errors import MembersFailed

        client, zoo_dir, members = remote
        jobs = {pair: (zoo_dir, members[pair[0]], members[pair[1]], data, bn_data, alphas, align)
                for pair in pairs}
        curves, failures = run_tasks(check_client(client), _remote_pair_curves, jobs, "curves",
                                     scatter=(data, bn_data))
        if failures:
            raise MembersFailed("the interpolation curves", {f"{members[i]} - {members[j]}": e
                                                             for (i, j), e in failures.items()}, [])
    out = _matrices(m, {pair: c[0] for pair, c in curves.items()})
    if align is not None:
        out["aligned"] = {"method": align, **_matrices(m, {pair: c[1] for pair, c in curves.items()})}
    return out


def pair_curves(model_i, model_j, data, bn_data, alphas: int, align: Optional[str], progress: bool = False):
    """(raw curve, aligned curve or None) of one pair, as JSON-ready dicts."""
    out = []
    for partner in (model_j, None if align is None else
                    mmkern.align(model_i, model_j, align, bn_data if align == "activations" else None).model):
        if partner is None:
            out.append(None)
            continue
        curve = mmkern.interpolation_curve(model_i, partner, data, alphas, bn_data=bn_data, progress=progress)
        out.append({"alphas": curve.alphas.tolist(), "loss": curve.loss.tolist(),
                    "accuracy": curve.accuracy.tolist(),
                    **{f: getattr(curve, f) for f in BARRIER_FIELDS}})
    return tuple(out)


def _remote_pair_curves(zoo_dir, member_i: str, member_j: str, data, bn_data, alphas: int, align):
    """:func:`pair_curves` of two members, on a worker (one torch thread)."""
    from mmkern.train import load_member
    from mmkern.train._inputs import torch_threads

    with torch_threads(1):
        return pair_curves(load_member(zoo_dir, member_i)[0], load_member(zoo_dir, member_j)[0], data, bn_data,
                           alphas, align)


def _matrices(m: int, curves: dict) -> dict:
    """The four (M, M) barrier matrices, their off-diagonal means, and the curves."""
    matrices = {f: np.zeros((m, m)) for f in BARRIER_FIELDS}
    listed = []
    for (i, j), curve in sorted(curves.items()):
        listed.append({"pair": [i, j], "alphas": curve["alphas"], "loss": curve["loss"],
                       "accuracy": curve["accuracy"]})
        for f in BARRIER_FIELDS:
            matrices[f][i, j] = matrices[f][j, i] = curve[f]
    out = {f: matrices[f].tolist() for f in BARRIER_FIELDS}
    out.update({f"mean_{f}": _off_diagonal_mean(matrices[f]) for f in BARRIER_FIELDS})
    out["curves"] = listed
    return out


#: Resamples of the bootstrap intervals and permutations of the test in :func:`rm_vs_pm`.
RESAMPLES = 999


def rm_vs_pm(zoo_dir, groups: list, layer: str) -> dict:
    """RM against PM over the pairs of members within every group, per evaluation set.

    Parameters
    ----------
    zoo_dir : str or os.PathLike
        The zoo, its outputs collected.
    groups : list of dict
        Groups of :func:`analyze_groups` (their ``members``).
    layer : str
        The layer whose RM is compared (:func:`rm_layer`).

    Returns
    -------
    dict
        ``{set: None or {"spearman", "ci_low", "ci_high", "pearson", "p_value", "p_within",
        "n_pairs", "n_groups", "n_models"}}`` (:func:`mmkern.analysis.pair_stats.association`): the
        Spearman correlation of the pairs' RM (1 - SVCCA) and PM (disagreement) with its BCa
        bootstrap interval over pairs, Pearson's r, and the p-values of the Spearman correlation
        when the members of the groups are permuted all together (``p_value``) and within each
        group (``p_within``); None with fewer than 3 pairs or a constant metric. Intervals and
        p-values use :data:`RESAMPLES` draws, seeded.
    """
    from mmkern.analysis.pair_stats import association

    members = list(dict.fromkeys(m for g in groups for m in g["members"]))
    acts, preds = load_outputs(zoo_dir, members)
    with _about(f"SVCCA of layer {layer!r}", members, "acts"):
        rm = 1.0 - mmkern.pairwise_svcca(acts[layer])
    within = [[members.index(m) for m in g["members"]] for g in groups]
    return {name: association(rm, mmkern.disagreement_matrix(probs), within, n_resamples=RESAMPLES)
            for name, probs in preds.items()}


def rm_layer(layers: Sequence[str]) -> str:
    """The layer whose RM is compared with PM: the last before the logits (or the only one)."""
    layers = list(layers)
    return layers[-2] if len(layers) > 1 else layers[0]


def analyze_groups(
    zoo_dir: Union[str, os.PathLike],
    dataset,
    *,
    alphas: int = 11,
    barriers: bool = True,
    barrier_samples: int = BARRIER_SAMPLES,
    bn_samples: int = BN_SAMPLES,
    device: str = "cpu",
    progress: bool = True,
    align: Optional[str] = None,
    plane: int = 0,
    client=None,
) -> dict:
    """RM, PM and connectivity of every factor group of a zoo whose outputs were collected.

    Parameters
    ----------
    zoo_dir : str or os.PathLike
        A zoo directory after :func:`mmkern.analysis.collect_outputs`.
    dataset : mmkern.data.Dataset
        The zoo's dataset (:func:`mmkern.analysis.zoo_dataset`).
    alphas : int, default 11
        Points of each interpolation curve.
    barriers : bool, default True
        Compute the interpolation curves and barriers (the slowest part).
    barrier_samples, bn_samples : int
        First i.i.d. test samples of the curves; first training samples of the BatchNorm
        re-estimation.
    device : str, default "cpu"
    progress : bool, default True
    align : {None, "weights", "activations"}, default None
        Also the barriers and curves after permutation alignment (``connectivity["aligned"]``).
    plane : int, default 0
        With ``plane = n >= 2``, also the ``n x n`` loss plane through the first three members of
        every group of at least three (``"plane"``: :func:`mmkern.loss_plane` on the i.i.d. test
        samples, BatchNorm re-estimated on the training samples).
    client : distributed.Client, optional
        Compute the interpolation curves of every pair as tasks on this Dask cluster.

    Returns
    -------
    dict
        ``{"groups": [...], "rm_layer": str, "rm_vs_pm": {set: ...}}`` (:func:`rm_vs_pm`); each group
        holds ``name``, ``factor``, ``members``, ``representational``, ``predictive`` and
        (with ``barriers``) ``connectivity``. Groups with fewer than two finished members are
        listed under ``"skipped"``.
    """
    import torch
    from tqdm.auto import tqdm

    from mmkern.analysis.outputs import evaluation_sets
    from mmkern.train import list_members, load_member, load_record, load_zoo

    finished = set(list_members(zoo_dir))
    labels = {name: split.y for name, split in evaluation_sets(dataset).items()}
    test = (torch.from_numpy(dataset.test.x[:barrier_samples]),
            torch.from_numpy(dataset.test.y[:barrier_samples]))
    bn_data = (torch.from_numpy(dataset.train.x[:bn_samples]),
               torch.from_numpy(dataset.train.y[:bn_samples]))
    groups, skipped = [], []
    zoo_groups = load_zoo(zoo_dir)["groups"]
    for group in tqdm(zoo_groups, desc="analysis", unit="group", disable=None if progress else True):
        members = [m for m in group["members"] if m in finished]
        if len(members) < 2:
            skipped.append({"name": group["name"], "finished_members": members})
            continue
        acts, preds = load_outputs(zoo_dir, members)
        result = {"name": group["name"], "factor": group["factor"], "members": members,
                  "fixed": group.get("fixed", {}),
                  "representational": representational(acts, members),
                  "predictive": predictive(preds, labels, members)}
        # weights are interpolated only between models of one shape (a width factor's are not)
        shapes = {json.dumps([c["model"], c["width"], c["model_options"]], sort_keys=True)
                  for c in (load_record(zoo_dir, m)["config"] for m in members)}
        if len(shapes) > 1 and (barriers or plane):
            result["connectivity_skipped"] = "the members differ in architecture or width: no weights to interpolate"
        same_shape = len(shapes) == 1
        if same_shape and ((barriers and client is None) or (plane and len(members) >= 3)):
            models = [load_member(zoo_dir, m, device=device)[0] for m in members]
        if barriers and same_shape:
            result["connectivity"] = connectivity(None if client is not None else models, test, bn_data, alphas,
                                                  align=align,
                                                  remote=None if client is None else (client, zoo_dir, members))
        if plane and same_shape and len(members) >= 3:
            from mmkern.analysis.figures import as_plane

            result["plane"] = {"members": members[:3],
                               **as_plane(mmkern.loss_plane(models[:3], test, plane, bn_data=bn_data))}
        groups.append(result)
    out = {"groups": groups, "skipped": skipped}
    if groups:
        layer = rm_layer(groups[0]["representational"])
        out["rm_layer"] = layer
        out["rm_vs_pm"] = rm_vs_pm(zoo_dir, groups, layer)
    return out


__all__ = ["IID", "analyze_groups", "connectivity", "predictive", "representational", "rm_layer", "rm_vs_pm"]
