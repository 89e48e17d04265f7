"""The report of the Lubana et al. (2023) study: ``report.md`` and its figures (``figures/``)."""

from __future__ import annotations

import os

import numpy as np

from mmkern._io import atomic_write_text
from mmkern.analysis.figures import _pyplot, _save, slug
from mmkern.analysis.report import _fmt, _table
from mmkern.studies._common import verdict

_SETS = ("test", "cue-none", "cue", "cue-random", "image-random")
_SHORT = ("NC", "C", "RC", "RI")
_KINDS = ("raw", "aligned", "quadratic")


def _pm(stats: dict) -> str:
    if stats["mean"] is None:
        return "-"
    return _fmt(stats["mean"]) + ("" if stats["std"] is None else f" ± {stats['std']:.3f}")


def _curves_figure(summary: dict, p: str, path: str) -> str:
    """Loss along the path from the original to each fine-tuned model at cue proportion ``p``,
    one panel per evaluation set (mean over seeds)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(_SETS), figsize=(3.2 * len(_SETS), 3), sharey=False)
    for ax, name in zip(axes, _SETS):
        for run, by_p in summary["curves"].items():
            curve = by_p.get(p, {}).get(name)
            if curve:
                loss = [np.nan if v is None else v for v in curve["loss"]]
                ax.plot(curve["alphas"], loss, marker=".", label=run)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("alpha (0: original, 1: fine-tuned)", fontsize=7)
    axes[0].set_ylabel("loss")
    axes[-1].legend(fontsize=6)
    fig.suptitle(f"{summary['dataset']}, p = {p}: original -> fine-tuned", fontsize=10)
    return _save(fig, path)


def _sweep_figure(summary: dict, path: str) -> str:
    """Figure 5: barrier to the original vs RI accuracy, per naive fine-tuned model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    points = summary["sweep"]
    lrs = sorted({pt["lr"] for pt in points})
    colours = plt.cm.viridis(np.linspace(0, 1, max(2, len(lrs))))
    for lr, colour in zip(lrs, colours):
        chosen = [pt for pt in points if pt["lr"] == lr and pt["barrier"] is not None]
        ax.scatter([pt["barrier"] for pt in chosen], [pt["RI"] for pt in chosen], color=colour, s=18,
                   label=f"lr {lr:g}")
    ax.axhline(0.1, color="grey", lw=0.7, ls="--")
    ax.set_xlabel("loss barrier to the original (cued test set)")
    ax.set_ylabel("RI accuracy (reads the cue)")
    ax.legend(fontsize=7)
    ax.set_title(f"{summary['dataset']}: naive fine-tuning, learning-rate sweep", fontsize=9)
    return _save(fig, path)


