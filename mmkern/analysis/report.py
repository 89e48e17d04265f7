"""The Markdown report of a zoo analysis, embedding the PNG figures."""

from __future__ import annotations

from mmkern.analysis.outputs import IID
from mmkern.connectivity._results import BARRIER_FIELDS


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def render(results: dict, figures: dict) -> str:
    """Markdown text of ``results`` (see :func:`mmkern.analysis.analyze_zoo`).

    Parameters
    ----------
    results : dict
        The analysis results (as written to ``results.json``).
    figures : dict
        Figure file names relative to the report: ``"rm_vs_pm"``, ``"pm_by_set"`` and per group
        name ``("matrices", name)`` / ``("curves", name)``.
    """
    zoo = results["zoo"]
    lines = [f"# Model multiplicity report: {zoo['recipe']}", ""]
    if zoo.get("description"):
        lines += [zoo["description"].strip(), ""]
    lines += [f"Dataset `{zoo['dataset']}`; {len(results['members'])} trained members; "
              f"activations of {zoo['n_samples']} i.i.d. test samples (layers averaged over "
              f"positions: `{zoo['reduce']}`); mmkern {results['mmkern_version']}.", ""]

    lines += ["## Members", ""]
    rows = [[m["id"], ", ".join(f"{k}={v}" for k, v in m["varies"].items()) or "(base)",
             _fmt(m.get("test_accuracy")), _fmt(m.get("ood_accuracy_mean"))]
            for m in results["members"]]
    lines += _table(["member", "varies", "test accuracy", "mean OOD accuracy"], rows)

    groups = results["groups"]
    if not groups:
        return "\n".join(lines + ["No factor group has two finished members yet.", ""]
                         + _finetune_section(results))
    layer = results["rm_layer"]
    lines += ["## Summary across factors", "",
              f"RM is 1 - mean pairwise SVCCA at layer `{layer}`; PM is the mean pairwise "
              "disagreement (churn) of the hard predictions.", ""]
    rows = []
    for g in groups:
        pm = g["predictive"]
        ood = [v["mean_disagreement"] for k, v in pm.items() if k != IID]
        barrier = g.get("connectivity", {}).get("mean_loss_barrier")
        rows.append([g["name"], str(len(g["members"])),
                     _fmt(g["representational"][layer]["rm"]),
                     _fmt(pm[IID]["mean_disagreement"]),
                     _fmt(float(sum(ood) / len(ood)) if ood else None),
                     _fmt(pm[IID]["accuracy_mean"]), _fmt(barrier)])
    lines += _table(["factor group", "models", "RM", "PM i.i.d.", "PM mean OOD",
                     "mean test accuracy", "mean loss barrier"], rows)
    corr = {name: c for name, c in results.get("rm_vs_pm", {}).items() if c is not None}
    if corr:
        first = next(iter(corr.values()))
        lines += [f"Spearman correlation of RM with PM over the {first['n_pairs']} pairs of members within the "
                  f"{first['n_groups']} factor groups, with its 95% bootstrap interval over pairs, and the p-values "
                  "of permutation tests over the members (pairs that share a member are not independent): all "
                  "members permuted together (the whole association), and within each group only (the "
                  "association within groups):", ""]
        lines += _table(["test set", "Spearman", "95% interval", "Pearson", "permutation p", "within groups p"],
                        [[name, _fmt(c["spearman"], 2), f"[{_fmt(c['ci_low'], 2)}, {_fmt(c['ci_high'], 2)}]",
                          _fmt(c["pearson"], 2), _fmt(c["p_value"], 3), _fmt(c["p_within"], 3)]
                         for name, c in corr.items()])
    else:
        lines += ["(The RM/PM correlation needs at least three pairs of members that differ in both.)", ""]
    lines += [f"![RM vs PM]({figures['rm_vs_pm']})", "",
              f"![PM per test set]({figures['pm_by_set']})", ""]

    for g in groups:
        lines += [f"## Factor: {g['name']}", "", "Members: " + ", ".join(
            f"`{m}`" for m in g["members"]) + ".", ""]
        rows = [[name, _fmt(d["mean_svcca"]), _fmt(d["rm"])]
                for name, d in g["representational"].items()]
        lines += _table(["layer", "mean SVCCA", "RM"], rows)
        rows = [[name, _fmt(d["mean_disagreement"]), _fmt(d["ambiguity"]),
                 _fmt(d["prediction_variance"], 4), _fmt(d["rashomon_capacity"]),
                 f"{_fmt(d['accuracy_mean'])} ± {_fmt(d['accuracy_spread'])}"]
                for name, d in g["predictive"].items()]
        lines += _table(["test set", "disagreement", "ambiguity", "prediction variance",
                         "Rashomon capacity", "accuracy (spread)"], rows)
        if "connectivity" in g:
            c = g["connectivity"]
            rows = [["raw weights", *(_fmt(c[f"mean_{f}"]) for f in BARRIER_FIELDS)]]
            if "aligned" in c:
                rows.append([f"after {c['aligned']['method']} matching",
                             *(_fmt(c["aligned"][f"mean_{f}"]) for f in BARRIER_FIELDS)])
            lines += _table(["mean over pairs", "loss barrier", "loss barrier (mean endpoints)",
                             "error barrier", "error barrier (mean endpoints)"], rows)
        if "connectivity_skipped" in g:
            lines += [f"No loss barriers or plane: {g['connectivity_skipped']}.", ""]
        lines += [f"![matrices]({figures[('matrices', g['name'])]})", ""]
        if ("curves", g["name"]) in figures:
            lines += [f"![curves]({figures[('curves', g['name'])]})", ""]
        if ("plane", g["name"]) in figures:
            lines += [f"Loss plane through {', '.join(f'`{m}`' for m in g['plane']['members'])} "
                      "(Garipov et al.'s basis; BatchNorm re-estimated at every point):", "",
                      f"![loss plane]({figures[('plane', g['name'])]})", ""]
    for s in results.get("skipped", []):
        lines += [f"Skipped factor group `{s['name']}`: fewer than two finished members.", ""]
    return "\n".join(lines + _finetune_section(results))


def _finetune_section(results: dict) -> list[str]:
    """The fine-tuned models (``mmkern finetune``), if any: accuracies before -> after."""
    finetuned = results.get("finetune")
    if not finetuned:
        return []
    lines = ["## Fine-tuning", "",
             "Each model fine-tuned on a few clean samples (`mmkern finetune`; CBFT: Lubana et "
             "al. 2023). Accuracy of the original -> the tuned model on the counterfactual sets "
             "(`cue-random`: the cue contradicts the label; `image-random`: only the cue agrees "
             "with it), and the loss barrier between the two on the i.i.d. test set.", ""]
    rows = []
    for method, members in finetuned.items():
        for m in members:
            accuracy = m["accuracy"]
            cells = [f"{_fmt(accuracy[name]['original'])} -> {_fmt(accuracy[name]['tuned'])}"
                     if name in accuracy else "-"
                     for name in ("cue-none", "cue-random", "image-random")]
            rows.append([method, m["member"], str(m["n_clean"]), *cells,
                         _fmt(m["loss_barrier"].get("test"))])
    return lines + _table(["method", "member", "clean samples", "cue-none", "cue-random",
                           "image-random", "loss barrier"], rows)
