"""PNG figures of a zoo analysis (matplotlib, headless Agg backend).

Every function takes the results of :func:`mmkern.analysis.metrics.analyze_groups` (or one of its
groups) and writes one PNG file atomically, returning the file name.
"""

from __future__ import annotations

import io
import os
import re

import numpy as np

from mmkern._io import atomic_write
from mmkern.analysis.outputs import IID


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def slug(name: str) -> str:
    """A file-name-safe version of a group name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", name).strip("_") or "group"


def _save(fig, path: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return os.path.basename(path)


def _heatmap(ax, matrix, labels, title, vmin=None, vmax=None, cmap="viridis"):
    matrix = np.asarray(matrix, dtype=float)
    image = ax.imshow(matrix, vmin=vmin, vmax=vmax, cmap=cmap)
    low, high = image.get_clim()
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for (i, j), value in np.ndenumerate(matrix):
        bright = (value - low) > 0.6 * (high - low)  # viridis is light at the top
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=6,
                color="k" if bright else "w")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def group_matrices(group: dict, out_dir: str) -> str:
    """Heatmaps of one group: SVCCA per layer, i.i.d. disagreement, loss barrier."""
    plt = _pyplot()
    labels = group["members"]
    panels = [(f"SVCCA {layer}", data["svcca"], 0.0, 1.0)
              for layer, data in group["representational"].items()]
    panels.append((f"disagreement ({IID})", group["predictive"][IID]["disagreement"], 0.0, None))
    if "connectivity" in group:
        panels.append(("loss barrier", group["connectivity"]["loss_barrier"], 0.0, None))
        if "aligned" in group["connectivity"]:
            aligned = group["connectivity"]["aligned"]
            panels.append((f"loss barrier ({aligned['method']} aligned)", aligned["loss_barrier"], 0.0, None))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for ax, (title, matrix, vmin, vmax) in zip(axes[0], panels):
        _heatmap(ax, matrix, labels, title, vmin, vmax)
    fig.suptitle(f"{group['name']}: pairwise matrices", fontsize=10)
    return _save(fig, os.path.join(out_dir, f"matrices_{slug(group['name'])}.png"))


def group_curves(group: dict, out_dir: str) -> str:
    """Loss and error along the interpolation line for every pair of one group."""
    plt = _pyplot()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(9, 3.4))
    members = group["members"]
    aligned = group["connectivity"].get("aligned", {}).get("curves", [])
    for k, curve in enumerate(group["connectivity"]["curves"]):
        i, j = curve["pair"]
        label = f"{members[i]} - {members[j]}"
        line, = ax_loss.plot(curve["alphas"], curve["loss"], marker=".", label=label)
        ax_err.plot(curve["alphas"], 1.0 - np.asarray(curve["accuracy"]), marker=".", color=line.get_color())
        if aligned:  # dashed: after permutation alignment
            ax_loss.plot(aligned[k]["alphas"], aligned[k]["loss"], ls="--", color=line.get_color())
            ax_err.plot(aligned[k]["alphas"], 1.0 - np.asarray(aligned[k]["accuracy"]), ls="--",
                        color=line.get_color())
    ax_loss.set(xlabel="alpha", ylabel="test loss", title="loss along the line")
    ax_err.set(xlabel="alpha", ylabel="test error", title="error along the line")
    ax_loss.legend(fontsize=6)
    suffix = f" (dashed: {group['connectivity']['aligned']['method']} aligned)" if aligned else ""
    fig.suptitle(f"{group['name']}: linear interpolation between members{suffix}", fontsize=10)
    return _save(fig, os.path.join(out_dir, f"curves_{slug(group['name'])}.png"))


def rm_vs_pm(results: dict, out_dir: str) -> str:
    """RM (1 - SVCCA at ``results["rm_layer"]``) against disagreement, one point per pair of
    members of a group, on the i.i.d. set and averaged over the OOD sets."""
    plt = _pyplot()
    layer = results["rm_layer"]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for group in results["groups"]:
        rm = 1.0 - np.asarray(group["representational"][layer]["svcca"])
        upper = np.triu_indices(rm.shape[0], k=1)
        pm = {k: np.asarray(v["disagreement"])[upper] for k, v in group["predictive"].items()}
        points = ax.scatter(rm[upper], pm[IID], s=24, label=group["name"])
        ood = [v for k, v in pm.items() if k != IID]
        if ood:
            ax.scatter(rm[upper], np.mean(ood, axis=0), s=24, facecolors="none", edgecolors=points.get_facecolor())
    iid = results.get("rm_vs_pm", {}).get(IID)
    note = "" if not iid else (f"\ni.i.d.: Spearman {iid['spearman']:.2f} over {iid['n_pairs']} pairs, "
                               f"permutation p = {iid['p_value']:.3f}")
    ax.set(xlabel=f"RM = 1 - SVCCA of the pair ({layer})", ylabel="PM = disagreement of the pair",
           title="representational vs predictive multiplicity per pair\n(filled: i.i.d., hollow: mean OOD)" + note)
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    return _save(fig, os.path.join(out_dir, "rm_vs_pm.png"))


def pm_by_set(results: dict, out_dir: str) -> str:
    """Mean disagreement of every group on every evaluation set (grouped bars)."""
    plt = _pyplot()
    groups = results["groups"]
    sets = list(groups[0]["predictive"])
    width = 0.8 / len(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(sets) * max(1, len(groups)) / 2), 3.8))
    for g, group in enumerate(groups):
        values = [group["predictive"][s]["mean_disagreement"] for s in sets]
        ax.bar(np.arange(len(sets)) + g * width, values, width, label=group["name"])
    ax.set_xticks(np.arange(len(sets)) + 0.4 - width / 2, sets, rotation=60, fontsize=7)
    ax.set(ylabel="mean disagreement", title="predictive multiplicity per test set")
    ax.legend(fontsize=7)
    return _save(fig, os.path.join(out_dir, "pm_by_set.png"))


def loss_plane(plane: dict, title: str, path: str) -> str:
    """Contours of the loss on a plane of weights, the models marked and labelled.

    ``plane`` holds ``x``, ``y``, ``loss`` (``(ny, nx)``) and ``points`` (``{label: (x, y)}``),
    as a :class:`mmkern.connectivity.LossPlane` or its JSON form in the analysis results.
    Non-finite losses are left blank.
    """
    plt = _pyplot()
    loss = np.asarray(plane["loss"], dtype=float)
    finite = np.where(np.isfinite(loss), loss, np.nan)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    levels = np.linspace(np.nanmin(finite), np.nanmax(finite), 16) if np.isfinite(finite).any() else 16
    contours = ax.contourf(plane["x"], plane["y"], finite, levels=levels, cmap="viridis")
    fig.colorbar(contours, ax=ax, label="loss")
    for label, (x, y) in plane["points"].items():
        ax.plot([x], [y], marker="o", color="w", markeredgecolor="k")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color="w")
    ax.set(xlabel="x", ylabel="y", title=title)
    ax.set_aspect("equal", adjustable="box")
    return _save(fig, path)


def as_plane(plane) -> dict:
    """A :class:`~mmkern.connectivity.LossPlane` as the JSON-ready dict the results store."""
    return {"x": plane.x.tolist(), "y": plane.y.tolist(), "loss": plane.loss.tolist(),
            "accuracy": plane.accuracy.tolist(), "points": {k: list(v) for k, v in plane.points.items()},
            "point_loss": plane.point_loss, "directions": plane.directions}
