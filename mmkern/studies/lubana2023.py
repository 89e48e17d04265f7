"""Lubana, Bigelow, Dick, Krueger, Tanaka, "Mechanistic Mode Connectivity" (ICML 2023), end to end.

``run_study(out_dir)`` (``mmkern reproduce lubana2023``) runs, per dataset:

1. **Models.** Cue models on the spurious-cue variant at each cue proportion p
   (:data:`P_VALUES`) x seeds (a grid zoo, ``<dataset>/cue/``), and clean models on the clean
   dataset (``<dataset>/clean/``).
2. **Fine-tuning.** Every cue model fine-tuned on ``clean_samples`` clean training images by the
   methods of Table 1 (:data:`METHODS`: FTM, FTS, LLR, LPFT, CBFT, the paper's settings of
   :data:`mmkern.train.finetune.PRESETS`, with the dataset's deviations, e.g.
   :data:`EMBEDDED_OVERRIDES`), and naively at the learning rates of the Figure-5 sweep
   (:data:`SWEEP`). Each fine-tuned model is evaluated on the four counterfactual sets (NC: no
   cue, C: the cue, RC: a random cue, RI: a random image carrying the label's cue) and its
   linear path to the original on every set.
3. **Cue vs clean.** For each p, the cue model of the first seed and the clean model of the
   second (independently initialised models, as the paper's weight matching presumes): the linear
   path raw, after weight matching, and along a quadratic Bezier path fit on the cue model's
   training data (Figure 4), evaluated on that fitting data, the cued test set and the
   counterfactual sets.
4. **Results.** Table 1 (per method and p, mean and std over seeds of NC / C / RC / RI accuracy),
   the barriers, the sweep, and ``findings``: the paper's claims evaluated with the thresholds of
   :data:`THRESHOLDS`, each with its numbers and a boolean; a claim that does not hold is reported
   as not holding.

Decisions written down (the paper's setting is CIFAR-10 with VGG-13 / ResNet-18 on a GPU):

- The embedded datasets (:data:`DATASETS`) are small and their digits easy: a cue is only relied
  on when it is (nearly) perfectly predictive, unlike CIFAR-10 where p = 0.6 suffices. Claims
  about cue-reliant models are therefore evaluated at the p whose original models rely on the cue
  (mean RI accuracy >= ``THRESHOLDS["cue_reliant_ri"]`` x chance), and reported as untestable
  where none does.
- The fine-tuning set is ``clean_samples`` clean training images drawn without replacement (the
  paper: 2,500 CIFAR-10 images with replacement).
- Every fine-tuning run takes the paper's settings (its code's defaults: SGD with momentum 0.9,
  weight decay 1e-4, a cosine schedule over 20 epochs, learning rate 0.01 for FTM, LPFT and
  CBFT, 0.001 for FTS; LLR 200 epochs at 30). On the embedded datasets
  (:data:`EMBEDDED_OVERRIDES`) the batches are of 64, not 256: 500 images then make 8 steps an
  epoch, 160 in all, near the paper's 200 (2,500 images in batches of 256); and LLR's learning
  rate is 0.1, not 30, which overshoots on these models' features (benchmarks/NOTES.md); LPFT's
  probe likewise.
- Barriers are loss barriers (nats) along 7 points (alpha = 0, 1/6, ..., 1) with BatchNorm
  statistics re-estimated on 1024 of the cue model's training images
  (:data:`mmkern.train.zoo_finetune.BN_SAMPLES`), evaluated on at most 500 samples of each set
  (a fixed random subset, :data:`mmkern.train.zoo_finetune.PATH_SAMPLES`; mnist5k's sets hold
  1,000, its fitting data 4,000; Table 1's accuracies are on the whole sets).

Layout of ``out_dir``: ``<dataset>/cue/`` and ``<dataset>/clean/`` (zoos; fine-tuned models in
``<dataset>/cue/finetune/<method>/``), ``<dataset>/connectivity/p=<p>.json`` (and
``clean-vs-clean.json``),
``<dataset>/results.json``, ``results.json`` (all datasets, settings, findings), ``report.md`` and
``figures/``. Rerunning resumes: nothing finished is trained or computed again.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Optional, Sequence

import numpy as np

from mmkern._io import atomic_write_text, finite_json
from mmkern._validate import check_bool
from mmkern.studies._common import run_in, say

__all__ = ["DATASETS", "METHODS", "P_VALUES", "THRESHOLDS", "run_study", "study_settings"]

#: Cue proportions of the cue models (the paper's 0.6 .. 0.9, plus a perfectly predictive cue).
P_VALUES = (0.6, 0.7, 0.8, 0.9, 1.0)
SEEDS = (0, 1, 2)

#: Table 1's methods: names of :data:`mmkern.train.finetune.PRESETS`.
METHODS = ("ftm", "fts", "llr", "lpft", "cbft")
#: Deviations from the presets on the embedded datasets, for every run (``"*"``) and by preset
#: (see the module docstring).
EMBEDDED_OVERRIDES = {"*": {"batch_size": 64}, "llr": {"lr": 0.1}, "lpft": {"probe_lr": 0.1}}
#: Figure 5: naive fine-tuning at these learning rates (FTS, FTM and FTL are 0.001, 0.01, 0.1).
SWEEP = (0.001, 0.01, 0.1, 0.3)

#: The embedded datasets and their models (a small VGG-style CNN with BatchNorm).
DATASETS: dict[str, dict] = {
    "digits": {"model": "vgg", "width": 0.5, "epochs": 30, "lr": 0.05, "batch_size": 64,
               "cue_options": {}, "clean_samples": 500, "overrides": EMBEDDED_OVERRIDES},
    "mnist5k": {"model": "vgg", "width": 0.25, "epochs": 6, "lr": 0.05, "batch_size": 64,
                "cue_options": {"cue_size": 6}, "clean_samples": 500, "overrides": EMBEDDED_OVERRIDES},
}
#: The paper-scale preset (local CIFAR-10 files, ``--data-dir``; a GPU run): the paper's VGG-13
#: with BatchNorm (``"vgg13"``; its CIFAR ResNet-18 is ``"resnet18"``), SGD with momentum, weight
#: decay 5e-4, random shifts and flips.
PAPER_SCALE: dict[str, dict] = {
    "cifar10": {"model": "vgg13", "width": 1.0, "epochs": 100, "lr": 0.05, "batch_size": 128,
                "weight_decay": 5e-4, "augmentation": "shift+flip", "cue_options": {},
                "clean_samples": 2500, "overrides": {}},
}

#: The thresholds the findings are judged by (RI thresholds as multiples of chance, 1 / classes;
#: barriers in nats of cross-entropy). A model that reads only the image scores RI ~ 0 (the image
#: shows another class), one that guesses scores chance, one that reads only the cue ~ 1.
THRESHOLDS = {
    "cue_reliant_ri": 3.0,     # an original model relies on the cue: RI accuracy >= 3 x chance
    "keeps_cue_ri": 3.0,       # (a) FTS keeps the cue: RI >= 3 x chance ("well above chance")
    "connected_barrier": 0.1,  # a path is connected: loss barrier <= 0.1
    "removes_cue_ri": 2.0,     # (b) CBFT removes the cue: RI <= 2 x chance ("near or below")
    "barrier": 0.5,            # a path is not connected: loss barrier >= 0.5 ("clearly above 0")
    "nc_margin": 0.05,         # (b) CBFT's NC accuracy at most 5 points below FTS's
}

#: What ``quick`` changes: one dataset, one p, two seeds, fewer epochs.
QUICK = {"datasets": ("digits",), "p_values": (1.0,), "seeds": (0, 1), "epochs": 12, "finetune_epochs": 10,
         "sweep": (0.001, 0.1), "curve_epochs": 3}

COUNTERFACTUAL = {"NC": "cue-none", "C": "cue", "RC": "cue-random", "RI": "image-random"}
#: The control pair of the cue-vs-clean paths: two clean models (its file ``connectivity/<CONTROL>.json``).
CONTROL = "clean-vs-clean"
#: The paths of a pair record.
_KINDS = ("raw", "aligned", "quadratic")


def study_settings(quick: bool = False, datasets: Optional[Sequence[str]] = None) -> dict:
    """The settings of a run: datasets with their model settings, p values, seeds, methods."""
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
        spec = dict(known[name])
        if quick:
            spec["epochs"] = min(spec["epochs"], QUICK["epochs"])
        per[name] = spec
    return {"datasets": per, "p_values": list(QUICK["p_values"] if quick else P_VALUES),
            "seeds": list(QUICK["seeds"] if quick else SEEDS), "methods": list(METHODS),
            "sweep": list(QUICK["sweep"] if quick else SWEEP),
            "finetune_epochs": QUICK["finetune_epochs"] if quick else None,
            "curve_epochs": QUICK["curve_epochs"] if quick else 10, "alphas": 7,
            "thresholds": THRESHOLDS, "quick": quick}


def _recipes(name: str, spec: dict, settings: dict) -> tuple[dict, dict]:
    """The cue zoo's grid recipe (p x seed) and the clean zoo's recipe (seed)."""
    base = {"dataset": name, "model": spec["model"], "width": spec["width"], "epochs": spec["epochs"],
            "lr": spec["lr"], "batch_size": spec["batch_size"], "momentum": 0.9, "lr_schedule": "cosine",
            "weight_decay": spec.get("weight_decay", 5e-4 if name in PAPER_SCALE else 0.0),
            "augmentation": spec.get("augmentation", "none"), "dataset_options": {"ood": []}}
    cue = {"name": f"lubana2023-{name}-cue", "design": "grid",
           "description": f"cue models on {name}: cue proportion x seed",
           "base": {**base, "dataset_options": {"ood": [], "spurious": settings["p_values"][0],
                                                **spec["cue_options"]}},
           "factors": [{"field": "dataset_options.spurious", "values": settings["p_values"]},
                       {"field": "init_seed", "values": settings["seeds"]}]}
    clean = {"name": f"lubana2023-{name}-clean", "description": f"clean models on {name}",
             "base": base, "factors": [{"field": "init_seed", "values": settings["seeds"]}]}
    return cue, clean


def _finetune_runs(settings: dict, spec: dict) -> dict[str, tuple[str, dict]]:
    """{directory name: (method, settings)} of every fine-tuning run of a dataset: the preset's
    settings (:data:`mmkern.train.finetune.PRESETS`; a sweep rate other than FTS / FTM / FTL's
    takes FTM's), then the dataset's deviations (``spec["overrides"]``: ``"*"`` for every run,
    else by preset), then ``--quick``'s epochs."""
    from mmkern.train.finetune import PRESETS

    named = {0.001: "fts", 0.01: "ftm", 0.1: "ftl"}
    plan = {method: (method, {}) for method in settings["methods"]}
    for lr in settings["sweep"]:
        plan.setdefault(named.get(lr, f"naive-lr={lr:g}"), (named.get(lr, "ftm"), {"lr": lr}))
    runs = {}
    for name, (preset, extra) in plan.items():
        values = {k: v for k, v in PRESETS[preset].items() if k != "method"}
        for change in (spec["overrides"].get("*", {}), spec["overrides"].get(preset, {}), extra):
            values.update(change)
        if settings["finetune_epochs"] is not None:
            values["epochs"] = settings["finetune_epochs"]
        runs[name] = (PRESETS[preset]["method"], values)
    return runs


def run_study(out_dir, *, quick: bool = False, datasets: Optional[Sequence[str]] = None, data_dir=None,
              device: Optional[str] = None, client=None, workers: Optional[int] = None,
              progress: bool = True) -> dict:
    """Run (or resume) the study into ``out_dir``; returns the results (``results.json``).

    Parameters
    ----------
    out_dir : str or os.PathLike
        The study directory (see the module docstring); created if missing.
    quick : bool, default False
        One dataset, one cue proportion (1.0), two seeds, fewer epochs: minutes on a laptop.
    datasets : sequence of str, optional
        Names from :data:`DATASETS` (default: all) or ``"cifar10"`` (with ``data_dir``).
    data_dir : str or os.PathLike, optional
        Local dataset files (CIFAR-10).
    device : str, optional
        Torch device for training and evaluation.
    client, workers
        Train and fine-tune the models as tasks on a Dask cluster (as
        :func:`mmkern.train.train_zoo`).
    progress : bool, default True
        A line per stage and per model.

    Returns
    -------
    dict
        ``settings``, ``datasets`` (per dataset: ``table``, ``barriers``, ``sweep``,
        ``connectivity``, ``findings``) and ``findings`` (all datasets').
    """
    settings = study_settings(quick, datasets)
    return run_in(out_dir, lambda out, cluster: _run(out, settings, data_dir, device, cluster, progress),
                  client, workers)


def _say(progress: bool, message: str) -> None:
    say("lubana2023", progress, message)


def _run(out_dir: str, settings: dict, data_dir, device, cluster: dict, progress: bool) -> dict:
    from mmkern.studies.lubana2023_report import write_report
    from mmkern.train import finetune_zoo, train_zoo

    results = {"study": "lubana2023", "settings": settings, "datasets": {}, "findings": []}
    for name, spec in settings["datasets"].items():
        root = os.path.join(out_dir, name)
        cue_recipe, clean_recipe = _recipes(name, spec, settings)
        _say(progress, f"{name}: training {len(settings['p_values']) * len(settings['seeds'])} cue models")
        cue_records = train_zoo(cue_recipe, os.path.join(root, "cue"), data_dir=data_dir, device=device,
                                progress=progress, threads=1, **cluster)
        _say(progress, f"{name}: training {len(settings['seeds'])} clean models")
        clean_records = train_zoo(clean_recipe, os.path.join(root, "clean"), data_dir=data_dir, device=device,
                                  progress=progress, threads=1, **cluster)
        tuned = {}
        for run_name, (method, values) in _finetune_runs(settings, spec).items():
            _say(progress, f"{name}: fine-tuning by {run_name}")
            tuned[run_name] = finetune_zoo(os.path.join(root, "cue"), method, name=run_name,
                                           clean_samples=spec["clean_samples"], alphas=settings["alphas"],
                                           data_dir=data_dir, threads=1, progress=progress, **values, **cluster)
        _say(progress, f"{name}: cue vs clean models (linear, aligned, quadratic paths)")
        pairs, control = _cue_vs_clean(root, cue_records, clean_records, settings, data_dir, cluster, progress)
        summary = summarise(name, cue_records, tuned, pairs, control, settings)
        atomic_write_text(os.path.join(root, "results.json"),
                          json.dumps(finite_json(summary), indent=2, allow_nan=False) + "\n")
        results["datasets"][name] = summary
        results["findings"] += [{"dataset": name, **f} for f in summary["findings"]]
    results["report"] = write_report(out_dir, results)
    atomic_write_text(os.path.join(out_dir, "results.json"),
                      json.dumps(finite_json(results), indent=2, allow_nan=False) + "\n")
    return results


# ----------------------------------------------------------------------------- cue vs clean


def _member(records: list, p: Optional[float], seed: int) -> dict:
    for r in records:
        c = r["config"]
        if c["init_seed"] == seed and (p is None or c["dataset_options"].get("spurious") == p):
            return r
    raise ValueError(f"no member with p={p}, seed={seed}")  # pragma: no cover - the recipes make them


def _cue_vs_clean(root: str, cue_records: list, clean_records: list, settings: dict, data_dir, cluster: dict,
                  progress: bool) -> tuple[dict, dict]:
    """``({p: pair record}, control)``: the paths from the first seed's cue model at each p to
    the second seed's clean model, and, as the control, from the first seed's clean model to the
    same clean model. Two initialisations, because models from one initialisation are often
    linearly connected whatever they learn (weight matching between them finds the identity).
    Each record is written once to ``connectivity/<job>.json`` (one task each on a cluster) and
    read back on a rerun."""
    from mmkern.train.zoo import read_json

    first, second = settings["seeds"][:2]
    clean = _member(clean_records, None, second)
    wanted = {f"p={p:g}": ("cue", _member(cue_records, p, first)) for p in settings["p_values"]}
    wanted[CONTROL] = ("clean", _member(clean_records, None, first))
    folder = os.path.join(root, "connectivity")
    os.makedirs(folder, exist_ok=True)
    paths = {job: os.path.join(folder, f"{job}.json") for job in wanted}
    records = {job: read_json(path) for job, path in paths.items() if os.path.isfile(path)}
    records = {job: r for job, r in records.items() if r.get("to") == {"zoo": "clean", "member": clean["id"]}}
    jobs = {job: (root, zoo, member, clean, settings, data_dir, paths[job])
            for job, (zoo, member) in wanted.items() if job not in records}
    if cluster and jobs:
        from mmkern.train._cluster import run_tasks

        done, errors = run_tasks(cluster["client"], pair_record, jobs, "pair")
        if errors:
            raise RuntimeError("cue-vs-clean curves failed: " + "; ".join(f"{k}: {e}" for k, e in errors.items()))
    else:
        done = {job: pair_record(*args) for job, args in jobs.items()}
    for job, record in done.items():
        _say(progress, f"{job}: barrier on the fitting data raw {_fmt(record['raw']['fit']['loss_barrier'])}, "
                       f"aligned {_fmt(record['aligned']['fit']['loss_barrier'])}, quadratic "
                       f"{_fmt(record['quadratic']['fit']['loss_barrier'])}")
    records.update(done)
    return {p: records[f"p={p:g}"] for p in settings["p_values"]}, records[CONTROL]


def pair_record(root: str, zoo: str, start: dict, clean: dict, settings: dict, data_dir, path: str) -> dict:
    """The curves from a model of ``root/zoo`` (its record ``start``) to a clean model (record
    ``clean``): linear raw, linear after weight matching, and along a quadratic Bezier path fit
    on the first model's training data (``fit``), each on that fitting data, its test set and the
    counterfactual sets it has; written to ``path`` (atomically) and returned."""
    from mmkern.connectivity import align, fit_curve, interpolation_curve
    from mmkern.train import load_member
    from mmkern.train.config import TrainConfig
    from mmkern.train.trainer import load_config_dataset
    from mmkern.train.zoo_finetune import curves_json, path_sets, path_subset, split_tensors

    model_a, _ = load_member(os.path.join(root, zoo), start["id"])
    model_b, _ = load_member(os.path.join(root, "clean"), clean["id"])
    data = load_config_dataset(TrainConfig.from_dict(start["config"]), data_dir)
    named, bn = path_sets(data)
    sets = {"fit": path_subset(data.train), "test": named["test"],
            **{short: named[s] for short, s in COUNTERFACTUAL.items() if s in named}}
    alphas, seed = settings["alphas"], start["config"]["init_seed"]
    raw = interpolation_curve(model_a, model_b, sets, alphas, bn_data=bn)
    aligned = interpolation_curve(model_a, align(model_a, model_b, "weights").model, sets, alphas, bn_data=bn)
    path_fit = fit_curve(model_a, model_b, split_tensors(data.train), "bezier", epochs=settings["curve_epochs"],
                         seed=seed)
    quadratic = interpolation_curve(model_a, model_b, sets, alphas, bn_data=bn, path=path_fit)
    record = {"p": start["config"]["dataset_options"].get("spurious"), "seed": seed,
              "from": {"zoo": zoo, "member": start["id"]}, "to": {"zoo": "clean", "member": clean["id"]},
              "raw": curves_json(raw), "aligned": curves_json(aligned), "quadratic": curves_json(quadratic),
              "quadratic_fit": {"kind": "bezier", "epochs": settings["curve_epochs"], "data": "fit"}}
    atomic_write_text(path, json.dumps(record, indent=2, allow_nan=False) + "\n")
    return record


def _fmt(value) -> str:
    return "inf" if value is None else f"{value:.3f}"


# ----------------------------------------------------------------------------- aggregation


def _stats(values: list) -> dict:
    """mean and (sample) std of finite values; None for an empty list, std None for one value."""
    v = [x for x in values if x is not None and math.isfinite(x)]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else None, "n": len(v)}


