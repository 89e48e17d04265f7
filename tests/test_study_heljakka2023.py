"""`mmkern reproduce heljakka2023 --quick`: the study end to end, every statistic against a direct
scipy computation on the saved per-pair table, the findings consistent with results.json, a killed
run resumed without retraining anything finished, and bad options refused in one line."""

from __future__ import annotations

import csv
import glob
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("torch")

from scipy import stats  # noqa: E402

from _train_helpers import assert_refused_in_one_line, tree_fingerprint  # noqa: E402

from mmkern.studies.heljakka2023 import (CONTROLS, DATASETS, FACTORS, PAPER_SCALE, recipe, run_study,  # noqa: E402
                                         study_settings)

RECORDS = os.path.join("digits", "zoo-quick", "members", "*", "record.json")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The quick study, killed once after a few members finished, then resumed to the end."""
    out = tmp_path_factory.mktemp("heljakka2023")
    process = subprocess.Popen([sys.executable, "-m", "mmkern", "reproduce", "heljakka2023", "--quick", "--out",
                                str(out)], cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while len(glob.glob(str(out / RECORDS))) < 4 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(out / RECORDS))}
    assert 4 <= len(finished) < 15, "the kill came too late to test resuming"
    result = subprocess.run([sys.executable, "-m", "mmkern", "reproduce", "heljakka2023", "--quick", "--out", str(out)],
                            cwd=out, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), finished, result.stdout


def _pairs(out) -> list[dict]:
    with open(out / "digits" / "pairs.csv", newline="") as f:
        return list(csv.DictReader(f))


def _values(rows, column, group=None, groups=None) -> np.ndarray:
    return np.array([float(r[column]) for r in rows
                     if (group is None or r["group"] == group) and (groups is None or r["group"] in groups)])


def test_a_killed_run_resumes_without_retraining_what_finished(study):
    out, _, finished, _ = study
    assert all(os.stat(p).st_mtime_ns == t for p, t in finished.items())
    assert len(glob.glob(str(out / RECORDS))) == 15


def test_a_rerun_recomputes_nothing(study):
    out, results, _, _ = study
    before = tree_fingerprint(str(out / "digits"))
    again = run_study(out, quick=True, progress=False)
    assert tree_fingerprint(str(out / "digits")) == before
    assert again["findings"] == results["findings"]


def test_the_study_writes_its_files_and_the_required_keys(study):
    out, results, _, stdout = study
    for key in ("rm_by_factor", "factor_test", "rm_pm_correlation", "finite_sample", "settings", "findings"):
        assert "digits" in results[key] or key in ("settings", "findings")
    for factor in ("init_seed", "lr", "architecture", *CONTROLS):
        assert set(results["rm_by_factor"]["digits"][factor]) == {"mean", "ci_low", "ci_high", "n_pairs"}
    assert results["rm_by_factor"]["digits"]["init_seed"]["n_pairs"] == 6
    assert {"statistic", "p_value"} <= set(results["factor_test"]["digits"])
    correlation = results["rm_pm_correlation"]["digits"]
    assert list(correlation)[0] == "iid" and "ood_mean" in correlation and len(correlation) == 14
    for row in correlation.values():
        assert {"spearman", "ci_low", "ci_high", "p_value", "n_pairs"} <= set(row) and row["n_pairs"] == 18
    report = (out / "report.md").read_text()
    for figure in ("rm_by_factor.png", "rm_vs_pm.png", "finite_sample.png", "svcca_by_layer.png"):
        assert (out / "figures" / figure).stat().st_size > 5000 and f"figures/{figure}" in report
    for f in results["findings"]:
        assert f"{f['dataset']} claim ({f['claim']}): " in stdout
    assert len(_pairs(out)) == 15 * 14 // 2


def test_rm_by_factor_and_the_factor_test_are_scipys_on_the_pair_table(study):
    out, results, _, _ = study
    rows = _pairs(out)
    for factor, row in results["rm_by_factor"]["digits"].items():
        values = _values(rows, "rm_svcca", factor)
        assert row["n_pairs"] == values.size
        np.testing.assert_allclose(row["mean"], values.mean(), rtol=1e-12)
        if np.ptp(values) > 0:
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert results["rm_by_factor"]["digits"]["retrained"]["mean"] == pytest.approx(0.0, abs=1e-6)  # bitwise retraining
    expected = stats.kruskal(*(_values(rows, "rm_svcca", f) for f in ("init_seed", "lr", "architecture")))
    test = results["factor_test"]["digits"]
    np.testing.assert_allclose([test["statistic"], test["p_value"]], [expected.statistic, expected.pvalue], rtol=1e-12)
    a, b = _values(rows, "rm_svcca", "init_seed"), _values(rows, "rm_svcca", "lr")
    pair = next(r for r in test["pairwise"] if {r["a"], r["b"]} == {"init_seed", "lr"})
    np.testing.assert_allclose(pair["p_value"], stats.mannwhitneyu(a, b).pvalue, rtol=1e-12)
    cka = results["datasets"]["digits"]["by_metric"]["cka"]["rm_by_factor"]["lr"]["mean"]
    np.testing.assert_allclose(cka, _values(rows, "rm_cka", "lr").mean(), rtol=1e-12)


def test_rm_pm_correlations_are_scipys_on_the_pair_table(study):
    out, results, _, _ = study
    rows = _pairs(out)
    training = {"init_seed", "lr", "architecture"}
    rm = _values(rows, "rm_svcca", groups=training)
    for test_set, row in results["rm_pm_correlation"]["digits"].items():
        pm = _values(rows, f"pm_disagreement@{test_set}", groups=training)
        np.testing.assert_allclose(row["spearman"], stats.spearmanr(rm, pm).statistic, rtol=1e-12)
        np.testing.assert_allclose(row["pearson"], stats.pearsonr(rm, pm).statistic, rtol=1e-12)
        assert row["ci_low"] <= row["spearman"] <= row["ci_high"] and 0 < row["p_value"] <= 1
    ood = [c for c in rows[0] if c.startswith("pm_disagreement@") and not c.endswith(("@iid", "@ood_mean"))]
    np.testing.assert_allclose(_values(rows, "pm_disagreement@ood_mean"),
                               np.mean([_values(rows, c) for c in ood], axis=0), rtol=1e-12)
    partial = results["datasets"]["digits"]["rm_adds_to_pm"]
    iid, mean_ood = (_values(rows, f"pm_disagreement@{s}", groups=training) for s in ("iid", "ood_mean"))
    r = [stats.spearmanr(a, b).statistic for a, b in ((rm, mean_ood), (rm, iid), (mean_ood, iid))]
    np.testing.assert_allclose(partial["r"], (r[0] - r[1] * r[2]) / np.sqrt((1 - r[1] ** 2) * (1 - r[2] ** 2)),
                               rtol=1e-10)


def test_the_finite_sample_analysis_at_k_equal_to_the_group_is_the_full_groups(study):
    out, results, _, _ = study
    fs = results["finite_sample"]["digits"]
    assert fs["k"] == [2, 3, 4] and fs["n_groups"] == 3
    assert all(values[-1] == pytest.approx(0.0, abs=1e-12) for values in fs["error"].values())
    full = fs["full"]
    groups = list(full)
    for key, row in fs["rank_correlation"].items():
        predictor, target = key.split("->")
        expected = stats.spearmanr([full[g][predictor] for g in groups], [full[g][target] for g in groups]).statistic
        assert [row[f][-1] for f in ("mean", "low", "high")] == pytest.approx([expected] * 3, abs=1e-12)
    rows = _pairs(out)
    np.testing.assert_allclose(full["lr"]["pm_iid"], _values(rows, "pm_disagreement@iid", "lr").mean(), rtol=1e-12)


def test_the_findings_follow_from_results_json(study):
    _, results, _, _ = study
    alpha = results["settings"]["thresholds"]["alpha"]
    found = {f["claim"]: f for f in results["findings"]}
    assert list(found) == ["1", "2", "3", "3-rm", "4"]
    test = results["factor_test"]["digits"]
    assert found["1"]["holds"] == (test["p_value"] < alpha)
    corr = results["rm_pm_correlation"]["digits"]
    assert found["2"]["holds"] == all(corr[s]["spearman"] > 0 and corr[s]["p_value"] < alpha for s in ("iid", "ood_mean"))
    fs = results["finite_sample"]["digits"]
    rho = fs["rank_correlation"]["pm_iid->pm_ood"]["mean"][fs["k"].index(3)]
    assert found["3"]["holds"] == (rho >= results["settings"]["thresholds"]["rank_min"])
    partial = results["datasets"]["digits"]["rm_adds_to_pm"]
    assert found["3-rm"]["holds"] == (partial["ci_low"] > 0 and partial["p_value"] < alpha)
    assert found["4"]["testable"] is False


def test_the_default_design_has_ten_factors_of_five_models_and_the_controls():
    from mmkern.train import Recipe

    settings = study_settings()
    assert list(settings["datasets"]) == ["mnist1d", "digits", "mnist5k"]
    for name in (*DATASETS, *PAPER_SCALE):
        spec = {**DATASETS, **PAPER_SCALE}[name]
        design = Recipe.from_dict(recipe(name, spec, settings))
        groups = {g.factor: g.members for g in design.groups()}
        assert list(groups) == [*FACTORS, *CONTROLS]
        assert all(len(members) == 5 and len(set(members)) == 5 for members in groups.values())
        assert all("base" in groups[f] for f in (*FACTORS, "retrained"))
        configs = {m.id: m.config for m in design.members}
        assert {configs[m].epochs for m in groups["untrained"]} == {0}
        assert len({configs[m].init_seed for m in groups["untrained"]}) == 5
        retrained = [configs[m] for m in groups["retrained"]]
        assert all(c.replace(replicate=0) == configs["base"] for c in retrained)


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_embedded_members_representation_fits_its_samples(name):
    """SVCCA needs 5 samples per feature: every member's representation layer must fit."""
    import torch

    from mmkern.analysis.metrics import rm_layer
    from mmkern.studies.heljakka2023_analysis import SAMPLES_PER_FEATURE
    from mmkern.train import capture_activations
    from mmkern.train.trainer import init_model, load_config_dataset
    from mmkern.train import Recipe

    settings = study_settings()
    spec = DATASETS[name]
    design = Recipe.from_dict(recipe(name, spec, settings))
    data = load_config_dataset(design.base)
    assert spec["n_samples"] <= len(data.test)
    x = data.test.x[:8]
    torch.manual_seed(0)
    for member in design.members:
        model = init_model(member.config, tuple(data.input_shape), data.num_classes)
        acts = capture_activations(model, x, reduce="mean")
        assert acts[rm_layer(acts)].shape[1] * SAMPLES_PER_FEATURE <= spec["n_samples"], member.id


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet"], "dataset must be one of mnist1d, digits, mnist5k, mnist, fashion_mnist, cifar10, svhn"),
    (["--dataset", "digits", "--dataset", "digits"], "datasets given twice"),
    (["--workers", "0"], "Invalid value for '--workers'"),
])
def test_bad_options_are_one_line(tmp_path, args, message):
    assert_refused_in_one_line(tmp_path, "heljakka2023", args, message)


def test_settings_are_checked():
    with pytest.raises(TypeError, match="quick must be a bool"):
        study_settings("yes")
    quick = study_settings(True)
    assert quick["factors"] == ["init_seed", "lr", "architecture"] and quick["members"] == 4
    assert list(itertools.chain(study_settings(datasets=["cifar10"])["datasets"])) == ["cifar10"]
