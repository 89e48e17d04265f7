"""Analysis of a trained zoo: representational and predictive multiplicity, barriers, a report.

:func:`analyze_zoo` is what ``mmkern analyze DIR`` runs. On a zoo directory written by
:func:`mmkern.train.train_zoo` it

1. captures each finished member's activations and predictions (:func:`collect_outputs`,
   resumable; ``mmkern activations DIR`` runs this step alone);
2. measures every factor group (:mod:`mmkern.analysis.metrics`): pairwise SVCCA per layer (RM),
   disagreement and the other predictive-multiplicity figures on the i.i.d. and every OOD test
   set (PM), interpolation curves and barrier matrices;
3. writes ``DIR/analysis/results.json``, PNG figures in ``DIR/analysis/figures/`` (heatmaps of
   the matrices, RM vs PM, PM per test set, interpolation curves) and ``DIR/analysis/report.md``
   embedding them. All files are written atomically.

Needs the ``[train]`` extra (torch, matplotlib, tqdm).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from typing import Optional, Sequence, Union

from mmkern._dask import cluster_options
from mmkern._io import atomic_write_text, finite_json, remove_stale_temporaries
from mmkern._version import __version__
from mmkern.analysis.outputs import N_SAMPLES, collect_outputs, zoo_dataset

__all__ = ["ANALYSIS_DIR", "N_SAMPLES", "analyze_zoo", "collect_outputs", "zoo_dataset"]

ANALYSIS_DIR = "analysis"


def _member_summaries(zoo_dir, members: Sequence[str]) -> list[dict]:
    from mmkern.train import load_record

    out = []
    for member_id in members:
        record = load_record(zoo_dir, member_id)
        metrics = record.get("metrics", {})
        test = metrics.get("test", {}).get("accuracy")
        ood = [v.get("accuracy") for k, v in metrics.get("ood", {}).items()
               if isinstance(v, dict) and v.get("accuracy") is not None]
        out.append({"id": member_id, "varies": record.get("varies", {}),
                    "test_accuracy": test,
                    "ood_accuracy_mean": sum(ood) / len(ood) if ood else None})
    return out


#: Counterfactual sets of a spurious-cue dataset, shown for fine-tuned models.
_CUE_SETS = ("cue-none", "cue", "cue-random", "image-random")


def _finetune_summaries(zoo_dir) -> dict:
    """Per method, per fine-tuned member: accuracies before and after, and the barriers."""
    from mmkern.train.zoo_finetune import load_finetuned

    summaries = {}
    for method, records in load_finetuned(zoo_dir).items():
        summaries[method] = [{
            "member": r["member"],
            "n_clean": r["finetune"]["n"],
            "accuracy": {name: {when: r["metrics"][when][name]["accuracy"]
                                for when in ("original", "tuned")}
                         for name in ("test", *_CUE_SETS) if name in r["metrics"]["tuned"]},
            "loss_barrier": {name: c["loss_barrier"] for name, c in r["barriers"].items()},
        } for r in records]
    return summaries


def analyze_zoo(
    zoo_dir: Union[str, os.PathLike],
    *,
    alphas: int = 11,
    barriers: bool = True,
    n_samples: int = N_SAMPLES,
    reduce: str = "mean",
    layers: Optional[Sequence[str]] = None,
    data_dir=None,
    device: str = "cpu",
    progress: bool = True,
    align: Optional[str] = None,
    plane: int = 0,
    client=None,
    workers: Optional[int] = None,
) -> str:
    """Measure a trained zoo and write ``results.json``, figures and ``report.md``.

    Parameters
    ----------
    zoo_dir : str or os.PathLike
        A zoo directory (``mmkern train``); members still training are left out.
    alphas : int, default 11
        Points of each interpolation curve (evenly spaced from 0 to 1).
    barriers : bool, default True
        Compute interpolation curves and barriers.
    n_samples : int, default :data:`N_SAMPLES`
        i.i.d. test samples whose activations are compared.
    reduce : {"mean", "flatten"}, default "mean"
        Convolutional activations averaged over positions or flattened.
    layers : sequence of str, optional
        Layers to measure (default: every measurable layer).
    data_dir : str, optional
        For zoos trained on local data files.
    device : str, default "cpu"
    progress : bool, default True
    align : {None, "weights", "activations"}, default None
        Also the barrier matrices and curves after permutation alignment of every pair
        (:func:`mmkern.align`), beside the raw ones.
    plane : int, default 0
        ``n >= 2``: also an ``n x n`` loss plane through the first three members of every
        factor group of at least three, and its figure.
    client, workers
        Compute the members' outputs and the pairs' interpolation curves as tasks on a Dask
        cluster (an existing client, or a ``LocalCluster`` of ``workers`` processes); the zoo
        directory must be shared with the workers.

    Returns
    -------
    str
        Path of the written ``report.md``.
    """
    from mmkern._validate import check_choice, check_int
    from mmkern.train.zoo import zoo_lock

    if align is not None:
        check_choice(align, "align", ("weights", "activations"))
        if not barriers:
            raise ValueError("align compares barriers: it needs barriers=True (no --no-barriers)")
    if plane != 0:
        check_int(plane, "plane", low=2)
    cluster = cluster_options(client, workers)
    with zoo_lock(zoo_dir):
        return _analyze(zoo_dir, alphas, barriers, n_samples, reduce, layers, data_dir, device, progress,
                        align, plane, cluster)


def _analyze(zoo_dir, alphas, barriers, n_samples, reduce, layers, data_dir, device, progress,
             align, plane, cluster=None) -> str:
    from mmkern.analysis import figures as fig
    from mmkern.analysis.metrics import analyze_groups
    from mmkern.analysis.report import render
    from mmkern.train import list_members, load_zoo

    zoo = load_zoo(zoo_dir)
    dataset = zoo_dataset(zoo_dir, data_dir)
    with contextlib.ExitStack() as stack:
        client = None
        if cluster is not None:  # one cluster for the outputs and the curves
            from mmkern.train._cluster import check_shared, cluster_client

            client = stack.enter_context(cluster_client(cluster["client"], cluster["workers"]))
            check_shared(client, os.fspath(zoo_dir))
        collect_outputs(zoo_dir, layers=layers, reduce=reduce, n_samples=n_samples, data_dir=data_dir,
                        device=device, progress=progress, dataset=dataset, client=client)
        results = analyze_groups(zoo_dir, dataset, alphas=alphas, barriers=barriers, device=device,
                                 progress=progress, align=align, plane=plane, client=client)
    recipe = zoo["recipe"]
    results = {
        "format": "mmkern-analysis/1",
        "mmkern_version": __version__,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "zoo": {"dir": os.path.abspath(os.fspath(zoo_dir)), "recipe": recipe.get("name"),
                "description": recipe.get("description", ""), "dataset": dataset.name,
                "n_samples": int(min(n_samples, len(dataset.test))), "reduce": reduce,
                "alphas": alphas if barriers else None},
        "members": _member_summaries(zoo_dir, list_members(zoo_dir)),
        **results,
    }
    finetuned = _finetune_summaries(zoo_dir)
    if finetuned:
        results["finetune"] = finetuned
    out_dir = os.path.join(os.fspath(zoo_dir), ANALYSIS_DIR)
    figure_dir = os.path.join(out_dir, "figures")
    os.makedirs(figure_dir, exist_ok=True)
    remove_stale_temporaries(out_dir)
    remove_stale_temporaries(figure_dir)
    atomic_write_text(os.path.join(out_dir, "results.json"),
                      json.dumps(finite_json(results), indent=1, allow_nan=False))
    figures = {}
    if results["groups"]:
        figures["rm_vs_pm"] = "figures/" + fig.rm_vs_pm(results, figure_dir)
        figures["pm_by_set"] = "figures/" + fig.pm_by_set(results, figure_dir)
        for group in results["groups"]:
            figures[("matrices", group["name"])] = "figures/" + fig.group_matrices(group,
                                                                                 figure_dir)
            if "connectivity" in group:
                figures[("curves", group["name"])] = "figures/" + fig.group_curves(group,
                                                                                 figure_dir)
            if "plane" in group:
                figures[("plane", group["name"])] = "figures/" + fig.loss_plane(
                    group["plane"], f"{group['name']}: loss plane through {', '.join(group['plane']['members'])}",
                    os.path.join(figure_dir, f"plane_{fig.slug(group['name'])}.png"))
    report = os.path.join(out_dir, "report.md")
    atomic_write_text(report, render(results, figures))
    return report