def _mean_curves(records: list) -> dict:
    """{set: (alphas, mean loss over the records)} of the paths original -> tuned (a point where
    some record's loss is not finite is left out of its mean)."""
    out = {}
    for name in records[0]["barriers"] if records else ():
        losses = np.array([[np.nan if v is None else v for v in r["barriers"][name]["loss"]] for r in records])
        with np.errstate(invalid="ignore"):
            mean = [float(np.nanmean(col)) if np.isfinite(col).any() else None for col in losses.T]
        out[name] = {"alphas": records[0]["barriers"][name]["alphas"], "loss": mean}
    return out


def _p_of(config: dict) -> float:
    return config["dataset_options"]["spurious"]


def _barriers_of(record: dict) -> dict:
    """{path kind: {set: loss barrier}} of a pair record."""
    return {kind: {s: record[kind][s]["loss_barrier"] for s in record[kind]} for kind in _KINDS}


def summarise(name: str, cue_records: list, tuned: dict, pairs: dict, control: dict, settings: dict) -> dict[str, Any]:
    """Table 1, the barriers, the sweep, the cue-vs-clean barriers (and the clean-vs-clean
    control's) and the findings of one dataset, from the models' records."""
    p_of = {r["id"]: _p_of(r["config"]) for r in cue_records}
    by_p = {run: {f"{p:g}": [r for r in records if p_of[r["member"]] == p] for p in settings["p_values"]}
            for run, records in tuned.items()}  # {run: {p: the records of its members at p}}
    first = next(iter(by_p.values()))
    table = {"original": {p: {short: _stats([r["metrics"]["original"][s]["accuracy"] for r in members])
                              for short, s in COUNTERFACTUAL.items()} for p, members in first.items()}}
    barriers = {}
    for run, groups in by_p.items():
        table[run] = {p: {short: _stats([r["metrics"]["tuned"][s]["accuracy"] for r in members])
                          for short, s in COUNTERFACTUAL.items()} for p, members in groups.items()}
        barriers[run] = {p: {short: _stats([r["barriers"][s]["loss_barrier"] for r in members])
                             for short, s in {"test": "test", **COUNTERFACTUAL}.items()}
                         for p, members in groups.items()}
    sweep = [{"run": run, "lr": records[0]["finetune"]["lr"], "member": r["member"], "p": p_of[r["member"]],
              "barrier": r["barriers"]["test"]["loss_barrier"],
              "RI": r["metrics"]["tuned"]["image-random"]["accuracy"],
              "NC": r["metrics"]["tuned"]["cue-none"]["accuracy"]}
             for run, records in tuned.items() if records and records[0]["finetune"]["method"] == "naive"
             for r in records]
    connectivity = {f"{p:g}": _barriers_of(rec) for p, rec in pairs.items()}
    curves = {run: {p: _mean_curves(members) for p, members in groups.items()} for run, groups in by_p.items()}
    summary = {"dataset": name, "num_classes": cue_records[0]["dataset"]["num_classes"], "table": table, "barriers": barriers, "sweep": sweep,
               "connectivity": connectivity, "pairs": {f"{p:g}": rec for p, rec in pairs.items()},
               "control": {"barriers": _barriers_of(control), "pair": control},
               "curves": curves}
    summary["findings"] = findings(summary, settings)
    return summary