def _pairs_figure(summary: dict, path: str) -> str:
    """Figure 4: cue model vs clean model, loss on the fitting data along the three paths."""
    plt = _pyplot()
    panels = [(f"cue model, p = {p}", record) for p, record in summary["pairs"].items()]
    panels.append(("control: clean model", summary["control"]["pair"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3), squeeze=False)
    for ax, (title, record) in zip(axes[0], panels):
        for kind in _KINDS:
            curve = record[kind]["fit"]
            ax.plot(curve["alphas"], [np.nan if v is None else v for v in curve["loss"]], marker=".", label=kind)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("0: this model, 1: the clean model", fontsize=7)
    axes[0][0].set_ylabel("loss on the fitting data")
    axes[0][-1].legend(fontsize=7)
    return _save(fig, path)


def _dataset_section(summary: dict, folder: str) -> list[str]:
    name = summary["dataset"]
    lines = [f"## {name}", "", "### Table 1: accuracy on the counterfactual sets (mean ± std over seeds)", ""]
    header = ["method", "p", *_SHORT, "loss barrier to the original"]
    rows = []
    for run, by_p in summary["table"].items():
        for p, row in by_p.items():
            barrier = "-" if run == "original" else _pm(summary["barriers"][run][p]["test"])
            rows.append([run, p, *(_pm(row[k]) for k in _SHORT), barrier])
    lines += _table(header, rows)
    lines += ["NC: no cue; C: the class's cue; RC: another class's cue; RI: another class's image carrying "
              "the label's cue (high RI = the model reads the cue). The barrier is on the cued i.i.d. test set.", ""]
    ps = list(summary["table"]["original"])
    figure = _curves_figure(summary, ps[-1], os.path.join(folder, f"{slug(name)}-curves.png"))
    lines += [f"![paths from the original to each fine-tuned model](figures/{figure})", ""]
    lines += ["### Cue model (first seed) vs clean model (second seed)", ""]
    rows = [[f"cue model, p = {p}", *(_fmt(c[kind].get(s)) for kind in _KINDS for s in ("fit", "RI"))]
            for p, c in summary["connectivity"].items()]
    control = summary["control"]["barriers"]
    rows.append(["control: clean model (first seed)", *(_fmt(control[kind].get(s)) if s in control[kind] else "-"
                                                        for kind in _KINDS for s in ("fit", "RI"))])
    lines += _table(["from", "raw: fit", "raw: RI", "aligned: fit", "aligned: RI", "quadratic: fit", "quadratic: RI"],
                    rows)
    lines += ["Loss barriers (nats) on the fitting data (the first model's training data) and on the RI set. The "
              "control pairs two clean models of the same two initialisations.", ""]
    figure = _pairs_figure(summary, os.path.join(folder, f"{slug(name)}-cue-vs-clean.png"))
    lines += [f"![cue vs clean model](figures/{figure})", ""]
    figure = _sweep_figure(summary, os.path.join(folder, f"{slug(name)}-sweep.png"))
    lines += ["### Figure 5: learning-rate sweep", "", f"![barrier vs RI](figures/{figure})", ""]
    lines += ["### Findings", ""]
    for f in summary["findings"]:
        lines.append(f"- **({f['claim']}) {verdict(f)}.** {f.get('statement', '')}")
        evidence = f["evidence"]
        if isinstance(evidence, str):
            lines.append(f"  {evidence}")
        else:
            for row in evidence + ([{"control (not judged)": "", **f["control"]}] if "control" in f else []):
                lines.append("  - " + ", ".join(f"{k} {_fmt(v) if isinstance(v, float) or v is None else v}".rstrip()
                                                for k, v in row.items()))
        if "aligned_above_control" in f:
            lines.append("  - after weight matching, the judged cue-vs-clean pairs are "
                         + ("" if f["aligned_above_control"] else "not all ")
                         + "further apart than the two clean models of the control")
    return lines + [""]


def _deviations(overrides: dict) -> str:
    """``{"*": {...}, preset: {...}}`` in words."""
    if not overrides:
        return "none"
    return ", ".join(f"{'every run' if who == '*' else who} " + " and ".join(f"{k} {v:g}" for k, v in change.items())
                     for who, change in overrides.items())


def write_report(out_dir: str, results: dict) -> str:
    """Write ``report.md`` and ``figures/`` into ``out_dir``; returns the report's path."""
    folder = os.path.join(out_dir, "figures")
    os.makedirs(folder, exist_ok=True)
    settings = results["settings"]
    lines = ["# Mechanistic Mode Connectivity (Lubana et al., ICML 2023), reproduced with mmkern", "",
             "Cue models trained at each cue proportion p, fine-tuned on clean images by FTM / FTS (naive, "
             "learning rate 0.01 / 0.001), LLR (a new classifier on frozen features), LPFT (LLR, then naive) and "
             "CBFT (connectivity-based fine-tuning); their accuracy on the counterfactual sets and their "
             "loss barriers to the original; a cue model against a clean model along linear, weight-matched and "
             "quadratic paths.", "",
             "## How this run compares with the paper", "",
             "The paper trains VGG-13 and ResNet-18 on CIFAR-10 (and others) with a box cue and fine-tunes on "
             "2,500 clean images. This run uses " + ", ".join(
                 f"`{n}` ({s['model']} width {s['width']}, {s['epochs']} epochs, {s['clean_samples']} clean "
                 f"fine-tuning images)" for n, s in settings["datasets"].items())
             + f"; p in {settings['p_values']}, seeds {settings['seeds']}"
             + (" (`--quick`: fewer epochs)" if settings["quick"] else "") + ". "
             "Digits are far easier than CIFAR-10 images, so a cue is only read when it is (nearly) perfectly "
             "predictive: the claims about cue-reliant models are judged at the p whose original models read the "
             "cue. The accuracies of this run are not comparable with the paper's numbers; the directions of the "
             "effects (RI kept or removed, a barrier or none) are what is compared. Fine-tuning follows the "
             "paper's settings (its code's defaults: SGD, momentum 0.9, weight decay 1e-4, cosine schedule, 20 "
             "epochs, learning rate 0.01 for FTM, LPFT and CBFT, 0.001 for FTS; LLR 200 epochs at 30) except: "
             + "; ".join(f"`{n}`: {_deviations(s['overrides'])}" for n, s in settings["datasets"].items())
             + ".", "",
             f"Thresholds: `{settings['thresholds']}` (RI thresholds are multiples of chance).", ""]
    for summary in results["datasets"].values():
        lines += _dataset_section(summary, folder)
    path = os.path.join(out_dir, "report.md")
    atomic_write_text(path, "\n".join(lines))
    return path
