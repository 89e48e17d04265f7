"""Heljakka, Trapp, Kannala, Solin, "Disentangling Model Multiplicity in Deep Learning" (arXiv
2206.08890), end to end.

The paper's claims, as this study tests them:

1. Differences in training methods systematically produce larger representational multiplicity
   (RM: 1 - SVCCA between two models' activations) than others.
2. RM correlates with predictive multiplicity (PM: how often two models' predictions differ) on
   the i.i.d. test set and on out-of-distribution test sets.
3. RM and PM measured on a *finite sample* of models are predictors of generalisation (here: of
   the PM and the spread of accuracy a factor produces on the OOD sets).
4. RM should be measured and exposed, not eliminated (a recommendation; not tested, but every RM
   figure is in ``results.json``).

``run_study(out_dir)`` (``mmkern reproduce heljakka2023``), per dataset:

1. **Zoo.** A base config and the factors of :data:`FACTORS` varied one at a time, each with
   :data:`MEMBERS` members (the base among them, so 10 pairs per factor), and two controls
   (:data:`CONTROLS`): ``retrained``, members that differ in nothing (the ``replicate`` index:
   the floor of RM), and ``untrained``, networks at initialisation (epochs = 0) of different
   seeds. 45 trained models and 5 untrained per dataset (``<dataset>/zoo/``).
2. **Outputs.** Activations of the first ``n_samples`` i.i.d. test samples at every measurable
   layer, convolutional features averaged over positions (so a layer's width is its number of
   channels), and probabilities on the i.i.d. and every OOD test set
   (:func:`mmkern.analysis.collect_outputs`).
3. **Measurements and statistics** (:mod:`mmkern.studies.heljakka2023_analysis`): the per-pair
   table ``<dataset>/pairs.csv``, RM by factor, the factor test, the RM-PM correlations, the
   finite-sample analysis, per-group PM; written to ``<dataset>/analysis.json``.
4. **Findings** judged by :data:`THRESHOLDS`, ``results.json``, ``report.md`` and ``figures/``
   (:mod:`mmkern.studies.heljakka2023_report`).

Decisions written down (the paper's full text was not at hand; these follow its claims and
google/svcca's conventions):

- SVCCA keeps the SVD directions explaining 99% of each layer's variance and averages the
  canonical correlations (:func:`mmkern.svcca`). CKA (linear) and PWCCA are robustness rows.
- RM is compared at each model's *representation layer* (the last before the logits), which
  every architecture has; per-layer curves use the base architecture's layers. A layer is
  compared on at least 5 samples per feature (:data:`~mmkern.studies.heljakka2023_analysis.SAMPLES_PER_FEATURE`).
- Baselines: RM of the untrained networks, and of pairs of independent Gaussian matrices with a
  layer's shape (10 pairs per layer), as google/svcca recommends.
- PM of a pair is its disagreement (hard) and its mean total-variation distance (soft), on every
  test set and averaged over the OOD sets (``ood_mean``).
- Pairs that share a model are not independent: intervals resample pairs (BCa), tests of
  correlation permute models. Claim (2) is judged by permuting all trained models together (a
  Mantel test on the pooled within-group pairs); permuting within each group only (a stratified
  test, which holds every group's mean RM and PM fixed and so tests the association within
  groups alone) is reported beside it. The first run of this study judged by the stratified test
  (an oversight: it does not test the pooled correlation), see ``docs/studies/heljakka2023``.
- Claims (2) and (3) pool the pairs within the training factor groups; the controls are shown
  beside them, not pooled. Claim (3) also asks whether RM adds to i.i.d. PM: the partial
  Spearman correlation of RM and OOD PM given i.i.d. PM, with a partial Mantel test.
- Training is bitwise deterministic on the CPU with one thread, so ``retrained`` members are
  identical and the floor is 0 here; on a GPU it measures the nondeterminism of its kernels.

Layout of ``out_dir``: ``<dataset>/zoo/`` (``zoo-quick/`` with ``--quick``), ``<dataset>/pairs.csv``,
``<dataset>/analysis.json``, ``results.json``, ``report.md``, ``figures/``. Rerunning resumes:
finished models, outputs and analyses are reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional, Sequence

from mmkern._io import atomic_write_text, finite_json
from mmkern._validate import check_bool
from mmkern.studies._common import run_in, say

__all__ = ["CONTROLS", "DATASETS", "FACTORS", "PAPER_SCALE", "THRESHOLDS", "run_study", "study_settings"]

#: The training factors, varied one at a time around the base config.
FACTORS = ("init_seed", "order_seed", "augmentation", "width", "lr", "optimizer", "batch_size",
           "label_smoothing", "weight_decay", "architecture")
#: The control groups: the base retrained, and networks at initialisation.
CONTROLS = ("retrained", "untrained")
#: Members per factor group, the base included.
MEMBERS = 5
#: Bootstrap resamples / permutations of every interval and test; random draws of claim (3).
RESAMPLES = 999
DRAWS = 500

#: How the findings are judged.
THRESHOLDS = {
    "alpha": 0.05,     # significance level of every test
    "rank_k": 3,       # claim (3): the sample size k at which the rank correlation is judged
    "rank_min": 0.5,   # claim (3): mean Spearman over draws at least this
}

_BASE = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "lr_schedule": "cosine",
         "label_smoothing": 0.0, "augmentation": "none", "init_seed": 0, "order_seed": 0, "aug_seed": 0}


def _architectures(base: tuple, *others: tuple) -> dict:
    """{label: {model, width[, model_options.depth]}}: the base architecture first."""
    out = {}
    for label, model, width, *depth in (base, *others):
        out[label] = {"model": model, "width": width, **({"model_options.depth": depth[0]} if depth else {})}
    return out


#: The embedded datasets: base config, the width and architecture values, the i.i.d. test samples
#: whose activations are compared (all of the test set here).
DATASETS: dict[str, dict] = {
    "mnist1d": {"base": {**_BASE, "dataset": "mnist1d", "dataset_options": {"num_samples": 8000},
                         "model": "vgg", "width": 0.5, "batch_size": 128, "epochs": 10},
                "width": [0.25, 0.5, 0.75, 1.0, 1.5], "n_samples": 1600,
                "architecture": _architectures(("vgg", "vgg", 0.5), ("cnn1d", "cnn1d", 1.0), ("mlp", "mlp", 1.0),
                                               ("mlp3", "mlp", 1.0, 3), ("resnet18", "resnet18", 0.25))},
    "digits": {"base": {**_BASE, "dataset": "digits", "dataset_options": {"test_fraction": 0.4},
                        "model": "cnn2d", "width": 0.5, "batch_size": 64, "epochs": 30},
               "width": [0.25, 0.375, 0.5, 0.75, 1.0], "n_samples": 719,
               "architecture": _architectures(("cnn2d", "cnn2d", 0.5), ("mlp", "mlp", 0.5), ("mlp3", "mlp", 0.5, 3),
                                              ("vgg", "vgg", 0.25), ("resnet18", "resnet18", 0.125))},
    "mnist5k": {"base": {**_BASE, "dataset": "mnist5k", "dataset_options": {}, "model": "vgg", "width": 0.25,
                         "batch_size": 128, "epochs": 5},
                "width": [0.125, 0.25, 0.375, 0.5, 0.75], "n_samples": 1000,
                "architecture": _architectures(("vgg", "vgg", 0.25), ("cnn2d", "cnn2d", 0.5), ("mlp", "mlp", 0.5),
                                               ("mlp3", "mlp", 0.5, 3), ("resnet18", "resnet18", 0.125))},
}

#: The paper's four datasets from local files (``--data-dir``), for a GPU: ResNet-18 on the colour
#: sets with shifts and flips, VGG on the digits, 5,000 test samples compared per layer.
_PAPER_ARCH = _architectures(("resnet18", "resnet18", 1.0), ("vgg13", "vgg13", 1.0), ("vgg", "vgg", 1.0),
                             ("cnn2d", "cnn2d", 1.0), ("mlp", "mlp", 1.0))
PAPER_SCALE: dict[str, dict] = {
    name: {"base": {**_BASE, "dataset": name, "dataset_options": {}, "model": model, "width": 1.0,
                    "batch_size": 128, "epochs": epochs, "weight_decay": 5e-4, "augmentation": augmentation},
           "width": [0.25, 0.5, 0.75, 1.0, 1.25], "n_samples": 5000,
           "augmentation_values": [augmentation, *others],
           "architecture": {model: _PAPER_ARCH[model], **{k: v for k, v in _PAPER_ARCH.items() if k != model}}}
    for name, model, epochs, augmentation, others in (
        ("mnist", "vgg", 20, "shift", ("none", "noise", "shift+noise", "shift:2")),
        ("fashion_mnist", "vgg", 30, "shift", ("none", "flip", "shift+flip", "shift+noise")),
        ("cifar10", "resnet18", 60, "shift+flip", ("none", "shift", "flip", "shift+flip+noise")),
        ("svhn", "resnet18", 30, "shift", ("none", "noise", "shift+noise", "shift:2")))
}

#: What ``quick`` changes: one dataset, three factors of 4 members, two retrained, fewer epochs,
#: fewer resamples.
QUICK = {"datasets": ("digits",), "factors": ("init_seed", "lr", "architecture"), "members": 4, "retrained": 2,
         "epochs": 15, "resamples": 199, "draws": 100}


def study_settings(quick: bool = False, datasets: Optional[Sequence[str]] = None) -> dict:
    """The settings of a run: datasets with their designs, factors, controls, resamples."""
    quick = check_bool(quick, "quick")
    chosen = list(datasets) if datasets else list(QUICK["datasets"] if quick else DATASETS)
    known = {**DATASETS, **PAPER_SCALE}
    for name in chosen:
        if name not in known:
            raise ValueError(f"dataset must be one of {', '.join(known)}, got {name!r}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"datasets given twice: {chosen}")
    per = {}
    for name in chosen:
        spec = json.loads(json.dumps(known[name]))
        if quick:
            spec["base"]["epochs"] = min(spec["base"]["epochs"], QUICK["epochs"])
        per[name] = spec
    return {"datasets": per, "factors": list(QUICK["factors"] if quick else FACTORS), "controls": list(CONTROLS),
            "members": QUICK["members"] if quick else MEMBERS, "retrained": QUICK["retrained"] if quick else MEMBERS,
            "untrained": QUICK["members"] if quick else MEMBERS,
            "resamples": QUICK["resamples"] if quick else RESAMPLES, "draws": QUICK["draws"] if quick else DRAWS,
            "thresholds": THRESHOLDS, "quick": quick}


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _factor(name: str, spec: dict, settings: dict) -> dict:
    """The recipe table of one factor (or control), the base value first or among the first."""
    base, k = spec["base"], settings["members"]
    if name in ("init_seed", "order_seed"):
        return {"field": name, "values": list(range(k))}
    if name == "augmentation":
        return {"field": name, "values": spec.get("augmentation_values",
                                                  ["none", "shift", "noise", "shift+noise", "noise:0.3"])[:k]}
    if name == "width":
        return {"field": name, "values": spec["width"][:k]}
    if name == "lr":
        return {"field": name, "values": [_round(base["lr"] * m) for m in (0.2, 0.5, 1.0, 2.0, 4.0)][:k]}
    if name == "batch_size":
        return {"field": name, "values": [max(2, int(base["batch_size"] * m)) for m in (0.25, 0.5, 1, 2, 4)][:k]}
    if name == "label_smoothing":
        return {"field": name, "values": [0.0, 0.05, 0.1, 0.2, 0.3][:k]}
    if name == "weight_decay":
        return {"field": name, "values": [base["weight_decay"], 1e-4, 1e-3, 5e-3, 1e-2][:k]}
    if name == "optimizer":
        values = [{"optimizer": base["optimizer"], "lr": base["lr"]},
                  {"optimizer": "sgd", "momentum": 0.0, "lr": _round(base["lr"] * 5)},
                  {"optimizer": "adam", "lr": 0.001}, {"optimizer": "adamw", "lr": 0.001, "weight_decay": 0.01},
                  {"optimizer": "adam", "lr": 0.003}]
        return {"name": name, "values": values[:k], "labels": ["sgd", "sgd-plain", "adam", "adamw", "adam-3e-3"][:k]}
    if name == "architecture":
        labels = list(spec["architecture"])[:k]
        return {"name": name, "values": [spec["architecture"][label] for label in labels], "labels": labels}
    if name == "retrained":
        return {"name": name, "values": [{"replicate": r} for r in range(settings["retrained"])],
                "labels": list(range(settings["retrained"]))}
    if name == "untrained":
        return {"name": name, "values": [{"epochs": 0, "init_seed": s} for s in range(settings["untrained"])],
                "labels": list(range(settings["untrained"]))}
    raise ValueError(f"unknown factor {name!r}")  # pragma: no cover - FACTORS and CONTROLS only


def recipe(name: str, spec: dict, settings: dict) -> dict:
    """The one-at-a-time recipe of a dataset: the factors, then the controls."""
    return {"name": f"heljakka2023-{name}" + ("-quick" if settings["quick"] else ""),
            "description": f"Heljakka et al. 2023 on {name}: {len(settings['factors'])} factors varied one at a "
                           "time, retrained and untrained controls",
            "design": "one-at-a-time", "base": spec["base"],
            "factors": [_factor(f, spec, settings) for f in (*settings["factors"], *settings["controls"])]}


def run_study(out_dir, *, quick: bool = False, datasets: Optional[Sequence[str]] = None, data_dir=None,
              device: Optional[str] = None, client=None, workers: Optional[int] = None,
              progress: bool = True) -> dict:
    """Run (or resume) the study into ``out_dir``; returns the results (``results.json``).

    Parameters
    ----------
    out_dir : str or os.PathLike
        The study directory (see the module docstring); created if missing.
    quick : bool, default False
        One dataset (digits), three factors of 4 members, fewer epochs and resamples.
    datasets : sequence of str, optional
        Names from :data:`DATASETS` (default: all) or :data:`PAPER_SCALE` (with ``data_dir``).
    data_dir : str or os.PathLike, optional
        Local dataset files (MNIST, Fashion-MNIST, CIFAR-10, SVHN).
    device : str, optional
        Torch device for training and outputs.
    client, workers
        Train the models and compute their outputs as tasks on a Dask cluster.
    progress : bool, default True

    Returns
    -------
    dict
        ``settings``, ``rm_by_factor``, ``factor_test``, ``rm_pm_correlation``, ``finite_sample``
        (each by dataset), ``datasets`` (every dataset's analysis), ``findings``, ``report``.
    """
    settings = study_settings(quick, datasets)
    return run_in(out_dir, lambda out, cluster: _run(out, settings, data_dir, device, cluster, progress),
                  client, workers)


def _say(progress: bool, message: str) -> None:
    say("heljakka2023", progress, message)


def _fingerprint(records: list, spec: dict, settings: dict) -> str:
    """What an analysis depends on: the design and statistics settings and every member's weights
    (the checkpoint SHA-256 of each record :func:`mmkern.train.train_zoo` returned)."""
    members = {r["id"]: r["checkpoint"]["sha256"] for r in records}
    keys = ("factors", "controls", "resamples", "draws")
    data = {"spec": spec, "settings": {k: settings[k] for k in keys}, "members": members, "analysis": 3}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _dataset(out_dir: str, name: str, spec: dict, settings: dict, data_dir, device, cluster: dict,
             progress: bool) -> dict:
    """Train, collect and analyse one dataset (each step resumed); its analysis."""
    from mmkern.analysis import collect_outputs, zoo_dataset
    from mmkern.studies.heljakka2023_analysis import analyse_zoo
    from mmkern.train import Recipe, train_zoo
    from mmkern.train.zoo import read_json

    root = os.path.join(out_dir, name)
    zoo_dir = os.path.join(root, "zoo-quick" if settings["quick"] else "zoo")
    design = Recipe.from_dict(recipe(name, spec, settings))
    untrained = sum(1 for m in design.members if m.config.epochs == 0)
    _say(progress, f"{name}: {len(design.members) - untrained} models to train and {untrained} untrained")
    records = train_zoo(design, zoo_dir, data_dir=data_dir, device=device, progress=progress, threads=1, **cluster)
    dataset = zoo_dataset(zoo_dir, data_dir)
    n_samples = min(spec["n_samples"], len(dataset.test))
    _say(progress, f"{name}: activations of {n_samples} test samples and predictions on {1 + len(dataset.ood)} sets")
    collect_outputs(zoo_dir, n_samples=n_samples, reduce="mean", data_dir=data_dir, device=device or "cpu",
                    progress=progress, dataset=dataset, client=cluster.get("client"))
    path, pairs_path = os.path.join(root, "analysis.json"), os.path.join(root, "pairs.csv")
    fingerprint = _fingerprint(records, spec, settings)
    if os.path.isfile(path):
        try:
            done = read_json(path)
        except ValueError:
            done = {}
        if done.get("fingerprint") == fingerprint and os.path.isfile(pairs_path):
            _say(progress, f"{name}: analysis up to date")
            return done["analysis"]
    _say(progress, f"{name}: measuring {len(design.members)} members and their pairs")
    summary, pairs = analyse_zoo(zoo_dir, dataset, settings["factors"], settings["controls"],
                                 resamples=settings["resamples"], draws=settings["draws"])
    summary = finite_json({"dataset": name, "zoo": os.path.relpath(zoo_dir, out_dir),
                           "pairs": os.path.relpath(pairs_path, out_dir),
                           "trained": len(design.members) - untrained, "untrained": untrained, **summary})
    atomic_write_text(pairs_path, pairs)
    atomic_write_text(path, json.dumps({"fingerprint": fingerprint, "analysis": summary}, indent=1,
                                       allow_nan=False) + "\n")
    return summary


def _run(out_dir: str, settings: dict, data_dir, device, cluster: dict, progress: bool) -> dict:
    from mmkern.studies.heljakka2023_report import write_report

    per = {name: _dataset(out_dir, name, spec, settings, data_dir, device, cluster, progress)
           for name, spec in settings["datasets"].items()}
    results: dict[str, Any] = {
        "study": "heljakka2023", "settings": settings,
        "rm_by_factor": {name: s["rm_by_factor"] for name, s in per.items()},
        "factor_test": {name: s["factor_test"] for name, s in per.items()},
        "rm_pm_correlation": {name: s["rm_pm_correlation"] for name, s in per.items()},
        "finite_sample": {name: s["finite_sample"] for name, s in per.items()},
        "datasets": per,
        "findings": [f for name, s in per.items() for f in findings(name, s, settings)] + consistency(per, settings),
    }
    results = finite_json(results)
    results["report"] = write_report(out_dir, results)
    atomic_write_text(os.path.join(out_dir, "results.json"),
                      json.dumps(results, indent=1, allow_nan=False) + "\n")
    return results


# ----------------------------------------------------------------------------- findings


def _significant(row: Optional[dict], alpha: float) -> bool:
    return bool(row) and row["spearman"] is not None and row["spearman"] > 0 and row["p_value"] is not None \
        and row["p_value"] < alpha


def findings(name: str, s: dict, settings: dict) -> list[dict]:
    """Claims (1) to (4) judged on one dataset's analysis by :data:`THRESHOLDS`."""
    t = settings["thresholds"]
    alpha = t["alpha"]
    out = []
    test = s["factor_test"]
    testable = test is not None and test["p_value"] is not None
    out.append({
        "dataset": name, "claim": "1", "testable": testable,
        "holds": testable and test["p_value"] < alpha,
        "statement": f"the training factors differ in the RM (1 - SVCCA) they produce: Kruskal-Wallis across "
                     f"factors, p < {alpha:g}",
        "evidence": {"statistic": test and test["statistic"], "p_value": test and test["p_value"],
                     "ranking": [[r["group"], r["median"]] for r in test["ranking"]] if test else [],
                     "significant_pairs": sum(r["p_adjusted"] < alpha for r in test["pairwise"]) if test else 0,
                     "pairs_compared": len(test["pairwise"]) if test else 0,
                     "controls": {c: s["rm_by_factor"].get(c, {}).get("mean") for c in settings["controls"]},
                     "by_metric": {m: (v["factor_test"] or {}).get("p_value") for m, v in s["by_metric"].items()}}})
    corr = s["rm_pm_correlation"]
    ood = [k for k in corr if k not in ("iid", "ood_mean")]
    out.append({
        "dataset": name, "claim": "2", "testable": corr.get("iid") is not None and corr.get("ood_mean") is not None,
        "holds": _significant(corr.get("iid"), alpha) and _significant(corr.get("ood_mean"), alpha),
        "statement": f"RM and PM (disagreement) are positively correlated over the pairs within the factor groups on "
                     f"the i.i.d. test set and on the mean over the OOD sets: Spearman > 0, p < {alpha:g} when the "
                     "trained models are permuted",
        "evidence": {"iid": corr.get("iid"), "ood_mean": corr.get("ood_mean"),
                     "ood_sets_significant": sum(_significant(corr[k], alpha) for k in ood), "ood_sets": len(ood)}})
    fs = s["finite_sample"]
    k = t["rank_k"]
    rho = None
    if fs is not None and k in fs["k"]:
        rho = fs["rank_correlation"]["pm_iid->pm_ood"]["mean"][fs["k"].index(k)]
    out.append({
        "dataset": name, "claim": "3", "testable": rho is not None,
        "holds": rho is not None and rho >= t["rank_min"],
        "statement": f"the i.i.d. PM of k = {k} models ranks the factor groups by the PM all their models show on the "
                     f"OOD sets: mean Spearman over random draws of the k models >= {t['rank_min']:g}",
        "evidence": None if fs is None or k not in fs["k"] else {
            f"{key}": {field: fs["rank_correlation"][key][field][fs["k"].index(k)] for field in ("mean", "low", "high")}
            for key in fs["rank_correlation"]} | {"n_groups": fs["n_groups"], "draws": fs["draws"]}})
    partial = s["rm_adds_to_pm"]
    out.append({
        "dataset": name, "claim": "3-rm", "testable": partial is not None and partial["r"] is not None,
        "holds": bool(partial) and partial["r"] is not None and partial["ci_low"] is not None
        and partial["ci_low"] > 0 and partial["p_value"] is not None and partial["p_value"] < alpha,
        "statement": f"RM adds to i.i.d. PM as a predictor of OOD PM: the partial Spearman correlation of a pair's RM "
                     f"and its mean OOD disagreement given its i.i.d. disagreement has a 95% interval above 0 and a "
                     f"partial Mantel p < {alpha:g}",
        "evidence": partial})
    out.append({"dataset": name, "claim": "4", "testable": False, "holds": False,
                "statement": "RM should be measured and exposed, not eliminated (a recommendation)",
                "evidence": "not a testable finding; RM is exposed per factor, layer and metric in results.json"})
    return out


def consistency(per: dict, settings: dict) -> list[dict]:
    """Claim (1) across datasets: do the datasets rank the factors alike? A Friedman test over the
    factors' mean RM, the datasets as blocks, with Kendall's W; needs 2 datasets and 3 factors."""
    from scipy import stats

    factors = [f for f in settings["factors"] if all(f in s["rm_by_factor"] for s in per.values())]
    if len(per) < 2 or len(factors) < 3:
        return []
    table = [[per[name]["rm_by_factor"][f]["mean"] for name in per] for f in factors]
    result = stats.friedmanchisquare(*table)
    w = float(result.statistic) / (len(per) * (len(factors) - 1))
    alpha = settings["thresholds"]["alpha"]
    return [{"dataset": "all", "claim": "1-consistency", "testable": True, "holds": bool(result.pvalue < alpha),
             "statement": f"the datasets rank the factors alike by RM: Friedman test over the {len(factors)} factors "
                          f"with the {len(per)} datasets as blocks, p < {alpha:g}",
             "evidence": {"statistic": float(result.statistic), "p_value": float(result.pvalue), "kendall_w": w,
                          "factors": factors}}]