def findings(summary: dict, settings: dict) -> list[dict]:
    """The paper's claims (a), (b), (c) judged on one dataset's summary by :data:`THRESHOLDS`."""
    t = settings["thresholds"]
    chance = 1.0 / summary["num_classes"]
    table, barriers = summary["table"], summary["barriers"]
    reliant = [p for p, row in table["original"].items()
               if row["RI"]["mean"] is not None and row["RI"]["mean"] >= t["cue_reliant_ri"] * chance]
    out = []

    def mean(run, p, key):
        return table[run][p][key]["mean"]

    def barrier(run, p):
        return barriers[run][p]["test"]["mean"]

    if not reliant:
        ri = ", ".join(f"p={p}: {_fmt(row['RI']['mean'])}" for p, row in table["original"].items())
        note = (f"no original model relies on the cue (mean RI accuracy below {t['cue_reliant_ri']:g} x chance "
                f"at every p: {ri})")
        for claim in ("a", "b"):
            out.append({"claim": claim, "holds": False, "testable": False, "evidence": note})
    else:
        rows = [{"p": p, "RI": mean("fts", p, "RI"), "barrier": barrier("fts", p)} for p in reliant]
        holds = all(r["RI"] is not None and r["RI"] >= t["keeps_cue_ri"] * chance and r["barrier"] is not None
                    and r["barrier"] <= t["connected_barrier"] for r in rows)
        out.append({"claim": "a", "holds": holds, "testable": True,
                    "statement": f"FTS keeps cue reliance (RI >= {t['keeps_cue_ri'] * chance:.2f}) and stays "
                                 f"linearly connected to the original (loss barrier <= {t['connected_barrier']:g})",
                    "evidence": rows})
        rows = [{"p": p, "RI": mean("cbft", p, "RI"), "barrier": barrier("cbft", p), "NC": mean("cbft", p, "NC"),
                 "NC_fts": mean("fts", p, "NC")} for p in reliant]
        holds = all(r["RI"] is not None and r["RI"] <= t["removes_cue_ri"] * chance and r["barrier"] is not None
                    and r["barrier"] >= t["barrier"] and r["NC"] is not None and r["NC_fts"] is not None
                    and r["NC"] >= r["NC_fts"] - t["nc_margin"] for r in rows)
        out.append({"claim": "b", "holds": holds, "testable": True,
                    "statement": f"CBFT removes cue reliance (RI <= {t['removes_cue_ri'] * chance:.2f}), is not "
                                 f"connected to the original (loss barrier >= {t['barrier']:g}) and keeps NC "
                                 f"accuracy within {t['nc_margin']:g} of FTS",
                    "evidence": rows})
    rows = [{"p": p, **{kind: summary["connectivity"][p][kind]["fit"] for kind in _KINDS},
             "judged": p in reliant} for p in summary["connectivity"]]
    control = {kind: summary["control"]["barriers"][kind]["fit"] for kind in _KINDS}
    holds = bool(rows) and all(
        r["raw"] is not None and r["raw"] >= t["barrier"] and r["aligned"] is not None
        and r["aligned"] >= t["barrier"] and r["quadratic"] is not None and r["quadratic"] <= t["connected_barrier"]
        for r in rows if r["p"] in reliant) and bool(reliant)
    out.append({"claim": "c", "holds": holds, "testable": bool(reliant),
                "statement": f"a cue-reliant model and a clean model are not linearly connected, raw or after "
                             f"weight matching (loss barrier >= {t['barrier']:g} on the fitting data), but are "
                             f"along a quadratic path fit on that data (barrier <= {t['connected_barrier']:g})",
                "evidence": rows,
                # not judged: how far apart two clean models of the same two initialisations are, and
                # whether the cue-reliant pairs are further apart after weight matching than they
                "control": control,
                "aligned_above_control": bool(reliant) and all(
                    r["aligned"] is not None and control["aligned"] is not None and r["aligned"] > control["aligned"]
                    for r in rows if r["judged"])})
    return out
