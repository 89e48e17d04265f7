"""The report of the Heljakka et al. (2023) study: ``report.md`` and its figures (``figures/``)."""

from __future__ import annotations

import csv
import os

import numpy as np

from mmkern._io import atomic_write_text
from mmkern.analysis.figures import _pyplot, _save
from mmkern.analysis.report import _fmt, _table
from mmkern.studies._common import verdict
from mmkern.studies.heljakka2023_analysis import NOISE_PAIRS

_IID, _OOD = "iid", "ood_mean"


def _p(value) -> str:
    """A p-value: three decimals, or two significant digits below 0.001."""
    if value is None:
        return "-"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _interval(row: dict, digits: int = 3) -> str:
    if row is None or row.get("ci_low") is None:
        return "-"
    return f"[{_fmt(row['ci_low'], digits)}, {_fmt(row['ci_high'], digits)}]"


def _forest_figure(results: dict, path: str) -> str:
    """RM (1 - SVCCA) by factor with 95% intervals, one panel per dataset; the controls and the
    Gaussian-noise baseline of the representation layer of the base model."""
    plt = _pyplot()
    names = list(results["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        s = results["datasets"][name]
        rows = [(f, r) for f, r in s["rm_by_factor"].items()]
        for y, (factor, r) in enumerate(rows):
            control = factor in results["settings"]["controls"]
            low = r["mean"] if r["ci_low"] is None else r["ci_low"]
            high = r["mean"] if r["ci_high"] is None else r["ci_high"]
            ax.errorbar(r["mean"], y, xerr=[[r["mean"] - low], [high - r["mean"]]], fmt="s" if control else "o",
                        color="grey" if control else "C0", capsize=3)
        layer = next(m["representation_layer"] for m in s["members"] if m["id"] == "base")
        noise = s["baselines"]["gaussian"].get(layer)
        if noise:
            ax.axvline(noise["mean"], color="C3", ls="--", lw=1)
            ax.annotate(f"Gaussian noise\n({layer}, d={noise['width']})", (noise["mean"], 1.0), xycoords=("data", "axes fraction"),
                        xytext=(-3, -3), textcoords="offset points", ha="right", va="top", fontsize=6, color="C3")
        ax.set_yticks(range(len(rows)), [f"{f} (n={r['n_pairs']})" for f, r in rows], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("RM = 1 - SVCCA (representation layer)", fontsize=8)
        ax.set_title(f"{name}: Kruskal-Wallis p = {_p((s['factor_test'] or {}).get('p_value'))}", fontsize=9)
    fig.suptitle("RM by factor: mean over pairs, 95% BCa bootstrap interval over pairs (n = pairs)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _pairs(results: dict, out_dir: str, name: str) -> list[dict]:
    with open(os.path.join(out_dir, results["datasets"][name]["pairs"]), encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _scatter_figure(results: dict, out_dir: str, path: str) -> str:
    """RM vs PM over the pairs within the training factor groups, i.i.d. and mean OOD, one row per
    dataset, with the least-squares line and its 95% bootstrap band (pairs resampled)."""
    plt = _pyplot()
    names = list(results["datasets"])
    factors = set(results["settings"]["factors"])
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 3.4 * len(names)), squeeze=False)
    rng = np.random.default_rng(0)
    for row, name in zip(axes, names):
        pairs = [p for p in _pairs(results, out_dir, name) if p["group"] in factors]
        x = np.array([float(p["rm_svcca"]) for p in pairs])
        for ax, test_set in zip(row, (_IID, _OOD)):
            y = np.array([float(p[f"pm_disagreement@{test_set}"]) for p in pairs])
            for g, factor in enumerate(sorted(factors)):
                chosen = [i for i, p in enumerate(pairs) if p["group"] == factor]
                ax.scatter(x[chosen], y[chosen], s=10, color=plt.cm.tab10(g % 10), label=factor)
            c = results["datasets"][name]["rm_pm_correlation"].get(test_set)
            if x.size >= 3 and np.ptp(x) > 0:
                grid = np.linspace(x.min(), x.max(), 50)
                lines = []
                for _ in range(999):
                    pick = rng.integers(x.size, size=x.size)
                    if np.ptp(x[pick]) > 0:
                        lines.append(np.polyval(np.polyfit(x[pick], y[pick], 1), grid))
                ax.plot(grid, np.polyval(np.polyfit(x, y, 1), grid), color="k", lw=1)
                ax.fill_between(grid, *np.percentile(lines, [2.5, 97.5], axis=0), color="k", alpha=0.15)
            title = "i.i.d. test set" if test_set == _IID else "mean over the OOD sets"
            if c:
                title += (f"\nSpearman {_fmt(c['spearman'], 2)} {_interval(c, 2)}, permutation p = "
                          f"{_fmt(c['p_value'], 3)}, n = {c['n_pairs']} pairs")
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.set_xlabel("RM = 1 - SVCCA", fontsize=8)
            ax.set_ylabel("PM = disagreement", fontsize=8)
        row[0].legend(fontsize=5, ncol=2)
    fig.suptitle("RM vs PM over pairs within factor groups; least-squares line, 95% bootstrap band", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _finite_figure(results: dict, path: str) -> str:
    """Claim (3): rank correlation over factor groups (mean and 95% range over draws) and
    relative error against the sample size k, one column per dataset."""
    plt = _pyplot()
    names = [n for n in results["datasets"] if results["datasets"][n]["finite_sample"]]
    fig, axes = plt.subplots(2, max(1, len(names)), figsize=(4.4 * max(1, len(names)), 6.4), squeeze=False)
    for col, name in enumerate(names):
        fs = results["datasets"][name]["finite_sample"]
        ax = axes[0][col]
        for key, r in fs["rank_correlation"].items():
            mean = np.array([np.nan if v is None else v for v in r["mean"]], dtype=float)
            low = np.array([np.nan if v is None else v for v in r["low"]], dtype=float)
            high = np.array([np.nan if v is None else v for v in r["high"]], dtype=float)
            ax.plot(fs["k"], mean, marker="o", label=key)
            ax.fill_between(fs["k"], low, high, alpha=0.15)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{name}: Spearman over {fs['n_groups']} groups,\nmean and 95% range over {fs['draws']} draws",
                     fontsize=8)
        ax.set_xlabel("k models per group", fontsize=8)
        ax.legend(fontsize=6)
        ax = axes[1][col]
        for key, values in fs["error"].items():
            ax.plot(fs["k"], [np.nan if v is None else v for v in values], marker="o", label=key)
        ax.set_title(f"{name}: mean relative error of k models' figure\n(all k-subsets of every group)", fontsize=8)
        ax.set_xlabel("k models per group", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return _save(fig, path)


def _layers_figure(results: dict, path: str) -> str:
    """Mean SVCCA by layer of the base architecture, per factor (and the controls and the
    Gaussian-noise baseline), one panel per dataset."""
    plt = _pyplot()
    names = list(results["datasets"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.8 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        s = results["datasets"][name]
        layers = list(s["by_layer"])
        factors = list(dict.fromkeys(f for v in s["by_layer"].values() for f in v["rm_by_factor"]))
        for factor in factors:
            values = [1 - s["by_layer"][layer]["rm_by_factor"][factor]["mean"]
                      if factor in s["by_layer"][layer]["rm_by_factor"] else np.nan for layer in layers]
            style = {"retrained": {"color": "grey", "ls": "--", "marker": "s"},
                     "untrained": {"color": "k", "ls": "--", "marker": "s"}}.get(factor, {"marker": "o"})
            ax.plot(range(len(layers)), values, label=factor, lw=1, **style)
        noise = [1 - s["baselines"]["gaussian"][layer]["mean"] for layer in layers]
        ax.plot(range(len(layers)), noise, color="k", ls=":", label="Gaussian noise")
        ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7)
        ax.set_ylabel("mean SVCCA over the group's pairs", fontsize=8)
        sizes = sorted({r["n_pairs"] for v in s["by_layer"].values() for r in v["rm_by_factor"].values()})
        ax.set_title(f"{name}: SVCCA by layer of the base architecture\n(mean over each group's pairs, n = "
                     f"{'-'.join(map(str, sorted({sizes[0], sizes[-1]})))}; Gaussian noise: {NOISE_PAIRS} pairs)",
                     fontsize=8)
        ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def _dataset_section(name: str, s: dict, settings: dict) -> list[str]:
    lines = [f"## {name}", "",
             f"{s['trained']} trained and {s['untrained']} untrained models (`{s['zoo']}`); activations of "
             f"{s['n_samples']} i.i.d. test samples; {len(s['sets'])} test sets (i.i.d. and {len(s['sets']) - 1} OOD). "
             f"Per-pair table: `{s['pairs']}`.", ""]
    if s["dropped"] or s["excluded"]:
        lines += [f"Too wide for {s['n_samples']} samples (more than 1/5 as many features as samples): "
                  + ", ".join(f"{e['member']} {e['layer']} (d={e['width']})" for e in s["excluded"])
                  + (f"; members left out: {', '.join(s['dropped'])}" if s["dropped"] else "") + ".", ""]
    test = s["factor_test"]
    lines += ["### RM by factor (claim 1)", "",
              "1 - SVCCA at the representation layer; mean over the group's pairs with its 95% BCa bootstrap interval "
              "over pairs; CKA and PWCCA rows for robustness.", ""]
    rows = []
    for factor, r in s["rm_by_factor"].items():
        cka, pwcca = (s["by_metric"][m]["rm_by_factor"].get(factor, {}) for m in ("cka", "pwcca"))
        rows.append([factor + (" (control)" if factor in settings["controls"] else ""), str(r["n_pairs"]),
                     _fmt(r["mean"]), _interval(r), _fmt(cka.get("mean")), _fmt(pwcca.get("mean"))])
    lines += _table(["factor", "pairs", "RM (SVCCA)", "95% interval", "RM (CKA)", "RM (PWCCA)"], rows)
    if test:
        significant = [r for r in test["pairwise"] if r["p_adjusted"] < settings["thresholds"]["alpha"]]
        lines += [f"Kruskal-Wallis across the {len(test['ranking'])} training factors: H = {_fmt(test['statistic'], 2)}, "
                  f"p = {_p(test['p_value'])}; pairwise Mann-Whitney U with Benjamini-Hochberg: "
                  f"{len(significant)} of {len(test['pairwise'])} pairs of factors differ at "
                  f"{settings['thresholds']['alpha']:g}. CKA: p = {_p((s['by_metric']['cka']['factor_test'] or {}).get('p_value'))}; "
                  f"PWCCA: p = {_p((s['by_metric']['pwcca']['factor_test'] or {}).get('p_value'))}. "
                  "Ranking by median RM: " + ", ".join(f"{r['group']} ({_fmt(r['median'])})" for r in test["ranking"])
                  + ".", ""]
    noise = s["baselines"]["gaussian"]
    lines += ["Gaussian-noise baseline (1 - SVCCA of independent Gaussian matrices of the layer's shape, "
              "10 pairs): " + ", ".join(f"{layer} {_fmt(v['mean'])}" for layer, v in noise.items()) + ".", ""]
    lines += ["Per layer of the base architecture (1 - SVCCA; Kruskal-Wallis p across the training factors):", ""]
    layer_factors = list(dict.fromkeys(f for v in s["by_layer"].values() for f in v["rm_by_factor"]))
    rows = [[layer, _p((v["factor_test"] or {}).get("p_value")),
             *(_fmt(v["rm_by_factor"].get(f, {}).get("mean")) for f in layer_factors)] for layer, v in s["by_layer"].items()]
    lines += _table(["layer", "p", *layer_factors], rows)
    lines += ["### RM vs PM (claim 2)", "",
              "Over the pairs within the training factor groups: Spearman correlation of RM (1 - SVCCA) and PM "
              "(disagreement) with its 95% BCa interval over pairs, Pearson's r, and two permutation tests over models "
              "(pairs that share a model are not independent): *permutation p* permutes all the trained models "
              "together (a Mantel test of the whole association; the claim is judged by it), *within groups p* "
              "permutes the models within each group only (a stratified Mantel test: it holds the groups' mean RM "
              "and PM fixed, so it tests the association within groups alone).", ""]
    rows = [[test_set, str(c["n_pairs"]), _fmt(c["spearman"], 3), _interval(c), _fmt(c["pearson"], 3),
             _fmt(c["p_value"], 4), _fmt(c["p_within"], 4)] if c else [test_set, "-", "-", "-", "-", "-", "-"]
            for test_set, c in s["rm_pm_correlation"].items()]
    lines += _table(["test set", "pairs", "Spearman", "95% interval", "Pearson", "permutation p", "within groups p"],
                    rows)
    rows = []
    for metric, kinds in s["robustness"].items():
        for kind, per_set in kinds.items():
            rows.append([metric, kind, *(f"{_fmt((c or {}).get('spearman'), 3)} (p {_fmt((c or {}).get('p_value'), 3)})"
                                         for c in per_set.values())])
    lines += ["Robustness (Spearman, permutation p): RM metric x PM metric:", ""]
    lines += _table(["RM", "PM", "i.i.d.", "mean OOD"], rows)
    rows = [[layer, *(f"{_fmt((c or {}).get('spearman'), 3)} (p {_fmt((c or {}).get('p_value'), 3)})"
                      for c in v["rm_pm_correlation"].values())] for layer, v in s["by_layer"].items()]
    lines += ["Per layer (pairs of the base architecture's members):", ""]
    lines += _table(["layer", "i.i.d.", "mean OOD"], rows)
    everyone = s["all_pairs"]
    lines += [f"Over all pairs of trained members (across groups too; Mantel test over all models): i.i.d. Spearman "
              f"{_fmt((everyone[_IID] or {}).get('spearman'), 3)} (p {_fmt((everyone[_IID] or {}).get('p_value'), 3)}, "
              f"n = {(everyone[_IID] or {}).get('n_pairs')}), mean OOD {_fmt((everyone[_OOD] or {}).get('spearman'), 3)} "
              f"(p {_fmt((everyone[_OOD] or {}).get('p_value'), 3)}).", ""]
    lines += ["### Per factor group: predictive multiplicity", ""]
    rows = [[factor, _fmt(g[_IID]["mean_disagreement"]), _fmt(g[_OOD]["mean_disagreement"]),
             _fmt(g[_IID]["prediction_variance"], 4), _fmt(g[_IID]["ambiguity"]), _fmt(g[_IID]["rashomon_capacity"]),
             _fmt(g[_IID]["accuracy_mean"]), _fmt(g[_OOD]["accuracy_spread"])]
            for factor, g in s["group_stats"].items()]
    lines += _table(["group", "disagreement i.i.d.", "disagreement OOD", "prediction variance", "ambiguity",
                     "Rashomon capacity", "accuracy i.i.d.", "OOD accuracy spread"], rows)
    fs, partial = s["finite_sample"], s["rm_adds_to_pm"]
    lines += ["### Finite samples of models (claim 3)", ""]
    if fs:
        rows = [[str(k), *(f"{_fmt(r['mean'][i], 2)} [{_fmt(r['low'][i], 2)}, {_fmt(r['high'][i], 2)}]"
                           for r in fs["rank_correlation"].values())] for i, k in enumerate(fs["k"])]
        lines += [f"Spearman correlation over the {fs['n_groups']} factor groups between a figure of k of a group's models "
                  f"(i.i.d. test set) and a figure of all of them (OOD sets); mean and 95% range over {fs['draws']} "
                  "random draws of the k models:", ""]
        lines += _table(["k", *fs["rank_correlation"]], rows)
    if partial:
        lines += [f"Does RM add to i.i.d. PM? Partial Spearman correlation of RM and mean OOD disagreement given i.i.d. "
                  f"disagreement, over {partial['n_pairs']} pairs: {_fmt(partial['r'], 3)} {_interval(partial)}, "
                  f"partial Mantel p = {_fmt(partial.get('p_value'), 4)}.", ""]
    return lines


def write_report(out_dir: str, results: dict) -> str:
    """Write ``report.md`` and its figures into ``out_dir``; returns the report's path."""
    figures = os.path.join(out_dir, "figures")
    os.makedirs(figures, exist_ok=True)
    forest = _forest_figure(results, os.path.join(figures, "rm_by_factor.png"))
    scatter = _scatter_figure(results, out_dir, os.path.join(figures, "rm_vs_pm.png"))
    finite = _finite_figure(results, os.path.join(figures, "finite_sample.png"))
    layers = _layers_figure(results, os.path.join(figures, "svcca_by_layer.png"))
    settings = results["settings"]
    lines = ["# Heljakka et al. (2023), \"Disentangling Model Multiplicity in Deep Learning\": reproduction", "",
             f"Datasets: {', '.join(settings['datasets'])}. Factors varied one at a time: "
             f"{', '.join(settings['factors'])} ({settings['members']} models each, the base among them); controls: "
             f"retrained ({settings['retrained']}) and untrained ({settings['untrained']}). Intervals and permutation "
             f"tests use {settings['resamples']} resamples." + (" **Quick run.**" if settings["quick"] else ""), "",
             "## Findings", ""]
    rows = [[f["dataset"], f["claim"], verdict(f), f["statement"]] for f in results["findings"]]
    lines += _table(["dataset", "claim", "verdict", "statement"], rows)
    lines += [f"![RM by factor](figures/{forest})", "", f"![RM vs PM](figures/{scatter})", "",
              f"![Finite samples](figures/{finite})", "", f"![SVCCA by layer](figures/{layers})", ""]
    for name, s in results["datasets"].items():
        lines += _dataset_section(name, s, settings)
    lines += ["## Method", "",
              "See the docstring of `mmkern.studies.heljakka2023` (every method decision) and `docs/studies/"
              "heljakka2023/` for a recorded run.", ""]
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, "\n".join(lines))
    return path
